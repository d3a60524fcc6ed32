"""The OpenAI API through the agent: non-streaming chat and completions, /v1/models, HTTP/1.1 framing
(keep-alive, pipelining, chunked bodies, 100-continue)."""

import http.client
import json
import time

import pytest

from conftest import (HOST, MODEL, RawReader, chat_body, http_get, http_request, metric_value, parse_prometheus,
                      post_json, raw_connect, raw_request_bytes, wait_for)


def engine_names(engines):
    return {f"{HOST}:{e.port}" for e in engines}


def test_chat_completion_nonstreaming(mesh3):
    engines, agent = mesh3
    before = metric_value(agent.metrics(), "infermesh_requests_total", status="200") or 0
    r = post_json(agent.port, "/v1/chat/completions",
                  chat_body("Tell me about the mesh, briefly. " * 4, max_tokens=7))
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["id"] and isinstance(body["id"], str)
    assert isinstance(body["created"], int) and body["created"] > 1_600_000_000
    assert body["model"] == MODEL
    assert len(body["choices"]) == 1
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"].strip()
    assert choice["finish_reason"] == "length"
    u = body["usage"]
    assert u["completion_tokens"] == 7
    assert u["prompt_tokens"] > 20  # ~130 bytes of prompt at 4 bytes a token
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    # Where it went, and under which id.
    assert r.headers["x-infermesh-target"] in engine_names(engines)
    assert r.headers["x-request-id"]
    assert r.headers["x-infermesh-node"]
    after = metric_value(agent.metrics(), "infermesh_requests_total", status="200")
    assert after == before + 1


def test_text_completion_nonstreaming(mesh3):
    engines, agent = mesh3
    r = post_json(agent.port, "/v1/completions", {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 5})
    assert r.status == 200, r
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["model"] == MODEL
    assert len(body["choices"]) == 1 and body["choices"][0]["text"].strip()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["prompt_tokens"] >= 1
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5
    assert r.headers["x-infermesh-target"] in engine_names(engines)


def test_client_request_id_is_kept(mesh3):
    _, agent = mesh3
    r = post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=2),
                  headers={"x-request-id": "my-trace-1234"})
    assert r.status == 200, r
    assert r.headers["x-request-id"] == "my-trace-1234"
    # Without one the agent makes up a fresh id per request.
    ids = {post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=1)).headers["x-request-id"]
           for _ in range(3)}
    assert len(ids) == 3


def test_requests_spread_over_targets(mesh3):
    engines, agent = mesh3
    seen = set()
    for i in range(30):
        r = post_json(agent.port, "/v1/chat/completions", chat_body(f"request {i}", max_tokens=1))
        assert r.status == 200, r
        seen.add(r.headers["x-infermesh-target"])
    assert seen <= engine_names(engines)
    assert len(seen) >= 2, f"30 requests all went to {seen}"


def test_models_lists_the_union(procs):
    a1 = procs.engine(model="model-a", name="engine-a1")
    a2 = procs.engine(model="model-a", name="engine-a2")
    b = procs.engine(model="model-b", name="engine-b")
    agent = procs.agent([a1, a2, b])
    r = http_get(agent.port, "/v1/models")
    assert r.status == 200, r
    body = r.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert sorted(ids) == ["model-a", "model-b"], ids  # each once
    for m in body["data"]:
        assert m["object"] == "model"
    # Each model is served only by the engines that have it.
    for _ in range(6):
        rb = post_json(agent.port, "/v1/chat/completions", chat_body(model="model-b", max_tokens=1))
        assert rb.status == 200, rb
        assert rb.headers["x-infermesh-target"] == f"{HOST}:{b.port}"
        assert rb.json()["model"] == "model-b"
        ra = post_json(agent.port, "/v1/chat/completions", chat_body(model="model-a", max_tokens=1))
        assert ra.status == 200, ra
        assert ra.headers["x-infermesh-target"] in {f"{HOST}:{a1.port}", f"{HOST}:{a2.port}"}


def test_models_of_a_dead_engine_stay_listed(procs):
    a = procs.engine(model="model-a", name="engine-a")
    b = procs.engine(model="model-b", name="engine-b")
    agent = procs.agent([a, b])
    b.proc.kill_group()
    # The agent notices on its next scrape; model-b still exists (its requests get 503, not 404).
    wait_for(lambda: not [t for t in agent.targets() if t["url"] == b.url][0]["healthy"], timeout=5,
                      what="the dead engine to be marked unhealthy")
    ids = sorted(m["id"] for m in http_get(agent.port, "/v1/models").json()["data"])
    assert ids == ["model-a", "model-b"]
    r = post_json(agent.port, "/v1/chat/completions", chat_body(model="model-b", max_tokens=1))
    assert r.status == 503, r
    assert int(r.headers["retry-after"]) >= 1


def test_keepalive_connection_is_reused(mesh3):
    _, agent = mesh3
    conn = http.client.HTTPConnection(HOST, agent.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(max_tokens=2)),
                     headers={"Content-Type": "application/json"})
        r1 = conn.getresponse()
        b1 = json.loads(r1.read())
        sock = conn.sock
        assert sock is not None, "the agent closed a keep-alive connection after one request"
        local = sock.getsockname()
        for i in range(4):
            path = "/v1/completions" if i % 2 else "/v1/chat/completions"
            body = {"model": MODEL, "prompt": "p", "max_tokens": 2} if i % 2 else chat_body(max_tokens=2)
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = json.loads(r.read())
            assert r.status == 200, data
            assert conn.sock is sock and sock.getsockname() == local, "a new connection was opened"
        conn.request("GET", "/v1/models")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["data"]
        assert conn.sock is sock
        assert b1["object"] == "chat.completion"
    finally:
        conn.close()


def test_pipelined_requests_answered_in_order(mesh3):
    _, agent = mesh3
    first = raw_request_bytes("POST", "/v1/chat/completions", chat_body("first", max_tokens=3), port=agent.port)
    second = raw_request_bytes("POST", "/v1/completions", {"model": MODEL, "prompt": "second", "max_tokens": 4},
                               port=agent.port)
    third = raw_request_bytes("GET", "/v1/models", port=agent.port)
    s = raw_connect(agent.port)
    try:
        s.sendall(first + second + third)  # one write: the agent sees all three at once
        rd = RawReader(s)
        r1, r2, r3 = rd.response(), rd.response(), rd.response()
        assert (r1.status, r2.status, r3.status) == (200, 200, 200), (r1, r2, r3)
        b1, b2, b3 = r1.json(), r2.json(), r3.json()
        assert b1["object"] == "chat.completion" and b1["usage"]["completion_tokens"] == 3
        assert b2["object"] == "text_completion" and b2["usage"]["completion_tokens"] == 4
        assert b3["object"] == "list"
        assert r1.headers["x-request-id"] != r2.headers["x-request-id"]
        # The connection is still usable afterwards.
        s.sendall(raw_request_bytes("GET", "/healthz", port=agent.port))
        assert rd.response().status == 200
    finally:
        s.close()


def test_pipelined_requests_split_across_writes(mesh3):
    """The second request arrives (in pieces) while the first is being served."""
    _, agent = mesh3
    a = raw_request_bytes("POST", "/v1/chat/completions", chat_body("one", max_tokens=2), port=agent.port)
    b = raw_request_bytes("POST", "/v1/chat/completions", chat_body("two", max_tokens=5), port=agent.port)
    s = raw_connect(agent.port)
    try:
        s.sendall(a + b[:10])
        time.sleep(0.05)
        s.sendall(b[10:40])
        time.sleep(0.05)
        s.sendall(b[40:])
        rd = RawReader(s)
        r1, r2 = rd.response(), rd.response()
        assert r1.status == 200 and r1.json()["usage"]["completion_tokens"] == 2, r1
        assert r2.status == 200 and r2.json()["usage"]["completion_tokens"] == 5, r2
    finally:
        s.close()


def test_chunked_request_body(mesh3):
    _, agent = mesh3
    body = json.dumps(chat_body("a chunked request body " * 10, max_tokens=3)).encode()
    pieces = [body[:7], body[7:50], body[50:51], body[51:]]
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{agent.port}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    s = raw_connect(agent.port)
    try:
        s.sendall(head)
        for p in pieces:  # each chunk in its own write
            s.sendall(b"%x\r\n%s\r\n" % (len(p), p))
            time.sleep(0.02)
        s.sendall(b"0\r\n\r\n")
        r = RawReader(s).response()
        assert r.status == 200, r
        out = r.json()
        assert out["object"] == "chat.completion"
        assert out["usage"]["completion_tokens"] == 3
        assert out["usage"]["prompt_tokens"] > 50  # the whole body arrived, not just the first chunk
    finally:
        s.close()


def test_expect_100_continue(mesh3):
    _, agent = mesh3
    body = json.dumps(chat_body(max_tokens=2)).encode()
    s = raw_connect(agent.port)
    try:
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode())
        s.settimeout(5)
        interim = s.recv(100)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        s.sendall(body)
        r = RawReader(s).response()
        assert r.status == 200, r
    finally:
        s.close()


def test_wrong_method_and_unknown_path(mesh3):
    _, agent = mesh3
    r = http_get(agent.port, "/v1/chat/completions")
    assert r.status == 405, r
    assert "error" in r.json()
    r = http_request(agent.port, "POST", "/v1/models", body="{}")
    assert r.status == 405, r
    r = http_get(agent.port, "/v1/nonexistent")
    assert r.status == 404, r
    assert "error" in r.json()


def test_admin_endpoints(mesh3):
    engines, agent = mesh3
    assert http_get(agent.port, "/healthz").status == 200
    assert http_get(agent.port, "/readyz").status == 200
    st = http_get(agent.port, "/v1/cluster/status").json()
    assert st["targets"] == {"total": 3, "healthy": 3}
    assert [m["id"] for m in st["models"]] == [MODEL]
    tg = agent.targets()
    assert sorted(t["url"] for t in tg) == sorted(e.url for e in engines)
    m = parse_prometheus(http_get(agent.port, "/metrics").text())
    names = {n for n, _, _ in m}
    for want in ("infermesh_requests_in_flight", "infermesh_retries_total", "infermesh_upstream_errors_total",
                 "infermesh_client_aborts_total", "infermesh_request_duration_seconds_bucket",
                 "infermesh_time_to_first_token_seconds_bucket"):
        assert want in names, f"{want} missing from /metrics"
    assert metric_value(m, "infermesh_requests_in_flight") == 0
    for name in engine_names(engines):
        assert metric_value(m, "infermesh_target_healthy", target=name) == 1, name
        assert metric_value(m, "infermesh_target_running", target=name) == 0, name


def test_http10_client_gets_a_stream_ending_at_close(mesh3):
    _, agent = mesh3
    body = json.dumps(chat_body(max_tokens=3, stream=True)).encode()
    s = raw_connect(agent.port)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        r = RawReader(s).response()  # no Content-Length, no chunked: the body ends at close
        assert r.status == 200, r
        assert "transfer-encoding" not in r.headers, "HTTP/1.0 has no chunked encoding"
        text = r.text()
        assert text.rstrip().endswith("data: [DONE]"), text[-200:]
        assert text.count("chat.completion.chunk") >= 3
    finally:
        s.close()


def test_connection_close_is_honoured(mesh3):
    _, agent = mesh3
    s = raw_connect(agent.port)
    try:
        s.sendall(raw_request_bytes("POST", "/v1/chat/completions", chat_body(max_tokens=1), port=agent.port,
                                    headers={"Connection": "close"}))
        rd = RawReader(s)
        r = rd.response()
        assert r.status == 200, r
        assert r.headers.get("connection", "").lower() == "close"
        assert rd.closed_by_peer(timeout=3), "the agent kept the connection open after Connection: close"
    finally:
        s.close()


def test_many_concurrent_clients(mesh3):
    import threading
    engines, agent = mesh3
    n = 100
    results = [None] * n

    def one(i):
        try:
            results[i] = post_json(agent.port, "/v1/chat/completions", chat_body(f"c{i}", max_tokens=3), timeout=20)
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    bad = [r for r in results if not (hasattr(r, "status") and r.status == 200)]
    assert not bad, bad[:3]
    assert {r.headers["x-infermesh-target"] for r in results} <= engine_names(engines)
    assert len({r.headers["x-request-id"] for r in results}) == n
    wait_for(lambda: metric_value(agent.metrics(), "infermesh_requests_in_flight") == 0, timeout=3,
             what="in-flight back to 0")
    assert all(t["inflight"] == 0 for t in agent.targets())


def _chunked_request(body, parts):
    n = len(body) // parts + 1
    out = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    for i in range(0, len(body), n):
        out += b"%x\r\n%s\r\n" % (len(body[i:i + n]), body[i:i + n])
    return out + b"0\r\n\r\n"


_SECOND = chat_body("second", max_tokens=4)
_PIPELINES = {
    "chunked-then-plain": (_chunked_request(json.dumps(chat_body("chunky " * 50, max_tokens=3)).encode(), 3), 200),
    "stream-then-plain": (raw_request_bytes("POST", "/v1/chat/completions", chat_body(max_tokens=20, stream=True)), 200),
    "400-then-plain": (raw_request_bytes("POST", "/v1/chat/completions", b'{"model":'), 400),
    "404-then-plain": (raw_request_bytes("POST", "/v1/chat/completions", chat_body(model="zz")), 404),
    "large-bodies": (raw_request_bytes("POST", "/v1/chat/completions", chat_body("A" * 100000, max_tokens=3)), 200),
}


@pytest.mark.parametrize("name", list(_PIPELINES))
def test_pipelining_mixed_requests(mesh3, name):
    """Two requests on one connection, sent in 7 kB pieces: both answered, in order, whatever the first was."""
    _, agent = mesh3
    first, first_status = _PIPELINES[name]
    second = (_chunked_request(json.dumps(chat_body("C" * 40000, max_tokens=4)).encode(), 7)
              if name == "large-bodies" else raw_request_bytes("POST", "/v1/chat/completions", _SECOND))
    data = first + second
    s = raw_connect(agent.port, timeout=15)
    try:
        for i in range(0, len(data), 7000):
            s.sendall(data[i:i + 7000])
            time.sleep(0.005)
        rd = RawReader(s)
        r1, r2 = rd.response(), rd.response()
    finally:
        s.close()
    assert r1.status == first_status, r1
    assert r2.status == 200, r2
    u = r2.json()["usage"]
    assert u["completion_tokens"] == 4
    if name == "large-bodies":
        assert u["prompt_tokens"] > 9000  # the whole 40 kB chunked body arrived
        assert r1.json()["usage"]["prompt_tokens"] > 24000
    if name == "stream-then-plain":
        assert r1.text().rstrip().endswith("data: [DONE]")


@pytest.mark.timeout(40)
def test_targets_show_window_rates_and_latencies(procs):
    """/v1/cluster/targets carries what the runtime served recently: tokens/s and TTFT / inter-token latency
    percentiles from its histograms over a window (null before there is anything to measure)."""
    engine = procs.engine(speed="10")
    agent = procs.agent([engine], scrape_ms=100)
    t = agent.targets()[0]
    for k in ("gen_tps", "ttft_p50_ms", "ttft_p95_ms", "itl_p50_ms", "itl_p95_ms"):
        assert k in t, t
    assert t["ttft_p50_ms"] is None  # nothing served yet
    for i in range(8):
        r = post_json(agent.port, "/v1/chat/completions", chat_body(f"measure me {i}", max_tokens=16))
        assert r.status == 200, r
    t = wait_for(lambda: (lambda x: x if x["ttft_p50_ms"] is not None and (x["gen_tps"] or 0) > 0 else None)(
        agent.targets()[0]), timeout=10, what="window rates after traffic")
    assert 0 < t["ttft_p50_ms"] <= t["ttft_p95_ms"], t
    assert 0 < t["itl_p50_ms"] <= t["itl_p95_ms"], t
    assert t["prompt_tps"] > 0, t
