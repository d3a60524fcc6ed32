"""Engines that die, fail or hang while requests are in flight: clients still get their answers."""

import json
import signal
import threading
import time

import pytest

from conftest import HOST, MODEL, SSEStream, chat_body, metric_value, post_json, wait_for

N_REQUESTS = 20
MAX_TOKENS = 150  # ~1 s of generation at speed 1


def fire_concurrently(port, n, body_fn, timeout=30):
    """n non-streaming requests at once on separate connections; returns the list of Resp (or exceptions)."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            results[i] = post_json(port, "/v1/chat/completions", body_fn(i), timeout=timeout)
        except Exception as e:  # reported by the assertions below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def join_all(threads, timeout):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "some requests never finished"


def assert_all_ok(results, max_tokens):
    bad = [(i, r) for i, r in enumerate(results) if not (hasattr(r, "status") and r.status == 200)]
    assert not bad, f"{len(bad)} of {len(results)} requests failed: {bad[:3]}"
    for r in results:
        body = r.json()
        assert body["object"] == "chat.completion"
        assert body["usage"]["completion_tokens"] == max_tokens, body["usage"]
        assert body["choices"][0]["message"]["content"]


def running_on(engine):
    try:
        return engine.gauge("vllm:num_requests_running") or 0
    except OSError:
        return 0


@pytest.mark.timeout(60)
def test_engine_sigkilled_with_requests_in_flight(procs):
    engines = procs.engines(3, speed="1")
    agent = procs.agent(engines)
    victim = engines[1]
    threads, results = fire_concurrently(
        agent.port, N_REQUESTS, lambda i: chat_body(f"failover {i}", max_tokens=MAX_TOKENS))
    # Kill the victim only once it is generating for several of our requests.
    wait_for(lambda: running_on(victim) >= 3, timeout=10, interval=0.01, what="requests running on the victim")
    victim.proc.popen.send_signal(signal.SIGKILL)
    join_all(threads, 40)
    assert_all_ok(results, MAX_TOKENS)
    m = agent.metrics()
    assert metric_value(m, "infermesh_retries_total") >= 3, "the victim's requests were not retried"
    assert metric_value(m, "infermesh_upstream_errors_total") >= 3
    victim_name = f"{HOST}:{victim.port}"
    assert all(r.headers["x-infermesh-target"] != victim_name for r in results), \
        "a response claims to come from the killed engine"
    assert metric_value(m, "infermesh_requests_total", status="200") == N_REQUESTS
    assert metric_value(m, "infermesh_requests_in_flight") == 0
    # The dead target is reported down.
    wait_for(lambda: not [t for t in agent.targets() if t["url"] == victim.url][0]["healthy"], timeout=5,
             what="the killed engine to be shown unhealthy")


@pytest.mark.timeout(60)
def test_engine_crash_after_n_requests(procs):
    """--crash-after: the engine exits abruptly when request N+1 arrives, losing N in flight."""
    good = procs.engines(2, speed="1")
    crasher = procs.engine("--crash-after", "4", speed="1", name="engine-crasher")
    agent = procs.agent(good + [crasher])
    results = []
    for wave in range(3):  # the router spreads a wave by load: the crasher may need a second one to get its 5th
        threads, got = fire_concurrently(
            agent.port, N_REQUESTS, lambda i: chat_body(f"crash {wave} {i}", max_tokens=MAX_TOKENS))
        join_all(threads, 40)
        results += got
        if not crasher.proc.alive():
            break
    assert not crasher.proc.alive(), "the crashing engine should have crashed (did it get > 4 requests?)"
    assert_all_ok(results, MAX_TOKENS)
    m = agent.metrics()
    assert metric_value(m, "infermesh_retries_total") >= 1
    assert all(r.headers["x-infermesh-target"] != f"{HOST}:{crasher.port}" for r in results)
    assert metric_value(m, "infermesh_requests_in_flight") == 0


@pytest.mark.timeout(40)
def test_engine_answering_500_is_retried_elsewhere(procs):
    bad = procs.engine("--error-rate", "1.0", speed="0", name="engine-500")
    good = procs.engine(speed="0", name="engine-good")
    agent = procs.agent([bad, good])
    for i in range(10):
        r = post_json(agent.port, "/v1/chat/completions", chat_body(f"r{i}", max_tokens=2))
        assert r.status == 200, r
        assert r.headers["x-infermesh-target"] == f"{HOST}:{good.port}"
    m = agent.metrics()
    assert metric_value(m, "infermesh_retries_total") >= 1
    assert metric_value(m, "infermesh_upstream_errors_total") >= 1


@pytest.mark.timeout(40)
def test_all_engines_answering_500_gives_an_error_not_a_hang(procs):
    engines = [procs.engine("--error-rate", "1.0", speed="0", name=f"engine-500-{i}") for i in range(2)]
    agent = procs.agent(engines)
    t0 = time.monotonic()
    r = post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=2), timeout=10)
    assert time.monotonic() - t0 < 5
    assert r.status >= 500, r
    body = r.json()
    assert "error" in body and body["error"]["message"], body


@pytest.mark.timeout(40)
def test_hung_engine_times_out_and_is_retried(procs):
    hung = procs.engine("--hang-rate", "1.0", speed="0", name="engine-hung")
    good = procs.engine(speed="0", name="engine-good")
    agent = procs.agent([hung, good], "--upstream-timeout-ms", "700")
    # Reach the hung engine at least once: ask until one request took the detour.
    for i in range(12):
        t0 = time.monotonic()
        r = post_json(agent.port, "/v1/chat/completions", chat_body(f"h{i}", max_tokens=2), timeout=10)
        took = time.monotonic() - t0
        assert r.status == 200, r
        assert r.headers["x-infermesh-target"] == f"{HOST}:{good.port}"
        assert took < 5, took
        if metric_value(agent.metrics(), "infermesh_retries_total"):
            break
    assert metric_value(agent.metrics(), "infermesh_retries_total") >= 1, "the hung engine was never tried"


@pytest.mark.timeout(40)
def test_engine_killed_mid_stream_ends_stream_with_error_event(procs):
    """After the first byte there is no retry: the stream ends with an in-band error instead of hanging."""
    engine = procs.engine(speed="1", name="engine")
    agent = procs.agent([engine])
    s = SSEStream(agent.port, "/v1/chat/completions", chat_body(max_tokens=2000, stream=True), timeout=15)
    try:
        assert s.status == 200
        events = s.events()
        got = [next(events)[1] for _ in range(5)]
        assert all(json.loads(d)["object"] == "chat.completion.chunk" for d in got)
        engine.proc.popen.send_signal(signal.SIGKILL)
        rest = [d for _, d in events]  # ends: the agent closes the stream
    finally:
        s.close()
    assert rest, "nothing after the engine died"
    assert "[DONE]" not in rest, "a stream cut short must not look complete"
    last = json.loads(rest[-1])
    assert "error" in last and last["error"]["message"], last
    assert metric_value(agent.metrics(), "infermesh_requests_in_flight") == 0


@pytest.mark.timeout(40)
def test_stream_retried_before_first_byte(procs):
    bad = procs.engine("--error-rate", "1.0", speed="0", name="engine-500")
    good = procs.engine(speed="0", name="engine-good")
    agent = procs.agent([bad, good])
    from conftest import read_sse
    for i in range(8):
        status, headers, events = read_sse(agent.port, "/v1/chat/completions",
                                           chat_body(f"s{i}", max_tokens=4, stream=True))
        assert status == 200, events
        assert headers["x-infermesh-target"] == f"{HOST}:{good.port}"
        assert events[-1][1] == "[DONE]"
        assert all("error" not in json.loads(d) for _, d in events[:-1])
    assert metric_value(agent.metrics(), "infermesh_retries_total") >= 1


@pytest.mark.timeout(40)
def test_reservations_released_after_failures(procs):
    """After retries, aborts and errors, the router's per-target in-flight accounting is back to zero."""
    engines = procs.engines(2, speed="1")
    agent = procs.agent(engines)
    threads, results = fire_concurrently(agent.port, 10, lambda i: chat_body(f"x{i}", max_tokens=100))
    wait_for(lambda: running_on(engines[0]) >= 2, timeout=10, interval=0.01, what="requests on engine 0")
    engines[0].proc.popen.send_signal(signal.SIGKILL)
    join_all(threads, 30)
    assert_all_ok(results, 100)
    wait_for(lambda: all(t["inflight"] == 0 for t in agent.targets()), timeout=3,
             what="per-target in-flight counts to return to 0")
    assert metric_value(agent.metrics(), "infermesh_requests_in_flight") == 0
