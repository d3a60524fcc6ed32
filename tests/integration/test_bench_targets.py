"""--bench-targets (benchmarks only): one agent ranks many real targets served by a few engines."""

import signal

import pytest

from conftest import chat_body, post_json, wait_for


@pytest.mark.timeout(60)
def test_bench_targets_copy_the_runtimes_and_serve(procs):
    engines = procs.engines(2)
    agent = procs.agent(engines, "--bench-targets", "30", "--max-targets", "40", wait_healthy=False)

    def all_healthy():
        ts = agent.targets()
        return len(ts) == 32 and all(t["healthy"] for t in ts)

    wait_for(all_healthy, timeout=30, what="2 runtimes and 30 bench copies healthy")
    ts = agent.targets()
    copies = [t for t in ts if "~b" in t["name"]]
    assert len(copies) == 30
    assert {t["url"] for t in copies} == {e.url for e in engines}  # round robin over the runtimes
    served = set()
    for _ in range(40):
        r = post_json(agent.port, "/v1/chat/completions", chat_body(max_tokens=1))
        assert r.status == 200, r
        served.add(r.headers["x-infermesh-target"])
    assert any("~b" in name for name in served), served  # the copies are routed to like any target
    agent.proc.signal(signal.SIGTERM)  # their connection pools close with the runtimes': the agent exits
    wait_for(lambda: not agent.proc.alive(), timeout=20, what="the agent to exit on SIGTERM")


@pytest.mark.timeout(30)
def test_bench_targets_beyond_max_targets_is_refused(procs):
    engine = procs.engine()
    p = procs.infermesh("agent", "agent", "--listen", "127.0.0.1:0", "--target", engine.url, "--bench-targets", "50",
                        "--max-targets", "40")
    wait_for(lambda: not p.alive(), timeout=15, what="the agent to refuse the configuration")
    assert "bench_targets 50 needs a runtime to copy and room in max_targets 40" in p.stderr()
