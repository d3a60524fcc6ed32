#!/usr/bin/env python3
"""Gossip membership benchmark (driven by bench/gossip.sh): N infermesh agents, each in its own network
namespace on one Linux bridge (tests/netns/netns.py), pure gateways, default SWIM settings.

Per N:
  * start N-1 agents (all joining through agent 0), wait until every one sees N-1 alive;
  * traffic: infermesh_gossip_bytes_total{dir=in|out} deltas per node over a steady window, and CPU;
  * R repetitions of: a new agent joins through a random member (the cluster is then N) -> join propagation
    = from the newcomer's `msg="mesh on"` log timestamp to the last member's `member joined` timestamp;
    then a random member is SIGKILLed -> failure detection = from the kill to each member's `member dead`
    log timestamp ("everywhere" = the last member's);
  * optionally (--loss-sizes) 10% packet loss (nftables, every host, ingress) for --loss-s seconds: every
    `member dead` about a live node is a false positive; suspicions and refutations are counted.
Every `member dead` about a node that was not killed, at any time, is reported as a false positive too.

Writes a markdown fragment (the per-N results) to --out and raw samples as JSON beside it.
"""

import argparse
import json
import math
import os
import random
import re
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "netns"))

import netns  # noqa: E402
from cluster import Mesh, parse_logfmt, parse_ts  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def pct(xs, p):
    """Nearest-rank percentile (p in 0..100); None for no samples."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def fmt(x, unit="s", nd=2):
    return "–" if x is None else f"{x:.{nd}f} {unit}".strip()


def ms(x):
    return "–" if x is None else f"{x * 1000:.0f} ms"


def log(msg):
    print(f"[gossip-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_ticks(pids):
    t = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return t


def mesh_on_ts(node):
    for line in node.proc.stderr().splitlines():
        if 'msg="mesh on"' in line:
            return parse_ts(parse_logfmt(line)["ts"])
    return None


def wait_all_logged(nodes, msg, about, since, timeout):
    """Wait until every node in nodes logged (msg, about) at or after since; {node name: ts}."""
    deadline = time.monotonic() + timeout
    got = {}
    while True:
        for n in nodes:
            if n.name not in got:
                ts = n.first_event(msg, about, since=since)
                if ts is not None:
                    got[n.name] = ts
        if len(got) == len(nodes):
            return got, True
        if time.monotonic() > deadline:
            return got, False
        time.sleep(0.05)


def alive_counts(nodes):
    out = []
    for n in nodes:
        try:
            out.append(sum(1 for s in n.view(timeout=10).values() if s == "alive"))
        except Exception:  # noqa: BLE001 - a view that fails counts as not converged
            out.append(-1)
    return out


def bytes_total(n):
    s = n.metrics(timeout=10)
    return (netns.metric_value(s, "infermesh_gossip_bytes_total", dir="in") or 0,
            netns.metric_value(s, "infermesh_gossip_bytes_total", dir="out") or 0)


def run_size(args, N, logdir):
    res = {"N": N, "join": [], "join_member": [], "dead_everywhere": [], "dead_member": [], "timeouts": [],
           "false_deaths": [], "killed": []}
    reps = args.reps_64 if N >= 64 else args.reps
    net = netns.Net(N - 1 + reps, logdir)
    try:
        mesh = Mesh(net, args.bin, logdir)
        t0 = time.monotonic()
        seed = mesh.start(net.hosts[0], "m000", wait=True)
        live = [seed]
        for i in range(1, N - 1):
            live.append(mesh.start(net.hosts[i], f"m{i:03d}", join=[seed], wait=False))
        for n in live:
            mesh.wait_up(n, timeout=60)
        log(f"N={N}: {N - 1} agents up in {time.monotonic() - t0:.1f} s; waiting for agreement")
        netns.wait_for(lambda: all(c == N - 1 for c in alive_counts(live)), timeout=120, interval=0.5,
                       what=f"{N - 1} agents to agree on {N - 1} alive")
        res["converge_s"] = time.monotonic() - t0
        log(f"N={N}: converged {res['converge_s']:.1f} s after the first start")
        time.sleep(3)

        # steady-state traffic and CPU (N-1 members)
        pids = [n.proc.pid for n in live]
        b0 = {n.name: bytes_total(n) for n in live}
        c0, w0 = cpu_ticks(pids), time.monotonic()
        time.sleep(args.traffic_s)
        b1 = {n.name: bytes_total(n) for n in live}
        c1, w1 = cpu_ticks(pids), time.monotonic()
        wall = w1 - w0
        ins = [(b1[k][0] - b0[k][0]) / wall for k in b0]
        outs = [(b1[k][1] - b0[k][1]) / wall for k in b0]
        res["traffic"] = {"members": N - 1, "window_s": wall, "in_Bps_mean": sum(ins) / len(ins),
                          "in_Bps_max": max(ins), "out_Bps_mean": sum(outs) / len(outs), "out_Bps_max": max(outs),
                          "cpu_cores_all_agents": (c1 - c0) / HZ / wall}
        log(f"N={N}: traffic {res['traffic']}")

        killed = set()
        for rep in range(reps):
            host = net.hosts[N - 1 + rep]
            via = random.choice(live)
            new = mesh.start(host, f"new{rep:02d}", join=[via], wait=True)
            t_on = mesh_on_ts(new)
            got, ok = wait_all_logged(live, "member joined", new.name, since=t_on - 1, timeout=60)
            if ok:
                d = [ts - t_on for ts in got.values()]
                res["join"].append(max(d))
                res["join_member"] += d
                res.setdefault("stragglers", []).extend(
                    (new.name, who, round(ts - t_on, 2)) for who, ts in got.items() if ts - t_on > 1)
            else:
                res["timeouts"].append(f"join of {new.name}: {len(got)}/{len(live)} members logged it in 60 s")
            live.append(new)
            time.sleep(1)
            victim = random.choice(live)
            live.remove(victim)
            killed.add(victim.name)
            t_kill = victim.kill9()
            res["killed"].append(victim.name)
            got, ok = wait_all_logged(live, "member dead", victim.name, since=t_kill - 0.01, timeout=60)
            if ok:
                d = [ts - t_kill for ts in got.values()]
                res["dead_everywhere"].append(max(d))
                res["dead_member"] += d
            else:
                res["timeouts"].append(f"death of {victim.name}: {len(got)}/{len(live)} members logged it in 60 s")
            log(f"N={N} rep {rep}: join {res['join'][-1] if res['join'] else None}, dead everywhere "
                f"{res['dead_everywhere'][-1] if res['dead_everywhere'] else None}")
            time.sleep(1)

        loss_s = args.loss_s_64 if N >= 64 else args.loss_s
        if N in args.loss_sizes and loss_s > 0:
            before = {n.name: n.counter("infermesh_gossip_suspicions_total") or 0 for n in live}
            t_loss = time.time()
            applied = net.impair(loss_pct=args.loss_pct)
            log(f"N={N}: {args.loss_pct}% loss for {loss_s} s on {len(live)} members")
            pids = [n.proc.pid for n in live]
            c0, w0 = cpu_ticks(pids), time.monotonic()
            views_dead = 0
            end = time.monotonic() + loss_s
            while time.monotonic() < end:
                time.sleep(min(10, max(0, end - time.monotonic())))
                for n in live[:4]:  # a sample of views (HTTP over each node's loopback, never impaired)
                    try:
                        views_dead += sum(1 for s in n.view(timeout=10).values() if s in ("dead", "left"))
                    except Exception:  # noqa: BLE001
                        pass
            c1, w1 = cpu_ticks(pids), time.monotonic()
            dropped = net.loss_counters()
            net.clear_impairments()
            live_names = {n.name for n in live}
            fp = [(n.name, e[2], round(e[0] - t_loss, 1)) for n in live for e in n.events()
                  if e[1] == "member dead" and e[0] >= t_loss and e[2] in live_names]
            sus = [e for n in live for e in n.events() if e[1] == "member suspect" and e[0] >= t_loss]
            ref = [e for n in live for e in n.events() if e[1] == "member alive again" and e[0] >= t_loss]
            res["loss"] = {"members": len(live), "loss_pct": args.loss_pct, "seconds": loss_s,
                           "delay": "none (not requested)",
                           "packets_dropped": sum(v[0] for v in dropped.values()),
                           "false_deaths": fp, "suspect_lines": len(sus), "refuted_lines": len(ref),
                           "suspicions_metric": sum((n.counter("infermesh_gossip_suspicions_total") or 0)
                                                    - before[n.name] for n in live),
                           "cpu_cores_all_agents": (c1 - c0) / HZ / (w1 - w0)}
            log(f"N={N}: loss result {res['loss']}")
            netns.wait_for(lambda: all(c == len(live) for c in alive_counts(live)), timeout=60, interval=1,
                           what="agreement after the lossy period")

        for n in live:
            for ts, msg, about in n.events():
                if msg == "member dead" and about not in killed:
                    res["false_deaths"].append((n.name, about, ts))
    except Exception as e:  # noqa: BLE001 - keep what was measured before the failure
        log(f"N={N} failed: {e!r}")
        res["timeouts"].append(f"run aborted: {str(e)[:500]}")
    finally:
        res["sanitizer"] = net.procs.sanitizer_reports()
        res["exited_early"] = [n.name for n in mesh.nodes if not n.alive() and n.name not in res["killed"]] \
            if "mesh" in locals() else []
        net.close()
    return res


def memberlist_lan(N):
    """memberlist DefaultLANConfig at N members: (min suspicion, max suspicion) in seconds."""
    interval, mult, maxmult = 1.0, 4, 6
    smin = mult * max(1.0, math.log10(max(1.0, N))) * interval
    return smin, maxmult * smin


def swim_defaults():
    """The agent's SWIM defaults, read from swim_config_default in src/cluster/swim.c (so the report cannot
    drift from the code)."""
    try:
        src = (ROOT / "src" / "cluster" / "swim.c").read_text()
        body = src[src.index("void swim_config_default"):]
        body = body[:body.index("\n}\n")]
        return {k: v for k, v in re.findall(r"c->(\w+) = ([\w]+);", body)}
    except (OSError, ValueError):
        return {}


def ours_model(N, d):
    """Our suspicion bounds by the same formula (swim.c suspicion_start: mult * log10(max(N, 2)) * interval)."""
    try:
        interval = int(d["probe_interval_ms"]) / 1000
        smin = int(d["suspicion_mult"]) * math.log10(max(N, 2)) * interval
        return interval, smin, int(d["suspicion_max_mult"]) * smin
    except (KeyError, ValueError):
        return None


def render(results, args):
    out = []
    big = max(results, key=lambda r: r["N"])
    p99 = pct(big["dead_everywhere"], 99)
    lossy = [r for r in results if "loss" in r]
    fps = sum(len(r["loss"]["false_deaths"]) for r in lossy)
    out.append("Goals (DESIGN.md §12):")
    out.append("")
    out.append(f"- dead node known everywhere ≤ 3 s at N=64: at N={big['N']}, p50 {fmt(pct(big['dead_everywhere'], 50))}, "
               f"p99 {fmt(p99)} → " + ("**no samples**" if p99 is None else ("met" if p99 <= 3 and big["N"] >= 64
                                                                              else "**not met**" if p99 > 3
                                                                              else "met at this N (64 not run)")))
    out.append(f"- zero false positives at {args.loss_pct:g}% loss: " + (
        "**not measured**" if not lossy else
        f"{fps} false deaths (N={', '.join(str(r['loss']['members']) + ' for ' + str(r['loss']['seconds']) + ' s' for r in lossy)}) → " + ("met" if fps == 0 else "**not met**")))
    out.append("")
    out.append("| N | agents up → all agree | join → known everywhere p50 / p99 (reps) | per-member join p50 / p99 |"
               " kill -9 → dead everywhere p50 / p99 (reps) | per-member detection p50 / p99 | false deaths |"
               " gossip B/s per node in / out (mean) | CPU, all agents |")
    out.append("|---:|---:|---|---|---|---|---:|---|---:|")
    for r in results:
        t = r.get("traffic", {})
        out.append(
            f"| {r['N']} | {fmt(r.get('converge_s'), 's', 1)} | {ms(pct(r['join'], 50))} / {ms(pct(r['join'], 99))} "
            f"({len(r['join'])}) | {ms(pct(r['join_member'], 50))} / {ms(pct(r['join_member'], 99))} | "
            f"{fmt(pct(r['dead_everywhere'], 50))} / {fmt(pct(r['dead_everywhere'], 99))} "
            f"({len(r['dead_everywhere'])}) | {fmt(pct(r['dead_member'], 50))} / {fmt(pct(r['dead_member'], 99))} | "
            f"{len(r['false_deaths'])} | {t.get('in_Bps_mean', 0):.0f} / {t.get('out_Bps_mean', 0):.0f} "
            f"(max {t.get('out_Bps_max', 0):.0f} out) | {t.get('cpu_cores_all_agents', 0):.2f} cores |")
    out.append("")
    losses = [r for r in results if "loss" in r]
    if losses:
        out.append("Under loss (nftables `numgen random` drop on every host's ingress, UDP and TCP):")
        out.append("")
        out.append("| members | loss | duration | delay | packets dropped | false deaths | `member suspect` lines |"
                   " ≈ distinct suspicions (lines ÷ observers) | refuted (`member alive again`) | suspicions (metric) |"
                   " CPU, all agents |")
        out.append("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in losses:
            L = r["loss"]
            out.append(f"| {L['members']} | {L['loss_pct']}% | {L['seconds']} s | {L['delay']} | "
                       f"{L['packets_dropped']} | **{len(L['false_deaths'])}** | {L['suspect_lines']} | "
                       f"{L['suspect_lines'] / max(1, L['members'] - 1):.0f} "
                       f"({L['suspect_lines'] / max(1, L['members'] - 1) / L['seconds']:.2f}/s) | "
                       f"{L['refuted_lines']} | {L['suspicions_metric']:.0f} | {L['cpu_cores_all_agents']:.2f} cores |")
        out.append("")
    problems = []
    for r in results:
        for x in r["timeouts"]:
            problems.append(f"N={r['N']}: {x}")
        for x in r.get("stragglers", [])[:10]:
            problems.append(f"N={r['N']}: slow join: {x[1]} learned of {x[0]} only {x[2]} s after it started")
        for x in r["false_deaths"][:10]:
            problems.append(f"N={r['N']}: false death: {x[0]} declared {x[1]} dead")
        if r.get("loss"):
            for x in r["loss"]["false_deaths"][:10]:
                problems.append(f"N={r['N']} under loss: {x[0]} declared live {x[1]} dead at +{x[2]} s")
        for x in r.get("sanitizer", []):
            problems.append(f"N={r['N']}: sanitizer report: {x[:300]}")
        for x in r.get("exited_early", []):
            problems.append(f"N={r['N']}: agent {x} exited during the run")
    if problems:
        out.append("Problems seen in this run:")
        out.append("")
        out += [f"- {p}" for p in problems]
        out.append("")
    d = args.swim_defaults
    out.append("Failure detection against memberlist's `DefaultLANConfig` at the same N. memberlist: ProbeInterval 1 s, "
               "ProbeTimeout 500 ms, SuspicionMult 4, SuspicionMaxTimeoutMult 6, so the suspicion timeout is "
               "4 × max(1, log10 N) × 1 s when enough independent confirmations arrive and up to 6× that without; a "
               "dead node is suspected about one probe interval after its first failed probe, so detection ≈ "
               "1 interval + suspicion timeout (+ a few 200 ms gossip rounds to spread). Ours by the same formula "
               "with our defaults (" + ", ".join(f"{k} {v}" for k, v in d.items() if k in (
                   "probe_interval_ms", "probe_timeout_ms", "suspicion_mult", "suspicion_max_mult",
                   "indirect_checks", "gossip_interval_ms", "gossip_nodes")) + "):")
    out.append("")
    out.append("| N | memberlist: interval + min … max suspicion | ours by the same formula | ours measured: dead everywhere p50 / p99 | memberlist best case / our p50 |")
    out.append("|---:|---|---|---|---:|")
    for r in results:
        smin, smax = memberlist_lan(r["N"])
        om = ours_model(r["N"], d)
        ours = f"{om[0] + om[1]:.2f} … {om[0] + om[2]:.2f} s" if om else "?"
        p50 = pct(r["dead_everywhere"], 50)
        ratio = f"{(1 + smin) / p50:.1f}×" if p50 else "–"
        out.append(f"| {r['N']} | {1 + smin:.1f} … {1 + smax:.1f} s | {ours} | "
                   f"{fmt(p50)} / {fmt(pct(r['dead_everywhere'], 99))} | {ratio} |")
    out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("INFERMESH_BIN") or str(ROOT / "build" / "infermesh"))
    ap.add_argument("--sizes", default="8,32,64")
    ap.add_argument("--reps", type=int, default=10, help="join+kill repetitions per N (below 64)")
    ap.add_argument("--reps-64", type=int, default=6, help="repetitions at N >= 64")
    ap.add_argument("--traffic-s", type=float, default=10)
    ap.add_argument("--loss-sizes", default="32,64")
    ap.add_argument("--loss-s", type=int, default=180)
    ap.add_argument("--loss-s-64", type=int, default=90, help="lossy period at N >= 64 (short: 2 shared cores)")
    ap.add_argument("--loss-pct", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--logdir", default="/tmp/infermesh-gossip-bench")
    ap.add_argument("--out", required=True, help="markdown fragment to write")
    args = ap.parse_args()
    args.loss_sizes = {int(x) for x in args.loss_sizes.split(",") if x}
    random.seed(args.seed)

    def on_term(signum, frame):  # unwind through the finally blocks: agents killed, namespaces deleted
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, on_term)
    reason = netns.unavailable_reason()
    if reason:
        sys.exit(f"gossip bench: {reason}")
    args.swim_defaults = swim_defaults()  # read now: the source may change while the benchmark runs
    results = []
    for N in [int(x) for x in args.sizes.split(",")]:
        logdir = Path(args.logdir) / f"n{N}"
        logdir.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        try:
            r = run_size(args, N, logdir)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - record it, keep the other sizes' numbers
            log(f"N={N} failed: {e!r}")
            r = {"N": N, "join": [], "join_member": [], "dead_everywhere": [], "dead_member": [],
                 "timeouts": [f"run failed: {str(e)[:500]}"], "false_deaths": [], "killed": []}
        r["wall_s"] = time.monotonic() - t
        results.append(r)
        log(f"N={N} done in {r['wall_s']:.0f} s")
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    Path(args.out).write_text(render(results, args))
    bad = any(r["timeouts"] or r.get("sanitizer") for r in results)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
