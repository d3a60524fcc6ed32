"""Control-plane enforcement in the router: tenants, durable drains and pins written to the Raft FSM take effect
on every node (3 server agents, each with its own engine).

A tenant added with `infermesh tenant add` gets a key that works on every node (and requests without a key are
refused once a tenant exists); `infermesh tenant revoke` makes that key fail everywhere; a durable drain of a
node keeps every node from routing to it; a pin of the model to one node sends every request there.
"""

import re
import subprocess
import time
import urllib.parse

import pytest

from conftest import BIN, HOST, chat_body, post_json, wait_for, wait_reports_after, _check_alive
from test_mesh import distinct, init_cluster, remote_healthy, share_key
from test_raft import AUTH, TOKEN, Server, leader_of


class EngineServer:
    """A Raft server agent with one engine of its own (the test_raft Server, plus a target)."""

    def __init__(self, procs, tmp_path, name, key_src, engine, join=None):
        from conftest import free_port
        self.name = name
        self.data_dir = tmp_path / name
        share_key(key_src, self.data_dir)
        self.gossip = f"{HOST}:{free_port()}"
        raft_addr = f"{HOST}:{free_port()}"
        args = ["--name", name, "--data-dir", str(self.data_dir), "--gossip", self.gossip, "--admin-token", TOKEN,
                "--probe-interval-ms", "100", "--server", "--raft", raft_addr, "--bootstrap-expect", "3"]
        for j in join or []:
            args += ["--join", j]
        # remote targets may appear before the own one is healthy: wait for that below, not in procs.agent
        self.agent = procs.agent([engine], *args, name=name, wait_healthy=False)
        self.port = self.agent.port

    def raft(self):
        from conftest import http_get
        return http_get(self.port, "/v1/cluster/raft").json()

    def write(self, method, path, body=None, headers=AUTH):
        from conftest import http_request
        return http_request(self.port, method, path, body=body, headers=headers)


@pytest.fixture
def cluster3(procs, tmp_path):
    key = init_cluster(tmp_path / "key")
    engines = [procs.engine(name=f"engine-{n}") for n in ("s1", "s2", "s3")]
    a = EngineServer(procs, tmp_path, "s1", key, engines[0])
    b = EngineServer(procs, tmp_path, "s2", key, engines[1], join=[a.gossip])
    c = EngineServer(procs, tmp_path, "s3", key, engines[2], join=[a.gossip])
    nodes = [a, b, c]
    wait_for(lambda: leader_of(nodes), timeout=20, what="a Raft leader agreed by all 3 servers")
    wait_for(lambda: all(_check_alive(n.agent.proc) or True for n in nodes)
             and all(any(t["healthy"] and not t["remote"] for t in n.agent.targets()) for n in nodes)
             and all(remote_healthy(n, 2) for n in nodes), timeout=20, what="every node sees 3 healthy engines")
    nodes[0].key = key
    return nodes


def cli(node, *args):
    r = subprocess.run([BIN, *args, "--agent", f"http://{HOST}:{node.port}", "--token", TOKEN],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def chat(node, content, key=None):
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return post_json(node.port, "/v1/chat/completions", chat_body(content), headers=headers, timeout=20)


def served_by(node, n, tag):
    seen = {}
    for i in range(n):
        r = chat(node, distinct(i, tag))
        assert r.status == 200, r.text()
        who = r.headers["x-infermesh-node"]
        seen[who] = seen.get(who, 0) + 1
    return seen


@pytest.mark.timeout(60)
def test_tenant_add_and_revoke_apply_on_every_node(cluster3, procs, tmp_path):
    # plus a read replica (no Raft, no engine): it enforces the copy it polls from the servers
    gw = Server(procs, tmp_path, "gw", cluster3[0].key, join=[cluster3[0].gossip], server=False)
    wait_for(lambda: remote_healthy(gw, 3), timeout=20, what="the replica sees the 3 engines")
    nodes = cluster3 + [gw]
    assert all(chat(n, "open").status == 200 for n in nodes)  # no tenant yet: no key needed
    out = cli(nodes[1], "tenant", "add", "team-a")
    keys = re.findall(r"\S{20,}", out.split("\n", 1)[1])
    assert keys, out
    key = keys[0]
    for n in nodes:
        # without a tenant any key passes: wait for keys to be required, then the key must work
        wait_for(lambda n=n: chat(n, "no key").status == 401, timeout=10, what=f"{n.name} requires a key")
        r = chat(n, "with key", key)
        assert r.status == 200, r.text()
        assert chat(n, "bad key", "sk-not-a-tenant-key").status == 401
    cli(nodes[2], "tenant", "revoke", "team-a")
    for n in nodes:
        wait_for(lambda n=n: chat(n, "revoked", key).status == 401, timeout=10, what=f"{n.name} refuses the key")
        assert chat(n, "still no key").status == 401
        _check_alive(n.agent.proc)


@pytest.mark.timeout(60)
def test_durable_drain_keeps_every_node_away(cluster3):
    nodes = cluster3
    r = nodes[0].write("PUT", "/v1/cluster/drains/s2", {"reason": "maintenance"})
    assert r.status == 200, r.text()
    deadline = time.monotonic() + 10
    for n in nodes:
        # once applied everywhere, no request goes to s2, whichever node receives it
        wait_for(lambda n=n: "s2" not in served_by(n, 6, f"probe-{n.name}-{time.monotonic():.3f}"),
                 timeout=max(1, deadline - time.monotonic()), what=f"{n.name} stops routing to s2")
    for n in nodes:
        seen = served_by(n, 12, f"drained-{n.name}")
        assert "s2" not in seen, (n.name, seen)
    assert nodes[1].write("DELETE", "/v1/cluster/drains/s2").status == 200
    wait_for(lambda: "s2" in served_by(nodes[0], 12, f"back-{time.monotonic():.3f}"), timeout=10,
             what="s2 back in routing")


@pytest.mark.timeout(60)
def test_pin_sends_every_request_to_the_pinned_node(cluster3):
    nodes = cluster3
    from conftest import MODEL
    r = nodes[2].write("PUT", "/v1/cluster/pins/" + urllib.parse.quote(MODEL, safe=""), {"nodes": ["s3"]})
    assert r.status == 200, r.text()
    for n in nodes:
        wait_for(lambda n=n: set(served_by(n, 6, f"pin-{n.name}-{time.monotonic():.3f}")) == {"s3"}, timeout=10,
                 what=f"{n.name} sends everything to s3")
    for n in nodes:
        assert set(served_by(n, 12, f"pinned-{n.name}")) == {"s3"}


@pytest.mark.timeout(60)
def test_policy_strategy_set_on_one_node_governs_routing_on_all(cluster3):
    """The default strategy (ours) keeps one prompt on one engine (its prefix cache); a policy naming round-robin,
    written on one node, makes every node spread that same prompt over all three engines."""
    nodes = cluster3
    from conftest import MODEL
    same = "the same long system prompt, " * 20

    def spread(n, k=9):
        seen = {}
        for _ in range(k):
            r = chat(n, same)
            assert r.status == 200, r.text()
            seen[r.headers["x-infermesh-node"]] = seen.get(r.headers["x-infermesh-node"], 0) + 1
        return seen

    for n in nodes:
        # the previous node's decisions reach n within ~0.1 s and reserve their work there until reports of
        # the engines taken after them cover it
        wait_reports_after(n.port, time.monotonic() + 0.5)
        assert len(spread(n)) == 1, "the prefix-aware default should keep one prompt on one engine"
    r = nodes[1].write("PUT", "/v1/cluster/policies/" + urllib.parse.quote(MODEL, safe=""),
                       {"strategy": "round-robin"})
    assert r.status == 200, r.text()
    for n in nodes:
        wait_for(lambda n=n: len(spread(n, 6)) == 3, timeout=10, what=f"{n.name} to spread the prompt over 3 nodes")


@pytest.mark.timeout(60)
def test_minority_cannot_write_but_routes_with_the_last_configuration(cluster3):
    """s2 and s3 frozen (SIGSTOP): s1 alone is a minority. Its writes fail (503), and it keeps routing by the
    configuration it had: the pin to s1 written before the split."""
    import signal
    from conftest import MODEL, http_request
    nodes = cluster3
    path = "/v1/cluster/pins/" + urllib.parse.quote(MODEL, safe="")
    r = nodes[1].write("PUT", path, {"nodes": ["s1"]})
    assert r.status == 200, r.text()
    wait_for(lambda: set(served_by(nodes[0], 4, f"pre-{time.monotonic():.3f}")) == {"s1"}, timeout=10,
             what="s1 applies the pin")
    for n in nodes[1:]:
        n.agent.proc.signal(signal.SIGSTOP)
    try:
        def refused():
            try:
                w = http_request(nodes[0].port, "PUT", "/v1/cluster/policies/" + urllib.parse.quote(MODEL, safe=""),
                                 body={"strategy": "round-robin"}, headers=AUTH, timeout=5)
            except OSError:
                return False
            return w.status == 503 and w
        wait_for(refused, timeout=20, what="the minority to refuse writes")
        assert set(served_by(nodes[0], 6, "minority")) == {"s1"}
    finally:
        for n in nodes[1:]:
            n.agent.proc.signal(signal.SIGCONT)
