"""`infermesh simulate`: the discrete-event routing simulator from the command line (no servers involved)."""

import json
import subprocess

import pytest

from conftest import BIN, REPO

TRACE = REPO.parent / "shared" / "traces" / "mooncake_synthetic_trace.jsonl"
SMALL = ["--workload", "shared-prefix", "--requests", "400", "--rate", "40", "--engines", "4", "--groups", "32",
         "--system-tokens", "1024"]


def sim(*args, timeout=30):
    return subprocess.run([BIN, "simulate", *args], capture_output=True, text=True, timeout=timeout)


def check_run(run, requests, engines):
    assert run["requests"] == requests and run["completed"] == requests
    for k in ("ttft_s", "e2e_s"):
        q = run[k]
        assert 0 < q["p50"] <= q["p90"] <= q["p99"], (k, q)
        assert q["mean"] > 0
    assert run["e2e_s"]["p50"] >= run["ttft_s"]["p50"]
    assert 0 <= run["prefix_hit_rate"] <= 1
    assert 0 <= run["slo_attainment"] <= 1
    assert 0 <= run["goodput_rps"] <= run["throughput_rps"] + 1e-9
    assert run["output_tokens_per_s"] > run["throughput_rps"]
    assert run["imbalance"]["requests"] >= 1 and run["imbalance"]["busy"] >= 1
    assert len(run["engines"]) == engines
    assert sum(e["requests"] for e in run["engines"]) == requests
    assert all(e["busy_s"] > 0 for e in run["engines"] if e["requests"])


@pytest.mark.timeout(20)
def test_help_and_bad_usage(tmp_path):
    p = sim("--help")
    assert p.returncode == 0 and "usage: infermesh simulate" in p.stdout and "--slo-ttft-ms" in p.stdout
    assert "simulate" in subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
    for args in (["--frobnicate"], ["--policy", "random-forest"], ["--rate-scale", "0"], ["--engines", "0"],
                 ["--engines", "lots"], ["--workload", "sharded"], ["--requests"], ["--prompt-tokens", "9:3"],
                 ["--trace", str(TRACE), "--workload", "no-reuse"], ["--trace", str(TRACE), "--rate", "5"],
                 ["--set", "no_such_knob=1"], ["stray"]):
        p = sim(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert p.stderr.strip() and not p.stdout.strip(), args
    # A trace that cannot be read, or a bad line in it: exit 1 and the line number.
    p = sim("--trace", str(tmp_path / "missing.jsonl"))
    assert p.returncode == 1 and "missing.jsonl" in p.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 0, "input_length": 600, "output_length": 4, "hash_ids": [1, 2]}\n'
                   '{"timestamp": 3, "input_length": 600, "output_length": 4, "hash_ids": "x"}\n')
    p = sim("--trace", str(bad))
    assert p.returncode == 1 and "line 2" in p.stderr and "hash_ids" in p.stderr


@pytest.mark.timeout(20)
def test_generated_workload_json_and_table():
    p = sim(*SMALL, "--policy", "all", "--json", "--slo-ttft-ms", "1000")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["workload"]["kind"] == "shared-prefix" and out["workload"]["loaded_requests"] == 400
    assert out["config"]["engines"] == 4 and out["config"]["slo_ttft_ms"] == 1000
    runs = out["runs"]
    assert [r["policy"] for r in runs] == ["round-robin", "least-request", "power-of-two", "sglang", "llm-d", "ours"]
    for r in runs:
        check_run(r, 400, 4)
        assert abs(r["offered_rps"] - 40) < 10
    by = {r["policy"]: r for r in runs}
    # Shared prefixes: the cache-aware policies find more of the prompt cached than round robin.
    for pol in ("sglang", "llm-d", "ours"):
        assert by[pol]["prefix_hit_rate"] > by["round-robin"]["prefix_hit_rate"], pol
    # Same seed, same numbers.
    again = json.loads(sim(*SMALL, "--policy", "all", "--json", "--slo-ttft-ms", "1000").stdout)
    for a, b in zip(runs, again["runs"]):
        a.pop("wall_s"), b.pop("wall_s")
        assert a == b
    # The table: a header and one row per policy and load.
    p = sim(*SMALL, "--policy", "round-robin,ours", "--rate-scale", "0.5,1")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert lines[0].split()[:4] == ["policy", "load", "offer/s", "ttft50"]
    assert [ln.split()[0] for ln in lines[1:]] == ["round-robin", "ours", "round-robin", "ours"]


@pytest.mark.timeout(20)
def test_trace_slice():
    assert TRACE.exists(), TRACE
    p = sim("--trace", str(TRACE), "--limit", "250", "--rate-scale", "1,3", "--policy", "round-robin,ours",
            "--json", "--slo-ttft-ms", "5000")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["workload"]["kind"] == "trace" and out["workload"]["loaded_requests"] == 250
    runs = out["runs"]
    assert [(r["policy"], r["rate_scale"]) for r in runs] == [("round-robin", 1), ("ours", 1), ("round-robin", 3),
                                                              ("ours", 3)]
    for r in runs:
        check_run(r, 250, 16)
    # Rate scaling compresses time; the trace's shared hash ids become cache hits where routing keeps them
    # (the first 250 requests repeat ~5% of their blocks as prefixes; the whole trace 64%).
    assert 2.5 < runs[2]["offered_rps"] / runs[0]["offered_rps"] < 3.5
    assert runs[1]["prefix_hit_rate"] > runs[0]["prefix_hit_rate"]
    assert runs[1]["prefix_hit_rate"] > 0.02


@pytest.mark.timeout(120)
def test_joint_slo_spread_bursts_and_upstream_refresh(tmp_path):
    # A trace bucketed like Mooncake's releases: 10 requests share each 3 s timestamp.
    t = tmp_path / "bucketed.jsonl"
    t.write_text("".join(json.dumps({"timestamp": 3000 * (i // 10), "input_length": 700, "output_length": 20,
                                     "hash_ids": [i % 7, 100 + i]}) + "\n" for i in range(40)))
    base = ["--trace", str(t), "--engines", "4", "--policy", "ours,llm-d", "--json", "--upstream-refresh"]
    p = sim(*base, "--spread-bursts")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["workload"]["spread_bursts"] is True and out["workload"]["spread_requests"] == 36
    assert out["config"]["upstream_refresh"] is True
    runs = {r["policy"]: r for r in out["runs"]}
    assert runs["llm-d"]["report_interval_ms"] == 50 and runs["ours"]["report_interval_ms"] == 500
    for r in runs.values():
        check_run(r, 40, 4)
        assert 0 < r["tpot_s"]["p50"] <= r["tpot_s"]["p90"] <= r["tpot_s"]["p99"]
        assert r["max_tokens"] == 20
    # Spread over their buckets, the same requests arrive over 9 s more (the last bucket too), not in 4 bursts.
    p = sim(*base)
    unspread = json.loads(p.stdout)
    assert unspread["workload"]["spread_requests"] == 0
    assert {r["policy"]: r for r in unspread["runs"]}["ours"]["ttft_s"]["p90"] >= runs["ours"]["ttft_s"]["p90"]

    # Joint-SLO capacity: a TPOT objective no engine step can meet is reported as never met, with the lowest rate
    # tried, in the table and in JSON; a loose one gives a capacity whose p90 TPOT meets it.
    cap = SMALL + ["--policy", "ours", "--capacity", "--slo-ttft-ms", "1000"]
    p = sim(*cap, "--slo-tpot-ms", "0.5", timeout=100)
    assert p.returncode == 0, p.stderr
    assert "p90 TTFT <= 1000 ms and p90 TPOT <= 0.5 ms" in p.stdout
    row = [x for x in p.stdout.splitlines() if x.startswith("ours")]
    assert len(row) == 1 and row[0].split()[1:6] == ["never", "met", "at", "any", "rate"], row
    p = sim(*cap, "--slo-tpot-ms", "0.5", "--json", timeout=100)
    c = json.loads(p.stdout)["capacity"][0]
    assert c["met"] is False and c["lowest_rps_tried"] > 0 and "at_capacity" not in c
    p = sim(*cap, "--slo-tpot-ms", "200", "--json", timeout=100)
    c = json.loads(p.stdout)["capacity"][0]
    assert c["met"] is True and c["rps"] > 0
    assert c["at_capacity"]["tpot_s"]["p90"] <= 0.2 and c["at_capacity"]["ttft_s"]["p90"] <= 1.0
    for bad in (["--slo-tpot-ms", "0"], ["--slo-tpot-ms", "fast"]):
        p = sim(*SMALL, *bad)
        assert p.returncode == 2 and "--slo-tpot-ms" in p.stderr
