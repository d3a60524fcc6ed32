"""infermesh agents on a netns.Net: cluster keys, starting agents in hosts, membership views and log events.

Shared by tests/netns/test_membership.py and bench/gossip_bench.py.
"""

import contextlib
import datetime
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import netns

REPO = netns.REPO
# The ASan build, like the integration tests (INFERMESH_BIN overrides).
BIN = os.environ.get("INFERMESH_BIN") or str(REPO / "build-asan" / "infermesh")
API_PORT = 8080
GOSSIP_PORT = 7946

_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_ts(ts):
    """logfmt ts=2026-11-23T13:47:23.123Z -> epoch seconds."""
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def parse_logfmt(line):
    out = {}
    for k, v in _LOGFMT.findall(line):
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[k] = v
    return out


MEMBER_EVENTS = ("member joined", "member suspect", "member dead", "member left", "member alive again")


def run_bin(bin_, args, timeout=30):
    r = subprocess.run([str(bin_), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"infermesh {' '.join(map(str, args))} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class Node:
    def __init__(self, mesh, host, name, proc, data_dir):
        self.mesh, self.host, self.name, self.proc, self.data_dir = mesh, host, name, proc, Path(data_dir)
        self.api_port = API_PORT
        self.gossip_addr = f"{host.ip}:{GOSSIP_PORT}"
        self.url = f"http://{host.ip}:{API_PORT}"
        self._log_off = 0
        self._events = []

    def __repr__(self):
        return f"<Node {self.name} on {self.host.ns} pid={self.proc.pid}>"

    def alive(self):
        return self.proc.alive()

    def kill9(self):
        """SIGKILL the agent; returns the wall-clock time of the kill (for log-timestamp deltas)."""
        t = time.time()
        self.proc.signal(9)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        return t

    # --- HTTP views (from inside this node's own namespace, over its loopback path: never impaired)

    def members(self, timeout=5):
        return self.host.get_json(API_PORT, "/v1/cluster/members", timeout=timeout)

    def view(self, timeout=5):
        """{member name: state} as this node sees it (self included)."""
        return {m["name"]: m["state"] for m in self.members(timeout=timeout)["members"]}

    def metrics(self, timeout=5):
        return self.host.metrics(API_PORT, timeout=timeout)

    def counter(self, name, **labels):
        return netns.metric_value(self.metrics(), name, **labels)

    # --- log events

    def events(self):
        """[(epoch ts, msg, node)] for every member event logged so far (incrementally parsed)."""
        try:
            with open(self.proc.err_path, "rb") as f:
                f.seek(self._log_off)
                chunk = f.read()
        except OSError:
            return list(self._events)
        end = chunk.rfind(b"\n")
        if end >= 0:
            self._log_off += end + 1
            for line in chunk[:end].decode(errors="replace").splitlines():
                if 'msg="member ' not in line:
                    continue
                kv = parse_logfmt(line)
                if kv.get("msg") in MEMBER_EVENTS and "ts" in kv:
                    with contextlib.suppress(ValueError):
                        self._events.append((parse_ts(kv["ts"]), kv["msg"], kv.get("node", "")))
        return list(self._events)

    def first_event(self, msg, node, since=0.0):
        for ts, m, n in self.events():
            if m == msg and n == node and ts >= since:
                return ts
        return None

    def log_lines(self, pattern):
        return [ln for ln in self.proc.stderr().splitlines() if re.search(pattern, ln)]


class Mesh:
    """Starts agents (one per host) with data dirs under logdir/data."""

    def __init__(self, net, bin_, logdir):
        self.net, self.bin = net, str(bin_)
        self.datadir = Path(logdir) / "data"
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.nodes = []
        self._key_dirs = {}

    def key_dir(self, cluster="main"):
        """A data dir holding the cluster key of `cluster` (created with `infermesh init` on first use)."""
        if cluster not in self._key_dirs:
            d = self.datadir / f"key-{cluster}"
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            run_bin(self.bin, ["init", "--data-dir", d])
            self._key_dirs[cluster] = d
        return self._key_dirs[cluster]

    def node_data_dir(self, name, cluster="main"):
        """A fresh data dir for node `name` with the cluster key of `cluster` copied in (mode 0600)."""
        src = self.key_dir(cluster)
        d = self.datadir / name
        d.mkdir(mode=0o700, parents=True, exist_ok=False)
        for f in ("cluster.key", "cluster.id"):
            if (src / f).exists():
                shutil.copyfile(src / f, d / f)
                os.chmod(d / f, 0o600)
        return d

    def start(self, host, name, join=(), cluster="main", extra=(), targets=(), wait=True, env=None):
        """Start `infermesh agent` in host: HTTP on HOST_IP:8080, gossip on HOST_IP:7946, joining the given
        seeds (Nodes or HOST:PORT strings). Waits until it listens and logs msg="mesh on"."""
        host = self.net.host(host)
        d = self.node_data_dir(name, cluster)
        args = [self.bin, "agent", "--name", name, "--listen", f"{host.ip}:{API_PORT}", "--insecure-no-auth",
                "--data-dir", d,
                "--gossip", f"{host.ip}:{GOSSIP_PORT}", "--scrape-interval-ms", "200"]
        for j in join:
            args += ["--join", j.gossip_addr if isinstance(j, Node) else j]
        for t in targets:
            args += ["--target", t]
        args += list(extra)
        p = self.net.start(host, name, args, env=env)
        node = Node(self, host, name, p, d)
        self.nodes.append(node)
        if wait:
            self.wait_up(node)
        return node

    def wait_up(self, node, timeout=20):
        def up():
            if not node.proc.alive():
                raise AssertionError(f"{node.proc.describe()} died early\nstderr:\n{node.proc.stderr()[-3000:]}")
            return node.host.accepts(API_PORT) and 'msg="mesh on"' in node.proc.stderr()
        netns.wait_for(up, timeout=timeout, interval=0.05, what=f"{node.name} to listen and log mesh on")

    def views(self, nodes=None, timeout=5):
        """{observer name: {member name: state}} for the given (live) nodes."""
        return {n.name: n.view(timeout=timeout) for n in (nodes or self.nodes) if n.alive()}

    def wait_converged(self, nodes, expect_alive, timeout=30, interval=0.1):
        """Wait until every node in `nodes` sees exactly the names in expect_alive as alive."""
        want = set(expect_alive)

        def ok():
            for n in nodes:
                alive = {k for k, s in n.view().items() if s == "alive"}
                if alive != want:
                    return False
            return True
        t0 = time.monotonic()
        try:
            netns.wait_for(ok, timeout=timeout, interval=interval,
                           what=f"{len(nodes)} nodes to agree on {len(want)} alive members")
        except AssertionError as e:
            raise AssertionError(f"{e}\nviews now: {self._safe_views(nodes)}") from None
        return time.monotonic() - t0

    def _safe_views(self, nodes):
        out = {}
        for n in nodes:
            try:
                out[n.name] = n.view()
            except Exception as e:  # noqa: BLE001 - diagnostics only
                out[n.name] = repr(e)
        return out
