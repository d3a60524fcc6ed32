"""Streaming (SSE) through the agent: frames relayed as they come, usage only when asked for."""

import json

import pytest

from conftest import HOST, MODEL, SSEStream, chat_body, metric_value, read_sse


@pytest.fixture(scope="module")
def slow_mesh(module_procs):
    """Two real-time engines (speed 1: ~6 ms a token) behind an agent."""
    engines = module_procs.engines(2, speed="1")
    agent = module_procs.agent(engines)
    return engines, agent


def parse_events(events):
    """Check the SSE framing; return (json chunks, arrival times of the json chunks)."""
    assert events, "no SSE event at all"
    datas = [d for _, d in events]
    assert datas[-1] == "[DONE]", f"the stream must end with [DONE], last event: {datas[-1]!r}"
    assert datas.count("[DONE]") == 1, datas
    chunks, times = [], []
    for t, d in events[:-1]:
        try:
            chunks.append(json.loads(d))
        except ValueError:
            raise AssertionError(f"a data: line is not JSON: {d!r}")
        times.append(t)
    return chunks, times


def content_of(chunks):
    out = ""
    for c in chunks:
        for ch in c.get("choices", []):
            out += (ch.get("delta") or {}).get("content") or ch.get("text") or ""
    return out


def test_stream_chat_frames_relayed_one_by_one(slow_mesh):
    engines, agent = slow_mesh
    n = 60
    s = SSEStream(agent.port, "/v1/chat/completions", chat_body("stream to me", max_tokens=n, stream=True))
    try:
        assert s.status == 200
        assert s.headers["content-type"].startswith("text/event-stream")
        assert s.headers["x-infermesh-target"] in {f"{HOST}:{e.port}" for e in engines}
        assert s.headers["x-request-id"]
        events = list(s.events())
    finally:
        s.close()
    chunks, times = parse_events(events)
    for c in chunks:
        assert c["object"] == "chat.completion.chunk", c
        assert c["model"] == MODEL
        assert "usage" not in c or c["usage"] is None, f"usage chunk without include_usage: {c}"
    with_content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(with_content) == n, f"expected one chunk per token ({n}), got {len(with_content)}"
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert len({c["id"] for c in chunks}) == 1
    # Relayed as generated, not buffered: the tokens arrive spread over the generation time, the first one
    # long before the last, and in many separate reads.
    spread = times[-1] - times[0]
    assert spread > 0.15, f"all {n} frames arrived within {spread:.3f}s: buffered?"
    first_half = sum(1 for t in times if t < times[0] + spread / 2)
    assert 10 < first_half < len(times) - 10, f"{first_half} of {len(times)} frames in the first half"


def test_stream_with_include_usage_gets_the_usage_chunk(slow_mesh):
    _, agent = slow_mesh
    status, headers, events = read_sse(agent.port, "/v1/chat/completions",
                                       chat_body("count tokens", max_tokens=9, stream=True,
                                                 stream_options={"include_usage": True}))
    assert status == 200
    chunks, _ = parse_events(events)
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == 1, chunks
    u = usage_chunks[0]
    assert u is chunks[-1], "the usage chunk comes last, right before [DONE]"
    assert u["choices"] == []
    assert u["usage"]["completion_tokens"] == 9
    assert u["usage"]["prompt_tokens"] > 0
    assert u["usage"]["total_tokens"] == u["usage"]["prompt_tokens"] + 9
    assert len(content_of(chunks)) > 0


@pytest.mark.parametrize("stream_options", [None, {"include_usage": False}, {}],
                         ids=["no-stream_options", "include_usage-false", "empty-stream_options"])
def test_stream_without_include_usage_has_no_usage_chunk(slow_mesh, stream_options):
    """The agent asks the engine for usage anyway (to meter tokens) and must strip it from the client's stream."""
    _, agent = slow_mesh
    before = metric_value(agent.metrics(), "infermesh_completion_tokens_total")
    extra = {} if stream_options is None else {"stream_options": stream_options}
    status, _, events = read_sse(agent.port, "/v1/chat/completions",
                                 chat_body("no usage please", max_tokens=6, stream=True, **extra))
    assert status == 200
    chunks, _ = parse_events(events)
    for c in chunks:
        assert c.get("usage") is None, f"the client did not ask for usage but got: {c}"
        assert c["choices"], f"a chunk with no choices (a stripped usage chunk leaking?): {c}"
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) == 6
    # ... yet the agent metered the tokens: it did get the usage from the engine.
    after = metric_value(agent.metrics(), "infermesh_completion_tokens_total")
    assert after - before == 6, (before, after)


def test_stream_completions(slow_mesh):
    _, agent = slow_mesh
    status, headers, events = read_sse(agent.port, "/v1/completions",
                                       {"model": MODEL, "prompt": "The mesh", "max_tokens": 8, "stream": True,
                                        "stream_options": {"include_usage": True}})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    chunks, _ = parse_events(events)
    text_chunks = [c for c in chunks if c["choices"]]
    assert len(text_chunks) >= 8
    for c in text_chunks:
        assert c["object"] == "text_completion"
    assert content_of(chunks).strip()
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_stream_error_before_first_byte_is_plain_json(slow_mesh):
    """A stream request for an unknown model gets a normal JSON error, not an SSE stream."""
    _, agent = slow_mesh
    s = SSEStream(agent.port, "/v1/chat/completions", chat_body(model="nope", stream=True))
    try:
        assert s.status == 404
        assert s.headers["content-type"].startswith("application/json")
        body = json.loads(s.resp.read())
        assert body["error"]["code"] == "model_not_found"
    finally:
        s.close()


def test_concurrent_streams_do_not_mix(slow_mesh):
    """Several streams at once on separate connections: each gets its own frames, complete."""
    import threading
    _, agent = slow_mesh
    results = {}

    def run(i):
        results[i] = read_sse(agent.port, "/v1/chat/completions",
                              chat_body(f"stream {i}", max_tokens=10 + i, stream=True,
                                        stream_options={"include_usage": True}))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 6
    for i, (status, _, events) in results.items():
        assert status == 200
        chunks, _ = parse_events(events)
        assert len({c["id"] for c in chunks}) == 1, f"stream {i} mixes ids"
        assert chunks[-1]["usage"]["completion_tokens"] == 10 + i
        assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == 10 + i


@pytest.mark.timeout(60)
def test_slow_reader_gets_the_whole_stream(procs):
    """A client that stops reading for a while: the agent holds back (no unbounded buffering, no upstream
    timeout while paused) and the stream completes once the client reads again."""
    import socket
    import time
    from conftest import RawReader, raw_connect, raw_request_bytes
    engine = procs.engine(speed="0", name="engine-instant")
    agent = procs.agent([engine], "--upstream-timeout-ms", "800")
    n = 20000  # ~4 MB of SSE, generated at once
    s = raw_connect(agent.port, timeout=30)
    try:
        s.sendall(raw_request_bytes("POST", "/v1/chat/completions",
                                    chat_body(max_tokens=n, stream=True, stream_options={"include_usage": True}),
                                    port=agent.port))
        time.sleep(2.0)  # longer than the upstream timeout
        r = RawReader(s).response()
    finally:
        s.close()
    assert r.status == 200
    frames = [ln[6:] for ln in r.text().split("\n") if ln.startswith("data: ")]
    assert frames[-1] == "[DONE]", frames[-3:]
    usage = json.loads(frames[-2])
    assert "error" not in usage, usage
    assert usage["usage"]["completion_tokens"] == n
    assert len(frames) == n + 3  # n tokens + the finish chunk + usage + [DONE]


@pytest.mark.parametrize("stream", [True, False])
def test_stream_options_null_is_accepted(slow_mesh, stream):
    """OpenAI documents stream_options as "object or null"; clients that send null must not get a 400."""
    _, agent = slow_mesh
    body = chat_body(max_tokens=3, stream=stream, stream_options=None)
    if stream:
        status, _, events = read_sse(agent.port, "/v1/chat/completions", body)
        assert status == 200, events
        chunks, _ = parse_events(events)
        assert all(c.get("usage") is None for c in chunks)
    else:
        from conftest import post_json
        r = post_json(agent.port, "/v1/chat/completions", body)
        assert r.status == 200, r
        assert r.json()["usage"]["completion_tokens"] == 3
