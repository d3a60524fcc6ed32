"""`infermesh bench --trace`: open-loop replay of a Mooncake trace slice against a dev mesh."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, HOST, REPO, free_port, free_ports, http_get, wait_for

TRACE = REPO.parent / "shared" / "traces" / "mooncake_synthetic_trace.jsonl"


def bench(*args, timeout=50):
    return subprocess.run([BIN, "bench", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_bench_help_and_bad_usage():
    r = bench("--help")
    assert r.returncode == 0 and "usage: infermesh bench --trace FILE" in r.stdout
    for args in ([], ["--trace"], ["--trace", TRACE, "--limit", "0"], ["--trace", TRACE, "--time-scale", "-1"],
                 ["--trace", TRACE, "--agent", "nowhere"], ["--trace", TRACE, "--frobnicate", "1"],
                 ["--trace", TRACE, "--slo", "fast"], ["stray"],
                 ["--trace", TRACE] + ["--agent", f"http://{HOST}:8080"] * 17):
        r = bench(*args)
        assert r.returncode == 2, (args, r)
        assert "infermesh bench:" in r.stderr and "see --help" in r.stderr, r.stderr
    r = bench("--trace", "/nonexistent/trace.jsonl")
    assert r.returncode == 1 and "cannot open trace" in r.stderr
    # Nothing listens there: the model lookup fails with the address and a hint.
    r = bench("--trace", TRACE, "--agent", f"http://{HOST}:{free_port()}", "--limit", "3")
    assert r.returncode == 1 and "cannot reach the agent" in r.stderr, r


@pytest.mark.timeout(60)
def test_bench_trace_slice_against_dev_mesh(procs):
    if not TRACE.exists():
        pytest.skip(f"{TRACE} is not here")
    port = free_port()
    dev = procs.infermesh("dev", "dev", "--port", port, "--engines", 4, "--speed", 10)
    wait_for(lambda: dev.alive() and "curl" in dev.stdout(), timeout=20, what="the dev banner")
    wait_for(lambda: http_get(port, "/readyz").status == 200, timeout=10, what="the dev agent ready")
    n = 50
    lines = [json.loads(x) for x in TRACE.read_text().splitlines()[:n]]
    r = bench("--trace", TRACE, "--agent", f"http://{HOST}:{port}", "--limit", n, "--time-scale", 0.25,
              "--slo-ttft-ms", 1000, "--json")
    assert r.returncode == 0, r
    out = json.loads(r.stdout)
    assert out["sent"] == n and out["completed"] == n, out
    assert out["errors"] == {}, out
    # Prompts were built to the trace's lengths exactly (4 bytes a token on the simulated engine) ...
    assert out["prompt_tokens"] == sum(x["input_length"] for x in lines)
    assert out["output_tokens"] == sum(max(1, x["output_length"]) for x in lines)
    # ... and sent on the trace's schedule, compressed 4x.
    span = lines[-1]["timestamp"] / 1000 * 0.25
    assert abs(out["arrival_span_s"] - span) < 0.01
    assert out["duration_s"] >= span
    assert 0 < out["ttft_p50"] <= out["ttft_p90"] <= out["ttft_p99"]
    assert out["ttft_p50"] <= out["e2e_p50"] and out["e2e_p90"] <= out["e2e_p99"]
    assert 0 < out["throughput_rps"] <= n / span * 1.2
    assert 0 <= out["goodput_rps"] <= out["throughput_rps"]
    assert 0 <= out["slo_attainment"] <= 1 and 0 <= out["prefix_hit_rate"] < 1
    assert out["max_send_lag_s"] < 0.5, "the client could not keep the schedule"
    # The agent saw the same work.
    metrics = http_get(port, "/metrics").text()
    assert f'infermesh_requests_total{{model="meta-llama/Llama-3.1-8B-Instruct",status="200"' in metrics
    # The table form, on a few requests, with the same prompts again: now some are cached.
    r = bench("--trace", TRACE, "--agent", f"http://{HOST}:{port}", "--limit", 8, "--time-scale", 0.1)
    assert r.returncode == 0, r
    assert "TTFT (ms)" in r.stdout and "8 sent, 8 completed, 0 failed" in r.stdout, r.stdout
    assert "prefix cache:" in r.stdout


def admitted(port):
    m = http_get(port, "/metrics").text()
    return sum(float(x.split()[-1]) for x in m.splitlines() if x.startswith("infermesh_admission_admitted_total"))


@pytest.mark.timeout(90)
def test_bench_spreads_requests_over_ingress_nodes(procs):
    """Repeated --agent: the replay sends request i to ingress i % N, as clients of a mesh where every node takes
    requests would; each ingress admits its share and the report names every ingress."""
    if not TRACE.exists():
        pytest.skip(f"{TRACE} is not here")
    port, gport = free_ports(2), free_ports(2)
    dev = procs.infermesh("dev", "dev", "--nodes", 2, "--port", port, "--gossip-port", gport, "--speed", 10)
    wait_for(lambda: dev.alive() and "curl" in dev.stdout(), timeout=30, what="the dev banner")
    for p in (port, port + 1):
        wait_for(lambda p=p: http_get(p, "/readyz").status == 200, timeout=10, what=f"the agent on {p} ready")
    before = [admitted(port), admitted(port + 1)]
    n = 20
    urls = [f"http://{HOST}:{port}", f"http://{HOST}:{port + 1}"]
    r = bench("--trace", TRACE, "--agent", urls[0], "--agent", urls[1], "--limit", n, "--time-scale", 0.1,
              "--json")
    assert r.returncode == 0, r
    out = json.loads(r.stdout)
    assert out["completed"] == n and out["errors"] == {}, out
    assert out["agents"] == urls and out["agent"] == urls[0]
    assert [admitted(port) - before[0], admitted(port + 1) - before[1]] == [n / 2, n / 2]
    r = bench("--trace", TRACE, "--agent", urls[0], "--agent", urls[1], "--limit", 4, "--time-scale", 0.1)
    assert r.returncode == 0 and f"against {urls[0]}, {urls[1]}" in r.stdout, r.stdout
