"""llama.cpp's RPC split carried by the agent-to-agent tunnel (../shared/runtimes/llama.cpp; skipped when it
is absent): a worker node's agent offers an rpc-server (--rpc-server) in membership without running one; a
split host's agent leases it through the worker's agent (POST /v1/cluster/rpc/lease, signed with the cluster
key), which starts it on its loopback only and supervises it; the host forwards a local port to it through
the tunnel and supervises llama-server --rpc on that port. The model's layers then live in the worker's
rpc-server, and every RPC byte crosses between the agents encrypted. The rpc-server stops when its host
leaves the mesh or dies."""

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import HOST, free_port, http_get, http_request, metric_value, parse_prometheus, post_json
from conftest import wait_for
from test_llamacpp import GGUF, LLAMA, SERVER
from test_mesh import ADMIN, Node, hop_header, init_cluster, share_key, start_node

RPC = LLAMA / "bin" / "rpc-server"
pytestmark = pytest.mark.skipif(not RPC.exists(), reason=f"no llama.cpp rpc-server at {RPC} (the shared folder is absent)")
FAST = ("--probe-interval-ms", "200", "--suspicion-mult", "2")


def metric(port, name, **labels):
    return metric_value(parse_prometheus(http_get(port, "/metrics").text()), name, **labels) or 0


def rpc_pids(port, exe=b"rpc-server"):
    """pids of the processes of exe (rpc-server, llama-server) given port on their command line (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(exe) and str(port).encode() in cmd:
                out.append(int(d))
    return out


def cmdline(pid):
    return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")


def labels(node, name):
    ms = {m["name"]: m for m in http_get(node.port, "/v1/cluster/members").json()["members"]}
    return ms[name]["labels"] if name in ms else {}


def split_host(procs, tmp_path, name, join, workers=1, gport=None, llama_port=None):
    llama_port = llama_port or free_port()
    cmd = (f"{SERVER} -m {GGUF} --host {HOST} --port {llama_port} -c 1024 -np 1 -t 1 --metrics -ngl 99 "
           f"--rpc {{rpc}}")
    gport = gport or free_port()
    args = ["--name", name, "--data-dir", str(tmp_path / name), "--gossip", f"{HOST}:{gport}", "--admin-token", ADMIN,
            *(a for j in join for a in ("--join", j)), "--split-target", "split", "--split-workers", str(workers),
            "--split-exec", cmd, *FAST]
    agent = procs.agent([f"split=http://{HOST}:{llama_port}#kind=llamacpp&alias=split"], *args, name=name,
                        wait_healthy=False)
    return Node(agent, name, gport, tmp_path / name), llama_port


CHAT = {"model": "split", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}


def healthy(host):
    return any(t["healthy"] for t in host.agent.targets() if not t["remote"])


def answers(host):
    return healthy(host) and post_json(host.port, "/v1/chat/completions", CHAT).status == 200


def node_sig(node_key, purpose, rid, target, nonce, ts, receiver, body, path):
    """x-infermesh-hop-node as the node whose data dir holds node_key signs it (route/hop.h): ed25519 with the
    node's seed over "node." and the text the hop tag covers -- written from the description, an independent
    check of the C code."""
    seed = bytes.fromhex(Path(node_key).read_text().split()[0])
    digest = hashlib.blake2b(f"POST {path}\n".encode() + body, digest_size=32).hexdigest()
    text = f"node.v3.{purpose}.{ts}.{nonce}.{len(rid)}:{rid}.{receiver}.{digest}.{target}".encode()
    return Ed25519PrivateKey.from_private_bytes(seed).sign(text).hex()


def rpc_call(worker, verb, host, cluster_key, node_key, n):
    """POST /v1/cluster/rpc/<verb> {"host": host} to the worker's agent as an agent holding cluster_key sends it:
    the hop header signed for the worker and this body, and (node_key not None) x-infermesh-hop-node signed with
    node_key, a data dir's node.key. n makes the request id and nonce unique."""
    path, body = f"/v1/cluster/rpc/{verb}", json.dumps({"host": host}).encode()
    rid, nonce, ts = f"t-{verb}-{n}", f"{n:016x}", int(time.time())
    target = f"rpc-{verb}:" + hashlib.blake2b(body, digest_size=16).hexdigest()
    receiver = worker.members()["self"]
    headers = {"x-request-id": rid, "x-infermesh-hop-target": target,
               "x-infermesh-hop": hop_header(cluster_key, "ctl", rid, target, nonce, receiver, body, path=path, ts=ts)}
    if node_key:
        headers["x-infermesh-hop-node"] = node_sig(node_key, "ctl", rid, target, nonce, ts, receiver, body, path)
    return http_request(worker.port, "POST", path, body=body, headers=headers)


@pytest.mark.timeout(150)
def test_host_starts_the_rpc_server_through_the_workers_agent(procs, tmp_path):
    """The worker runs no rpc-server until a host leases it; one host holds it at a time; it stops when its
    host leaves the mesh (gracefully or killed), and the next host gets it."""
    init_cluster(tmp_path / "worker")
    for n in ("h1", "h2"):
        share_key(tmp_path / "worker", tmp_path / n)
    rpc_port = free_port()
    worker = start_node(procs, tmp_path, "worker", [], data_dir=tmp_path / "worker",
                        extra=("--rpc-server", str(RPC), "--rpc-port", str(rpc_port), *FAST))
    wait_for(lambda: "rpc" in labels(worker.agent, "worker"), timeout=15, what="the worker to offer its rpc-server")
    lab = labels(worker.agent, "worker")
    assert lab["rpc"] == str(rpc_port) and int(lab["rpc_mem_mb"]) > 0 and "rpc_host" not in lab
    assert not rpc_pids(rpc_port), "an rpc-server runs before any host asked for it"
    # Only another agent of the cluster may lease it: a client, even with the admin token, is refused.
    for auth in ({}, {"Authorization": f"Bearer {ADMIN}"}):
        r = post_json(worker.port, "/v1/cluster/rpc/lease", {"host": "h1"}, headers=auth)
        assert r.status == 403 and r.json()["error"]["code"] == "permission_denied", r.text()
    assert not rpc_pids(rpc_port)

    h1, _ = split_host(procs, tmp_path, "h1", [worker.gossip])
    wait_for(lambda: answers(h1), timeout=60, what="the split model to answer on h1")
    assert labels(h1.agent, "worker").get("rpc_host") == "h1"
    [pid] = rpc_pids(rpc_port)
    assert cmdline(pid)[1:5] == [b"-H", b"127.0.0.1", b"-p", str(rpc_port).encode()]  # loopback only
    assert metric(worker.port, "infermesh_tunnel_bytes_total", dir="in") > 1_000_000  # the layers went there
    assert "rpc worker: leased" in worker.agent.proc.stderr()
    # The worker supervises it: killed, it is restarted, and h1 serves again over it.
    os.kill(pid, signal.SIGKILL)
    [pid] = wait_for(lambda: [p for p in rpc_pids(rpc_port) if p != pid], timeout=15, what="the rpc-server restarted")
    assert "helper process exited; restarting" in worker.agent.proc.stderr()
    wait_for(lambda: answers(h1), timeout=60, what="the split model to answer on h1 again")

    # A second host finds the worker held by h1 and waits.
    h2, _ = split_host(procs, tmp_path, "h2", [worker.gossip])
    wait_for(lambda: "held_by_other_hosts=1" in h2.agent.proc.stderr(), timeout=30, what="h2 to see the worker held")
    assert not answers(h2)
    assert rpc_pids(rpc_port) == [pid]

    # h1 leaves the mesh: the worker stops its rpc-server; h2 leases it and answers.
    h1.agent.proc.signal(signal.SIGTERM)
    h1.agent.proc.wait(30)
    wait_for(lambda: "the host left the mesh" in worker.agent.proc.stderr(), timeout=30,
             what="the worker to free its rpc-server")
    wait_for(lambda: answers(h2), timeout=60, what="the split model to answer on h2")
    assert labels(h2.agent, "worker").get("rpc_host") == "h2"
    assert pid not in rpc_pids(rpc_port)

    # h2 dies: the worker notices in membership and stops the rpc-server.
    h2.agent.proc.signal(signal.SIGKILL)
    h2.agent.proc.wait(10)
    wait_for(lambda: not rpc_pids(rpc_port), timeout=30, what="the rpc-server to stop after its host died")
    wait_for(lambda: "rpc_host" not in labels(worker.agent, "worker"), timeout=10, what="the worker free again")


@pytest.mark.timeout(90)
def test_a_restarted_host_gets_its_worker_back(procs, tmp_path):
    """A host that restarts before the worker calls it dead asks again and is answered as the holder (not
    409 busy): the worker's slow failure detection keeps the lease across the restart."""
    init_cluster(tmp_path / "worker")
    share_key(tmp_path / "worker", tmp_path / "h1")
    rpc_port = free_port()
    worker = start_node(procs, tmp_path, "worker", [], data_dir=tmp_path / "worker",
                        extra=("--rpc-server", str(RPC), "--rpc-port", str(rpc_port), "--probe-interval-ms", "2000",
                               "--suspicion-mult", "10"))
    h1, llama_port = split_host(procs, tmp_path, "h1", [worker.gossip])
    wait_for(lambda: answers(h1), timeout=60, what="the split model to answer on h1")
    [pid] = rpc_pids(rpc_port)
    gport = h1.gossip.rsplit(":", 1)[1]
    h1.agent.proc.signal(signal.SIGKILL)
    h1.agent.proc.wait(10)
    wait_for(lambda: not rpc_pids(llama_port, b"llama-server"), timeout=10, what="h1's llama-server gone with it")
    h1, _ = split_host(procs, tmp_path, "h1", [worker.gossip], gport=int(gport), llama_port=llama_port)
    wait_for(lambda: answers(h1), timeout=60, what="the restarted h1 to answer over the same worker")
    log = worker.agent.proc.stderr()
    assert "rpc worker: released" not in log and log.count("rpc worker: leased") == 1, log[-2000:]
    assert rpc_pids(rpc_port) == [pid]  # the same rpc-server all along
    # The worker's agent stops: its rpc-server stops with it.
    worker.agent.proc.signal(signal.SIGTERM)
    worker.agent.proc.wait(30)
    wait_for(lambda: not rpc_pids(rpc_port), timeout=5, what="the rpc-server to stop with its agent")
    assert 'why="the agent stops"' in worker.agent.proc.stderr()


@pytest.mark.timeout(120)
def test_host_releases_a_worker_it_moves_away_from(procs, tmp_path):
    """A host using one of two workers whose rpc-server exits (killed; the worker would restart it) moves to the
    other worker at once and releases the first, which stops its rpc-server and is free for other hosts."""
    init_cluster(tmp_path / "wa")
    for n in ("wb", "h1"):
        share_key(tmp_path / "wa", tmp_path / n)
    ports = {"wa": free_port(), "wb": free_port()}
    wa = start_node(procs, tmp_path, "wa", [], data_dir=tmp_path / "wa",
                    extra=("--rpc-server", str(RPC), "--rpc-port", str(ports["wa"]), *FAST))
    wb = start_node(procs, tmp_path, "wb", [], join=[wa.gossip],
                    extra=("--rpc-server", str(RPC), "--rpc-port", str(ports["wb"]), *FAST))
    wait_for(lambda: all("rpc" in labels(wa.agent, n) for n in ("wa", "wb")), timeout=15, what="both offers")
    h1, _ = split_host(procs, tmp_path, "h1", [wa.gossip], workers=1)
    wait_for(lambda: answers(h1), timeout=60, what="the split model to answer on h1")
    first = "wa" if rpc_pids(ports["wa"]) else "wb"
    other, nodes = {"wa": "wb", "wb": "wa"}[first], {"wa": wa, "wb": wb}
    assert not rpc_pids(ports[other])
    [pid] = rpc_pids(ports[first])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: f"worker={first} why=\"ended the stream" in h1.agent.proc.stderr(), timeout=15,
             what="h1 to notice the rpc-server's exit")
    wait_for(lambda: answers(h1), timeout=60, what=f"h1 to answer again, over {other}")
    assert rpc_pids(ports[other]) and labels(h1.agent, other).get("rpc_host") == "h1"
    wait_for(lambda: 'why="the host released it"' in nodes[first].agent.proc.stderr(), timeout=10,
             what=f"h1 to release {first}")
    wait_for(lambda: "rpc_host" not in labels(h1.agent, first), timeout=10, what=f"{first} free again")
    wait_for(lambda: not rpc_pids(ports[first]), timeout=15, what=f"{first}'s rpc-server stopped for good")


@pytest.mark.timeout(120)
def test_host_restarts_over_a_crashed_rpc_server_before_any_request(procs, tmp_path):
    """An rpc-server that exits (SIGKILL) ends its stream to the host's llama-server: the host notices at once
    and, with no client request sent in between, takes the target down, restarts llama-server over the rpc-server
    the worker restarted, and the target comes back. Asserted: the host logs the exit and runs a new llama-server
    before any request, and the first request after the target is healthy again succeeds (before this, nothing
    happened until a request came, and that request failed)."""
    init_cluster(tmp_path / "worker")
    share_key(tmp_path / "worker", tmp_path / "h1")
    rpc_port = free_port()
    worker = start_node(procs, tmp_path, "worker", [], data_dir=tmp_path / "worker",
                        extra=("--rpc-server", str(RPC), "--rpc-port", str(rpc_port), *FAST))
    h1, llama_port = split_host(procs, tmp_path, "h1", [worker.gossip])
    wait_for(lambda: answers(h1), timeout=60, what="the split model to answer on h1")
    [rpc] = rpc_pids(rpc_port)
    [llama] = rpc_pids(llama_port, b"llama-server")
    t0 = time.monotonic()
    os.kill(rpc, signal.SIGKILL)
    # From here no request until the target is back.
    wait_for(lambda: 'why="ended the stream (its rpc-server exited)"' in h1.agent.proc.stderr(), timeout=10,
             what="h1 to notice the rpc-server's exit without a request")
    wait_for(lambda: [p for p in rpc_pids(llama_port, b"llama-server") if p != llama] and healthy(h1), timeout=60,
             what="a new llama-server over the restarted rpc-server, healthy")
    print(f"\n[split] healthy again {time.monotonic() - t0:.2f} s after the rpc-server was killed, no request sent")
    assert llama not in rpc_pids(llama_port, b"llama-server")
    assert rpc not in rpc_pids(rpc_port) and len(rpc_pids(rpc_port)) == 1
    r = post_json(h1.port, "/v1/chat/completions", CHAT)
    assert r.status == 200, r.text()


@pytest.mark.timeout(120)
def test_only_the_holding_host_can_release_its_worker(procs, tmp_path):
    """The cluster key proves only that some agent of the cluster asks. Another agent of the cluster that names the
    holding host in a release (signed with its own node key, or with none) is refused (403) and the host keeps its
    rpc-server; it cannot take the lease under the host's name either. The very same release signed with the
    host's node key releases the worker."""
    init_cluster(tmp_path / "worker")
    for n in ("h1", "rogue"):
        share_key(tmp_path / "worker", tmp_path / n)
    rpc_port = free_port()
    worker = start_node(procs, tmp_path, "worker", [], data_dir=tmp_path / "worker",
                        extra=("--rpc-server", str(RPC), "--rpc-port", str(rpc_port), *FAST))
    start_node(procs, tmp_path, "rogue", [], join=[worker.gossip], extra=FAST)
    h1, _ = split_host(procs, tmp_path, "h1", [worker.gossip])
    wait_for(lambda: answers(h1), timeout=60, what="the split model to answer on h1")
    [pid] = rpc_pids(rpc_port)
    key, rogue_key = tmp_path / "rogue" / "cluster.key", tmp_path / "rogue" / "node.key"
    r = rpc_call(worker, "release", "h1", key, rogue_key, 1)
    assert r.status == 403 and r.json()["error"]["code"] == "permission_denied", r.text()
    assert "not signed by the node 'h1'" in r.json()["error"]["message"], r.text()
    r = rpc_call(worker, "release", "h1", key, None, 2)  # the cluster key alone (all it took before)
    assert r.status == 403 and "not signed by the node 'h1'" in r.json()["error"]["message"], r.text()
    r = rpc_call(worker, "lease", "h1", key, rogue_key, 3)
    assert r.status == 403, r.text()
    r = rpc_call(worker, "lease", "rogue", key, rogue_key, 4)  # in its own name: h1 holds it
    assert r.status == 409 and r.json()["error"]["code"] == "rpc_worker_busy", r.text()
    assert rpc_pids(rpc_port) == [pid] and labels(worker.agent, "worker").get("rpc_host") == "h1"
    assert "rpc worker: released" not in worker.agent.proc.stderr()
    assert answers(h1)

    r = rpc_call(worker, "release", "h1", key, tmp_path / "h1" / "node.key", 5)
    assert r.status == 200 and r.json()["released"] is True, r.text()
    assert 'why="the host released it"' in worker.agent.proc.stderr()


@pytest.mark.timeout(30)
def test_free_memory_is_re_announced(procs, tmp_path):
    """The worker re-reads its free memory every 2 s and announces a material change (>= 5% or 64 MiB)."""
    init_cluster(tmp_path / "worker")
    worker = start_node(procs, tmp_path, "worker", [], data_dir=tmp_path / "worker",
                        extra=("--rpc-server", str(RPC), "--rpc-port", str(free_port())))
    wait_for(lambda: "rpc_mem_mb" in labels(worker.agent, "worker"), timeout=15, what="the worker's offer")
    before = int(labels(worker.agent, "worker")["rpc_mem_mb"])
    take = max(1024, before // 20 + 512) << 20  # past the announce step: 5% or 64 MiB
    hog = bytearray(take)  # touched: MemAvailable falls by about that much
    for i in range(0, take, 4096):
        hog[i] = 1
    wait_for(lambda: int(labels(worker.agent, "worker")["rpc_mem_mb"]) < before - (take >> 21), timeout=15,
             what=f"rpc_mem_mb to fall from {before} after taking {take >> 20} MiB")
    del hog
    assert "rpc worker: free memory changed" in worker.agent.proc.stderr()


@pytest.mark.timeout(120)
def test_split_host_picks_workers_and_survives_losing_one(procs, tmp_path):
    """The host's agent picks the members that offer rpc-servers, runs llama-server over them through the
    tunnel, and when a worker dies serves again over the one left, without an operator."""
    init_cluster(tmp_path / "w1")
    for n in ("w2", "host"):
        share_key(tmp_path / "w1", tmp_path / n)
    fast = FAST
    w1_rpc = free_port()
    w1 = start_node(procs, tmp_path, "w1", [], data_dir=tmp_path / "w1",
                    extra=("--rpc-server", str(RPC), "--rpc-port", str(w1_rpc), *fast))
    w2 = start_node(procs, tmp_path, "w2", [], join=[w1.gossip],
                    extra=("--rpc-server", str(RPC), "--rpc-port", str(free_port()), *fast))
    llama_port = free_port()
    cmd = f"{SERVER} -m {GGUF} --host {HOST} --port {llama_port} -c 1024 -np 1 -t 1 --metrics -ngl 99 --rpc {{rpc}}"
    host = start_node(procs, tmp_path, "host", [f"split=http://{HOST}:{llama_port}#kind=llamacpp&alias=split"], join=[w1.gossip],
                      extra=("--split-target", "split", "--split-workers", "2", "--split-exec", cmd, *fast))
    body = {"model": "split", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}

    def answers():
        if not any(t["healthy"] for t in host.agent.targets() if not t["remote"]):
            return False
        return post_json(host.port, "/v1/chat/completions", body).status == 200
    wait_for(answers, timeout=60, what="the split model to answer")
    log = host.agent.proc.stderr()
    assert "workers=w1,w2" in log or "workers=w2,w1" in log, log[-3000:]
    for w in (w1, w2):  # each holds a share of the layers (the model is 9 MB)
        assert metric(w.port, "infermesh_tunnel_bytes_total", dir="in") > 500_000

    t0 = time.monotonic()
    w2.agent.proc.signal(signal.SIGKILL)
    wait_for(lambda: "a worker is gone" in host.agent.proc.stderr(), timeout=30, what="the host to notice")
    wait_for(answers, timeout=60, what="the split model to answer again over w1")
    print(f"\n[split] back in service {time.monotonic() - t0:.2f} s after a worker was killed")
    assert "workers=w1 " in host.agent.proc.stderr()
    # Nothing outlives its agent: the host's llama-server goes with the host, w1's rpc-server with w1.
    assert rpc_pids(llama_port, b"llama-server") and rpc_pids(w1_rpc)
    host.agent.proc.signal(signal.SIGKILL)
    w1.agent.proc.signal(signal.SIGKILL)
    wait_for(lambda: not rpc_pids(llama_port, b"llama-server"), timeout=10, what="llama-server gone with its agent")
    wait_for(lambda: not rpc_pids(w1_rpc), timeout=10, what="w1's rpc-server gone with its agent")
