"""Admission and fairness in the live router: tenant keys, rate limits, the queue while every engine is saturated,
weighted fair queueing and priorities."""

import signal
import threading
import time

import pytest

from conftest import (assert_openai_error, chat_body, http_request, metric_value, post_json, wait_for)

KEY_A = "sk-team-a-0123456789"
KEY_B = "sk-team-b-9876543210"


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def chat(port, key=None, headers=None, timeout=30, **kw):
    h = dict(auth(key)) if key else {}
    h.update(headers or {})
    return post_json(port, "/v1/chat/completions", chat_body(**kw), headers=h, timeout=timeout)


def in_thread(fn, *args, **kw):
    box = {}

    def run():
        try:
            box["r"] = fn(*args, **kw)
        except Exception as e:  # reported by whoever reads the box
            box["r"] = e
        box["t"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def queue_depth(agent):
    return metric_value(agent.metrics(), "infermesh_admission_queue_depth")


@pytest.mark.timeout(40)
def test_keys_from_yaml_bad_or_missing_key_is_401(procs, tmp_path):
    engine = procs.engine(speed="0")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("tenants:\n"
                   f"  - {{name: team-a, key: \"{KEY_A}\", weight: 2, priority: normal}}\n"
                   f"  - {{name: team-b, key: \"{KEY_B}\"}}\n")
    agent = procs.agent([engine], "--config", str(cfg))
    for headers in ({}, auth("sk-not-a-tenant-key"), {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": KEY_A}):
        r = post_json(agent.port, "/v1/chat/completions", chat_body(), headers=headers)
        assert_openai_error(r, 401, code="invalid_api_key")
        assert r.headers.get("www-authenticate") == "Bearer"
    assert_openai_error(http_request(agent.port, "GET", "/v1/models"), 401, code="invalid_api_key")
    for key in (KEY_A, KEY_B):
        r = chat(agent.port, key)
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"]
        r = http_request(agent.port, "GET", "/v1/models", headers=auth(key))
        assert r.status == 200 and r.json()["data"], r
    m = agent.metrics()
    assert metric_value(m, "infermesh_admission_unauthorized_total") == 5
    assert metric_value(m, "infermesh_tenant_admitted_total", tenant="team-a") == 1
    assert metric_value(m, "infermesh_requests_total", status="401") == 5
    # The key is the mesh's, not the runtime's: only its hash is kept, and it is not in the agent's logs.
    assert KEY_A not in agent.proc.stderr() and KEY_A not in agent.proc.stdout()


@pytest.mark.timeout(40)
def test_tenant_over_its_request_rate_gets_429_with_retry_after(procs):
    engine = procs.engine(speed="0")
    # The environment form, ';'-separated.
    agent = procs.agent([engine], env={
        "INFERMESH_TENANTS": f"name=slow,key={KEY_A},requests_per_s=0.5;name=free,key={KEY_B}"})
    assert chat(agent.port, KEY_A).status == 200
    r = chat(agent.port, KEY_A)
    err = assert_openai_error(r, 429, code="rate_limit_exceeded")
    assert err["type"] == "requests"
    assert "slow" in err["message"] and "requests per second" in err["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 2
    # Another tenant is not limited by it.
    for _ in range(5):
        assert chat(agent.port, KEY_B).status == 200
    m = agent.metrics()
    assert metric_value(m, "infermesh_admission_shed_total", reason="requests") == 1
    assert metric_value(m, "infermesh_tenant_shed_total", tenant="slow", reason="requests") == 1
    assert metric_value(m, "infermesh_tenant_shed_total", tenant="free", reason="requests") == 0
    # After Retry-After the tenant gets through again.
    time.sleep(int(r.headers["retry-after"]))
    assert chat(agent.port, KEY_A).status == 200


@pytest.mark.timeout(40)
def test_tenant_tokens_per_minute_and_too_large(procs):
    engine = procs.engine(speed="0")
    agent = procs.agent([engine], "--tenant", f"name=t,key={KEY_A},tokens_per_min=600")
    assert chat(agent.port, KEY_A, max_tokens=400).status == 200  # ~5 prompt tokens + 400
    r = chat(agent.port, KEY_A, max_tokens=400)
    err = assert_openai_error(r, 429, code="rate_limit_exceeded")
    assert err["type"] == "tokens" and "tokens per minute" in err["message"]
    assert int(r.headers["retry-after"]) >= 20  # ~200 tokens missing at 10 tokens/s
    r = chat(agent.port, KEY_A, max_tokens=700)  # more than a whole minute's budget: never admissible
    err = assert_openai_error(r, 429, code="rate_limit_exceeded")
    assert "too large" in err["message"]
    m = agent.metrics()
    assert metric_value(m, "infermesh_admission_shed_total", reason="tokens") == 1
    assert metric_value(m, "infermesh_admission_shed_total", reason="too_large") == 1


@pytest.mark.timeout(40)
def test_tenant_max_concurrent(procs):
    engine = procs.engine(speed="1")
    agent = procs.agent([engine], "--tenant", f"name=t,key={KEY_A},max_concurrent=1")
    t, box = in_thread(chat, agent.port, KEY_A, max_tokens=80)
    wait_for(lambda: metric_value(agent.metrics(), "infermesh_requests_in_flight") == 1, timeout=5,
             what="the first request in flight")
    r = chat(agent.port, KEY_A, max_tokens=2)
    assert_openai_error(r, 429, code="rate_limit_exceeded")
    assert r.headers["retry-after"] == "1"
    t.join(20)
    assert box["r"].status == 200
    assert chat(agent.port, KEY_A, max_tokens=2).status == 200


@pytest.mark.timeout(50)
def test_saturated_requests_queue_then_succeed(procs):
    """Every target saturated (here: one waiting request is the threshold): requests wait in the agent and are
    admitted as the running ones finish."""
    engine = procs.engine(speed="1")
    agent = procs.agent([engine], "--max-waiting", "1", scrape_ms=2000)
    n = 6
    threads = [in_thread(chat, agent.port, None, content=f"q{i}", max_tokens=30) for i in range(n)]
    wait_for(lambda: queue_depth(agent) >= 3, timeout=5, interval=0.01, what="requests to queue")
    for t, _ in threads:
        t.join(30)
    results = [box["r"] for _, box in threads]
    assert all(getattr(r, "status", None) == 200 for r in results), results
    m = agent.metrics()
    assert metric_value(m, "infermesh_admission_queued_total") >= 3
    assert metric_value(m, "infermesh_admission_queue_depth") == 0
    assert metric_value(m, "infermesh_admission_queue_wait_seconds_count") >= 3
    assert metric_value(m, "infermesh_admission_queue_wait_seconds_sum") > 0.1
    assert metric_value(m, "infermesh_admission_admitted_total") == n
    # Served one after the other: the finish times are spread over the queue, not all at once.
    ends = sorted(box["t"] for _, box in threads)
    assert ends[-1] - ends[0] > 0.5


@pytest.mark.timeout(40)
def test_queue_deadline_503_and_full_queue_429(procs):
    engine = procs.engine(speed="1")
    agent = procs.agent([engine], "--max-waiting", "1", "--queue-timeout-ms", "400", "--queue-max", "1",
                        scrape_ms=5000)
    long_t, long_box = in_thread(chat, agent.port, None, content="long", max_tokens=250)  # ~1.7 s
    wait_for(lambda: metric_value(agent.metrics(), "infermesh_requests_in_flight") == 1, timeout=5,
             what="the long request in flight")
    t0 = time.monotonic()
    queued_t, queued_box = in_thread(chat, agent.port, None, content="waits", max_tokens=2)
    wait_for(lambda: queue_depth(agent) == 1, timeout=5, interval=0.01, what="the second request to queue")
    r = chat(agent.port, None, content="no room", max_tokens=2)
    err = assert_openai_error(r, 429, code="queue_full")
    assert r.headers["retry-after"] == "1"
    queued_t.join(10)
    r = queued_box["r"]
    err = assert_openai_error(r, 503, code="queue_timeout")
    assert r.headers["retry-after"] == "1"
    assert 0.35 <= queued_box["t"] - t0 < 1.5
    long_t.join(20)
    assert long_box["r"].status == 200
    m = agent.metrics()
    assert metric_value(m, "infermesh_admission_shed_total", reason="queue_full") == 1
    assert metric_value(m, "infermesh_admission_shed_total", reason="queue_timeout") == 1
    assert metric_value(m, "infermesh_admission_queue_depth") == 0
    assert metric_value(m, "infermesh_requests_in_flight") == 0


def run_backlog(agent, blocker_key, jobs):
    """Occupy the only engine with a blocker, queue `jobs` [(name, key, headers)] behind it, and return the names
    in the order their responses completed."""
    blocker_t, blocker_box = in_thread(chat, agent.port, blocker_key, content="blocker", max_tokens=150)
    wait_for(lambda: metric_value(agent.metrics(), "infermesh_requests_in_flight") == 1, timeout=5,
             what="the blocker in flight")
    threads = []
    for i, (name, key, headers) in enumerate(jobs):
        t, box = in_thread(chat, agent.port, key, headers=headers, content=f"{name} {i}", max_tokens=8)
        threads.append((name, t, box))
    wait_for(lambda: queue_depth(agent) == len(jobs), timeout=5, interval=0.01, what="every request to queue")
    assert blocker_t.is_alive(), "the blocker finished before the queue formed: the test proves nothing"
    for _, t, _ in threads:
        t.join(30)
    blocker_t.join(10)
    assert blocker_box["r"].status == 200
    assert all(box["r"].status == 200 for _, _, box in threads), [box["r"] for _, _, box in threads]
    return [name for name, _, box in sorted(threads, key=lambda x: x[2]["t"])]


@pytest.mark.timeout(50)
def test_weighted_fair_queueing_3_to_1(procs):
    engine = procs.engine(speed="1")
    agent = procs.agent([engine], "--max-waiting", "1",
                        "--tenant", f"name=heavy,key={KEY_A},weight=3",
                        "--tenant", f"name=light,key={KEY_B},weight=1",
                        "--tenant", "name=blocker,key=sk-blocker-000000",
                        scrape_ms=5000)
    # light's requests arrive first: arrival order alone would serve them first.
    jobs = [("light", KEY_B, None)] * 10 + [("heavy", KEY_A, None)] * 10
    order = run_backlog(agent, "sk-blocker-000000", jobs)
    first = order[:8]
    assert 5 <= first.count("heavy") <= 7, order  # 6:2 at 3:1
    assert order.count("heavy") == 10 and order.count("light") == 10


@pytest.mark.timeout(50)
def test_priorities_dequeue_first(procs):
    engine = procs.engine(speed="1")
    agent = procs.agent([engine], "--max-waiting", "1",
                        "--tenant", f"name=vip,key={KEY_A},priority=high",
                        "--tenant", f"name=std,key={KEY_B}",
                        scrape_ms=5000)
    jobs = ([("low", KEY_B, {"x-infermesh-priority": "low"})] * 2 + [("normal", KEY_B, None)] * 3 +
            [("vip", KEY_A, None)] + [("high", KEY_B, {"x-infermesh-priority": "high"})])
    order = run_backlog(agent, KEY_B, jobs)
    assert sorted(order[:2]) == ["high", "vip"], order
    assert order[2:5] == ["normal"] * 3, order
    assert order[5:] == ["low"] * 2, order
    r = chat(agent.port, KEY_B, headers={"x-infermesh-priority": "urgent"})
    assert_openai_error(r, 400)


@pytest.mark.timeout(30)
def test_bad_tenant_config_exits_2(procs, tmp_path):
    for args in (["--tenant", "name=x"],  # no key
                 ["--tenant", "name=x,key=sk-0123456789", "--tenant", "name=x,key=sk-9876543210"],
                 ["--tenant", "name=x,key=sk-0123456789,weight=-1"],
                 ["--hedge-max-fraction", "1.5"]):
        p = procs.infermesh("agent", "agent", "--listen", "127.0.0.1:0", *args)
        assert p.wait(10) == 2, args
        assert "tenant" in p.stderr() or "hedge" in p.stderr(), p.stderr()
        assert "sk-0123456789" not in p.stderr()


@pytest.mark.timeout(40)
def test_requests_no_runtime_served_cost_the_tenant_nothing(procs):
    """A 503 for want of a healthy target spends none of the tenant's token budget: when its runtime is down,
    a client retrying gets 503 each time, not a 429 for tokens it never used."""
    engine = procs.engine(speed="0")
    agent = procs.agent([engine], "--tenant", f"name=t,key={KEY_A},tokens_per_min=600")
    assert chat(agent.port, KEY_A, max_tokens=400).status == 200  # ~405 of 600 spent
    engine.proc.signal(signal.SIGKILL)
    wait_for(lambda: not agent.targets()[0]["healthy"], timeout=10, what="the target down")
    for _ in range(5):  # ~105 tokens each: 525, more than is left
        r = chat(agent.port, KEY_A, max_tokens=100)
        assert_openai_error(r, 503)
    assert metric_value(agent.metrics(), "infermesh_admission_shed_total", reason="tokens") == 0
