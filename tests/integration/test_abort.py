"""A client that goes away aborts its upstream request: the engine stops generating for it."""

import json
import socket
import time

import pytest

from conftest import RawReader, SSEStream, chat_body, metric_value, raw_connect, raw_request_bytes, wait_for


@pytest.fixture
def slow(procs):
    engine = procs.engine(speed="1", name="engine-slow")
    agent = procs.agent([engine])
    return engine, agent


def running(engine):
    return engine.gauge("vllm:num_requests_running")


@pytest.mark.timeout(30)
def test_client_disconnect_mid_stream_aborts_upstream(slow):
    engine, agent = slow
    aborts0 = agent.counter("infermesh_client_aborts_total")
    s = SSEStream(agent.port, "/v1/chat/completions", chat_body("long story", max_tokens=2000, stream=True))
    events = s.events()
    for _ in range(5):
        _, d = next(events)
        assert json.loads(d)["object"] == "chat.completion.chunk"
    assert running(engine) == 1, "the engine should be generating for our stream"
    gen0 = engine.gauge("vllm:generation_tokens_total") or 0
    # Go away abruptly (RST rather than FIN, like a killed client).
    sock = s.raw_socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    t0 = time.monotonic()
    s.close()
    sock.close()
    wait_for(lambda: running(engine) == 0, timeout=2, interval=0.02,
             what="the engine to stop running the abandoned request")
    took = time.monotonic() - t0
    # 2000 tokens take ~12 s: stopping early means the engine really aborted it.
    wait_for(lambda: agent.counter("infermesh_client_aborts_total") == aborts0 + 1, timeout=3,
             what="infermesh_client_aborts_total to count the abort")
    assert agent.counter("infermesh_requests_in_flight") == 0
    gen1 = engine.gauge("vllm:generation_tokens_total") or 0
    time.sleep(0.3)  # nothing else should be generated from now on
    assert (engine.gauge("vllm:generation_tokens_total") or 0) == gen1
    assert gen1 - gen0 < 1000, f"the engine generated {gen1 - gen0} more tokens after the client left ({took:.2f}s)"
    # And the request is recorded as a client abort, not a success.
    assert metric_value(agent.metrics(), "infermesh_requests_total", status="200") is None


@pytest.mark.timeout(30)
def test_client_disconnect_while_waiting_for_nonstreaming_answer(slow):
    engine, agent = slow
    aborts0 = agent.counter("infermesh_client_aborts_total")
    s = raw_connect(agent.port)
    s.sendall(raw_request_bytes("POST", "/v1/chat/completions", chat_body(max_tokens=2000), port=agent.port))
    wait_for(lambda: running(engine) == 1, timeout=3, interval=0.02, what="the request to start on the engine")
    s.close()  # a plain FIN
    wait_for(lambda: running(engine) == 0, timeout=2, interval=0.02,
             what="the engine to stop running the abandoned request")
    wait_for(lambda: agent.counter("infermesh_client_aborts_total") == aborts0 + 1, timeout=3,
             what="infermesh_client_aborts_total to count the abort")


@pytest.mark.timeout(30)
def test_abort_does_not_disturb_other_requests(slow):
    engine, agent = slow
    keep = SSEStream(agent.port, "/v1/chat/completions",
                     chat_body("keeper", max_tokens=120, stream=True, stream_options={"include_usage": True}))
    leave = SSEStream(agent.port, "/v1/chat/completions", chat_body("leaver", max_tokens=2000, stream=True))
    try:
        ev_leave = leave.events()
        next(ev_leave)
        leave.close()
        events = [d for _, d in keep.events()]
    finally:
        keep.close()
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == 120
    wait_for(lambda: running(engine) == 0, timeout=3, what="the engine to be idle")
    # The agent keeps serving.
    s = raw_connect(agent.port)
    try:
        s.sendall(raw_request_bytes("POST", "/v1/chat/completions", chat_body(max_tokens=2), port=agent.port))
        assert RawReader(s).response().status == 200
    finally:
        s.close()
