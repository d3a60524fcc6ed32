"""The agent over real llama.cpp servers (../shared/runtimes/llama.cpp: upstream llama-server, a tiny model).

The agent starts and supervises three llama-server processes (`exec`), reads their real /metrics and /slots,
routes chat, completions (streaming or not), tool calls and embeddings across them under an alias, restarts one
killed with SIGKILL, and its prefix-aware routing makes llama.cpp reuse more of its prompt cache than round
robin does on a shared-prefix workload. Skipped, with the reason, when ../shared is absent.
"""

import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import (BIN, HOST, READ_AUTH, SSEStream, _check_alive, free_port, http_get, http_request, port_accepts,
                      post_json, read_sse, wait_for)

LLAMA = Path(__file__).resolve().parents[2].parent / "shared" / "runtimes" / "llama.cpp"
SERVER = LLAMA / "bin" / "llama-server"
GGUF = LLAMA / "models" / "tiny-llama.gguf"
ALIAS = "llama"

pytestmark = pytest.mark.skipif(not (SERVER.exists() and GGUF.exists()),
                                reason=f"no llama.cpp runtime at {LLAMA} (the shared folder is absent)")


def llama_cmd(port, *extra):
    """One llama-server: one thread, 2 slots of 1024 tokens each, metrics and slots on, tools, embeddings."""
    return (f"{SERVER} -m {GGUF} --host {HOST} --port {port} -c 2048 -np 2 -t 1 --metrics --slots "
            f"--jinja --embeddings --pooling mean " + " ".join(extra))


def tool_body(model=ALIAS):
    return {"model": model, "max_tokens": 128, "tool_choice": "required",
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "description": "Current weather in a city",
                "parameters": {"type": "object",
                               # an enum keeps the random-weight model's arguments short (the grammar forces it)
                               "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                               "required": ["city"]}}}]}


class Mesh:
    """One agent supervising n llama-servers (alias `llama`), optionally a second agent (round robin) over
    the same servers."""

    def __init__(self, procs, tmp_path, n=3, policy="ours", extra_runtime=""):
        self.ports = [free_port() for _ in range(n)]
        self.port = free_port()
        rts = "".join(
            f"  - {{kind: llamacpp, name: ll{i}, alias: {ALIAS}, url: \"http://{HOST}:{p}\", "
            f"exec: '{llama_cmd(p)}'{extra_runtime}}}\n" for i, p in enumerate(self.ports))
        cfg = tmp_path / "llama.yaml"
        cfg.write_text(f"listen: {HOST}:{self.port}\nscrape_interval_ms: 100\nrouting:\n  policy: {policy}\n"
                       f"runtimes:\n{rts}")
        self.proc = procs.start("agent", [BIN, "agent", "--config", str(cfg), "--runtime-backoff-ms", "300",
                                          "--runtime-stop-grace-ms", "2000"])
        wait_for(lambda: _check_alive(self.proc) and port_accepts(self.port), timeout=15, what="the agent")

    def targets(self):
        return http_get(self.port, "/v1/cluster/targets").json()["targets"]

    def wait_healthy(self, timeout=40):
        wait_for(lambda: _check_alive(self.proc) and all(t["healthy"] and t["process"]["state"] == "running"
                                                          for t in self.targets()),
                 timeout=timeout, what="every llama-server healthy")

    def log(self):
        return self.proc.stderr()


@pytest.fixture
def mesh(procs, tmp_path):
    m = Mesh(procs, tmp_path)
    m.wait_healthy()
    return m


def chat(port, content, max_tokens=4, **extra):
    body = {"model": ALIAS, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    body.update(extra)
    return post_json(port, "/v1/chat/completions", body)


@pytest.mark.timeout(90)
def test_supervised_llama_servers_show_real_signals(mesh):
    # started by the supervisor, each in the agent's log with its own output
    log = mesh.log()
    for i in range(3):
        assert re.search(rf'msg="runtime started" runtime=ll{i} pid=\d+', log), log
        assert re.search(rf'msg="runtime output" runtime=ll{i} stream=stderr line=".*server is listening', log), log
    ts = mesh.targets()
    assert len(ts) == 3
    for t in ts:
        assert t["kind"] == "llamacpp" and t["healthy"], t
        # the alias, not the model's file path that llama-server reports
        assert t["models"] == [ALIAS], t
        # /slots: 2 slots x 1024 tokens of KV; /metrics: queue signals
        assert t["kv_capacity_tokens"] == 2048, t
        assert t["kv_usage"] == 0 and t["waiting"] == 0 and t["running"] == 0, t
        assert t["process"]["state"] == "running", t
    # load shows while a request runs: /slots says which slot is busy and how far it got (the tokens it holds,
    # not the slot's whole 1024)
    s = SSEStream(mesh.port, "/v1/completions", {"model": ALIAS, "prompt": "hello hello", "max_tokens": 1000,
                                                  "ignore_eos": True, "stream": True})
    try:
        assert s.status == 200
        next(s.events())
        busy = wait_for(lambda: next((t for t in mesh.targets() if t["running"] == 1), None), timeout=10,
                        what="a busy target")
        assert 0 < busy["kv_usage"] < 0.5, busy
    finally:
        s.close()
    models = http_get(mesh.port, "/v1/models").json()
    assert [m["id"] for m in models["data"]] == [ALIAS]
    one = http_get(mesh.port, f"/v1/models/{ALIAS}")
    assert one.status == 200 and one.json() == {"id": ALIAS, "object": "model", "created": 0,
                                                 "owned_by": "infermesh"}
    path_name = http_get(mesh.port, "/v1/models/" + str(GGUF).lstrip("/"))
    assert path_name.status == 404 and path_name.json()["error"]["code"] == "model_not_found", path_name
    # prompt tokens counted from llama.cpp's /metrics reach the target's window rates
    wait_for(lambda: any((t["prompt_tps"] or 0) > 0 for t in mesh.targets()), timeout=15,
             what="prompt tokens/s from llama.cpp's counters")


@pytest.mark.timeout(60)
def test_agent_waits_while_llama_server_loads(procs, tmp_path):
    """llama-server listens at once and answers /health with 503 until its model is loaded (here ~0.1-0.3 s: a
    128k-token context to allocate; the agent scrapes every 10 ms to see it): the target waits as loading, the
    supervisor neither restarts nor gives up, and requests flow once it is loaded."""
    port, aport = free_port(), free_port()
    cfg = tmp_path / "load.yaml"
    cfg.write_text(f"listen: {HOST}:{aport}\nscrape_interval_ms: 10\nruntimes:\n"
                   f"  - {{kind: llamacpp, name: big, alias: {ALIAS}, url: \"http://{HOST}:{port}\", "
                   f"exec: '{SERVER} -m {GGUF} --host {HOST} --port {port} -c 131072 -np 1 -t 1 --metrics "
                   f"--slots'}}\n")
    agent = procs.start("agent", [BIN, "agent", "--config", str(cfg)])
    wait_for(lambda: _check_alive(agent) and port_accepts(aport), timeout=15, what="the agent")
    wait_for(lambda: http_get(aport, "/v1/cluster/targets").json()["targets"][0]["healthy"], timeout=40,
             what="the runtime loaded")
    log = agent.stderr()
    assert 'reason="/health answered 503 (loading the model)"' in log, log
    assert "restarting" not in log and "crash loop" not in log, log
    r = chat(aport, "loaded now")
    assert r.status == 200 and r.json()["usage"]["completion_tokens"] == 4, r


@pytest.mark.timeout(120)
def test_chat_completions_streams_tools_embeddings_across_instances(mesh):
    seen = set()
    for i in range(9):
        r = chat(mesh.port, f"question number {i}: tell me something", max_tokens=6)
        assert r.status == 200, r
        body = r.json()
        assert body["usage"]["completion_tokens"] == 6 and body["choices"][0]["message"]["role"] == "assistant"
        assert "timings" in body  # llama.cpp's own fields pass through untouched
        assert body["model"] == ALIAS  # llama-server says "gpt-3.5-turbo": the client sees what it asked for
        seen.add(r.headers["x-infermesh-target"])
    assert len(seen) >= 2, seen
    r = post_json(mesh.port, "/v1/completions", {"model": ALIAS, "prompt": "Once upon a time", "max_tokens": 5})
    assert r.status == 200 and r.json()["usage"]["completion_tokens"] == 5, r
    assert isinstance(r.json()["choices"][0]["text"], str)

    def prompt_tokens_metric():
        text = http_get(mesh.port, "/metrics").text()
        return int(re.search(r"^infermesh_prompt_tokens_total (\d+)", text, re.M).group(1))

    before = prompt_tokens_metric()
    # streaming chat, without asking for usage: the agent asks llama.cpp for it (to meter) and reads it from the
    # last chunk, where llama.cpp puts it beside the choices
    status, headers, events = read_sse(mesh.port, "/v1/chat/completions",
                                       {"model": ALIAS, "stream": True, "max_tokens": 5,
                                        "messages": [{"role": "user", "content": "stream to me"}]})
    assert status == 200 and events[-1][1] == "[DONE]", events
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) >= 1, chunks
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["model"] == ALIAS for c in chunks), chunks
    wait_for(lambda: prompt_tokens_metric() > before, timeout=5, what="the stream's usage metered")
    status, _, events = read_sse(mesh.port, "/v1/completions",
                                 {"model": ALIAS, "stream": True, "max_tokens": 4, "prompt": "count: 1 2 3",
                                  "stream_options": {"include_usage": True}})
    assert status == 200 and events[-1][1] == "[DONE]", events
    usage = [json.loads(d)["usage"] for _, d in events[:-1] if json.loads(d).get("usage")]
    assert usage and usage[-1]["completion_tokens"] == 4, events

    # tool calls (--jinja): OpenAI's tool_calls format, arguments are JSON with the required key
    r = post_json(mesh.port, "/v1/chat/completions", tool_body())
    assert r.status == 200, r
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather", call
    assert json.loads(call["function"]["arguments"])["city"] in ("Paris", "Rome"), call

    # embeddings (--embeddings --pooling mean), routed like completions
    r = post_json(mesh.port, "/v1/embeddings", {"model": ALIAS, "input": ["hello mesh", "second input"]})
    assert r.status == 200, r
    data = r.json()["data"]
    assert len(data) == 2 and len(data[0]["embedding"]) == 64, r.json()
    assert r.headers["x-infermesh-target"] in {"ll0", "ll1", "ll2"}
    bad = post_json(mesh.port, "/v1/embeddings", {"model": "no-such-model", "input": "x"})
    assert bad.status == 404 and bad.json()["error"]["code"] == "model_not_found", bad


def llama_pid(port):
    """The llama-server process listening on port (its command line names the port)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and cmd and cmd[0].endswith(b"llama-server") and str(port).encode() in cmd:
            return int(d)
    return None


@pytest.mark.timeout(120)
def test_killed_llama_server_is_restarted_and_routed_to_again(mesh):
    victim = mesh.ports[0]
    pid = llama_pid(victim)
    assert pid, "llama-server ll0 not found"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not next(t for t in mesh.targets() if t["name"] == "ll0")["healthy"], timeout=5,
             what="ll0 marked down")
    # meanwhile the others serve every request
    for i in range(4):
        r = chat(mesh.port, f"while ll0 is down {i}")
        assert r.status == 200 and r.headers["x-infermesh-target"] != "ll0", r
    wait_for(lambda: re.search(r'msg="runtime exited; restarting" runtime=ll0 .*signal=9', mesh.log()), timeout=5,
             what="the supervisor to notice")
    mesh.wait_healthy(timeout=40)
    new_pid = llama_pid(victim)
    assert new_pid and new_pid != pid
    # back in routing: round after round of distinct prompts reaches it again
    wait_for(lambda: chat(mesh.port, f"after restart {random.random()}").headers["x-infermesh-target"] == "ll0",
             timeout=30, interval=0.01, what="a request served by the restarted ll0")


# ---- prefix-cache reuse: prefix-aware routing vs round robin --------------------------------------------------

def shared_prefix_workload(seed, groups=5, per_group=6):
    """groups system prompts of ~400 tokens (random letters: unrelated texts, as distinct system prompts are),
    each shared by per_group requests with short distinct questions, in a shuffled order (5 groups over 3
    servers: round robin cannot line groups up with servers)."""
    rng = random.Random(seed)
    prefixes = [" ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 7)))
                         for _ in range(120)) for _ in range(groups)]
    reqs = [(g, f"question {k} {rng.randint(0, 10**6)}") for g in range(groups) for k in range(per_group)]
    rng.shuffle(reqs)
    return [{"model": ALIAS, "max_tokens": 2, "temperature": 0,
             "messages": [{"role": "system", "content": prefixes[g]}, {"role": "user", "content": q}]}
            for g, q in reqs]


def cache_reuse(port, workload):
    """Share of prompt tokens llama.cpp did not compute (its prompt cache had them): 1 - sum(timings.prompt_n) /
    sum(usage.prompt_tokens), over the whole workload sent one request at a time."""
    total = computed = 0
    for body in workload:
        r = post_json(port, "/v1/chat/completions", body)
        assert r.status == 200, r
        j = r.json()
        total += j["usage"]["prompt_tokens"]
        computed += j["timings"]["prompt_n"]
        if os.environ.get("LLAMA_TRACE"):
            print(body["messages"][0]["content"][:12], r.headers["x-infermesh-target"], j["usage"]["prompt_tokens"],
                  j["timings"]["prompt_n"])
    return 1 - computed / total


@pytest.mark.timeout(180)
def test_prefix_aware_routing_reuses_more_of_llamacpps_prompt_cache_than_round_robin(procs, tmp_path):
    m = Mesh(procs, tmp_path)
    m.wait_healthy()
    # A second agent routes round robin over the same three servers (not supervising them).
    rr = procs.agent([f"http://{HOST}:{p}#kind=llamacpp&alias={ALIAS}" for p in m.ports],
                     "--routing-policy", "round-robin", name="agent-rr", scrape_ms=100)
    # different prompts for each, so neither leaves cache behind for the other
    ours = cache_reuse(m.port, shared_prefix_workload(1))
    robin = cache_reuse(rr.port, shared_prefix_workload(2))
    print(f"llama.cpp prompt-cache reuse: prefix-aware {ours:.3f}, round robin {robin:.3f}")
    assert ours > robin + 0.15, (ours, robin)
    assert ours > 0.5, ours


@pytest.mark.timeout(90)
def test_api_key_is_sent_to_the_runtime_and_its_scrapes(procs, tmp_path):
    port = free_port()
    srv = procs.start("llama", llama_cmd(port, "--api-key", "sk-llama-secret").split())
    wait_for(lambda: _check_alive(srv) and port_accepts(port), timeout=20, what="llama-server to listen")
    # without the key the runtime refuses its metrics and requests: the target never becomes healthy
    without = procs.agent([f"http://{HOST}:{port}#kind=llamacpp&alias={ALIAS}"], name="agent-nokey",
                          wait_healthy=False, scrape_ms=100)
    with_key = procs.agent([f"http://{HOST}:{port}#kind=llamacpp&alias={ALIAS}&api_key=sk-llama-secret"],
                           name="agent-key", scrape_ms=100)
    r = chat(with_key.port, "with the runtime's key")
    assert r.status == 200 and r.json()["usage"]["completion_tokens"] == 4, r
    t = wait_for(lambda: (lambda t: "401" in t["last_error"] and t)(without.targets()[0]), timeout=10,
                 what="the keyless agent's scrape refused with 401")
    assert not t["healthy"], t
    r = chat(without.port, "without the runtime's key")
    assert r.status == 503, r
    # the key is the agent's secret: no view shows it
    assert "sk-llama-secret" not in http_get(with_key.port, "/v1/cluster/targets").text()
