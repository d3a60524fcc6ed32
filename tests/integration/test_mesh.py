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
    hop = f"v3.{int(time.time())}.{'1' * 16}." + "0" * 64
    r = post_json(a.port, "/v1/chat/completions", chat_body(),
                  headers={"x-infermesh-hop": hop, "x-infermesh-hop-target": "engine-a", "x-request-id": "r1"})
    assert r.status == 403, r
    assert r.json()["error"]["type"] == "permission_denied"
    r = http_request(a.port, "POST", "/v1/cluster/nodes/a/drain",
                     headers={"x-infermesh-hop": hop, "x-infermesh-hop-target": "drain:a", "x-request-id": "r2"})
    assert r.status == 403
    assert not any(m.get("draining") for m in a.members()["members"])
    # An agent of the previous version (v2 headers: not bound to the receiver or the body) is told so.
    old = f"v2.{int(time.time())}.{'1' * 16}." + "0" * 64
    for path, target in (("/v1/chat/completions", "engine-a"), ("/v1/cluster/nodes/a/drain", "drain:a")):
        r = http_request(a.port, "POST", path, body=chat_body() if "chat" in path else None,
                         headers={"x-infermesh-hop": old, "x-infermesh-hop-target": target, "x-request-id": "r3"})
        assert r.status == 403, r
        assert "older format" in r.json()["error"]["message"] and "v3" in r.json()["error"]["message"], r


def hop_header(key_file, purpose, request_id, target, nonce, node, body=b"", method="POST",
               path="/v1/chat/completions", ts=None):
    """x-infermesh-hop as an agent holding key_file's primary key signs it for the node whose id (hex) is `node`
    (DESIGN §10; route/hop.h): the HMAC-SHA512-256 under crypto_kdf(key, 1, "im-auth1") of
    "v3.<purpose>.<ts>.<nonce>.<len>:<request id>.<node>.<digest>.<target>", digest the BLAKE2b-256 of
    "<method> <path>\n<body>" -- written here from the description, an independent check of the C code."""
    key = bytes.fromhex(Path(key_file).read_text().split()[0])
    sub = hashlib.blake2b(b"", digest_size=32, key=key, salt=struct.pack("<Q", 1), person=b"im-auth1")
    ts = int(time.time()) if ts is None else ts
    digest = hashlib.blake2b(f"{method} {path}\n".encode() + body, digest_size=32).hexdigest()
    text = f"v3.{purpose}.{ts}.{nonce}.{len(request_id)}:{request_id}.{node}.{digest}.{target}".encode()
    return f"v3.{ts}.{nonce}." + hmac.new(sub.digest(), text, hashlib.sha512).digest()[:32].hex()


def node_ids(node):
    return {m["name"]: m["id"] for m in node.members()["members"]}


@pytest.mark.timeout(60)
def test_forwarded_request_is_accepted_once(mesh):
    """A hop signed with the cluster key for this node and body is served once; the same header again (a replay)
    is refused."""
    a, tmp = mesh["a"], mesh["tmp"]
    key, ids = tmp / "a" / "cluster.key", node_ids(a)
    assert ids["a"] == a.members()["self"]

    def signed(purpose, rid, target, nonce, body, **kw):
        raw = b"" if body is None else json.dumps(body).encode()
        return hop_header(key, purpose, rid, target, nonce, ids["a"], raw, **kw)

    body = chat_body("signed")
    headers = {"x-infermesh-hop": signed("infer", "rp-1", "engine-a", "00000000000000aa", body),
               "x-infermesh-hop-target": "engine-a", "x-request-id": "rp-1"}
    r = post_json(a.port, "/v1/chat/completions", body, headers=headers)
    assert r.status == 200, r
    assert r.headers["x-infermesh-node"] == "a"
    r = post_json(a.port, "/v1/chat/completions", body, headers=headers)
    assert r.status == 403, r
    assert "replayed" in r.json()["error"]["message"]
    # Another nonce is another signature; the purpose, the clock, the body and the receiver still count.
    body = chat_body("fresh")
    headers["x-infermesh-hop"] = signed("infer", "rp-1", "engine-a", "00000000000000ab", body)
    assert post_json(a.port, "/v1/chat/completions", body, headers=headers).status == 200
    headers["x-infermesh-hop"] = signed("ctl", "rp-1", "engine-a", "00000000000000ac", body)
    assert post_json(a.port, "/v1/chat/completions", body, headers=headers).status == 403
    headers["x-infermesh-hop"] = signed("infer", "rp-1", "engine-a", "00000000000000ad", body,
                                        ts=int(time.time()) - 600)
    r = post_json(a.port, "/v1/chat/completions", body, headers=headers)
    assert r.status == 403 and "clock skew" in r.json()["error"]["message"], r
    headers["x-infermesh-hop"] = signed("infer", "rp-1", "engine-a", "00000000000000af", body,
                                        path="/v1/completions")
    assert post_json(a.port, "/v1/chat/completions", body, headers=headers).status == 403
    headers["x-infermesh-hop"] = hop_header(key, "infer", "rp-1", "engine-a", "00000000000000b0", ids["b"],
                                            json.dumps(body).encode())
    r = post_json(a.port, "/v1/chat/completions", body, headers=headers)
    assert r.status == 403 and "for this node" in r.json()["error"]["message"], r
    # A control call signed once is a replay the second time too; signed for another node it is refused.
    drain = {"x-infermesh-hop-target": "drain:a", "x-request-id": "rp-2",
             "x-infermesh-hop": hop_header(key, "ctl", "rp-2", "drain:a", "00000000000000b1", ids["b"],
                                           path="/v1/cluster/nodes/a/drain")}
    assert http_request(a.port, "POST", "/v1/cluster/nodes/a/drain", headers=drain).status == 403
    drain["x-infermesh-hop"] = signed("ctl", "rp-2", "drain:a", "00000000000000ae", None,
                                      path="/v1/cluster/nodes/a/drain")
    assert http_request(a.port, "POST", "/v1/cluster/nodes/a/drain", headers=drain).status == 200
    wait_for(lambda: {m["name"]: m for m in a.members()["members"]}["a"].get("draining"), timeout=5,
             what="a draining")
    assert http_request(a.port, "POST", "/v1/cluster/nodes/a/drain", headers=drain).status == 403
    assert a.agent.counter("infermesh_hops_refused_total") >= 6


@pytest.mark.timeout(120)
def test_captured_hop_is_not_accepted_on_another_node_or_with_another_body(procs, tmp_path):
    """The attack: a header captured on its way from n0 to n1 is presented to n2, which has a target of the same
    name, with another prompt and no tenant key; and to n1 with another prompt. Both are refused: a hop
    signature is bound to the node it was sent to and to the request's bytes."""
    key_arg = ["--tenant", "name=acme,key=sk-acme-hop-0123456789"]
    auth = {"Authorization": "Bearer sk-acme-hop-0123456789"}
    init_cluster(tmp_path / "n0")
    for n in ("n1", "n2"):
        share_key(tmp_path / "n0", tmp_path / n)
    e1, e2 = procs.engine(name="engine-n1"), procs.engine(name="engine-n2")
    n0 = start_node(procs, tmp_path, "n0", [], data_dir=tmp_path / "n0", extra=key_arg)
    n1 = start_node(procs, tmp_path, "n1", [f"vllm0={e1.url}"], join=[n0.gossip], extra=key_arg)
    n2 = start_node(procs, tmp_path, "n2", [f"vllm0={e2.url}"], join=[n0.gossip], extra=key_arg)
    wait_members([n0, n1, n2], ["n0", "n1", "n2"])
    wait_for(lambda: remote_healthy(n0, 2), timeout=15, what="n1's and n2's vllm0 healthy on n0")
    # The traffic being captured: n0 forwards to vllm0 on n1 or n2, with the tenant's key at n0 only.
    r = post_json(n0.port, "/v1/chat/completions", chat_body("through the gateway"), headers=auth)
    assert r.status == 200 and r.headers["x-infermesh-node"] in ("n1", "n2"), r
    assert post_json(n2.port, "/v1/chat/completions", chat_body("no key")).status == 401
    # What n0 sends to n1's agent for one request: these bytes, this header.
    ids, path = node_ids(n0), "/v1/chat/completions"
    sent = json.dumps(chat_body("what n0 forwarded to n1")).encode()
    headers = {"x-infermesh-hop-target": "vllm0", "x-request-id": "cap-1",
               "x-infermesh-hop": hop_header(tmp_path / "n0" / "cluster.key", "infer", "cap-1", "vllm0",
                                             "00000000000000c1", ids["n1"], sent)}
    evil = json.dumps(chat_body("the attacker's prompt", max_tokens=64)).encode()
    refused_before = n2.agent.counter("infermesh_hops_refused_total") or 0
    for body in (evil, sent):  # on n2: another prompt, or the very same bytes; no tenant key either way
        r = http_request(n2.port, "POST", path, body=body, headers=headers)
        assert r.status == 403, r
        assert r.json()["error"]["type"] == "permission_denied"
        assert "for this node and this request body" in r.json()["error"]["message"], r
    assert n2.agent.counter("infermesh_hops_refused_total") == refused_before + 2
    r = http_request(n1.port, "POST", path, body=evil, headers=headers)  # on n1, another prompt
    assert r.status == 403, r
    # The header itself was good: on n1 with the bytes it was made for, it is served there, once.
    r = http_request(n1.port, "POST", path, body=sent, headers=headers)
    assert r.status == 200, r
    assert r.headers["x-infermesh-node"] == "n1" and r.headers["x-infermesh-target"].endswith("vllm0"), r
    r = http_request(n1.port, "POST", path, body=sent, headers=headers)
    assert r.status == 403 and "replayed" in r.json()["error"]["message"], r


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
