"""Upstream faults the proxy must bound and report truthfully (DESIGN §4.7): hung and frozen targets, the
first-byte deadline and 504, the upstream's own error detail (Retry-After, 5xx message), the per-target circuit
breaker, streams cut by a drain timeout, and streams that failed upstream logged as failed."""

import contextlib
import http.client
import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import (HOST, MODEL, SSEStream, assert_openai_error, chat_body, http_get, metric_value, post_json,
                      wait_for)


# ---------------------------------------------------------------------------------------------------------------
# a scripted runtime: just enough of vLLM for the scraper (/health, /v1/models), and POSTs answered as told


class Scripted:
    """An in-process fake vLLM whose chat answers a test sets: ("status", code, headers, body) or
    ("stream_error", message) (one chunk, then an error event, then a clean end of the stream)."""

    def __init__(self):
        self.answer = ("status", 200, {}, json.dumps({"id": "x", "object": "chat.completion", "choices": []}))
        self.posts = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def send(self, status, body, headers=None, ctype="application/json"):
                b = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(b)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(b)

            def do_GET(self):
                if self.path == "/health":
                    self.send(200, "")
                elif self.path == "/metrics":
                    self.send(200, "".join(f'vllm:{k}{{model_name="{MODEL}"}} 0\n'
                                           for k in ("num_requests_running", "num_requests_waiting")),
                              ctype="text/plain; version=0.0.4")
                elif self.path == "/v1/models":
                    self.send(200, json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}))
                else:
                    self.send(404, "{}")

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                outer.posts += 1
                a = outer.answer
                if a[0] == "status":
                    self.send(a[1], a[3], a[2])
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = {"id": "c", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
                for ev in (json.dumps(chunk), json.dumps({"error": {"message": a[1], "type": "internal_error"}})):
                    data = f"data: {ev}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer((HOST, 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{HOST}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    s = Scripted()
    try:
        yield s
    finally:
        s.close()


def chat(port, timeout=15, **kw):
    return post_json(port, "/v1/chat/completions", chat_body(max_tokens=4, **kw), timeout=timeout)


def stream_all(port, body, timeout=15):
    """A whole stream: (status, [data...]); raises when the chunked body is cut (http.client)."""
    s = SSEStream(port, "/v1/chat/completions", body, timeout=timeout)
    try:
        if s.status != 200:
            return s.status, [s.resp.read().decode()]
        return s.status, [d for _, d in s.events()]
    finally:
        s.close()


def fb_env(floor_ms, max_ms):
    """The first-byte deadline's floor and ceiling (environment, like the flags)."""
    return {"INFERMESH_FIRST_BYTE_TIMEOUT_MS": str(floor_ms), "INFERMESH_FIRST_BYTE_TIMEOUT_MAX_MS": str(max_ms)}


def failures(agent, kind):
    return metric_value(agent.metrics(), "infermesh_upstream_failures_total", kind=kind) or 0


def request_log(agent, rid):
    m = [line for line in agent.proc.stderr().splitlines() + agent.proc.stdout().splitlines()
         if "request" in line and f"id={rid} " in line]
    return m[-1] if m else ""


# ---------------------------------------------------------------------------------------------------------------
# hung and frozen targets


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stream", [False, True])
def test_hung_target_is_given_up_at_the_first_byte_deadline(procs, stream):
    """An engine that accepts and never answers costs a request at most the first-byte deadline: the request
    is retried on the good engine (before: it waited for the 300 s upstream timeout). Nothing is known of the
    engines yet, so the deadline is the ceiling; a non-streaming request (whose length cannot be estimated)
    is given up there because the hung engine generates no tokens."""
    hung = procs.engine("--hang-rate", "1", name="hung")
    good = procs.engine(name="good")
    agent = procs.agent([hung, good], env=fb_env(300, 1500))
    worst = 0.0
    for i in range(6):
        t0 = time.monotonic()
        if stream:
            status, events = stream_all(agent.port, chat_body(f"hung {i}", max_tokens=4, stream=True), timeout=10)
            assert status == 200 and events[-1] == "[DONE]", events
        else:
            r = chat(agent.port, content=f"hung {i}", timeout=10)
            assert r.status == 200, r
            assert r.headers["x-infermesh-target"] != "hung"
        worst = max(worst, time.monotonic() - t0)
    assert failures(agent, "first_byte_deadline") >= 1, "no request went to the hung engine: nothing was tested"
    assert worst < 5, worst


@pytest.mark.timeout(60)
def test_long_non_streaming_response_is_not_cut_while_the_engine_generates(procs):
    """A non-streaming response of unknown length outlasts the first-byte deadline many times over: it is no
    hang while its engine generates tokens, so it is not given up."""
    engine = procs.engine(speed="1", name="engine")
    agent = procs.agent([engine], env=fb_env(300, 1500))
    t0 = time.monotonic()
    r = post_json(agent.port, "/v1/chat/completions", chat_body("a long answer", max_tokens=700), timeout=30)
    took = time.monotonic() - t0
    assert r.status == 200, r
    assert took > 3, f"{took:.1f}s: too short to have outlasted the 1.5 s deadline (make the answer longer)"
    assert failures(agent, "first_byte_deadline") == 0


@pytest.mark.timeout(60)
def test_only_target_hung_answers_504_in_openai_format(procs):
    """When the last attempt ran out of time the client gets 504 (a timeout), not 502. (A stream: nothing is
    known of the engine, so the ceiling is its deadline.)"""
    hung = procs.engine("--hang-rate", "1", name="hung")
    agent = procs.agent([hung], env=fb_env(300, 1000))
    t0 = time.monotonic()
    r = chat(agent.port, timeout=10, stream=True)
    took = time.monotonic() - t0
    err = assert_openai_error(r, 504, code="upstream_timeout")
    assert "first-byte deadline" in err["message"], err
    assert took < 4, took
    assert re.search(r"status=504 outcome=timeout", request_log(agent, r.headers["x-request-id"]))


@pytest.mark.timeout(90)
def test_frozen_target_hands_its_waiting_requests_over_when_marked_down(procs):
    """SIGSTOP an engine: requests waiting on it move to the other engine as soon as the scraper marks it
    down (seconds), not when it thaws. The first-byte deadline is set far out so that only the move can
    free them."""
    frozen = procs.engine(name="frozen")
    good = procs.engine(name="good")
    agent = procs.agent([frozen, good], env=fb_env(60000, 60000))
    frozen.proc.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(lambda i=i: (chat(agent.port, content=f"frozen {i}", timeout=25),
                                           time.monotonic() - t0)) for i in range(8)]
            results = [f.result() for f in futs]
    finally:
        frozen.proc.signal(signal.SIGCONT)
    for r, _ in results:
        assert r.status == 200, r
    worst = max(t for _, t in results)
    moved = failures(agent, "target_down")
    assert moved >= 1, "no request waited on the frozen engine: nothing was tested"
    assert worst < 15, f"longest wait {worst:.1f}s (scraper marks a frozen engine down within ~5-9 s)"
    print(f"frozen engine: {moved:.0f} requests moved, longest client wait {worst:.2f}s")


# ---------------------------------------------------------------------------------------------------------------
# the upstream's own error detail


@pytest.mark.timeout(30)
def test_upstream_429_keeps_retry_after(procs, scripted):
    scripted.answer = ("status", 429, {"Retry-After": "7"},
                       json.dumps({"error": {"message": "slow down", "type": "rate_limit_error", "code": None}}))
    agent = procs.agent([scripted.url])
    r = chat(agent.port)
    assert r.status == 429, r
    assert r.headers.get("retry-after") == "7", r.headers
    assert r.json()["error"]["message"] == "slow down"


@pytest.mark.timeout(30)
def test_upstream_500_message_and_class_reach_the_client(procs, scripted):
    """The only target answers 500 with its reason: the client gets that status, message and type in OpenAI's
    format (before: a generic 502 "target X answered 500")."""
    scripted.answer = ("status", 503, {"Retry-After": "3"},
                       json.dumps({"error": {"message": "CUDA out of memory", "type": "engine_overloaded"}}))
    agent = procs.agent([scripted.url], env={"INFERMESH_BREAKER_FAILURES": "0"})
    r = chat(agent.port)
    err = assert_openai_error(r, 503)
    assert "CUDA out of memory" in err["message"], err
    assert err["type"] == "engine_overloaded", err
    assert r.headers.get("retry-after") == "3", r.headers
    # a body that is no JSON at all still gives its first line, in OpenAI's format
    scripted.answer = ("status", 500, {}, "Internal Server Error: worker died\nTraceback ...")
    r = chat(agent.port)
    err = assert_openai_error(r, 500)
    assert "worker died" in err["message"] and "Traceback" not in err["message"], err


@pytest.mark.timeout(30)
def test_relayed_stream_error_is_logged_as_failed(procs, scripted):
    """A stream whose upstream ended it with an error event (e.g. the serving node of a forwarded request lost
    its engine) is logged and counted as a failed stream, not as status=200."""
    scripted.answer = ("stream_error", "engine died mid-stream")
    agent = procs.agent([scripted.url])
    s = SSEStream(agent.port, "/v1/chat/completions", chat_body(stream=True))
    try:
        assert s.status == 200
        rid = s.headers["x-request-id"]
        events = [d for _, d in s.events()]
    finally:
        s.close()
    assert "engine died mid-stream" in events[-1], events
    line = wait_for(lambda: request_log(agent, rid), timeout=5, what="the request's log line")
    assert "outcome=stream_error" in line and "status=502" in line, line
    assert metric_value(agent.metrics(), "infermesh_requests_total", status="502") == 1
    assert not metric_value(agent.metrics(), "infermesh_requests_total", status="200")


# ---------------------------------------------------------------------------------------------------------------
# circuit breaker


@pytest.mark.timeout(90)
def test_breaker_takes_a_failing_target_out_and_lets_it_back(procs, scripted):
    """A target answering 500 to everything stops getting most requests once its breaker opens, and gets them
    again after it recovers (one probe after the backoff closes the breaker)."""
    good = procs.engine(name="good")
    scripted.answer = ("status", 500, {}, json.dumps({"error": {"message": "broken", "type": "internal_error"}}))
    agent = procs.agent([scripted.url, good],
                        env={"INFERMESH_BREAKER_FAILURES": "3", "INFERMESH_BREAKER_BACKOFF_MS": "800"})
    bad_name = next(t["name"] for t in agent.targets() if str(scripted.port) in t["url"])
    for i in range(40):
        r = chat(agent.port, content=f"breaker {i}")
        assert r.status == 200, r
    # 3 failures open it; each probe after a backoff (0.8 s, then doubled) costs one more: a handful at most
    assert scripted.posts <= 8, f"the failing target got {scripted.posts} of 40 requests"
    samples = agent.metrics()
    assert metric_value(samples, "infermesh_target_breaker_state", target=bad_name) in (1, 2)
    assert metric_value(samples, "infermesh_target_breaker_opens_total", target=bad_name) >= 1
    assert {t["name"]: t["breaker"] for t in agent.targets()}[bad_name] in ("open", "half_open")
    # it recovers: after the backoff a probe succeeds and it is back in rotation
    scripted.answer = ("status", 200, {}, json.dumps({"id": "x", "object": "chat.completion", "choices": []}))
    before = scripted.posts

    def back():
        chat(agent.port, content=f"recover {time.monotonic()}")
        return scripted.posts - before >= 3
    wait_for(back, timeout=30, interval=0.1, what="the recovered target to get requests again")
    assert metric_value(agent.metrics(), "infermesh_target_breaker_state", target=bad_name) == 0
    assert {t["name"]: t["breaker"] for t in agent.targets()}[bad_name] == "closed"


# ---------------------------------------------------------------------------------------------------------------
# drain timeout


@pytest.mark.timeout(30)
def test_drain_timeout_ends_open_streams_with_an_error_event(procs):
    """At --drain-timeout-ms a stream still open gets an SSE error event and a proper end of its chunked body
    (before: cut mid-body, which http.client reports as IncompleteRead)."""
    engine = procs.engine(speed="1", name="engine")
    agent = procs.agent([engine], "--drain-timeout-ms", "500")
    s = SSEStream(agent.port, "/v1/chat/completions", chat_body(max_tokens=3000, stream=True), timeout=10)
    try:
        it = s.events()
        next(it)
        agent.proc.signal(signal.SIGTERM)
        rest = [d for _, d in it]  # raises IncompleteRead when the chunked body is cut
    finally:
        s.close()
    assert rest, "the stream ended without a word"
    last = json.loads(rest[-1])
    assert "error" in last and "shutting down" in last["error"]["message"], rest[-3:]
    assert agent.proc.wait(timeout=10) != 0


# ---------------------------------------------------------------------------------------------------------------
# the same through a mesh: the serving node's engine dies mid-stream


@pytest.mark.timeout(90)
def test_stream_cut_on_the_serving_node_is_logged_failed_on_the_ingress(procs, tmp_path):
    """B serves a stream forwarded by the gateway C; B's engine is killed mid-stream. B ends the stream with an
    error event; C relays it and logs the request as a failed stream (before: status=200 on C)."""
    from test_mesh import init_cluster, remote_healthy, share_key, start_node, wait_members
    init_cluster(tmp_path / "b")
    share_key(tmp_path / "b", tmp_path / "c")
    eb = procs.engine(speed="1", name="engine-b")
    b = start_node(procs, tmp_path, "b", [eb], data_dir=tmp_path / "b")
    c = start_node(procs, tmp_path, "c", [], join=[b.gossip])
    wait_members([b, c], ["b", "c"])
    wait_for(lambda: remote_healthy(c, 1), timeout=15, what="c sees b's engine")
    s = SSEStream(c.port, "/v1/chat/completions", chat_body(max_tokens=3000, stream=True), timeout=20)
    try:
        assert s.status == 200
        rid = s.headers["x-request-id"]
        it = s.events()
        next(it)
        eb.proc.signal(signal.SIGKILL)
        rest = [d for _, d in it]
    finally:
        s.close()
    assert rest and "error" in json.loads(rest[-1]), rest[-3:]
    line = wait_for(lambda: request_log(c.agent, rid), timeout=5, what="c's log line")
    assert "status=502" in line and "outcome=stream_error" in line, line
    assert metric_value(c.agent.metrics(), "infermesh_requests_total", status="502") == 1
