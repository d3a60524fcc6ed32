"""The control plane on 127.0.0.1: 3 Raft servers bootstrap through gossip, writes on any node reach the
leader, every node (servers and a non-server replica) reads them, the leader's death elects another, a
restarted server catches up, writes need the admin token, and the Raft port only talks to cluster-key holders.
Membership: a 4th server stays a standby (odd voter counts), the leader's autopilot removes a server gossip
reports dead past the grace (INFERMESH_RAFT_DEAD_GRACE_MS) and promotes the standby, and a leader that leaves hands its
leadership over before it stops; the new leader removes it from the configuration at once.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

from conftest import BIN, HOST, free_port, http_get, http_request, wait_for, _check_alive
from test_mesh import init_cluster, share_key

TOKEN = "raft-test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Server:
    def __init__(self, procs, tmp_path, name, key_src, join=None, server=True, expect=3, env=None):
        self.procs, self.name, self.env = procs, name, env
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
        self.agent = self.procs.agent([], *self.args, name=self.name, env=self.env)
        self.port = self.agent.port

    def raft(self):
        return http_get(self.port, "/v1/cluster/raft").json()

    def get(self, path):
        return http_get(self.port, path)

    def write(self, method, path, body=None, headers=AUTH):
        return http_request(self.port, method, path, body=body, headers=headers)

    def raft_cli(self):
        """`infermesh raft status --json` against this agent."""
        r = subprocess.run([BIN, "raft", "status", "--json", "--agent", f"http://{HOST}:{self.port}"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def log(self):
        return self.agent.proc.stdout() + self.agent.proc.stderr()


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


def cluster(procs, tmp_path, with_gateway=False, env=None):
    key = init_cluster(tmp_path / "key")
    a = Server(procs, tmp_path, "s1", key, env=env)
    b = Server(procs, tmp_path, "s2", key, join=[a.gossip], env=env)
    c = Server(procs, tmp_path, "s3", key, join=[a.gossip], env=env)
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


def roles(status):
    """{raft id: role} of a /v1/cluster/raft answer."""
    return {sv["id"]: sv["role"] for sv in status["servers"]}


@pytest.mark.timeout(120)
def test_autopilot_removes_dead_server_and_promotes_standby(procs, tmp_path):
    grace_ms = 2000
    env = {"INFERMESH_RAFT_DEAD_GRACE_MS": str(grace_ms)}
    servers, leader, _ = cluster(procs, tmp_path, env=env)
    ids = {s.name: s.raft()["id"] for s in servers}
    spare = Server(procs, tmp_path, "s4", tmp_path / "key", join=[servers[0].gossip], env=env)
    spare_id = spare.raft()["id"]

    # The 4th server joins as a non-voter and stays one: 4 voters would need 3 for quorum and tolerate no more
    # failures than 3 do. It is a standby (libraft: it replicates the log without voting), caught up.
    wait_for(lambda: roles(leader.raft()).get(spare_id) == "standby", timeout=20, what="s4 added as a standby")
    wait_for(lambda: spare.raft()["applied_index"] >= leader.raft()["commit_index"] > 0, timeout=10,
             what="the spare to catch up")
    time.sleep(1)  # a few autopilot ticks (200 ms): no promotion to an even voter count
    st = leader.raft_cli()
    assert st["voters"] == 3 and roles(st)[spare_id] == "standby", st

    # SIGKILL a voter that is not the leader: after gossip declares it dead and the grace passes, the leader
    # removes it and promotes the standby in its place.
    victim = next(s for s in servers if s is not leader)
    victim.agent.proc.signal(signal.SIGKILL)
    victim.agent.proc.wait(5)
    t0 = time.monotonic()

    def replaced():
        st = leader.raft_cli()
        r = roles(st)
        return ids[victim.name] not in r and r.get(spare_id) == "voter" and st["voters"] == 3 and st

    st = wait_for(replaced, timeout=40, what="the dead voter removed and the standby promoted")
    print(f"dead voter replaced after {time.monotonic() - t0:.2f} s: {st['servers']}")
    assert len(st["servers"]) == 3
    log = leader.log()
    m = re.search(r"raft autopilot: removing a failed server.*id=" + ids[victim.name] + r".*reason=dead down_ms=(\d+)",
                  log)
    assert m, log[-3000:]
    assert int(m.group(1)) >= grace_ms  # not before the grace
    assert "promoting a server to voter" in log

    # The new configuration commits writes, and the promoted server has them.
    survivors = [s for s in servers if s is not victim] + [spare]
    w = put_policy(survivors[1], "after-autopilot", {"strategy": "round_robin"})
    r = spare.get(f"/v1/cluster/policies/after-autopilot?index={w['index']}&wait_ms=10000")
    assert r.status == 200 and r.json()["item"]["strategy"] == "round_robin", r.text()
    assert all(roles(s.raft_cli()) == roles(st) for s in survivors)


@pytest.mark.timeout(90)
def test_leader_leave_transfers_leadership(procs, tmp_path):
    servers, leader, _ = cluster(procs, tmp_path)  # default dead-server grace (30 s): a leave needs none
    old_id = leader.raft()["id"]
    put_policy(leader, "before-leave", {"strategy": "ours"})

    leader.agent.proc.signal(signal.SIGTERM)
    t0 = time.monotonic()
    survivors = [s for s in servers if s is not leader]
    new = wait_for(lambda: leader_of(survivors), timeout=10, what="a new leader after the leader left")
    took = time.monotonic() - t0
    print(f"new leader after SIGTERM of the leader: {took:.3f} s")
    assert new is not leader
    assert took < 3, f"took {took:.2f}s"
    assert leader.agent.proc.wait(15) == 0
    log = leader.log()
    assert "raft: leaving: transferring leadership" in log, log[-3000:]
    assert "raft: leadership transferred" in log, log[-3000:]
    assert "leadership transfer did not complete" not in log

    # The server that left is removed at once (it left: no grace), the 2 others keep working.
    def gone():
        st = new.raft_cli()
        return old_id not in roles(st) and st
    st = wait_for(gone, timeout=10, what="the server that left removed from the configuration")
    assert st["voters"] == 2, st
    assert re.search(r"raft autopilot: removing a failed server.*id=" + old_id + r".*reason=left", new.log())
    w = put_policy(survivors[0], "after-leave", {"strategy": "round_robin"})
    for s in survivors:
        r = s.get(f"/v1/cluster/policies/after-leave?index={w['index']}&wait_ms=10000")
        assert r.status == 200, r.text()
