"""The control plane on 127.0.0.1: 3 Raft servers bootstrap through gossip, writes on any node reach the
leader, every node (servers and a non-server replica) reads them, the leader's death elects another, a
restarted server catches up, writes need the admin token, and the Raft port only talks to cluster-key holders.
"""

import os
import signal
import socket
import time
import urllib.parse

import pytest

from conftest import HOST, free_port, http_get, http_request, wait_for, _check_alive
from test_mesh import init_cluster, share_key

TOKEN = "raft-test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Server:
    def __init__(self, procs, tmp_path, name, key_src, join=None, server=True, expect=3):
        self.procs, self.name = procs, name
        self.data_dir = tmp_path / name
        share_key(key_src, self.data_dir)
        self.gossip = f"{HOST}:{free_port()}"
        self.raft_addr = f"{HOST}:{free_port()}"
        self.args = ["--name", name, "--data-dir", str(self.data_dir), "--gossip", self.gossip,
                     "--admin-token", TOKEN, "--probe-interval-ms", "100"]
        if server:
            self.args += ["--server", "--raft", self.raft_addr, "--bootstrap-expect", str(expect)]
        for j in join or []:
            self.args += ["--join", j]
        self.start()

    def start(self):
        self.agent = self.procs.agent([], *self.args, name=self.name)
        self.port = self.agent.port

    def raft(self):
        return http_get(self.port, "/v1/cluster/raft").json()

    def get(self, path):
        return http_get(self.port, path)

    def write(self, method, path, body=None, headers=AUTH):
        return http_request(self.port, method, path, body=body, headers=headers)


def leader_of(servers):
    """The leader every live server agrees on, or None."""
    seen = set()
    for s in servers:
        _check_alive(s.agent.proc)
        r = s.raft()
        if not r["leader"]:
            return None
        seen.add(r["leader"]["id"])
    if len(seen) != 1:
        return None
    lid = seen.pop()
    return next((s for s in servers if s.raft()["id"] == lid), None)


def cluster(procs, tmp_path, with_gateway=False):
    key = init_cluster(tmp_path / "key")
    a = Server(procs, tmp_path, "s1", key)
    b = Server(procs, tmp_path, "s2", key, join=[a.gossip])
    c = Server(procs, tmp_path, "s3", key, join=[a.gossip])
    servers = [a, b, c]
    leader = wait_for(lambda: leader_of(servers), timeout=20, what="a Raft leader agreed by all 3 servers")
    wait_for(lambda: leader.raft()["voters"] == 3, timeout=10, what="3 voters")
    gw = Server(procs, tmp_path, "gw", key, join=[a.gossip], server=False) if with_gateway else None
    return servers, leader, gw


def put_policy(node, model, body):
    r = node.write("PUT", "/v1/cluster/policies/" + urllib.parse.quote(model, safe=""), body)
    assert r.status == 200, r.text()
    return r.json()


@pytest.mark.timeout(120)
def test_write_anywhere_read_everywhere_failover_catch_up(procs, tmp_path):
    servers, leader, gw = cluster(procs, tmp_path, with_gateway=True)
    follower = next(s for s in servers if s is not leader)
    model = "meta-llama/Llama-3.1-8B-Instruct"

    # A write on a follower is forwarded to the leader; reads with ?index= see it on every node.
    w = put_policy(follower, model, {"strategy": "ours", "slo_class": "latency", "max_queue": 32,
                                     "fallbacks": ["tiny"]})
    assert w["index"] > 0 and w["command_id"]
    path = "/v1/cluster/policies/" + urllib.parse.quote(model, safe="")
    for node in servers + [gw]:
        r = node.get(f"{path}?index={w['index']}&wait_ms=10000")
        assert r.status == 200, (node.name, r.text())
        item = r.json()["item"]
        assert item["strategy"] == "ours" and item["max_queue"] == 32 and item["fallbacks"] == ["tiny"]
        assert r.json()["index"] >= w["index"]
    lst = gw.get("/v1/cluster/policies").json()
    assert [p["model"] for p in lst["items"]] == [model]
    # A write on the non-server agent goes to the leader too.
    w2 = gw.write("PUT", "/v1/cluster/pins/tiny", {"zones": ["eu-1"]})
    assert w2.status == 200, w2.text()

    # The same command id twice applies once (the retry reports the first outcome).
    hdr = dict(AUTH, **{"x-infermesh-command-id": "fixed-id-1"})
    t1 = follower.write("POST", "/v1/cluster/tenants", {"name": "acme", "rps": 5}, headers=hdr)
    assert t1.status == 201, t1.text()
    assert t1.json()["api_key"].startswith("imk-")
    t2 = follower.write("POST", "/v1/cluster/tenants", {"name": "acme", "rps": 5}, headers=hdr)
    assert t2.status == 201 and t2.json()["duplicate"] is True
    t3 = follower.write("POST", "/v1/cluster/tenants", {"name": "acme", "rps": 5})
    assert t3.status == 409  # a new command: the tenant exists
    tl = leader.get(f"/v1/cluster/tenants?index={t1.json()['index']}").json()["items"]
    assert len(tl) == 1 and "key_hash" not in tl[0] and len(tl[0]["key_hash_prefix"]) == 8

    # SIGKILL the leader: the others elect a new one quickly, and the state is still there.
    leader.agent.proc.signal(signal.SIGKILL)
    t0 = time.monotonic()
    leader.agent.proc.wait(5)
    survivors = [s for s in servers if s is not leader]
    new = wait_for(lambda: leader_of(survivors), timeout=10, what="a new leader after SIGKILL")
    failover = time.monotonic() - t0
    assert new is not leader
    print(f"failover after leader SIGKILL: {failover:.3f} s")
    assert failover < 5, f"failover took {failover:.2f}s"
    for s in survivors:
        assert s.get(path).json()["item"]["strategy"] == "ours"
    w3 = put_policy(survivors[0], "second-model", {"strategy": "round_robin"})

    # The old leader restarts on its data dir and catches up with what it missed.
    leader.start()
    r = leader.get(f"/v1/cluster/policies/second-model?index={w3['index']}&wait_ms=15000")
    assert r.status == 200, r.text()
    assert r.json()["item"]["strategy"] == "round_robin"
    wait_for(lambda: leader_of(servers) is not None, timeout=10, what="all 3 agree on a leader again")


@pytest.mark.timeout(90)
def test_admin_token_and_validation(procs, tmp_path):
    servers, leader, _ = cluster(procs, tmp_path)
    s = servers[0]
    r = s.write("PUT", "/v1/cluster/policies/m", {"strategy": "ours"}, headers={})
    assert r.status == 401
    r = s.write("PUT", "/v1/cluster/policies/m", {"strategy": "ours"}, headers={"Authorization": "Bearer nope"})
    assert r.status == 401
    r = s.write("PUT", "/v1/cluster/policies/m", {"strategy": 7})
    assert r.status == 400
    r = s.write("PUT", "/v1/cluster/policies/m", {"unknown_field": 1})
    assert r.status == 400
    assert s.write("DELETE", "/v1/cluster/policies/absent").status == 404
    assert s.get("/v1/cluster/policies").json()["items"] == []
    # the internal endpoints refuse unsigned callers
    assert s.write("POST", "/v1/cluster/_propose", {"id": "x"}).status == 403
    assert s.get("/v1/cluster/state").status == 403


@pytest.mark.timeout(60)
def test_raft_port_refuses_peers_without_the_key(procs, tmp_path):
    servers, leader, _ = cluster(procs, tmp_path)
    target = servers[1]
    host, port = target.raft_addr.split(":")
    before = target.raft()["transport_refused"]

    # libraft's own TCP handshake (protocol 1, id, address) gets no answer but a close.
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall((1).to_bytes(8, "little") + (99).to_bytes(8, "little") + (16).to_bytes(8, "little") +
                     b"127.0.0.1:9999\0\0")
        sock.settimeout(5)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data == b""  # closed without a word

    # Our handshake, answered without the key: the server refuses the proof and closes.
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"IMRAFT01" + os.urandom(32))
        sock.settimeout(5)
        reply = b""
        while len(reply) < 88:
            chunk = sock.recv(88 - len(reply))
            assert chunk, "server closed before its reply"
            reply += chunk
        sock.sendall(os.urandom(32 + 24) + (99).to_bytes(8, "big") + bytes([14]) + b"127.0.0.1:9999")
        rest = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        assert rest == b""
    wait_for(lambda: target.raft()["transport_refused"] > before, timeout=5, what="the refusal to be counted")

    # A server with another cluster key cannot become part of the group either.
    other = init_cluster(tmp_path / "otherkey")
    intruder = Server(procs, tmp_path, "intruder", other, join=[servers[0].gossip], expect=1)
    time.sleep(2)
    assert all(len(s.raft()["servers"]) == 3 for s in servers)
    assert intruder.raft()["leader"]["id"] == intruder.raft()["id"]  # alone, in its own cluster
    assert leader_of(servers) is not None
