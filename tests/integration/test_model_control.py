"""Model control: `infermesh model load|unload` -> the agent's POST /v1/cluster/targets/T/load|unload -> the
runtime's own API (here the simulated engine's vLLM runtime LoRA API), on this node or forwarded to the node that
runs the target; the loaded LoRA adapter is then listed and routed by its name.
"""

import json
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import (BIN, HOST, MODEL, _check_alive, assert_openai_error, chat_body, http_get, http_request,
                      post_json, wait_for)
from test_mesh import init_cluster, remote_healthy, share_key, start_node, wait_members

TOKEN = "adm-secret-1"
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "runtime-metrics"
REPLAY = Path(__file__).resolve().parent / "replay_server.py"


def cli(agent, *args, token=TOKEN):
    cmd = [BIN, "model", *args, "--addr", agent.url]
    if token is not None:
        cmd += ["--token", token]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})


def model_ids(port):
    return [m["id"] for m in http_get(port, "/v1/models").json()["data"]]


def ctl(agent, target, op, body, token=TOKEN):
    h = {"Authorization": f"Bearer {token}"} if token else {}
    path = f"/v1/cluster/targets/{urllib.parse.quote(target, safe='')}/{op}"
    return http_request(agent.port, "POST", path, body=body, headers=h)


def start(procs, *extra_targets, admin=True):
    eng = procs.engine()
    args = ["--admin-token", TOKEN] if admin else []
    ag = procs.agent([f"eng={eng.url}", *extra_targets], *args, wait_healthy=False)
    wait_for(lambda: _check_alive(ag.proc) and any(t["name"] == "eng" and t["healthy"] for t in ag.targets()),
             timeout=15, what="target eng healthy")
    return eng, ag


@pytest.mark.timeout(60)
def test_load_route_unload_lora(procs):
    eng, ag = start(procs)
    r = cli(ag, "load", "my-lora", "--target", "eng", "--lora-path", "/tmp/x")
    assert r.returncode == 0, r.stderr
    assert "loaded lora 'my-lora' on target eng" in r.stdout
    # the engine has it the way vLLM lists adapters, and the agent lists it promptly
    cards = {m["id"]: m for m in http_get(eng.port, "/v1/models").json()["data"]}
    assert cards["my-lora"]["parent"] == MODEL and cards["my-lora"]["root"] == "/tmp/x"
    wait_for(lambda: "my-lora" in model_ids(ag.port), timeout=3, what="my-lora in the agent's /v1/models")
    t = [t for t in ag.targets() if t["name"] == "eng"][0]
    assert "my-lora" in t["models"] and MODEL in t["models"]
    # served by the base model's engine, under its own name
    r = post_json(ag.port, "/v1/chat/completions", chat_body(model="my-lora"))
    assert r.status == 200, r
    assert r.json()["model"] == "my-lora"
    assert r.headers["x-infermesh-target"] == "eng"
    assert 'max_lora="8"' in http_get(eng.port, "/metrics").text()
    # a second load: the runtime's refusal comes back
    r = cli(ag, "load", "my-lora", "--target", "eng", "--lora-path", "/tmp/x")
    assert r.returncode == 1
    assert "502" in r.stderr and "has already been loaded" in r.stderr
    # unload over HTTP: the answer's shape
    r = ctl(ag, "eng", "unload", {"model": "my-lora"})
    assert r.status == 200, r
    body = r.json()
    assert {k: body[k] for k in ("target", "model", "op", "type", "kind", "runtime_status")} == {
        "target": "eng", "model": "my-lora", "op": "unload", "type": "lora", "kind": "vllm", "runtime_status": 200}
    assert "removed successfully" in body["runtime_message"]
    wait_for(lambda: "my-lora" not in model_ids(ag.port), timeout=3, what="my-lora gone")
    time.sleep(0.5)  # a scrape or two later it stays gone
    assert model_ids(ag.port) == [MODEL]
    r = post_json(ag.port, "/v1/chat/completions", chat_body(model="my-lora"))
    assert_openai_error(r, 404)
    r = ctl(ag, "eng", "unload", {"model": "my-lora"})
    err = assert_openai_error(r, 502, "runtime_refused")
    assert "cannot be found" in err["message"]


@pytest.mark.timeout(60)
def test_refusals(procs):
    eng, ag = start(procs, "tgi=http://127.0.0.1:1#kind=tgi")
    # auth: wrong token, none
    r = cli(ag, "load", "x", "--target", "eng", "--lora-path", "/p", token="wrong")
    assert r.returncode == 1 and "401" in r.stderr
    assert_openai_error(ctl(ag, "eng", "load", {"model": "x", "lora_path": "/p"}, token="wrong"), 401)
    assert_openai_error(ctl(ag, "eng", "load", {"model": "x", "lora_path": "/p"}, token=None), 401)
    r = cli(ag, "load", "x", "--target", "eng", token=None)
    assert r.returncode == 2 and "admin token" in r.stderr
    # unknown target, bad body, wrong method, missing lora_path
    r = cli(ag, "load", "x", "--target", "nope", "--lora-path", "/p")
    assert r.returncode == 1 and "404" in r.stderr
    assert_openai_error(ctl(ag, "nope", "load", {"model": "x"}), 404, "target_not_found")
    assert_openai_error(ctl(ag, "eng", "load", "not json"), 400, "invalid_value")
    assert_openai_error(ctl(ag, "eng", "load", {"model": "x", "type": "adapter"}), 400, "invalid_value")
    assert_openai_error(ctl(ag, "eng", "load", {"model": "x"}), 400, "invalid_value")
    r = http_request(ag.port, "GET", "/v1/cluster/targets/eng/load")
    assert_openai_error(r, 405)
    # a runtime kind without such a control: a clear 501
    err = assert_openai_error(ctl(ag, "tgi", "load", {"model": "x"}), 501, "not_supported")
    assert "tgi" in err["message"] and "restart" in err["message"]
    err = assert_openai_error(ctl(ag, "eng", "load", {"model": "x", "type": "model"}), 501, "not_supported")
    assert "lora" in err["message"]
    r = cli(ag, "load", "x", "--target", "tgi")
    assert r.returncode == 1 and "501" in r.stderr
    # nothing changed on the engine
    assert [m["id"] for m in http_get(eng.port, "/v1/models").json()["data"]] == [MODEL]


@pytest.mark.timeout(60)
def test_agent_without_admin_token_refuses(procs):
    eng, ag = start(procs, admin=False)
    err = assert_openai_error(ctl(ag, "eng", "load", {"model": "x", "lora_path": "/p"}), 403)
    assert "admin-token" in err["message"]


@pytest.mark.timeout(60)
@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"runtime fixtures not found at {FIXTURES}")
def test_runtime_without_control_api(procs):
    """A vLLM without VLLM_ALLOW_RUNTIME_LORA_UPDATING (a replay of a real capture) has no such route."""
    p = procs.start("replay-vllm", [sys.executable, REPLAY, "vllm", FIXTURES])
    m = wait_for(lambda: _check_alive(p) and re.search(r"listening on http://127\.0\.0\.1:(\d+)", p.stdout()),
                 timeout=10, what="replay to print its port")
    ag = procs.agent([f"rep=http://{HOST}:{m.group(1)}"], "--admin-token", TOKEN)
    err = assert_openai_error(ctl(ag, "rep", "load", {"model": "x", "lora_path": "/p"}), 502, "runtime_refused")
    assert "HTTP 404" in err["message"] and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" in err["message"]


@pytest.mark.timeout(120)
def test_load_on_another_nodes_target(procs, tmp_path):
    """Asked on node a, the load runs on node b's engine (forwarded, signed with the cluster key: b has no
    admin token of its own); a routes the adapter to b."""
    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "b")
    ea, eb = procs.engine(name="engine-a"), procs.engine(name="engine-b")
    a = start_node(procs, tmp_path, "a", [ea], data_dir=tmp_path / "a", extra=("--admin-token", TOKEN))
    b = start_node(procs, tmp_path, "b", [eb], join=[a.gossip], extra=("--admin-token", ""))
    wait_members([a, b], ["a", "b"])
    wait_for(lambda: remote_healthy(a, 1), timeout=15, what="b's target healthy on a")
    remote = [t for t in a.agent.targets() if t["remote"]][0]["name"]
    assert remote.startswith("b/")
    r = cli(a.agent, "load", "sql-lora", "--target", remote, "--lora-path", "/loras/sql")
    assert r.returncode == 0, r.stderr
    assert "sql-lora" in [m["id"] for m in http_get(eb.port, "/v1/models").json()["data"]]
    assert "sql-lora" not in [m["id"] for m in http_get(ea.port, "/v1/models").json()["data"]]
    wait_for(lambda: "sql-lora" in model_ids(a.port), timeout=10, what="sql-lora on a")
    for _ in range(3):
        r = post_json(a.port, "/v1/chat/completions", chat_body(model="sql-lora"))
        assert r.status == 200, r
        assert r.headers["x-infermesh-node"] == "b"
    r = ctl(a.agent, remote, "unload", {"model": "sql-lora"}, token=TOKEN)
    assert r.status == 200, r
    assert r.json()["target"] == remote and r.json()["node"] == "b"
    wait_for(lambda: "sql-lora" not in model_ids(a.port), timeout=10, what="sql-lora gone on a")
    # b itself takes no unsigned, untokened call, and no forged forward
    local = remote.split("/", 1)[1]
    assert_openai_error(ctl(b.agent, local, "load", {"model": "x", "lora_path": "/p"}), 403)
    hop = f"v3.{int(time.time())}.{'1' * 16}." + "0" * 64
    r = http_request(b.port, "POST", f"/v1/cluster/targets/{urllib.parse.quote(local, safe='')}/load",
                     body={"model": "x", "lora_path": "/p"},
                     headers={"x-infermesh-hop": hop, "x-infermesh-hop-target": "model-load:x", "x-request-id": "r"})
    assert_openai_error(r, 403)
    assert [m["id"] for m in http_get(eb.port, "/v1/models").json()["data"]] == [MODEL]


@pytest.mark.timeout(60)
def test_client_that_leaves_cancels_the_runtime_call(procs):
    """A load whose client resets its connection while the runtime has not answered: the agent closes its own
    connection to the runtime (the call is cancelled, the request and its memory released together) and goes
    on answering."""
    srv = socket.socket()
    srv.bind((HOST, 0))
    srv.listen(4)
    srv.settimeout(20)
    port = srv.getsockname()[1]
    ag = procs.agent([f"silent=http://{HOST}:{port}"], "--admin-token", TOKEN, wait_healthy=False)
    client = socket.create_connection((HOST, ag.port), timeout=10)
    body = json.dumps({"model": "x", "lora_path": "/p"}).encode()
    client.sendall(b"POST /v1/cluster/targets/silent/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
                   b"\r\n\r\n" + body)
    runtime = None
    while runtime is None:  # the scraper connects too: the load is the connection that carries its POST
        conn, _ = srv.accept()
        conn.settimeout(10)
        if conn.recv(4096).startswith(b"POST /v1/load_lora_adapter"):
            runtime = conn
        else:
            conn.close()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset: the agent sees the client gone
    assert runtime.recv(4096) == b""  # the agent closed its call to the runtime
    runtime.close()
    srv.close()
    wait_for(lambda: "client went away, request to the runtime cancelled" in ag.proc.stderr(), timeout=10,
             what="the cancellation in the log")
    assert http_get(ag.port, "/healthz").status == 200
