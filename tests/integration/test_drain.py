"""SIGTERM drains the agent: no new connections, in-flight requests finish, exit 0."""

import http.client
import json
import signal
import threading
import time

import pytest

from conftest import HOST, SSEStream, chat_body, port_accepts, post_json, wait_for


def running(engine):
    return engine.gauge("vllm:num_requests_running")


@pytest.mark.timeout(40)
def test_sigterm_finishes_inflight_request_then_exits_0(procs):
    engine = procs.engine(speed="1", name="engine")
    agent = procs.agent([engine])
    result = {}

    def long_request():
        try:
            result["r"] = post_json(agent.port, "/v1/chat/completions", chat_body("drain me", max_tokens=400),
                                    timeout=30)
        except Exception as e:
            result["r"] = e

    t = threading.Thread(target=long_request, daemon=True)
    t.start()
    wait_for(lambda: running(engine) == 1, timeout=5, interval=0.02, what="the long request to be running")
    t_term = time.monotonic()
    agent.proc.signal(signal.SIGTERM)
    # The listener closes at once: new connections are refused while the old request still runs.
    wait_for(lambda: not port_accepts(agent.port), timeout=2, interval=0.02,
             what="the agent to stop accepting connections")
    assert t.is_alive() and running(engine) == 1, "the in-flight request should still be running"
    t.join(30)
    r = result["r"]
    assert hasattr(r, "status"), f"the in-flight request failed: {r!r}"
    assert r.status == 200, r
    assert r.json()["usage"]["completion_tokens"] == 400
    assert r.headers.get("connection", "").lower() == "close", "a draining agent should close the connection"
    rc = agent.proc.wait(timeout=10)
    assert rc == 0, f"agent exit status {rc}"
    assert time.monotonic() - t_term > 1.0, "it exited before the request could have finished"
    assert not port_accepts(agent.port)
    assert "drained" in agent.proc.stderr()


@pytest.mark.timeout(40)
def test_sigterm_lets_a_stream_finish(procs):
    engine = procs.engine(speed="1", name="engine")
    agent = procs.agent([engine])
    s = SSEStream(agent.port, "/v1/chat/completions",
                  chat_body(max_tokens=200, stream=True, stream_options={"include_usage": True}))
    try:
        events = s.events()
        next(events)
        agent.proc.signal(signal.SIGTERM)
        rest = [d for _, d in events]
    finally:
        s.close()
    assert rest[-1] == "[DONE]"
    assert json.loads(rest[-2])["usage"]["completion_tokens"] == 200
    assert agent.proc.wait(timeout=10) == 0


@pytest.mark.timeout(30)
def test_idle_keepalive_connection_does_not_hold_up_the_exit(procs):
    engine = procs.engine(speed="0", name="engine")
    agent = procs.agent([engine])
    conn = http.client.HTTPConnection(HOST, agent.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(max_tokens=1)),
                     headers={"Content-Type": "application/json"})
        assert conn.getresponse().read()
        # The connection is now idle and kept alive; the agent must not wait for it (idle timeout is 60 s).
        t0 = time.monotonic()
        agent.proc.signal(signal.SIGTERM)
        rc = agent.proc.wait(timeout=5)
        assert rc == 0
        assert time.monotonic() - t0 < 3
    finally:
        conn.close()


@pytest.mark.timeout(30)
def test_drain_timeout_exits_nonzero(procs):
    """A request longer than --drain-timeout-ms does not keep the agent alive forever."""
    engine = procs.engine(speed="1", name="engine")
    agent = procs.agent([engine], "--drain-timeout-ms", "500")
    s = SSEStream(agent.port, "/v1/chat/completions", chat_body(max_tokens=3000, stream=True))
    try:
        next(s.events())
        t0 = time.monotonic()
        agent.proc.signal(signal.SIGTERM)
        rc = agent.proc.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        s.close()
    assert rc != 0, "exiting with a request cut short should not look like a clean exit"
    assert 0.4 < took < 5, took
    assert "drain timeout" in agent.proc.stderr()


@pytest.mark.timeout(30)
def test_second_signal_exits_at_once(procs):
    engine = procs.engine(speed="1", name="engine")
    agent = procs.agent([engine])
    s = SSEStream(agent.port, "/v1/chat/completions", chat_body(max_tokens=3000, stream=True))
    try:
        next(s.events())
        agent.proc.signal(signal.SIGTERM)
        wait_for(lambda: "draining" in agent.proc.stderr(), timeout=3, what="the agent to log draining")
        t0 = time.monotonic()
        agent.proc.signal(signal.SIGINT)
        rc = agent.proc.wait(timeout=5)
        assert time.monotonic() - t0 < 2
        assert rc != 0
    finally:
        s.close()
