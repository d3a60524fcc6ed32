#!/usr/bin/env python3
"""bench/grpc_bench.py: what a ScoreTargets decision costs on the agent, per number of targets, next to a
gRPC health check (the same call path without the decision) in the same run.

For each target count N: SIM sim-engines (--speed 0) on 127.0.0.1 and N targets named t0..t{N-1} spread over
them (NAME=URL): the measured agent's own, up to 64 (an agent's limit), and beyond that other agents of a mesh
with 8 each (what a node announces to the others), which the measured agent ranks as remote targets; from
BENCH_FROM (512) targets on, one agent with SIM runtimes and N - SIM copies of them (--bench-targets, for
benchmarks only) instead of N / 8 agents; all healthy before measuring. Then, per method:
  latency     one call at a time (blocking stub, one HTTP/2 connection), LAT_N calls: p50 and p99 as the
              Python client sees them (its own cost included);
  throughput  WINDOW calls in flight (futures), TPUT_N calls: decisions per second, and the agent's CPU per
              call (the time all its threads ran, /proc/PID/task/*/schedstat, over the run / calls).
decision CPU = ScoreTargets CPU per call - Health/Check CPU per call: what ranking N targets adds (request
decoding, candidates, the policy's pick, scores, the response's encoding) to a gRPC call.
Writes bench/results/grpc.md (or BENCH_OUT). Knobs (environment): INFERMESH_BIN, TARGETS ("16 64 256 1000"), SIM (4),
LAT_N (3000), TPUT_N (20000), WINDOW (32), PROMPT_BYTES (2048), REPS (3: interleaved repetitions, medians
reported, each column on its own).
"""

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("INFERMESH_BIN", str(ROOT / "build/infermesh"))
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench/results/grpc.md"))
TARGETS = [int(x) for x in os.environ.get("TARGETS", "16 64 256 1000").split()]
SIM = int(os.environ.get("SIM", "4"))
LAT_N = int(os.environ.get("LAT_N", "3000"))
TPUT_N = int(os.environ.get("TPUT_N", "20000"))
WINDOW = int(os.environ.get("WINDOW", "32"))
REPS = int(os.environ.get("REPS", "3"))
PROMPT = ("The quick brown fox jumps over the lazy dog. " * 100)[: int(os.environ.get("PROMPT_BYTES", "2048"))]
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
LOCAL_MAX = 64  # runtimes one agent may have (config.c)
REMOTE_MAX = 8  # targets a node announces to the others (GOSSIP_LOAD_TARGETS, proto/gossip_msg.h)
BENCH_FROM = 512  # from this many targets on, one agent with --bench-targets (copies of its runtimes), not a mesh


def stubs(tmp):
    hc = tmp / "hc"
    hc.mkdir()
    shutil.copy(ROOT / "proto/grpc/health/v1/health.proto", hc / "health.proto")
    for args in (["-I", str(ROOT / "proto"), str(ROOT / "proto/infermesh/v1/scoring.proto")],
                 ["-I", str(hc), str(hc / "health.proto")]):
        assert protoc.main(["protoc", f"--python_out={tmp}", f"--grpc_python_out={tmp}", *args]) == 0
    sys.path.insert(0, str(tmp))
    import health_pb2, health_pb2_grpc  # noqa: E401
    from infermesh.v1 import scoring_pb2, scoring_pb2_grpc
    return scoring_pb2, scoring_pb2_grpc, health_pb2, health_pb2_grpc


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = cond()
            if v:
                return v
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"bench: timed out waiting for {what}")


def cpu_s(pid):
    """Seconds the process's threads ran on a CPU (schedstat: nanoseconds)."""
    total = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((t / "schedstat").read_text().split()[0])
        except (OSError, IndexError):
            pass
    return total / 1e9


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def measure(call, req):
    for _ in range(300):
        call(req, timeout=10)
    lat = []
    for _ in range(LAT_N):
        t = time.perf_counter()
        call(req, timeout=10)
        lat.append(time.perf_counter() - t)
    return lat


def throughput(call, req, pid):
    c0, t0 = cpu_s(pid), time.perf_counter()
    futs, done = [], 0
    while done < TPUT_N:
        while len(futs) < WINDOW and done + len(futs) < TPUT_N:
            futs.append(call.future(req, timeout=30))
        futs.pop(0).result()
        done += 1
    wall, cpu = time.perf_counter() - t0, cpu_s(pid) - c0
    return TPUT_N / wall, cpu / TPUT_N


LOAD0 = os.getloadavg()[0]
NOISE = ("A difference of a few µs between two rows is within the run-to-run spread of a gRPC call's CPU on these "
         "shared cores (a negative decision CPU is that spread).")


def main():
    tmp = Path(tempfile.mkdtemp(prefix="infermesh-grpcbench."))
    s_pb, s_grpc, h_pb, h_grpc = stubs(tmp)
    procs, rows = [], []
    try:
        engines = []
        for i in range(SIM):
            p = subprocess.Popen([BIN, "sim-engine", "--host", "127.0.0.1", "--port", "0", "--speed", "0",
                                  "--log-level", "warn"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            procs.append(p)
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", p.stdout.readline())
            engines.append(m.group(1))
        key = tmp / "key"
        subprocess.run([BIN, "init", "--data-dir", str(key)], check=True, capture_output=True)
        for n in TARGETS:
            # An agent runs at most 64 local runtimes: beyond, other agents of a mesh bring theirs (remote
            # targets, routed through their agent; each announces at most 8), and the measured agent ranks
            # them all.
            share = [min(n, LOCAL_MAX)]
            while sum(share) < n and n < BENCH_FROM:
                share.append(min(REMOTE_MAX, n - sum(share)))
            # Beyond, a mesh would take n / 8 agents: one agent has SIM runtimes and n - SIM copies of them
            # (--bench-targets, benchmarks only), scraped every 4 s (1,000 scrapes a second would crowd out the
            # calls measured here).
            bench = ["--bench-targets", str(n - SIM), "--max-targets", str(n), "--scrape-interval-ms", "4000"] \
                if n >= BENCH_FROM else []
            if bench:
                share = [SIM]
            agents, first = [], 0
            port, seed = None, None
            for k in range(len(share)):
                data = tmp / f"n{n}-{k}"
                data.mkdir(mode=0o700)
                for f in ("cluster.key", "cluster.id"):
                    shutil.copy(key / f, data / f)
                p, g = free_port(), f"127.0.0.1:{free_port()}"
                args = [BIN, "agent", "--listen", f"127.0.0.1:{p}", "--scrape-interval-ms", "1000", "--log-level",
                        "warn", "--name", f"node{k}", "--data-dir", str(data), "--gossip", g]
                if seed:
                    args += ["--join", seed]
                for i in range(first, first + share[k]):
                    args += ["--target", f"t{i}={engines[i % SIM]}"]
                args += bench
                first += share[k]
                a = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(tmp / f"agent{n}-{k}.err", "w"))
                procs.append(a)
                agents.append(a)
                if k == 0:
                    port, seed, agent = p, g, a

            def healthy():
                ts = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/cluster/targets", timeout=2))["targets"]
                healthy.last = (len(ts), sum(t["healthy"] for t in ts))
                return len(ts) == n and all(t["healthy"] for t in ts)
            healthy.last = None
            try:
                wait(healthy, 90, f"{n} healthy targets")
            except RuntimeError:
                raise RuntimeError(f"bench: {n} targets not all healthy (seen: targets, healthy = {healthy.last})")
            ch = grpc.insecure_channel(f"127.0.0.1:{port}")
            score = s_grpc.ScoringStub(ch).ScoreTargets
            check = h_grpc.HealthStub(ch).Check
            sreq = s_pb.ScoreTargetsRequest(model=MODEL, prompt=PROMPT, max_tokens=128)
            top1 = s_pb.ScoreTargetsRequest(model=MODEL, prompt=PROMPT, max_tokens=128, max_results=1)
            r = score(sreq, timeout=10)
            assert len(r.targets) == n and r.targets[0].chosen, r
            hreq = h_pb.HealthCheckRequest()
            runs = {}
            for _ in range(REPS):  # interleaved: each repetition measures every method once
                for name, call, req in (("Health/Check", check, hreq), ("ScoreTargets, best only", score, top1),
                                        ("ScoreTargets, all ranked", score, sreq)):
                    lat = measure(call, req)
                    rps, cpu = throughput(call, req, agent.pid)
                    runs.setdefault(name, []).append((pct(lat, 0.5), pct(lat, 0.99), rps, cpu))
            res = {name: tuple(sorted(r[i] for r in rs)[len(rs) // 2] for i in range(4)) for name, rs in runs.items()}
            ch.close()
            for a in agents:
                a.terminate()
            for a in agents:
                a.wait(10)
            rows.append((n, res))
            print(n, res, flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("KEEP_TMP"): print("kept", tmp)
        else: shutil.rmtree(tmp, ignore_errors=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    load = os.getloadavg()[0]
    load0 = LOAD0
    us = lambda s: f"{s * 1e6:.0f} µs"  # noqa: E731
    lines = [
        "# gRPC ScoreTargets: decisions per second and latency, by number of targets",
        "",
        f"`bench/grpc_bench.py`, {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, commit {commit}, "
        f"{os.cpu_count()} cores shared by the client, the agents and {SIM} sim-engines (load average "
        f"{load0:.1f} at the start, {load:.1f} at the end: other work shared them), {platform.machine()}; release build (RelWithDebInfo), agent `--log-level warn`.",
        "",
        f"Medians of {REPS} interleaved repetitions (each column separately). "
        f"Client: Python grpcio {grpc.__version__} (Debian), one HTTP/2 connection. Latency: {LAT_N} calls one at a "
        "time, as the client sees them (the Python client's own cost included). Throughput: "
        f"{TPUT_N} calls with {WINDOW} in flight; the Python client is the bottleneck (one core, GIL), so "
        "decisions/s is a floor, and the agent's CPU per call (all its threads, /proc/PID/task/*/schedstat) is the number "
        "that tells the agent's cost. *Decision CPU* = ScoreTargets CPU per call - Health/Check CPU per call in "
        "the same run: what decoding the request, hashing a "
        f"{len(PROMPT)}-byte prompt, filtering the candidates, the policy's pick (\"ours\"), scoring every "
        "candidate and sorting them add to a gRPC call, with the answer holding the best target only "
        "(max_results 1, what an endpoint picker needs) or all N ranked (encoding N targets, and a client "
        "decoding them).",
        "Targets beyond 64 are other agents': the measured agent has 64 local targets and the rest are remote, "
        "8 on each other agent of the mesh (a node announces at most 8 to the others), so 256 targets take 25 "
        f"agents on these cores. From {BENCH_FROM} targets on, one agent: its {SIM} runtimes (the sim-engines) "
        "and N - " f"{SIM} local copies of them (`--bench-targets`, benchmarks only: real targets, each with its "
        "own connection pool, load signals and prefix index, served by the same engines), scraped every 4 s "
        "instead of 1 s.",
        "",
        "| targets | method | p50 | p99 | calls/s | agent CPU per call | decision CPU |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n, res in rows:
        base = res["Health/Check"][3]
        for name in res:
            p50, p99, rps, cpu = res[name]
            dec = f"{(cpu - base) * 1e6:.1f} µs" if name != "Health/Check" else "–"
            lines.append(f"| {n} | {name} | {us(p50)} | {us(p99)} | {rps:.0f} | {cpu * 1e6:.1f} µs | {dec} |")
    lines += [
        "",
        "DESIGN §12's goal is a decision in 5 µs of CPU; compare the decision CPU column of the best-only rows "
        "(ranking all N also encodes N answers). " + NOISE,
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
