"""Runtime adapters on the live path: small HTTP servers (replay_server.py) replay the captured fixtures of each
runtime kind; `infermesh probe` and the agent talk to them over real sockets.

* probe: detection and --runtime KIND give the kind and the capture's exact normalized numbers;
* agent: a target of every kind becomes healthy and a chat request is routed to it;
* faults flipped at run time on the replay server (health flapping, a scrape slower than the agent's 2 s scrape
  timeout, a garbage body): the target goes down with a reason, the agent keeps running, answers 503 while no
  target is healthy, /healthz stays 200, and the target comes back when the runtime does.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (BIN, HOST, REPO, _check_alive, chat_body, free_port, http_get, port_accepts,
                      post_json, wait_for)

FIXTURES = REPO.parent / "shared" / "fixtures" / "runtime-metrics"
REPLAY = Path(__file__).resolve().parent / "replay_server.py"
KINDS = ("vllm", "sglang", "tgi", "llamacpp", "triton", "ollama")

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"runtime fixtures not found at {FIXTURES}")

# What each capture normalizes to (tests/unit/test_adapters.c has the same numbers, from the same files).
EXPECTED = {
    "vllm": {"waiting": 0, "running": 0, "kv_usage": 0, "block_size": 16, "kv_capacity_tokens": 16 * 7281,
             "prefix_queries": 117, "prefix_hits": 64, "prompt_tokens_total": 5, "generation_tokens_total": 7,
             "ttft_count": 1, "itl_count": 144, "models": ["facebook/opt-125m"]},
    "sglang": {"waiting": 2826, "running": 162, "kv_usage": 0.28, "prompt_tokens_total": 8128902,
               "generation_tokens_total": 7557572, "ttft_count": 11008, "itl_count": 7400757,
               "kv_capacity_tokens": None, "models": ["meta-llama/Llama-3.1-8B-Instruct"]},
    "tgi": {"waiting": 0, "running": 0, "kv_usage": 0, "kv_capacity_tokens": 16000, "max_seq_tokens": 2048,
            "prompt_tokens_total": 662, "queued_requests_total": 109, "models": ["bigscience/bloom-560m"]},
    "llamacpp": {"running": 1, "kv_usage": 1024 / 8192, "kv_capacity_tokens": 8192, "max_seq_tokens": 4096,
                 "prompt_tokens_total": 143, "generation_tokens_total": 673, "waiting": None},
    "triton": {"waiting": 0, "queued_requests_total": 3, "vram_bytes": 266338304, "running": None,
               "kv_usage": None, "models_total": 8},
    "ollama": {"vram_bytes": 5137025024, "models": ["mistral:latest"],
               "available": ["deepseek-r1:latest", "llama3.2:latest"], "waiting": None, "kv_usage": None},
}
# Floats that went through "%.10g" and a sum in the adapter: compared with a relative tolerance.
APPROX = {("sglang", "gen_tps_gauge"): 86.50814177726902, ("sglang", "prefix_hit_rate"): 0.007507552643049313,
          ("vllm", "prefix_hit_rate"): 64 / 117, ("tgi", "queue_time_s_total"): 295.275961956,
          ("triton", "queue_time_s_total"): 145e-6}


class Replay:
    def __init__(self, proc, port, kind):
        self.proc, self.port, self.kind = proc, port, kind
        self.url = f"http://{HOST}:{port}"

    def control(self, **knobs):
        r = post_json(self.port, "/_control", knobs, timeout=5)
        assert r.status == 200, r
        return r.json()

    def hits(self, path):
        return http_get(self.port, "/_control", timeout=5).json()["hits"].get(path, 0)


def start_replay(procs, kind, *extra):
    p = procs.start(f"replay-{kind}", [sys.executable, REPLAY, kind, FIXTURES, *extra])
    m = wait_for(lambda: _check_alive(p) and re.search(r"listening on http://127\.0\.0\.1:(\d+)", p.stdout()),
                 timeout=10, what=f"replay {kind} to print its port")
    return Replay(p, int(m.group(1)), kind)


def start_agent(procs, tmp_path, replays, name="agent", extra=(), runtime_extra=""):
    """An agent configured from YAML with one named runtime per replay (kind given), scraping every 100 ms."""
    port = free_port()
    rts = "".join(f'  - {{kind: {r.kind}, url: "{r.url}", name: {r.kind}-replay{runtime_extra}}}\n' for r in replays)
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"listen: {HOST}:{port}\nscrape_interval_ms: 100\nruntimes:\n{rts}")
    p = procs.infermesh(name, "agent", "--config", cfg, "--scrape-interval-ms", "100", *extra)
    wait_for(lambda: _check_alive(p) and port_accepts(port), timeout=15, what=f"{name} to listen")
    return p, port


def targets(port):
    return {t["name"]: t for t in http_get(port, "/v1/cluster/targets", timeout=5).json()["targets"]}


def probe(*args, timeout=20):
    return subprocess.run([BIN, "probe", *args], capture_output=True, text=True, timeout=timeout, cwd=str(REPO))


def assert_state(kind, st):
    assert st["runtime"] == kind, st
    assert st["healthy"] is True, st
    for k, want in EXPECTED[kind].items():
        if isinstance(want, float):
            assert st[k] == pytest.approx(want, rel=1e-9), (k, st)
        else:
            assert st[k] == want, (k, st[k], want)
    for (kd, k), want in APPROX.items():
        if kd == kind:
            assert st[k] == pytest.approx(want, rel=1e-9), (k, st)


@pytest.fixture(scope="module")
def replays(module_procs):
    return {k: start_replay(module_procs, k) for k in KINDS}


# ---------------------------------------------------------------------------------------------------------------
# probe


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", KINDS)
def test_probe_detects_the_kind_and_reads_the_capture(replays, kind):
    rp = replays[kind]
    r = probe(rp.url, "--json", "--interval-ms", "0")
    assert r.returncode == 0, r.stderr
    assert f"detected {kind} at {rp.url}" in r.stderr, r.stderr
    assert_state(kind, json.loads(r.stdout))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", KINDS)
def test_probe_with_runtime_kind_reads_the_capture_twice(replays, kind):
    rp = replays[kind]
    before = rp.hits("/api/tags" if kind == "ollama" else "/metrics")
    r = probe("--runtime", kind, rp.url, "--json", "--interval-ms", "100")
    assert r.returncode == 0, r.stderr
    assert "detected" not in r.stderr, r.stderr  # no probing when the kind is given
    st = json.loads(r.stdout)
    assert_state(kind, st)
    # two scrapes of the same capture: a window with nothing new, no counter reset
    assert st["window"]["reset"] is False, st
    assert rp.hits("/api/tags" if kind == "ollama" else "/metrics") - before == 2
    if kind in ("vllm", "sglang", "tgi", "llamacpp"):
        assert st["window"]["prompt_tps"] == 0, st  # counters unchanged between the two scrapes


@pytest.mark.timeout(30)
def test_probe_wrong_kind_says_so(replays):
    r = probe("--runtime", "triton", replays["vllm"].url, "--json", "--interval-ms", "0")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "does not look like runtime kind 'triton'" in r.stderr, r.stderr
    assert r.stdout == ""


# ---------------------------------------------------------------------------------------------------------------
# agent: every kind healthy and routed to


ROUTE_MODEL = {"vllm": "facebook/opt-125m", "sglang": "meta-llama/Llama-3.1-8B-Instruct",
               "tgi": "bigscience/bloom-560m", "llamacpp": "ggml-org/gemma-3-1b-it-GGUF", "triton": "densenet_onnx",
               "ollama": "mistral:latest"}


@pytest.mark.timeout(40)
def test_agent_scrapes_every_kind_and_routes_to_it(procs, tmp_path):
    rps = [start_replay(procs, k) for k in KINDS]
    agent, port = start_agent(procs, tmp_path, rps)
    wait_for(lambda: _check_alive(agent) and len(targets(port)) == len(KINDS)
             and all(t["healthy"] for t in targets(port).values()),
             timeout=15, what="every replay target healthy")
    ts = targets(port)
    assert ts["sglang-replay"]["waiting"] == 2826 and ts["sglang-replay"]["running"] == 162, ts["sglang-replay"]
    assert ts["sglang-replay"]["kv_usage"] == pytest.approx(0.28), ts["sglang-replay"]
    assert ts["llamacpp-replay"]["running"] == 1, ts["llamacpp-replay"]
    assert ts["llamacpp-replay"]["kv_usage"] == pytest.approx(0.125), ts["llamacpp-replay"]
    # KV capacity in tokens, whether the runtime counts it in blocks (vLLM) or in tokens only (TGI, llama.cpp)
    for kind in ("vllm", "tgi", "llamacpp"):
        assert ts[f"{kind}-replay"]["kv_capacity_tokens"] == EXPECTED[kind]["kv_capacity_tokens"], ts[f"{kind}-replay"]
    assert "densenet_onnx" in ts["triton-replay"]["models"], ts["triton-replay"]
    assert ts["ollama-replay"]["models"] == ["mistral:latest"], ts["ollama-replay"]
    assert http_get(port, "/readyz").status == 200
    for kind in KINDS:
        r = post_json(port, "/v1/chat/completions", chat_body(model=ROUTE_MODEL[kind], max_tokens=4))
        assert r.status == 200, (kind, r)
        assert r.headers["x-infermesh-target"] == f"{kind}-replay", (kind, r.headers)
        assert r.json()["choices"][0]["message"]["content"] == f"hello from {kind}", r
    assert _check_alive(agent)


# ---------------------------------------------------------------------------------------------------------------
# faults: the target goes down with a reason; the agent keeps answering


def wait_down(agent, port, name, reason_re, timeout=10):
    def down():
        _check_alive(agent)
        t = targets(port)[name]
        return not t["healthy"] and re.search(reason_re, t.get("last_error") or "") and t
    return wait_for(down, timeout=timeout, what=f"{name} down with a reason matching {reason_re!r}")


def wait_up(agent, port, name, timeout=10):
    wait_for(lambda: _check_alive(agent) and targets(port)[name]["healthy"], timeout=timeout,
             what=f"{name} healthy again")


def assert_unavailable_but_alive(agent, port, model):
    r = post_json(port, "/v1/chat/completions", chat_body(model=model, max_tokens=4), timeout=10)
    assert r.status == 503, r
    assert r.json()["error"]["message"], r
    assert http_get(port, "/readyz").status == 503
    assert http_get(port, "/healthz").status == 200
    assert _check_alive(agent)


def assert_serving(agent, port, kind):
    r = post_json(port, "/v1/chat/completions", chat_body(model=ROUTE_MODEL[kind], max_tokens=4))
    assert r.status == 200 and r.headers["x-infermesh-target"] == f"{kind}-replay", r
    assert http_get(port, "/readyz").status == 200
    assert _check_alive(agent)


HEALTH_PATH = {"ollama": "/", "triton": "/v2/health/ready"}


@pytest.mark.timeout(40)
@pytest.mark.parametrize("kind", KINDS)
def test_health_flapping_marks_the_target_down_and_up_again(procs, tmp_path, kind):
    rp = start_replay(procs, kind)
    agent, port = start_agent(procs, tmp_path, [rp])
    name = f"{kind}-replay"
    wait_up(agent, port, name, timeout=15)
    assert_serving(agent, port, kind)
    health = HEALTH_PATH.get(kind, "/health")
    for _ in range(2):  # flap twice: the way back must work more than once
        rp.control(health=503)
        reason = re.escape(f"{health} answered 503") + (r" \(loading the model\)" if kind == "llamacpp" else "")
        # one 100 ms scrape round is enough; 3 s leaves ample slack under ASan
        wait_down(agent, port, name, reason, timeout=3)
        assert_unavailable_but_alive(agent, port, ROUTE_MODEL[kind])
        rp.control(health=200)
        wait_up(agent, port, name)
        assert_serving(agent, port, kind)
    assert targets(port)[name]["last_error"] in (None, ""), targets(port)[name]


@pytest.mark.timeout(40)
@pytest.mark.parametrize("kind,reason", [
    ("vllm", r"^GET /metrics failed: .*timed out"),       # required for vLLM: the timeout is the reason
    ("ollama", r"^GET /api/ps failed: .*timed out"),
    ("triton", r"^no queue signal: GET /metrics at .* failed: .*timed out"),  # optional for Triton: no load
])
def test_scrape_slower_than_the_timeout_marks_the_target_down(procs, tmp_path, kind, reason):
    rp = start_replay(procs, kind)
    agent, port = start_agent(procs, tmp_path, [rp])
    name = f"{kind}-replay"
    wait_up(agent, port, name, timeout=15)
    rp.control(metrics_delay_s=3)  # the agent's scrape timeout is 2 s
    wait_down(agent, port, name, reason, timeout=8)
    assert_unavailable_but_alive(agent, port, ROUTE_MODEL[kind])
    rp.control(metrics_delay_s=0)
    wait_up(agent, port, name, timeout=10)  # a scrape still in flight on the old delay may take up to 2 s more
    assert_serving(agent, port, kind)


@pytest.mark.timeout(40)
def test_one_slow_scrape_keeps_the_target_up(procs, tmp_path):
    """A busy runtime answering one /metrics too slowly stays in routing (its load report just ages); only
    failed rounds in a row take it out."""
    rp = start_replay(procs, "vllm")
    agent, port = start_agent(procs, tmp_path, [rp])
    wait_up(agent, port, "vllm-replay", timeout=15)
    n0 = rp.hits("/metrics")
    rp.control(metrics_delay_s=3)  # the next /metrics is slower than the agent's 2 s scrape timeout ...
    wait_for(lambda: rp.hits("/metrics") > n0, timeout=5, interval=0.01, what="the slow scrape to start")
    rp.control(metrics_delay_s=0)  # ... and only that one
    n1 = rp.hits("/metrics")
    wait_for(lambda: rp.hits("/metrics") >= n1 + 3, timeout=10, what="fast scrapes again")
    log = agent.stderr()
    assert "scrape failed; the target stays up" in log and "timed out" in log, log
    assert 'msg="target down"' not in log, log
    assert_serving(agent, port, "vllm")


@pytest.mark.timeout(40)
@pytest.mark.parametrize("kind,reason", [
    ("vllm", r"^/metrics: malformed response$"),
    ("sglang", r"^/metrics: malformed response$"),
    ("tgi", r"^/metrics: malformed response$"),
    ("ollama", r"^/api/ps: malformed response$"),
    # /metrics and /slots are optional for these two: without them there is no load to score
    ("triton", r"^no queue signal \(waiting/running\) in /metrics: is the runtime kind right\?$"),
    ("llamacpp", r"^no queue signal \(waiting/running\) in /metrics: is the runtime kind right\?$"),
])
def test_garbage_body_marks_the_target_down(procs, tmp_path, kind, reason):
    rp = start_replay(procs, kind)
    agent, port = start_agent(procs, tmp_path, [rp])
    name = f"{kind}-replay"
    data_path = "/api/ps" if kind == "ollama" else "/metrics"
    wait_up(agent, port, name, timeout=15)
    rp.control(garbage=True)
    wait_down(agent, port, name, reason, timeout=5)
    assert_unavailable_but_alive(agent, port, ROUTE_MODEL[kind])
    # it stays down while the garbage goes on: no flapping back to healthy on a later round
    n = rp.hits(data_path)
    wait_for(lambda: rp.hits(data_path) >= n + 3, timeout=5, what="three more scrape rounds")
    t = targets(port)[name]
    assert not t["healthy"] and re.search(reason, t["last_error"]), t
    assert_unavailable_but_alive(agent, port, ROUTE_MODEL[kind])
    rp.control(garbage=False)
    wait_up(agent, port, name)
    assert_serving(agent, port, kind)


# ---------------------------------------------------------------------------------------------------------------
# model / LoRA control through the agent, down to each runtime's own endpoint

CONTROL_CASES = {  # kind: (name, extra CLI args, load (path, body), unload (path, body))
    "vllm": ("sql-lora", ["--lora-path", "/adapters/sql"],
             ("/v1/load_lora_adapter", {"lora_name": "sql-lora", "lora_path": "/adapters/sql"}),
             ("/v1/unload_lora_adapter", {"lora_name": "sql-lora"})),
    "sglang": ("sql-lora", ["--lora-path", "/adapters/sql"],
               ("/load_lora_adapter", {"lora_name": "sql-lora", "lora_path": "/adapters/sql"}),
               ("/unload_lora_adapter", {"lora_name": "sql-lora"})),
    "llamacpp": ("gemma-2b", [], ("/models/load", {"model": "gemma-2b"}), ("/models/unload", {"model": "gemma-2b"})),
    "triton": ("resnet50", [], ("/v2/repository/models/resnet50/load", {}),
               ("/v2/repository/models/resnet50/unload", {})),
    "ollama": ("llama3:8b", [], ("/api/generate", {"model": "llama3:8b"}),
               ("/api/generate", {"model": "llama3:8b", "keep_alive": 0})),
}


@pytest.mark.timeout(60)
def test_model_control_reaches_each_runtimes_own_endpoint(procs, tmp_path, replays):
    token = "adapters-admin-token"
    _, port = start_agent(procs, tmp_path, list(replays.values()), name="agent-ctl", extra=("--admin-token", token))
    wait_for(lambda: all(t["healthy"] for t in targets(port).values()), timeout=15, what="every replay healthy")

    def model(op, name, kind, *extra):
        return subprocess.run([BIN, "model", op, name, "--target", f"{kind}-replay", "--token", token,
                               "--agent", f"http://{HOST}:{port}", "--json", *extra],
                              capture_output=True, text=True, timeout=20)

    try:
        for kind, (name, extra, load, unload) in CONTROL_CASES.items():
            rp = replays[kind]
            rp.control(runtime_control=True)
            before = len(http_get(rp.port, "/_control", timeout=5).json()["controls"])
            r = model("load", name, kind, *extra)
            assert r.returncode == 0, (kind, r.stdout, r.stderr)
            assert json.loads(r.stdout)["runtime_status"] == 200, r.stdout
            r = model("unload", name, kind)
            assert r.returncode == 0, (kind, r.stdout, r.stderr)
            got = http_get(rp.port, "/_control", timeout=5).json()["controls"][before:]
            assert [(c["path"], c["body"]) for c in got] == [load, unload], (kind, got)
        r = model("load", "anything", "tgi")  # TGI has no such API: a clear refusal, nothing sent
        assert r.returncode != 0 and "tgi" in (r.stderr + r.stdout).lower(), (r.stdout, r.stderr)
    finally:
        for rp in replays.values():
            rp.control(runtime_control=False)


# ---------------------------------------------------------------------------------------------------------------
# Triton serves /metrics on its own port (8002 by default)


@pytest.mark.timeout(40)
def test_triton_metrics_from_their_own_address(procs, tmp_path):
    api = start_replay(procs, "triton", "--no-metrics")  # /metrics: 404, as on Triton's API port
    metrics = start_replay(procs, "triton")
    agent, port = start_agent(procs, tmp_path, [api], runtime_extra=f', metrics_url: "{metrics.url}/metrics"')
    wait_up(agent, port, "triton-replay")
    assert "densenet_onnx" in targets(port)["triton-replay"]["models"]
    assert_serving(agent, port, "triton")


@pytest.mark.timeout(40)
def test_triton_metrics_found_on_port_8002(procs, tmp_path):
    """Configured with its API URL only, a Triton target is read on port 8002 when its API port has no /metrics;
    with nothing there, it is down with a reason that says what to set."""
    if port_accepts(8002):
        pytest.skip("port 8002 is taken on this machine")
    api = start_replay(procs, "triton", "--no-metrics")
    agent, port = start_agent(procs, tmp_path, [api])
    wait_down(agent, port, "triton-replay", r"GET /metrics at 127\.0\.0\.1:8002 failed: .*\(Triton: set metrics_url\)")
    metrics = start_replay(procs, "triton", "--port", "8002")
    wait_up(agent, port, "triton-replay")
    assert_serving(agent, port, "triton")
    assert "reading them from its metrics port" in agent.stderr() and "metrics=127.0.0.1:8002" in agent.stderr()
    metrics.proc.kill_group()


def test_metrics_url_must_be_an_http_address(procs, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text('runtimes:\n  - {kind: triton, url: "http://127.0.0.1:8000", metrics_url: "8002"}\n')
    r = subprocess.run([BIN, "agent", "--config", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "metrics_url '8002' must be http://HOST:PORT" in r.stderr, r.stderr
