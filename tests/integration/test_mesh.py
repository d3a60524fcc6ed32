"""A mesh of agents on 127.0.0.1: membership, routing across nodes, node death, drain, leave, invites, keys.

Each node is an agent with its own data dir (its identity) and gossip port; the cluster key comes from
`infermesh init` (copied, as an operator would) or from an invite token.
"""

import hashlib
import hmac
import json
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (BIN, HOST, MODEL, chat_body, free_port, http_get, http_request, post_json, wait_for,
                      _check_alive)


def init_cluster(path):
    r = subprocess.run([BIN, "init", "--data-dir", str(path)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return path


def share_key(src, dst):
    dst.mkdir(mode=0o700, parents=True, exist_ok=True)
    for f in ("cluster.key", "cluster.id"):
        shutil.copy(src / f, dst / f)
        (dst / f).chmod(0o600)


class Node:
    def __init__(self, agent, name, gossip_port, data_dir):
        self.agent = agent
        self.port = agent.port
        self.name = name
        self.gossip = f"{HOST}:{gossip_port}"
        self.data_dir = data_dir

    def members(self):
        return http_get(self.port, "/v1/cluster/members").json()

    def states(self):
        return {m["name"]: m["state"] for m in self.members()["members"]}


ADMIN = "mesh-admin-token"


def start_node(procs, tmp_path, name, engines=(), join=None, data_dir=None, extra=()):
    data_dir = data_dir or tmp_path / name
    gport = free_port()
    args = ["--name", name, "--data-dir", str(data_dir), "--gossip", f"{HOST}:{gport}", *extra]
    if "--admin-token" not in extra:
        args += ["--admin-token", ADMIN]
    for j in join or []:
        args += ["--join", j]
    agent = procs.agent(list(engines), *args, name=name)
    return Node(agent, name, gport, data_dir)


def wait_members(nodes, names, state="alive", timeout=20):
    def ok():
        for n in nodes:
            _check_alive(n.agent.proc)
            st = n.states()
            if any(st.get(x) != state for x in names):
                return False
        return True

    wait_for(ok, timeout=timeout, what=f"{names} {state} on {[n.name for n in nodes]}")


def distinct(i, tag="m"):
    """A prompt whose first KV block differs per i: the prefix-aware router has no reason to keep them together."""
    return f"{tag}{i:04d} " * 24


def remote_healthy(node, count):
    ts = [t for t in node.agent.targets() if t["remote"] and t["healthy"]]
    return len(ts) >= count


@pytest.fixture
def mesh(procs, tmp_path):
    """A: one engine; B: one engine; C: a pure gateway (no runtime)."""
    init_cluster(tmp_path / "a")
    for n in ("b", "c"):
        share_key(tmp_path / "a", tmp_path / n)
    ea, eb = procs.engine(name="engine-a"), procs.engine(name="engine-b")
    a = start_node(procs, tmp_path, "a", [ea], data_dir=tmp_path / "a")
    b = start_node(procs, tmp_path, "b", [eb], join=[a.gossip])
    c = start_node(procs, tmp_path, "c", [], join=[a.gossip])
    nodes = [a, b, c]
    wait_members(nodes, ["a", "b", "c"])
    wait_for(lambda: remote_healthy(c, 2) and remote_healthy(a, 1) and remote_healthy(b, 1), timeout=15,
             what="remote targets healthy everywhere")
    return {"a": a, "b": b, "c": c, "engines": (ea, eb), "procs": procs, "tmp": tmp_path}


@pytest.mark.timeout(90)
def test_any_node_routes_to_every_node(mesh):
    a, b, c = mesh["a"], mesh["b"], mesh["c"]
    served = {}
    for i in range(24):
        r = post_json(c.port, "/v1/chat/completions", chat_body(distinct(i, "hello")))
        assert r.status == 200, r
        served[r.headers["x-infermesh-node"]] = served.get(r.headers["x-infermesh-node"], 0) + 1
        assert r.headers["x-infermesh-target"].split("/")[0] in ("a", "b")
    assert set(served) == {"a", "b"}, served  # the gateway has no engine: everything went to another node
    # A node with its own engine also sends work to the other node's engine.
    nodes = set()
    for i in range(30):
        r = post_json(a.port, "/v1/chat/completions", chat_body(distinct(i, "again")))
        assert r.status == 200, r
        nodes.add(r.headers["x-infermesh-node"])
    assert nodes == {"a", "b"}, nodes
    # Streaming goes through two agents without buffering or loss.
    r = post_json(c.port, "/v1/chat/completions", chat_body("stream me", stream=True, max_tokens=12))
    assert r.status == 200
    events = [line[6:] for line in r.text().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert sum(1 for e in events[:-1] if json.loads(e)["choices"]) >= 12
    # Both remote agents counted the forwarded requests.
    assert a.agent.counter("infermesh_requests_total") > 0
    models = http_get(c.port, "/v1/models").json()
    assert [m["id"] for m in models["data"]] == [MODEL]


@pytest.mark.timeout(60)
def test_members_view_and_cli(mesh):
    a = mesh["a"]
    view = a.members()
    me = [m for m in view["members"] if m["self"]]
    assert len(me) == 1 and me[0]["name"] == "a" and me[0]["id"] == view["self"]
    by = {m["name"]: m for m in view["members"]}
    assert set(by) == {"a", "b", "c"}
    assert "gpu" in by["b"]["roles"] and "gateway" in by["b"]["roles"]
    assert "gpu" not in by["c"]["roles"]
    assert [m["name"] for m in by["b"]["models"]] == [MODEL]
    assert by["c"]["models"] == []
    assert by["b"]["load_age_ms"] is not None and by["b"]["load_age_ms"] < 5000
    assert len({m["id"] for m in view["members"]}) == 3
    r = subprocess.run([BIN, "members", "--agent", f"http://{HOST}:{a.port}"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "ID", "ADDRESS", "ROLES", "STATE"]
    assert any(line.startswith("a ") and "(this node)" in line for line in lines)
    assert any(line.startswith("b ") and "alive" in line and MODEL in line for line in lines)
    r = subprocess.run([BIN, "members", "--agent", f"http://{HOST}:{a.port}", "--json"], capture_output=True,
                       text=True, timeout=10)
    assert len(json.loads(r.stdout)["members"]) == 3


@pytest.mark.timeout(90)
def test_killed_node_is_routed_around(mesh):
    a, b, c = mesh["a"], mesh["b"], mesh["c"]
    b.agent.proc.signal(signal.SIGKILL)
    t0 = time.monotonic()
    wait_members([a, c], ["b"], state="dead", timeout=20)
    took = time.monotonic() - t0
    print(f"b declared dead everywhere {took:.2f}s after SIGKILL")
    assert not any(t["node"] == "b" for t in c.agent.targets())
    for i in range(10):
        r = post_json(c.port, "/v1/chat/completions", chat_body(f"after {i}"))
        assert r.status == 200, r
        assert r.headers["x-infermesh-node"] == "a"


@pytest.mark.timeout(90)
def test_in_flight_request_to_a_dying_node_is_retried(procs, tmp_path):
    """B's engine takes long; B's agent dies mid-request: the gateway retries the request on A."""
    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "b")
    share_key(tmp_path / "a", tmp_path / "c")
    ea = procs.engine(name="engine-a")
    eb = procs.engine("--added-latency-ms", "4000", name="engine-b-slow")
    a = start_node(procs, tmp_path, "a", [ea], data_dir=tmp_path / "a")
    b = start_node(procs, tmp_path, "b", [eb], join=[a.gossip])
    c = start_node(procs, tmp_path, "c", [], join=[a.gossip])
    wait_members([a, b, c], ["a", "b", "c"])
    wait_for(lambda: remote_healthy(c, 2), timeout=15, what="c sees both engines")
    # Drain A so that C's first choice must be B; undrain right after the request went out.
    subprocess.run([BIN, "drain", "--token", ADMIN, "a", "--agent", f"http://{HOST}:{c.port}"], check=True, capture_output=True,
                   timeout=10)
    wait_for(lambda: all(t["draining"] for t in c.agent.targets() if t["node"] == "a"), timeout=10,
             what="c sees a draining")
    import threading
    result = {}

    def send():
        result["r"] = post_json(c.port, "/v1/chat/completions", chat_body("slow one"), timeout=30)

    th = threading.Thread(target=send)
    th.start()
    wait_for(lambda: any(t["inflight"] > 0 for t in c.agent.targets() if t["node"] == "b"), timeout=10,
             what="request in flight on b")
    subprocess.run([BIN, "undrain", "--token", ADMIN, "a", "--agent", f"http://{HOST}:{c.port}"], check=True, capture_output=True,
                   timeout=10)
    wait_for(lambda: not any(t["draining"] for t in c.agent.targets() if t["node"] == "a"), timeout=3,
             what="c sees a undrained")
    assert "r" not in result  # still in flight on b
    b.agent.proc.signal(signal.SIGKILL)
    th.join(30)
    r = result["r"]
    assert r.status == 200, r
    assert r.headers["x-infermesh-node"] == "a"


@pytest.mark.timeout(90)
def test_drain_and_undrain_another_node(mesh):
    a, b, c = mesh["a"], mesh["b"], mesh["c"]
    r = subprocess.run([BIN, "drain", "--token", ADMIN, "b", "--agent", f"http://{HOST}:{a.port}"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert "draining" in r.stdout
    wait_for(lambda: any(m["name"] == "b" and m["draining"] for m in c.members()["members"]), timeout=10,
             what="c sees b draining")
    for i in range(12):
        r = post_json(c.port, "/v1/chat/completions", chat_body(f"drained {i}"))
        assert r.status == 200 and r.headers["x-infermesh-node"] == "a", r
    # b's own ingress also keeps away from its own engine.
    for i in range(6):
        r = post_json(b.port, "/v1/chat/completions", chat_body(f"own {i}"))
        assert r.status == 200 and r.headers["x-infermesh-node"] == "a", r
    r = subprocess.run([BIN, "undrain", "--token", ADMIN, "b", "--agent", f"http://{HOST}:{c.port}"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: all(not m.get("draining") for m in c.members()["members"]), timeout=10, what="undrained")
    seen = set()
    for i in range(30):
        seen.add(post_json(c.port, "/v1/chat/completions", chat_body(distinct(i, "back"))).headers["x-infermesh-node"])
    assert seen == {"a", "b"}
    r = subprocess.run([BIN, "drain", "--token", ADMIN, "nosuchnode", "--agent", f"http://{HOST}:{a.port}"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1 and "no alive member" in r.stderr


@pytest.mark.timeout(60)
def test_leave_is_graceful(mesh):
    a, b, c = mesh["a"], mesh["b"], mesh["c"]
    r = subprocess.run([BIN, "leave", "--token", ADMIN, "--agent", f"http://{HOST}:{b.port}"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert b.agent.proc.wait(15) == 0
    wait_members([a, c], ["b"], state="left", timeout=10)
    assert 'msg="member left"' in a.agent.proc.stderr()
    assert 'msg="member dead"' not in a.agent.proc.stderr()


@pytest.mark.timeout(60)
def test_forged_forwarded_request_is_refused(mesh):
    a = mesh["a"]
    hop = f"v2.{int(time.time())}.{'1' * 16}." + "0" * 64
    r = post_json(a.port, "/v1/chat/completions", chat_body(),
                  headers={"x-infermesh-hop": hop, "x-infermesh-hop-target": "engine-a", "x-request-id": "r1"})
    assert r.status == 403, r
    assert r.json()["error"]["type"] == "permission_denied"
    r = http_request(a.port, "POST", "/v1/cluster/nodes/a/drain",
                     headers={"x-infermesh-hop": hop, "x-infermesh-hop-target": "drain:a", "x-request-id": "r2"})
    assert r.status == 403
    assert not any(m.get("draining") for m in a.members()["members"])


def hop_header(key_file, purpose, request_id, target, nonce, ts=None):
    """x-infermesh-hop as an agent holding key_file's primary key signs it (DESIGN §10; route/router.h): the
    HMAC-SHA512-256 under crypto_kdf(key, 1, "im-auth1") of "v2.<purpose>.<ts>.<nonce>.<len>:<request id>.<target>"."""
    key = bytes.fromhex(Path(key_file).read_text().split()[0])
    sub = hashlib.blake2b(b"", digest_size=32, key=key, salt=struct.pack("<Q", 1), person=b"im-auth1")
    ts = int(time.time()) if ts is None else ts
    text = f"v2.{purpose}.{ts}.{nonce}.{len(request_id)}:{request_id}.{target}".encode()
    return f"v2.{ts}.{nonce}." + hmac.new(sub.digest(), text, hashlib.sha512).digest()[:32].hex()


@pytest.mark.timeout(60)
def test_forwarded_request_is_accepted_once(mesh):
    """A hop signed with the cluster key is served once; the same header again (a replay) is refused."""
    a, tmp = mesh["a"], mesh["tmp"]
    key = tmp / "a" / "cluster.key"
    hop = hop_header(key, "infer", "rp-1", "engine-a", "00000000000000aa")
    headers = {"x-infermesh-hop": hop, "x-infermesh-hop-target": "engine-a", "x-request-id": "rp-1"}
    r = post_json(a.port, "/v1/chat/completions", chat_body("signed"), headers=headers)
    assert r.status == 200, r
    assert r.headers["x-infermesh-node"] == "a"
    r = post_json(a.port, "/v1/chat/completions", chat_body("replayed"), headers=headers)
    assert r.status == 403, r
    assert "replayed" in r.json()["error"]["message"]
    # Another nonce is another signature; the purpose and the clock still count.
    headers["x-infermesh-hop"] = hop_header(key, "infer", "rp-1", "engine-a", "00000000000000ab")
    assert post_json(a.port, "/v1/chat/completions", chat_body("fresh"), headers=headers).status == 200
    headers["x-infermesh-hop"] = hop_header(key, "ctl", "rp-1", "engine-a", "00000000000000ac")
    assert post_json(a.port, "/v1/chat/completions", chat_body("ctl"), headers=headers).status == 403
    headers["x-infermesh-hop"] = hop_header(key, "infer", "rp-1", "engine-a", "00000000000000ad",
                                            ts=int(time.time()) - 600)
    r = post_json(a.port, "/v1/chat/completions", chat_body("old"), headers=headers)
    assert r.status == 403 and "clock skew" in r.json()["error"]["message"], r
    # A control call signed once is a replay the second time too.
    hop = hop_header(key, "ctl", "rp-2", "drain:a", "00000000000000ae")
    headers = {"x-infermesh-hop": hop, "x-infermesh-hop-target": "drain:a", "x-request-id": "rp-2"}
    assert http_request(a.port, "POST", "/v1/cluster/nodes/a/drain", headers=headers).status == 200
    wait_for(lambda: {m["name"]: m for m in a.members()["members"]}["a"].get("draining"), timeout=5,
             what="a draining")
    assert http_request(a.port, "POST", "/v1/cluster/nodes/a/drain", headers=headers).status == 403
    assert a.agent.counter("infermesh_hops_refused_total") >= 3


@pytest.mark.timeout(90)
def test_restarted_node_rejoins_as_itself(mesh):
    a, b, c, procs, tmp = mesh["a"], mesh["b"], mesh["c"], mesh["procs"], mesh["tmp"]
    before = {m["name"]: m for m in a.members()["members"]}["b"]
    b.agent.proc.signal(signal.SIGKILL)
    wait_members([a, c], ["b"], state="dead", timeout=20)
    b2 = start_node(procs, tmp, "b", [mesh["engines"][1]], join=[a.gossip], data_dir=b.data_dir)
    wait_members([a, c, b2], ["a", "b", "c"], timeout=20)
    after = {m["name"]: m for m in a.members()["members"]}["b"]
    assert after["id"] == before["id"]
    assert after["incarnation"] > before["incarnation"]
    wait_for(lambda: remote_healthy(c, 2), timeout=10, what="b's engine back in c's routing")


@pytest.mark.timeout(90)
def test_invite_token_joins_and_wrong_key_cannot(procs, tmp_path):
    init_cluster(tmp_path / "a")
    a = start_node(procs, tmp_path, "a", [], data_dir=tmp_path / "a")
    r = subprocess.run([BIN, "invite", "--data-dir", str(tmp_path / "a"), "--seed", a.gossip, "--ttl", "10m"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("imt1.")
    d = start_node(procs, tmp_path, "d", [], join=[token])  # empty data dir: fetches the key
    wait_members([a, d], ["a", "d"])
    assert (tmp_path / "d" / "cluster.key").stat().st_mode & 0o777 == 0o600
    # A node with another cluster's key never becomes a member; its packets are dropped and counted.
    init_cluster(tmp_path / "x")
    x = start_node(procs, tmp_path, "x", [], join=[a.gossip], data_dir=tmp_path / "x")
    wait_for(lambda: a.agent.counter("infermesh_gossip_packets_dropped_total", reason="auth") > 0, timeout=10,
             what="a drops x's packets")
    time.sleep(1.0)
    assert "x" not in a.states() and "x" not in d.states()
    assert set(x.states()) == {"x"}
    # An expired token is refused by the seed, and the agent says so.
    r = subprocess.run([BIN, "invite", "--data-dir", str(tmp_path / "a"), "--seed", a.gossip, "--ttl", "1s"],
                       capture_output=True, text=True, timeout=10)
    expired = r.stdout.strip().splitlines()[-1]
    time.sleep(2.2)
    p = procs.infermesh("late", "agent", "--listen", f"{HOST}:{free_port()}", "--data-dir", str(tmp_path / "late"),
                        "--gossip", f"{HOST}:{free_port()}", "--join", expired)
    assert p.wait(20) != 0
    assert "expired" in p.stderr()


@pytest.mark.timeout(30)
def test_standalone_agent_has_no_mesh(procs):
    e = procs.engine()
    ag = procs.agent([e])
    v = http_get(ag.port, "/v1/cluster/members").json()
    assert v["standalone"] is True and v["members"] == []
    r = subprocess.run([BIN, "members", "--agent", f"http://{HOST}:{ag.port}"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and "runs alone" in r.stdout
    r = http_request(ag.port, "POST", "/v1/cluster/nodes/x/drain")
    assert r.status == 403  # no admin token configured: changes are disabled, whatever the mesh
    ag2 = procs.agent([e], "--admin-token", ADMIN, name="agent2")
    r = http_request(ag2.port, "POST", "/v1/cluster/nodes/x/drain", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status == 409
