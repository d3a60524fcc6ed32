"""GPU telemetry in the agent and the CLI: the fake libnvidia-ml the unit tests build stands in for a driver."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, http_get, wait_for

FAKE_NVML = Path(BIN).resolve().parent / "fake_nvml" / "libnvidia-ml.so.1"


def _env(lib=None):
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if lib:
        env["INFERMESH_NVML_LIB"] = str(lib)
    else:
        env["INFERMESH_NVML_LIB"] = "/nonexistent/libnvidia-ml.so.1"
    return env


def _gpus(agent):
    def polled():
        g = http_get(agent.port, "/v1/cluster/status").json().get("gpus")
        return g if g and g.get("reason") != "not read yet" else None
    return wait_for(polled, timeout=10, what="the agent's first GPU poll")


@pytest.mark.timeout(60)
def test_agent_reports_gpus_from_nvml(procs):
    if not FAKE_NVML.exists():
        pytest.skip(f"fake NVML not built at {FAKE_NVML}")
    agent = procs.agent([], env=_env(FAKE_NVML), wait_healthy=False)
    g = _gpus(agent)
    assert g["available"] is True and g["source"] == "nvml"
    names = [x["name"] for x in g["gpus"]]
    assert names == ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]
    assert [x["health"] for x in g["gpus"]] == ["ok", "degraded"]
    # The CLI shows them too.
    out = subprocess.run([BIN, "status", "--agent", f"http://127.0.0.1:{agent.port}"], capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert "NVIDIA H100 80GB HBM3  degraded" in out.stdout


@pytest.mark.timeout(60)
def test_agent_respects_cuda_visible_devices(procs):
    """As CUDA does: a list picks and orders GPUs; set but empty means no GPU at all."""
    if not FAKE_NVML.exists():
        pytest.skip(f"fake NVML not built at {FAKE_NVML}")
    one = procs.agent([], env=dict(_env(FAKE_NVML), CUDA_VISIBLE_DEVICES="1"), wait_healthy=False, name="one")
    assert [x["name"] for x in _gpus(one)["gpus"]] == ["NVIDIA H100 80GB HBM3"]
    none = procs.agent([], env=dict(_env(FAKE_NVML), CUDA_VISIBLE_DEVICES=""), wait_healthy=False, name="none")
    assert _gpus(none)["gpus"] == []


@pytest.mark.timeout(60)
def test_gpu_lost_by_the_driver_shows_degraded(procs):
    """A GPU NVML reports lost (it fell off the bus) is listed, degraded, not silently left out."""
    if not FAKE_NVML.exists():
        pytest.skip(f"fake NVML not built at {FAKE_NVML}")
    agent = procs.agent([], env=dict(_env(FAKE_NVML), FAKE_NVML_LOST="0"), wait_healthy=False)
    gpus = _gpus(agent)["gpus"]
    assert [(x["index"], x["health"], x["health_reasons"]) for x in gpus][0] == (0, "degraded", ["lost"]), gpus
    out = subprocess.run([BIN, "gpus"], capture_output=True, text=True, timeout=20,
                         env=dict(_env(FAKE_NVML), FAKE_NVML_LOST="0"))
    assert out.returncode == 0 and "degraded (lost by the driver)" in out.stdout, out.stdout + out.stderr


@pytest.mark.timeout(60)
def test_agent_without_nvml_runs_and_says_why(procs):
    agent = procs.agent([], env=_env(None), wait_healthy=False)
    g = _gpus(agent)
    assert g["available"] is False and g["gpus"] == []
    assert "NVML not available" in g["reason"]
    assert http_get(agent.port, "/healthz").status == 200


@pytest.mark.timeout(30)
def test_gpus_command_with_and_without_nvml():
    if FAKE_NVML.exists():
        out = subprocess.run([BIN, "gpus", "--json"], capture_output=True, text=True, timeout=20, env=_env(FAKE_NVML))
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)["gpus"]) == 2
        vis = dict(_env(FAKE_NVML), CUDA_VISIBLE_DEVICES="1")
        out = subprocess.run([BIN, "gpus", "--json"], capture_output=True, text=True, timeout=20, env=vis)
        assert [x["name"] for x in json.loads(out.stdout)["gpus"]] == ["NVIDIA H100 80GB HBM3"]
    out = subprocess.run([BIN, "gpus"], capture_output=True, text=True, timeout=20, env=_env(None))
    assert out.returncode == 0
    assert "no NVIDIA GPU" in out.stdout


@pytest.mark.timeout(90)
def test_runtime_on_a_degraded_gpu_gets_no_traffic_while_another_is_free(procs, tmp_path):
    if not FAKE_NVML.exists():
        pytest.skip(f"fake NVML not built at {FAKE_NVML}")
    from conftest import chat_body, post_json
    # The fake driver's GPU 1 (an H100) throttles and has ECC errors; GPU 0 is fine.
    on_bad, on_good = procs.engine(name="on-gpu1"), procs.engine(name="on-gpu0")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("runtimes:\n"
                   f"  - {{url: \"{on_bad.url}\", name: on-gpu1, gpus: [1]}}\n"
                   f"  - {{url: \"{on_good.url}\", name: on-gpu0, gpus: \"0\"}}\n")
    agent = procs.agent([], "--config", str(cfg), env=_env(FAKE_NVML), wait_healthy=False)

    def ready():
        t = {x["name"]: x for x in agent.targets()}
        return len(t) == 2 and all(x["healthy"] for x in t.values()) and t["on-gpu1"]["gpu_degraded"] and t
    t = wait_for(ready, timeout=20, what="both targets healthy and GPU health applied")
    assert t["on-gpu0"]["gpu_degraded"] is False
    assert t["on-gpu1"]["score"] > t["on-gpu0"]["score"]
    served = [post_json(agent.port, "/v1/chat/completions", chat_body()).headers["x-infermesh-target"]
              for _ in range(20)]
    assert served == ["on-gpu0"] * 20
    assert "target GPU degraded" in agent.proc.stderr()


@pytest.mark.timeout(60)
def test_gpu_health_travels_to_other_members(procs, tmp_path):
    """A node's GPU health is part of its membership: another node's `infermesh members` shows it."""
    if not FAKE_NVML.exists():
        pytest.skip(f"fake NVML not built at {FAKE_NVML}")
    from conftest import free_port
    r = subprocess.run([BIN, "init", "--data-dir", str(tmp_path / "g")], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    (tmp_path / "w").mkdir(mode=0o700)
    for f in ("cluster.key", "cluster.id"):
        (tmp_path / "w" / f).write_bytes((tmp_path / "g" / f).read_bytes())
        (tmp_path / "w" / f).chmod(0o600)
    gport = free_port()
    gpu_node = procs.agent([], "--name", "gpunode", "--data-dir", str(tmp_path / "g"), "--gossip",
                           f"127.0.0.1:{gport}", env=_env(FAKE_NVML), wait_healthy=False, name="gpunode")
    watcher = procs.agent([], "--name", "watcher", "--data-dir", str(tmp_path / "w"), "--gossip",
                          f"127.0.0.1:{free_port()}", "--join", f"127.0.0.1:{gport}", env=_env(None),
                          wait_healthy=False, name="watcher")

    def seen():
        ms = http_get(watcher.port, "/v1/cluster/members").json()["members"]
        m = [x for x in ms if x["name"] == "gpunode"]
        return m and m[0]["gpus"] == 2 and m[0]
    m = wait_for(seen, timeout=20, what="watcher to see gpunode's GPUs")
    assert m["gpus_degraded"] == 1
    out = subprocess.run([BIN, "members", "--agent", f"http://127.0.0.1:{watcher.port}"], capture_output=True,
                         text=True, timeout=20)
    line = [x for x in out.stdout.splitlines() if x.startswith("gpunode ")][0]
    assert "2 (1 degraded)" in line, out.stdout
    assert gpu_node.proc.alive()
