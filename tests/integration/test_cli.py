"""The client CLI (`infermesh status|models|targets`) against a live agent, idle and under load."""

import json
import re
import subprocess
import threading
import time

import pytest

from conftest import BIN, HOST, TINY_MODEL, chat_body, free_port, post_json, wait_for


def cli(*args, env=None, timeout=10):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def tiny_mesh(procs):
    """Three tiny-test engines (4 running at most, real time) behind an agent."""
    engines = procs.engines(3, speed="1", profile="tiny-test")
    agent = procs.agent(engines, scrape_ms=100)
    return engines, agent


def table_rows(out):
    lines = [ln for ln in out.splitlines() if ln.strip()]
    header = lines[0].split()
    rows = []
    for ln in lines[1:]:
        cols = ln.split()
        rows.append(dict(zip(header, cols)))
    return header, rows


@pytest.mark.timeout(60)
def test_targets_shows_engines_and_load(tiny_mesh):
    engines, agent = tiny_mesh
    url = agent.url
    rc, out, err = cli("targets", "--agent", url)
    assert rc == 0, err
    header, rows = table_rows(out)
    for col in ("TARGET", "URL", "STATE", "WAITING", "RUNNING"):
        assert col in header, header
    assert sorted(r["URL"] for r in rows) == sorted(e.url for e in engines)
    assert all(r["STATE"] == "healthy" for r in rows), out
    assert all(r["WAITING"] == "0" and r["RUNNING"] == "0" for r in rows), out

    rc, out, err = cli("targets", "--agent", url, "--json")
    assert rc == 0, err
    ts = json.loads(out)["targets"]
    assert sorted(t["url"] for t in ts) == sorted(e.url for e in engines)
    for t in ts:
        assert t["healthy"] is True and t["models"] == [TINY_MODEL]
        assert t["waiting"] == 0 and t["running"] == 0

    # Load: 8 requests per engine, 4 run at a time on each, so some wait.
    n = 24
    results = []

    def one(i):
        results.append(post_json(agent.port, "/v1/chat/completions",
                                 chat_body(f"load {i}", model=TINY_MODEL, max_tokens=150), timeout=40))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        def loaded():
            rc, out, _ = cli("targets", "--agent", url, "--json")
            ts = json.loads(out)["targets"]
            if sum(t["running"] for t in ts) >= 4 and sum(t["waiting"] for t in ts) > 0:
                return ts
            return None

        ts = wait_for(loaded, timeout=10, interval=0.05, what="targets --json to show running and waiting > 0")
        assert max(t["running"] for t in ts) <= 4, ts  # tiny-test runs at most 4 at a time
        assert all(0 < t["kv_usage"] <= 1 for t in ts if t["running"] > 0), ts
        # The table shows the same kind of numbers.
        def table_loaded():
            rc, out, _ = cli("targets", "--agent", url)
            _, rows = table_rows(out)
            return any(int(r["RUNNING"]) > 0 for r in rows) and any(int(r["WAITING"]) > 0 for r in rows) and rows
        wait_for(table_loaded, timeout=10, interval=0.05, what="the targets table to show load")
    finally:
        for t in threads:
            t.join(40)
    assert len(results) == n and all(r.status == 200 for r in results), [r.status for r in results]
    # And back to idle afterwards.
    wait_for(lambda: all(t["running"] == 0 and t["waiting"] == 0
                         for t in json.loads(cli("targets", "--agent", url, "--json")[1])["targets"]),
             timeout=5, what="targets to show idle again")


def test_status_and_models(procs):
    engines = procs.engines(2, speed="0")
    other = procs.engine(speed="0", model="other-model", name="engine-other")
    agent = procs.agent(engines + [other], "--name", "node-under-test")
    for i in range(3):
        r = post_json(agent.port, "/v1/chat/completions", chat_body(f"s{i}", max_tokens=1))
        assert r.status == 200, r
        assert r.headers["x-infermesh-node"] == "node-under-test"
    rc, out, err = cli("status", "--agent", agent.url)
    assert rc == 0, err
    assert re.search(r"node\s+node-under-test", out), out
    assert re.search(r"targets\s+3 healthy of 3", out), out
    assert re.search(r"requests\s+3\b", out), out
    rc, out, err = cli("status", "--agent", agent.url, "--json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["node"] == "node-under-test" and st["requests_total"] == 3
    assert st["targets"] == {"total": 3, "healthy": 3}
    rc, out, err = cli("models", "--agent", agent.url)
    assert rc == 0, err
    rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()[1:] if ln.strip()}
    assert rows == {"meta-llama/Llama-3.1-8B-Instruct": ["2", "2"], "other-model": ["1", "1"]}, out
    # INFERMESH_AGENT stands in for --agent.
    import os
    rc, out2, err = cli("status", env={**os.environ, "INFERMESH_AGENT": agent.url})
    assert rc == 0 and "node-under-test" in out2, err


def test_cli_unreachable_agent_is_a_clear_error():
    port = free_port()
    rc, out, err = cli("targets", "--agent", f"http://{HOST}:{port}")
    assert rc == 1
    assert f"{port}" in err and "agent" in err, err
    rc, out, err = cli("status", "--agent", "not-a-url")
    assert rc in (1, 2) and "--agent" not in out and err.strip(), (rc, out, err)


def test_agent_port_in_use_is_a_clear_error(procs):
    import socket
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        p = procs.infermesh("agent", "agent", "--listen", f"{HOST}:{port}")
        rc = p.wait(timeout=10)
        assert rc == 1, rc
        assert f"{HOST}:{port} is in use" in p.stderr(), p.stderr()[-2000:]
    finally:
        s.close()
