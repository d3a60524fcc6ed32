"""llama.cpp's RPC split carried by the agent-to-agent tunnel (../shared/runtimes/llama.cpp; skipped when it
is absent): a worker node's agent runs an rpc-server on its loopback only (--rpc-server), offers it through
the tunnel and announces it in membership; the host node's agent forwards a local port to it
(--tunnel-forward) and supervises llama-server --rpc on that port. The model's layers then live in the
worker's rpc-server, and every RPC byte crosses between the agents encrypted."""

import os
import signal
import time

import pytest

from conftest import BIN, HOST, free_port, http_get, metric_value, parse_prometheus, port_accepts, post_json
from conftest import wait_for, _check_alive
from test_llamacpp import GGUF, LLAMA, SERVER
from test_mesh import init_cluster, share_key, start_node

RPC = LLAMA / "bin" / "rpc-server"
pytestmark = pytest.mark.skipif(not RPC.exists(), reason=f"no llama.cpp rpc-server at {RPC} (the shared folder is absent)")


def metric(port, name, **labels):
    return metric_value(parse_prometheus(http_get(port, "/metrics").text()), name, **labels) or 0


@pytest.mark.timeout(120)
def test_split_model_answers_through_the_tunnel(procs, tmp_path):
    init_cluster(tmp_path / "worker")
    share_key(tmp_path / "worker", tmp_path / "host")
    rpc_port, fwd_port, llama_port, api_port = free_port(), free_port(), free_port(), free_port()
    worker = start_node(procs, tmp_path, "worker", [], data_dir=tmp_path / "worker",
                        extra=("--rpc-server", str(RPC), "--rpc-port", str(rpc_port)))
    wait_for(lambda: port_accepts(rpc_port), timeout=15, what="the worker's rpc-server")
    cfg = tmp_path / "host.yaml"
    cmd = (f"{SERVER} -m {GGUF} --host {HOST} --port {llama_port} -c 1024 -np 1 -t 1 --metrics "
           f"--rpc 127.0.0.1:{fwd_port} -ngl 99")
    cfg.write_text(f"listen: {HOST}:{api_port}\nscrape_interval_ms: 100\nruntimes:\n"
                   f"  - {{kind: llamacpp, name: split, alias: llama, url: \"http://{HOST}:{llama_port}\", "
                   f"exec: '{cmd}'}}\n")
    gport = free_port()
    host = procs.start("host", [BIN, "agent", "--config", str(cfg), "--name", "host", "--data-dir",
                                str(tmp_path / "host"), "--gossip", f"{HOST}:{gport}", "--join", worker.gossip,
                                "--tunnel-forward", f"{fwd_port}=worker:{rpc_port}", "--runtime-backoff-ms", "300"])
    wait_for(lambda: _check_alive(host) and port_accepts(api_port), timeout=15, what="the host agent")
    wait_for(lambda: all(t["healthy"] for t in http_get(api_port, "/v1/cluster/targets").json()["targets"]),
             timeout=60, what="the split llama-server healthy")
    r = post_json(api_port, "/v1/chat/completions",
                  {"model": "llama", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]})
    assert r.status == 200, r.text()
    assert r.json()["choices"][0]["message"]["content"] is not None
    # The layers went to the worker's rpc-server through the tunnel: megabytes of tensors, from the host's
    # forwarder to the worker's allowed port.
    assert metric(worker.port, "infermesh_tunnel_accepted_total") >= 1
    assert metric(worker.port, "infermesh_tunnel_bytes_total", dir="in") > 1_000_000
    assert metric(api_port, "infermesh_tunnel_bytes_total", dir="out") > 1_000_000
    # The host sees what the worker offers in membership.
    ms = {m["name"]: m for m in http_get(api_port, "/v1/cluster/members").json()["members"]}
    assert ms["worker"]["labels"].get("rpc") == str(rpc_port) and int(ms["worker"]["labels"]["rpc_mem_mb"]) > 0
    assert "rpc" in ms["worker"]["roles"] and "rpc" not in ms["host"]["roles"]


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


@pytest.mark.timeout(60)
def test_rpc_server_is_supervised_and_dies_with_its_agent(procs, tmp_path):
    init_cluster(tmp_path / "worker")
    rpc_port = free_port()
    worker = start_node(procs, tmp_path, "worker", [], data_dir=tmp_path / "worker",
                        extra=("--rpc-server", str(RPC), "--rpc-port", str(rpc_port)))
    first = wait_for(lambda: rpc_pids(rpc_port), timeout=15, what="the rpc-server")
    wait_for(lambda: port_accepts(rpc_port), timeout=15, what="the rpc-server to listen")
    os.kill(first[0], signal.SIGKILL)
    again = wait_for(lambda: [p for p in rpc_pids(rpc_port) if p not in first], timeout=15,
                     what="the rpc-server restarted")
    wait_for(lambda: port_accepts(rpc_port), timeout=15, what="the restarted rpc-server to listen")
    assert "helper process exited; restarting" in worker.agent.proc.stderr()
    worker.agent.proc.signal(signal.SIGKILL)
    worker.agent.proc.wait(10)
    wait_for(lambda: not rpc_pids(rpc_port), timeout=10, what="the rpc-server to die with its agent")
    assert again


@pytest.mark.timeout(120)
def test_split_host_picks_workers_and_survives_losing_one(procs, tmp_path):
    """The host's agent picks the members that offer rpc-servers, runs llama-server over them through the
    tunnel, and when a worker dies serves again over the one left, without an operator."""
    init_cluster(tmp_path / "w1")
    for n in ("w2", "host"):
        share_key(tmp_path / "w1", tmp_path / n)
    fast = ("--probe-interval-ms", "200", "--suspicion-mult", "2")
    w1 = start_node(procs, tmp_path, "w1", [], data_dir=tmp_path / "w1",
                    extra=("--rpc-server", str(RPC), "--rpc-port", str(free_port()), *fast))
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
    assert rpc_pids(llama_port, b"llama-server")
    host.agent.proc.signal(signal.SIGKILL)
    w1.agent.proc.signal(signal.SIGKILL)
    wait_for(lambda: not rpc_pids(llama_port, b"llama-server"), timeout=10, what="llama-server gone with its agent")
