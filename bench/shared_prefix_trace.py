#!/usr/bin/env python3
"""Write a Mooncake-format trace of shared-prefix traffic: G system prompts of B 512-token blocks, each request
one of them (uniformly) plus one unique block, Poisson arrivals at RATE req/s. Used by the live-versus-simulator
comparison in bench/results/routing_live.md.

Usage: bench/shared_prefix_trace.py OUT [--groups 64] [--blocks 16] [--requests 500] [--rate 10] [--output 32]
                                        [--seed 11]
"""
import argparse
import json
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--groups", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--output", type=int, default=32)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    groups = [[g * 1000 + k for k in range(a.blocks)] for g in range(a.groups)]
    uniq = 10**6
    t = 0.0
    with open(a.out, "w") as f:
        for _ in range(a.requests):
            t += rng.expovariate(a.rate / 1000.0)
            uniq += 1
            f.write(json.dumps({"timestamp": int(t), "input_length": (a.blocks + 1) * 512,
                                "output_length": a.output,
                                "hash_ids": groups[rng.randrange(a.groups)] + [uniq]}) + "\n")


if __name__ == "__main__":
    main()
