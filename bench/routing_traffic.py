#!/usr/bin/env python3
"""Per-node mesh traffic of load reports and cache reports (KV-cache events), and how old the signals are at
the gateways, with N agents on 127.0.0.1 (issue 16 item 5: goal <= 50 KB/s per node at N = 256, signals
<= 500 ms old).

N real `infermesh agent` processes (own data dirs, one cluster key; every node is a gateway) and E simulated
engines (--speed 1, publishing KV-cache events). Node i's one runtime is engine i mod E (so every node
scrapes a runtime and subscribes to its events, as a GPU node would; several nodes share an engine only to
save processes). A driver sends requests with shared prefixes to random nodes at --rate per second, so loads
change and engines store and evict blocks. After the mesh has formed, per-node bytes/s come from each agent's
counters over --seconds: infermesh_gossip_kind_bytes_out_total{kind=load|cache} and
infermesh_gossip_bytes_total{dir=out} (the rest is SWIM). Signal ages: every node's /v1/cluster/targets,
age_ms of the remote targets (load) and kv_report_age_ms (cache), sampled during the window; age_ms of each
node's own target is the age the signals already have at their source (the scrape), so remote minus local is
what the mesh adds. CPU per agent: utime + stime from /proc over the window.

Usage: bench/routing_traffic.py [--nodes 64] [--engines 4] [--seconds 20] [--rate 20] [--scrape-ms 500]
                                [--bin build/infermesh]
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


_NEXT = [random.randint(12000, 20000)]


def free_port():
    """A port below the kernel's ephemeral range (so no outgoing connection takes it before the agent binds it),
    free now for TCP and UDP, never handed out before in this run."""
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    while True:
        port = _NEXT[0]
        _NEXT[0] += 1
        if port >= lo:
            raise SystemExit("no free port below the ephemeral range")
        ok = True
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind((HOST, port))
                except OSError:
                    ok = False
        if ok:
            return port


def get(port, path, timeout=5):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.read().decode()
    finally:
        c.close()


def metrics(port):
    out = {}
    for line in get(port, "/metrics").splitlines():
        if line.startswith("#") or not line:
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--engines", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--scrape-ms", type=int, default=500, help="the agents' --scrape-interval-ms")
    ap.add_argument("--bin", default=os.environ.get("INFERMESH_BIN", "build/infermesh"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="im-traffic-")
    procs = []

    def start(args, name):
        f = open(os.path.join(tmp, name + ".log"), "wb")
        p = subprocess.Popen([a.bin, *args], stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    try:
        subprocess.run([a.bin, "init", "--data-dir", f"{tmp}/n0"], check=True, capture_output=True)
        engines = []
        for e in range(a.engines):
            port, zport = free_port(), free_port()
            start(["sim-engine", "--host", HOST, "--port", str(port), "--speed", "1", "--kv-events",
                   f"tcp://{HOST}:{zport}", "--log-level", "warn"], f"engine{e}")
            engines.append((port, zport))
        for port, _ in engines:
            wait(lambda: get(port, "/health", 2) is not None, 15, "engine")
        ports, gports, agents = [], [], []
        t_start = time.monotonic()
        for i in range(a.nodes):
            d = f"{tmp}/n{i}"
            if i:
                os.makedirs(d, mode=0o700)
                for f in ("cluster.key", "cluster.id"):
                    shutil.copy(f"{tmp}/n0/{f}", f"{d}/{f}")
            p, g = free_port(), free_port()
            ports.append(p)
            gports.append(g)
            eport, zport = engines[i % a.engines]
            args = ["agent", "--scrape-interval-ms", str(a.scrape_ms), "--name", f"n{i}", "--listen", f"{HOST}:{p}", "--data-dir", d, "--gossip",
                    f"{HOST}:{g}", "--log-level", "warn", "--ledger", "false",
                    "--target", f"e{i}=http://{HOST}:{eport}#kv_events=tcp://{HOST}:{zport}"]
            if i:
                args += ["--join", f"{HOST}:{gports[0]}"]
            agents.append(start(args, f"n{i}"))
        def formed():
            seen = []
            for p in random.sample(ports, min(8, len(ports))):
                ts = json.loads(get(p, "/v1/cluster/targets"))["targets"]
                seen.append(sum(1 for t in ts if t["healthy"]))
            formed.last = seen
            return min(seen) >= a.nodes
        try:
            wait(formed, 60 + 2 * a.nodes, "every sampled node to see every node's runtime healthy")
        except SystemExit:
            print(f"healthy targets seen by 8 sampled nodes: {getattr(formed, 'last', None)}", file=sys.stderr)
            for i, p in enumerate(ports):
                ts = [t for t in json.loads(get(p, "/v1/cluster/targets"))["targets"] if not t["remote"]]
                if ts and not ts[0]["healthy"]:
                    print(f"n{i}: its own runtime is down: {ts[0]['last_error']}", file=sys.stderr)
            raise
        formed_s = time.monotonic() - t_start
        print(f"mesh of {a.nodes} formed in {formed_s:.0f} s", file=sys.stderr)
        stop = threading.Event()
        sent = [0]

        def drive():
            groups = [f"system prompt {g} " * 120 for g in range(16)]
            while not stop.is_set():
                port = random.choice(ports)
                body = json.dumps({"model": MODEL, "max_tokens": 16, "stream": False,
                                   "prompt": random.choice(groups) + f"question {random.random()} " * 8})
                try:
                    c = http.client.HTTPConnection(HOST, port, timeout=30)
                    c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
                    c.getresponse().read()
                    c.close()
                    sent[0] += 1
                except OSError:
                    pass
                time.sleep(random.expovariate(a.rate / 4))

        drivers = [threading.Thread(target=drive, daemon=True) for _ in range(4)]
        for t in drivers:
            t.start()
        time.sleep(3)  # warm: caches fill, reports flow
        keys = ['infermesh_gossip_bytes_total{dir="out"}', 'infermesh_gossip_kind_bytes_out_total{kind="load"}',
                'infermesh_gossip_kind_bytes_out_total{kind="cache"}']
        tick = os.sysconf("SC_CLK_TCK")

        def cpu_s(pid):
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / tick

        m0 = {p: metrics(p) for p in ports}
        c0, tc0 = [cpu_s(p.pid) for p in agents], time.monotonic()
        t0 = time.monotonic()
        load_age, cache_age, local_age = [], [], []
        while time.monotonic() - t0 < a.seconds:
            p = random.choice(ports)
            for t in json.loads(get(p, "/v1/cluster/targets"))["targets"]:
                if t["remote"] and t["age_ms"] is not None:
                    load_age.append(t["age_ms"])
                if not t["remote"] and t["age_ms"] is not None:
                    local_age.append(t["age_ms"])
                if t["remote"] and t.get("kv_report_age_ms") is not None:
                    cache_age.append(t["kv_report_age_ms"])
            time.sleep(0.2)
        c1, tc1 = [cpu_s(p.pid) for p in agents], time.monotonic()
        m1 = {p: metrics(p) for p in ports}
        dt = time.monotonic() - t0
        cpu = [(b - c) / (tc1 - tc0) * 100 for b, c in zip(c1, c0)]
        stop.set()
        rates = {k: [(m1[p].get(k, 0) - m0[p].get(k, 0)) / dt / 1024 for p in ports] for k in keys}
        total, load, cache = (rates[k] for k in keys)
        swim = [t - l - c for t, l, c in zip(total, load, cache)]
        rows = [("load reports", load), ("cache reports", cache), ("SWIM", swim), ("all gossip", total)]
        print(f"| N = {a.nodes} (KB/s per node, out) | mean | p50 | max |")
        print("|---|---|---|---|")
        for name, xs in rows:
            print(f"| {name} | {sum(xs) / len(xs):.1f} | {pct(xs, 50):.1f} | {max(xs):.1f} |")
        print()
        print(f"signal age at the gateways (ms): load report p50 {pct(load_age, 50):.0f}, p90 {pct(load_age, 90):.0f}, "
              f"p99 {pct(load_age, 99):.0f} ({len(load_age)} samples); last cache report p50 {pct(cache_age, 50):.0f} "
              f"({len(cache_age)} samples); {sent[0]} requests driven over the run ({dt:.0f} s window)")
        print(f"age at the source (own target, the scrape): p50 {pct(local_age, 50):.0f}, p90 {pct(local_age, 90):.0f} "
              f"({len(local_age)} samples); CPU per agent (% of a core): mean {sum(cpu) / len(cpu):.1f}, "
              f"p50 {pct(cpu, 50):.1f}, max {max(cpu):.1f}, all agents {sum(cpu):.0f} of {os.cpu_count() * 100}; "
              f"load average {os.getloadavg()[0]:.1f}")
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
