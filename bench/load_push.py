#!/usr/bin/env python3
"""How fast a load change on one node reaches every gateway of an N-node mesh (issue: within 500 ms at N=32).

N agents on 127.0.0.1 (own data dirs, one cluster key); node 0 has one simulated engine (--speed 1, so requests
stay running), the others are pure gateways. Each trial opens K streaming requests straight to the engine (not
through any agent), so the change starts at the runtime like any other load. We poll node 0's own view
(/v1/cluster/targets: running > 0 seen after its scrape) and every gateway's view of node 0's target, and report
gateway time minus node-0 time: the delay the mesh adds on top of the scrape. Then the requests are cancelled and
the decrease is measured the same way.

Usage: bench/load_push.py [--nodes 32] [--trials 10] [--bin build/infermesh] [--out FILE]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def get_json(port, path, timeout=2):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return json.loads(r.read())
    finally:
        c.close()


def wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def running_on(port, remote):
    for t in get_json(port, "/v1/cluster/targets")["targets"]:
        if t["remote"] == remote and t["models"]:
            return t["running"]
    return None


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=32)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--bin", default=os.environ.get("INFERMESH_BIN", "build/infermesh"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="im-loadpush-")
    procs = []

    def start(args, name):
        f = open(os.path.join(tmp, name + ".log"), "wb")
        p = subprocess.Popen([a.bin, *args], stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    try:
        subprocess.run([a.bin, "init", "--data-dir", f"{tmp}/n0"], check=True, capture_output=True)
        eport = free_port()
        start(["sim-engine", "--host", HOST, "--port", str(eport), "--speed", "1"], "engine")
        wait(lambda: get_json(eport, "/v1/models"), 10, "engine")
        ports, gports = [], []
        for i in range(a.nodes):
            d = f"{tmp}/n{i}"
            if i:
                os.makedirs(d, mode=0o700)
                for f in ("cluster.key", "cluster.id"):
                    shutil.copy(f"{tmp}/n0/{f}", f"{d}/{f}")
            p, g = free_port(), free_port()
            ports.append(p)
            gports.append(g)
            args = ["agent", "--name", f"n{i}", "--listen", f"{HOST}:{p}", "--data-dir", d, "--gossip", f"{HOST}:{g}",
                    "--log-level", "warn", "--scrape-interval-ms", "200"]
            if i == 0:
                args += ["--target", f"e0=http://{HOST}:{eport}"]
            else:
                args += ["--join", f"{HOST}:{gports[0]}"]
            start(args, f"n{i}")
        wait(lambda: all(running_on(p, True) is not None for p in ports[1:]), 60, "every gateway to see node 0's engine")
        up, down = [], []
        for trial in range(a.trials):
            for direction in ("up", "down"):
                conns = getattr(main, "conns", [])
                t_change = time.monotonic()
                if direction == "up":
                    conns = []
                    for k in range(a.requests):
                        c = http.client.HTTPConnection(HOST, eport, timeout=60)
                        body = {"model": MODEL, "stream": True, "max_tokens": 4000,
                                "messages": [{"role": "user", "content": f"trial {trial} {k}"}]}
                        c.request("POST", "/v1/chat/completions", body=json.dumps(body),
                                  headers={"Content-Type": "application/json"})
                        conns.append(c)
                    main.conns = conns
                else:
                    for c in conns:
                        c.sock.shutdown(socket.SHUT_RDWR)
                        c.close()
                want = (lambda v: v is not None and v > 0) if direction == "up" else (lambda v: v == 0)
                seen = {}

                def poll(i, port):
                    end = time.monotonic() + 10
                    while time.monotonic() < end:
                        try:
                            if want(running_on(port, i != 0)):
                                seen[i] = time.monotonic()
                                return
                        except OSError:
                            pass
                        time.sleep(0.01)

                ths = [threading.Thread(target=poll, args=(i, p)) for i, p in enumerate(ports)]
                for t in ths:
                    t.start()
                for t in ths:
                    t.join()
                if 0 not in seen or len(seen) < a.nodes:
                    print(f"trial {trial} {direction}: only {len(seen)} of {a.nodes} saw it", file=sys.stderr)
                    continue
                d = [(seen[i] - seen[0]) * 1000 for i in range(1, a.nodes)]
                (up if direction == "up" else down).extend(d)
                print(f"trial {trial} {direction}: node 0 saw it {1000 * (seen[0] - t_change):.0f} ms after the "
                      f"change; gateways +{statistics.median(d):.0f} ms median, +{max(d):.0f} ms max")
                time.sleep(0.5)
        lines = [f"| direction | samples | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |", "|---|---|---|---|---|---|"]
        for name, xs in (("increase", up), ("decrease", down)):
            if xs:
                lines.append(f"| {name} | {len(xs)} | {pct(xs, 50):.0f} | {pct(xs, 90):.0f} | {pct(xs, 99):.0f} | "
                             f"{max(xs):.0f} |")
        table = "\n".join(lines)
        print(table)
        if a.out:
            with open(a.out, "w") as f:
                f.write(table + "\n")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
