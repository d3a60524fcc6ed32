"""llama.cpp's RPC split carried by the agent-to-agent tunnel (../shared/runtimes/llama.cpp; skipped when it
is absent): a worker node's rpc-server listens on its loopback only and its agent allows that port; the host
node's agent forwards a local port to it (--tunnel-forward) and supervises llama-server --rpc on that port.
The model's layers then live in the worker's rpc-server, and every RPC byte crosses between the agents
encrypted."""

import json

import pytest

from conftest import BIN, HOST, free_port, http_get, metric_value, parse_prometheus, port_accepts, post_json
from conftest import wait_for, _check_alive
from test_llamacpp import GGUF, LLAMA, SERVER
from test_mesh import init_cluster, share_key, start_node, wait_members

RPC = LLAMA / "bin" / "rpc-server"
pytestmark = pytest.mark.skipif(not RPC.exists(), reason=f"no llama.cpp rpc-server at {RPC} (the shared folder is absent)")


def metric(port, name, **labels):
    return metric_value(parse_prometheus(http_get(port, "/metrics").text()), name, **labels) or 0


@pytest.mark.timeout(120)
def test_split_model_answers_through_the_tunnel(procs, tmp_path):
    init_cluster(tmp_path / "worker")
    share_key(tmp_path / "worker", tmp_path / "host")
    rpc_port, fwd_port, llama_port, api_port = free_port(), free_port(), free_port(), free_port()
    procs.start("rpc-server", [str(RPC), "-H", "127.0.0.1", "-p", str(rpc_port)])
    wait_for(lambda: port_accepts(rpc_port), timeout=15, what="rpc-server")
    worker = start_node(procs, tmp_path, "worker", [], data_dir=tmp_path / "worker",
                        extra=("--tunnel-allow", str(rpc_port)))
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
