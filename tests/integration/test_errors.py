"""Errors the client sees, each in OpenAI's error format: 400, 404, 413, 431, 408, 503."""

import json
import socket
import time

import pytest

from conftest import (HOST, MODEL, RawReader, assert_openai_error, chat_body, http_get, http_request,
                      metric_value, post_json, raw_connect, raw_request_bytes, wait_for)

MAX_BODY = 4096
HEADER_TIMEOUT_MS = 800
BODY_TIMEOUT_MS = 800


@pytest.fixture(scope="module")
def strict(module_procs):
    """One instant engine behind an agent with small limits and short timeouts."""
    engine = module_procs.engine(speed="0", name="engine")
    agent = module_procs.agent([engine], "--max-body-bytes", str(MAX_BODY), "--max-header-bytes", "8192",
                               "--header-timeout-ms", str(HEADER_TIMEOUT_MS),
                               "--body-timeout-ms", str(BODY_TIMEOUT_MS), name="agent-strict")
    return engine, agent


def still_serves(agent):
    r = post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=1))
    assert r.status == 200, f"the agent no longer serves after the error: {r}"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("body", [b'{"model":', b"not json at all", b"", b'["a list"]',
                                  b'{"model": "m", "messages": [}'])
def test_malformed_json_is_400(strict, path, body):
    _, agent = strict
    r = http_request(agent.port, "POST", path, body=body, headers={"Content-Type": "application/json"})
    err = assert_openai_error(r, 400)
    assert err["type"] == "invalid_request_error"
    assert r.headers.get("x-request-id")


def test_duplicate_model_key_is_400(strict):
    engine, agent = strict
    raw = ('{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "model": "other-model"}' % MODEL)
    r = http_request(agent.port, "POST", "/v1/chat/completions", body=raw)
    err = assert_openai_error(r, 400)
    assert "model" in err["message"] and "duplicate" in err["message"].lower(), err
    # Also when both values are the same model: ambiguity is rejected, not guessed.
    raw2 = ('{"model": "%s", "model": "%s", "prompt": "x"}' % (MODEL, MODEL))
    r2 = http_request(agent.port, "POST", "/v1/completions", body=raw2)
    assert_openai_error(r2, 400)
    still_serves(agent)


def test_missing_fields_are_400(strict):
    _, agent = strict
    r = post_json(agent.port, "/v1/chat/completions", {"model": MODEL, "prompt": "wrong endpoint"})
    err = assert_openai_error(r, 400)
    assert "messages" in err["message"]
    r = post_json(agent.port, "/v1/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    err = assert_openai_error(r, 400)
    assert "prompt" in err["message"]
    r = post_json(agent.port, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
    assert_openai_error(r, 400)


def test_unknown_model_is_404(strict):
    _, agent = strict
    before = metric_value(agent.metrics(), "infermesh_requests_total", status="404") or 0
    r = post_json(agent.port, "/v1/chat/completions", chat_body(model="gpt-17-turbo"))
    err = assert_openai_error(r, 404, code="model_not_found")
    assert "gpt-17-turbo" in err["message"]
    r = post_json(agent.port, "/v1/completions", {"model": "gpt-17-turbo", "prompt": "x"})
    assert_openai_error(r, 404, code="model_not_found")
    assert metric_value(agent.metrics(), "infermesh_requests_total", status="404") == before + 2


def test_body_too_large_is_413(strict):
    _, agent = strict
    big = chat_body("x" * (MAX_BODY + 100))
    r = post_json(agent.port, "/v1/chat/completions", big)
    assert_openai_error(r, 413)
    # Just under the limit is fine.
    ok = chat_body("y" * 10, max_tokens=1)
    pad = MAX_BODY - len(json.dumps(ok)) - 40
    ok["messages"][0]["content"] = "y" * pad
    assert len(json.dumps(ok)) <= MAX_BODY
    r = post_json(agent.port, "/v1/chat/completions", ok)
    assert r.status == 200, r


def test_body_too_large_is_413_before_the_body_is_sent(strict):
    """A large Content-Length is refused from the head alone: the client need not upload it."""
    _, agent = strict
    s = raw_connect(agent.port)
    try:
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {50 * 1024 * 1024}\r\n\r\n").encode())
        r = RawReader(s).response()
        assert_openai_error(r, 413)
    finally:
        s.close()


def test_chunked_body_too_large_is_413(strict):
    _, agent = strict
    s = raw_connect(agent.port)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"a" * 1000
        try:
            for _ in range(8):
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent answered and closed already
        r = RawReader(s).response()
        assert_openai_error(r, 413)
    finally:
        s.close()
    still_serves(agent)


def test_headers_too_large_is_431(strict):
    _, agent = strict
    r = http_request(agent.port, "POST", "/v1/chat/completions", body=json.dumps(chat_body()),
                     headers={"X-Padding": "p" * 9000})
    assert_openai_error(r, 431)
    # Many small headers adding up count too.
    many = {f"X-H{i}": "v" * 100 for i in range(90)}
    r = http_request(agent.port, "GET", "/v1/models", headers=many)
    assert r.status == 431, r
    still_serves(agent)


def test_slow_headers_get_408(strict):
    _, agent = strict
    s = raw_connect(agent.port)
    try:
        t0 = time.monotonic()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # ...and nothing more
        r = RawReader(s).response()
        took = time.monotonic() - t0
        assert_openai_error(r, 408)
        assert r.headers.get("connection", "").lower() == "close"
        assert HEADER_TIMEOUT_MS / 1000 * 0.8 <= took < HEADER_TIMEOUT_MS / 1000 + 2.0, took
        assert RawReader(s).closed_by_peer(timeout=3)
    finally:
        s.close()


def test_slowloris_drip_gets_408(strict):
    """A client that keeps sending one header byte at a time does not keep the connection forever."""
    _, agent = strict
    s = raw_connect(agent.port)
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 200
    got = b""
    t0 = time.monotonic()
    try:
        s.settimeout(0.1)
        for byte in head:
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                got += s.recv(4096)
            except socket.timeout:
                pass
            if got or time.monotonic() - t0 > HEADER_TIMEOUT_MS / 1000 + 3:
                break
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        assert time.monotonic() - t0 < HEADER_TIMEOUT_MS / 1000 + 2.0
    finally:
        s.close()


def test_slow_body_gets_408(strict):
    _, agent = strict
    body = json.dumps(chat_body()).encode()
    s = raw_connect(agent.port)
    try:
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:10])
        r = RawReader(s).response()
        assert_openai_error(r, 408)
        assert "body" in r.json()["error"]["message"]
    finally:
        s.close()
    still_serves(agent)


def test_malformed_http_is_400_and_closes(strict):
    _, agent = strict
    s = raw_connect(agent.port)
    try:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        r = RawReader(s).response()
        assert r.status == 400, r
    finally:
        s.close()


@pytest.mark.timeout(30)
def test_no_healthy_engine_is_503_with_retry_after(procs):
    e1 = procs.engine(speed="0", name="engine1")
    e2 = procs.engine(speed="0", name="engine2")
    agent = procs.agent([e1, e2])
    assert post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=1)).status == 200
    e1.proc.kill_group()
    e2.proc.kill_group()
    wait_for(lambda: http_get(agent.port, "/readyz").status == 503, timeout=5, what="/readyz to turn 503")
    r = post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=1))
    err = assert_openai_error(r, 503)
    assert int(r.headers["retry-after"]) >= 1, r.headers
    assert err["message"]
    r = post_json(agent.port, "/v1/completions", {"model": MODEL, "prompt": "x"})
    assert r.status == 503 and int(r.headers["retry-after"]) >= 1, r
    # Engines come back (same ports): the agent notices and serves again without a restart.
    procs.infermesh("engine1-again", "sim-engine", "--port", str(e1.port), "--speed", "0")
    wait_for(lambda: http_get(agent.port, "/readyz").status == 200, timeout=10, what="/readyz 200 again")
    r = post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=1))
    assert r.status == 200, r


@pytest.mark.timeout(30)
def test_engine_never_up_is_503_not_404(procs):
    """An agent whose engines are not up yet (or down when it starts) cannot know the model: the client must be
    told to retry (503 + Retry-After), not that the model does not exist (404), which SDKs do not retry."""
    dead = f"http://{HOST}:{_closed_port()}"
    agent = procs.agent([dead], wait_healthy=False)
    wait_for(lambda: any(t["last_error"] for t in agent.targets()) or None, timeout=5,
             what="a failed scrape of the dead target")
    assert http_get(agent.port, "/readyz").status == 503
    r = post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=1))
    assert r.status == 503, f"expected 503 + Retry-After while no engine is up, got {r}"
    assert int(r.headers["retry-after"]) >= 1


@pytest.mark.timeout(30)
def test_agent_without_targets_answers_503(procs):
    """`infermesh agent` with no --target warns "every request will get 503"; they should."""
    agent = procs.agent([], wait_healthy=False)
    r = post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=1))
    assert r.status == 503, f"expected 503 + Retry-After from an agent without targets, got {r}"
    assert int(r.headers["retry-after"]) >= 1


def _closed_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_engine_4xx_is_passed_through_not_retried(strict):
    """A request the engine rejects is the client's problem: its 400 comes back as is, with no retry."""
    _, agent = strict
    retries0 = agent.counter("infermesh_retries_total")
    r = post_json(agent.port, "/v1/chat/completions", {"model": MODEL, "messages": [{"content": "no role"}]})
    err = assert_openai_error(r, 400)
    assert "role" in err["message"], err
    assert r.headers.get("x-infermesh-target"), "the error came from an engine; the header says which"
    r = post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=10_000_000, stream=True))
    err = assert_openai_error(r, 400)  # a stream request rejected up front gets JSON, not SSE
    assert "context length" in err["message"], err
    assert agent.counter("infermesh_retries_total") == retries0


def test_idle_keepalive_connection_is_closed_after_idle_timeout(procs):
    engine = procs.engine(speed="0")
    agent = procs.agent([engine], "--idle-timeout-ms", "400")
    s = raw_connect(agent.port)
    try:
        s.sendall(raw_request_bytes("GET", "/healthz", port=agent.port))
        rd = RawReader(s)
        assert rd.response().status == 200
        t0 = time.monotonic()
        assert rd.closed_by_peer(timeout=5), "the idle connection was never closed"
        took = time.monotonic() - t0
        assert 0.3 <= took < 3, took
    finally:
        s.close()
