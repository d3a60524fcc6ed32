"""Hedging of latency-class requests: a copy to the second-best target after a delay, the first to answer wins,
the other is cancelled at once; hedges stay under their cap."""

import json
import threading
import time

import pytest

from conftest import SSEStream, chat_body, metric_value, post_json, wait_for

LATENCY = {"x-infermesh-slo": "latency"}


def running(engine):
    return engine.gauge("vllm:num_requests_running") or 0


def hedged_race(procs, stream, headers, agent_extra=()):
    """A crawling engine and an instant one behind an agent that hedges after 600 ms. Send latency-class
    requests until one lands on the crawler first (its running gauge rises); return (engines, agent, result)
    where result is (status, headers, body text, seconds) of that request."""
    # speed 0.001: one engine step (~6 ms of model time) takes ~6 s, so the crawler never answers in the test.
    slow = procs.engine(speed="0.001", name="engine-crawl")
    fast = procs.engine(speed="0", name="engine-fast")
    agent = procs.agent([slow, fast], "--hedge-delay-ms", "600", "--hedge-max-fraction", "1", *agent_extra)
    for i in range(12):
        box = {}

        def send():
            t0 = time.monotonic()
            body = chat_body(f"hedge me {i}", max_tokens=4, stream=stream)
            if stream:
                s = SSEStream(agent.port, "/v1/chat/completions", body, headers=headers, timeout=20)
                try:
                    first = next(s.events())[1] if s.status == 200 else s.resp.read().decode()
                    box["first_s"] = time.monotonic() - t0
                    rest = [d for _, d in s.events()]
                    box["r"] = (s.status, s.headers, first + "\n" + "\n".join(rest), time.monotonic() - t0)
                finally:
                    s.close()
            else:
                r = post_json(agent.port, "/v1/chat/completions", body, headers=headers, timeout=20)
                box["r"] = (r.status, r.headers, r.text(), time.monotonic() - t0)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        deadline = time.monotonic() + 0.5
        on_slow = False
        while time.monotonic() < deadline and t.is_alive() and not on_slow:
            on_slow = running(slow) >= 1
            time.sleep(0.01)
        t.join(15)
        assert "r" in box, "the request did not finish"
        if on_slow:
            return slow, fast, agent, box
        assert box["r"][0] == 200 and "x-infermesh-hedged" not in box["r"][1], box["r"]
    raise AssertionError("no request went to the crawling engine first in 12 tries")


@pytest.mark.timeout(60)
def test_hedged_request_answered_by_second_target_loser_cancelled(procs):
    slow, fast, agent, box = hedged_race(procs, stream=False, headers=LATENCY)
    status, headers, text, took = box["r"]
    assert status == 200, text
    assert headers["x-infermesh-hedged"] == "true"
    assert headers["x-infermesh-target"] == f"127.0.0.1:{fast.port}"
    assert json.loads(text)["choices"][0]["message"]["content"]
    assert 0.55 <= took < 3, took  # the hedge delay, then the instant engine
    # The loser's connection was closed: the crawler aborted the request long before it could have finished.
    wait_for(lambda: running(slow) == 0, timeout=3, what="the crawling engine to drop the cancelled request")
    m = agent.metrics()
    assert metric_value(m, "infermesh_hedges_sent_total") == 1
    assert metric_value(m, "infermesh_hedges_won_total") == 1
    assert metric_value(m, "infermesh_hedges_cancelled_total") == 1
    assert metric_value(m, "infermesh_hedge_wasted_tokens_total") >= 3  # the loser's prompt
    assert metric_value(m, "infermesh_requests_in_flight") == 0
    wait_for(lambda: all(t["inflight"] == 0 for t in agent.targets()), timeout=3, what="reservations released")


@pytest.mark.timeout(60)
def test_hedged_stream_by_tenant_default_slo(procs):
    key = "sk-latency-tenant-01"
    slow, fast, agent, box = hedged_race(procs, stream=True, headers={"Authorization": f"Bearer {key}"},
                                         agent_extra=("--tenant", f"name=rt,key={key},slo=latency"))
    status, headers, text, took = box["r"]
    assert status == 200, text
    assert headers["x-infermesh-hedged"] == "true"
    assert headers["x-infermesh-target"] == f"127.0.0.1:{fast.port}"
    assert box["first_s"] >= 0.55
    assert text.rstrip().endswith("[DONE]")
    wait_for(lambda: running(slow) == 0, timeout=3, what="the crawling engine to drop the cancelled stream")
    m = agent.metrics()
    assert metric_value(m, "infermesh_hedges_won_total") == 1
    assert metric_value(m, "infermesh_hedges_cancelled_total") == 1


@pytest.mark.timeout(60)
def test_hedges_never_exceed_the_cap(procs):
    # Both engines take 300 ms before they start: every latency-class request outlives the 50 ms hedge delay.
    engines = [procs.engine("--added-latency-ms", "300", speed="1", name=f"engine{i}") for i in range(2)]
    agent = procs.agent(engines, "--hedge-delay-ms", "50", "--hedge-min-samples", "100000",
                        "--hedge-max-fraction", "0.2")
    n, results = 30, []
    lock = threading.Lock()

    def worker(ids):
        for i in ids:
            r = post_json(agent.port, "/v1/chat/completions", chat_body(f"cap {i}", max_tokens=2), headers=LATENCY)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, args=(range(k, n, 5),), daemon=True) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert len(results) == n and all(r.status == 200 for r in results), results[:3]
    m = agent.metrics()
    sent = metric_value(m, "infermesh_hedges_sent_total")
    assert 2 <= sent <= 1 + 0.2 * n, sent  # one credit to start with, then 0.2 per request
    assert sum(r.headers.get("x-infermesh-hedged") == "true" for r in results) == metric_value(
        m, "infermesh_hedges_won_total")
    # Every hedge race ended with exactly one copy cancelled.
    assert metric_value(m, "infermesh_hedges_cancelled_total") == sent
    # Throughput-class requests (the default) are never hedged.
    for i in range(5):
        assert post_json(agent.port, "/v1/chat/completions", chat_body(f"tp {i}", max_tokens=2)).status == 200
    assert metric_value(agent.metrics(), "infermesh_hedges_sent_total") == sent
    for e in engines:
        wait_for(lambda: (e.gauge("vllm:num_requests_running") or 0) == 0, timeout=3, what="engines idle")
    assert metric_value(agent.metrics(), "infermesh_requests_in_flight") == 0
