"""`infermesh dev`: engines + agent as children, a banner, a working endpoint, and nothing left behind."""

import os
import re
import signal
import time

import pytest

from conftest import HOST, chat_body, free_port, free_ports, http_get, post_json, wait_for


def proc_table():
    """{pid: (ppid, state, cmdline)} for every process we can read."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        out[int(d)] = (int(rest[1]), rest[0], cmd)
    return out


def descendants(root):
    table = proc_table()
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    return {p: table[p] for p in out if p in table}


def live(pids):
    """Those of pids that still exist and are not zombies."""
    table = proc_table()
    return [p for p in pids if p in table and table[p][1] != "Z"]


def mentioning(needles):
    return {pid: v for pid, v in proc_table().items()
            if "infermesh" in v[2] and v[1] != "Z" and any(n in v[2] for n in needles)}


def start_dev(procs, engines=3, speed="10"):
    port = free_port()
    dev = procs.infermesh("dev", "dev", "--port", str(port), "--engines", str(engines), "--speed", speed)
    out = wait_for(lambda: dev.alive() and "curl" in dev.stdout() and dev.stdout(), timeout=20,
                   what="the dev banner")
    return dev, port, out


def dev_children(dev, engines):
    kids = wait_for(lambda: len(descendants(dev.pid)) >= engines + 1 and descendants(dev.pid), timeout=5,
                    what="dev's children")
    cmds = [v[2] for v in kids.values()]
    assert sum(" sim-engine " in c for c in cmds) == engines, cmds
    assert sum(" agent " in c for c in cmds) == 1, cmds
    return kids


def check_banner(out, port):
    assert f"http://{HOST}:{port}/v1" in out, out
    m = re.search(r"curl .*http://127\.0\.0\.1:(\d+)/v1/chat/completions", out)
    assert m and int(m.group(1)) == port, out
    assert "Ctrl-C" in out
    assert f"dashboard  http://{HOST}:{port}/ui/" in out, out


def agent_targets(agent_port):
    return http_get(agent_port, "/v1/cluster/targets").json()["targets"]


def engine_ports(agent_port):
    return [int(t["url"].rsplit(":", 1)[1]) for t in agent_targets(agent_port)]


@pytest.mark.timeout(45)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_dev_start_request_stop(procs, sig):
    dev, port, out = start_dev(procs, engines=3)
    check_banner(out, port)
    assert http_get(port, "/readyz").status == 200
    kids = dev_children(dev, 3)
    eports = engine_ports(port)
    assert len(eports) == 3
    r = post_json(port, "/v1/chat/completions", chat_body("hello dev", max_tokens=4))
    assert r.status == 200, r
    assert r.json()["usage"]["completion_tokens"] == 4
    assert r.headers["x-infermesh-node"] == "dev"
    assert r.headers["x-infermesh-target"] in {t["name"] for t in agent_targets(port)}
    for p in eports:  # the engines answer on the ports the agent targets
        assert http_get(p, "/health").status == 200

    dev.signal(sig)
    rc = dev.wait(timeout=15)
    assert rc == 0, f"dev exit status {rc}"
    wait_for(lambda: not live(kids), timeout=5, what=f"dev's children {sorted(kids)} to be gone")
    needles = [f"{HOST}:{port}"] + [f"{HOST}:{p}" for p in eports] + [f"--port {p}" for p in eports]
    left = mentioning(needles)
    assert not left, f"infermesh processes left behind: {left}"
    assert not http_get_ok(port)


def http_get_ok(port):
    try:
        return http_get(port, "/healthz", timeout=1).status == 200
    except OSError:
        return False


@pytest.mark.timeout(45)
def test_dev_children_die_with_a_killed_parent(procs):
    """SIGKILL gives dev no chance to clean up: the children must follow on their own (PDEATHSIG)."""
    dev, port, _ = start_dev(procs, engines=2)
    kids = dev_children(dev, 2)
    dev.signal(signal.SIGKILL)
    dev.wait(timeout=5)
    wait_for(lambda: not live(kids), timeout=10, what=f"dev's orphaned children {sorted(kids)} to exit")


@pytest.mark.timeout(45)
def test_dev_restarts_a_crashed_engine(procs):
    dev, port, _ = start_dev(procs, engines=2)
    kids = dev_children(dev, 2)
    engine_pids = sorted(p for p, v in kids.items() if " sim-engine " in v[2])
    eports = engine_ports(port)
    os.kill(engine_pids[0], signal.SIGKILL)
    wait_for(lambda: not all(t["healthy"] for t in agent_targets(port)), timeout=5,
             what="the agent to see the engine down")
    # The supervisor starts a new engine on the same port and the agent uses it again.
    wait_for(lambda: len([p for p, v in descendants(dev.pid).items()
                          if " sim-engine " in v[2] and v[1] != "Z"]) == 2, timeout=10,
             what="a replacement engine process")
    assert engine_pids[0] not in live(descendants(dev.pid))
    wait_for(lambda: all(t["healthy"] for t in http_get(port, "/v1/cluster/targets").json()["targets"]),
             timeout=10, what="every target healthy again")
    for i in range(6):
        assert post_json(port, "/v1/chat/completions", chat_body(f"r{i}", max_tokens=1)).status == 200
    dev.signal(signal.SIGTERM)
    assert dev.wait(timeout=15) == 0


@pytest.mark.timeout(20)
def test_dev_port_in_use_is_a_clear_error(procs):
    import socket
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        dev = procs.infermesh("dev", "dev", "--port", str(port), "--engines", "1", "--speed", "10")
        rc = dev.wait(timeout=15)
        assert rc != 0
        assert f"{port}" in dev.stderr() and "in use" in dev.stderr(), dev.stderr()[-2000:]
        assert "mesh ready" not in dev.stdout()
    finally:
        s.close()


@pytest.mark.timeout(40)
def test_dev_port_0_either_works_or_is_refused(procs):
    """`--port 0` is accepted by the option parser. Either it is refused up front (exit 2), or dev learns the
    port the agent got and prints a banner with a working endpoint; waiting forever with no banner is neither."""
    dev = procs.infermesh("dev", "dev", "--port", "0", "--engines", "1", "--speed", "10")

    def outcome():
        if not dev.alive():
            return "exited"
        m = re.search(r"endpoint\s+http://127\.0\.0\.1:(\d+)/v1", dev.stdout())
        return m and int(m.group(1))

    try:
        res = wait_for(outcome, timeout=8, what="dev --port 0 to print a banner or refuse the option")
    except AssertionError:
        raise AssertionError("dev --port 0 runs but never prints the banner (it polls /readyz on a port it does "
                             "not know); stderr:\n" + dev.stderr()[-1500:])
    if res == "exited":
        assert dev.wait(timeout=1) == 2 and "--port" in dev.stderr(), dev.stderr()[-1500:]
    else:
        assert res != 0
        assert post_json(res, "/v1/chat/completions", chat_body(max_tokens=1)).status == 200


@pytest.mark.timeout(60)
def test_dev_nodes_is_a_mesh(procs):
    """`dev --nodes 3`: three agents that find each other; a request to any node may be served by another."""
    port, gport = free_ports(3), free_ports(3)
    dev = procs.infermesh("dev", "dev", "--nodes", "3", "--port", str(port), "--gossip-port", str(gport),
                          "--speed", "0")
    out = wait_for(lambda: dev.alive() and "curl" in dev.stdout() and dev.stdout(), timeout=30,
                   what="the dev banner")
    assert "3-node mesh ready" in out
    tmp = re.search(r"data in (\S+)", out).group(1)
    assert os.path.isdir(tmp)
    members = http_get(port + 2, "/v1/cluster/members").json()["members"]
    assert sorted(m["name"] for m in members if m["state"] == "alive") == ["node-0", "node-1", "node-2"]
    wait_for(lambda: len([t for t in agent_targets(port) if t["healthy"]]) == 3, timeout=10,
             what="node-0 routes to all three engines")
    served = set()
    for i in range(30):
        r = post_json(port, "/v1/chat/completions", chat_body(f"m{i:04d} " * 24, max_tokens=1))
        assert r.status == 200, r
        served.add(r.headers["x-infermesh-node"])
    assert served - {"node-0"}, served  # some went to another node's engine
    kids = descendants(dev.pid)
    dev.signal(signal.SIGINT)
    assert dev.wait(timeout=20) == 0
    wait_for(lambda: not live(kids), timeout=5, what="dev's children to be gone")
    assert not os.path.exists(tmp), "dev left its temporary data dirs behind"
