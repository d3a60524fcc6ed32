"""Agent configuration: YAML file, flags over the file, INFERMESH_* environment over both."""

import pytest

from conftest import HOST, _check_alive, chat_body, free_port, http_get, port_accepts, post_json, wait_for


def start_configured_agent(procs, args, env=None, port=None):
    p = procs.infermesh("agent", "agent", *args, env=env)
    if port is not None:
        wait_for(lambda: _check_alive(p) and port_accepts(port), timeout=15, what="the configured agent to listen")
    return p


def write_yaml(tmp_path, text):
    f = tmp_path / "infermesh.yaml"
    f.write_text(text)
    return f


def targets(port):
    return http_get(port, "/v1/cluster/targets").json()["targets"]


def test_yaml_file_configures_the_agent(procs, tmp_path):
    engine = procs.engine(speed="0")
    port = free_port()
    cfg = write_yaml(tmp_path, f"""
node: {{name: yaml-node}}
listen: {HOST}:{port}
scrape_interval_ms: 100
runtimes:
  - {{kind: vllm, url: {engine.url}, name: gpu-zero}}
limits:
  max_body_bytes: 2048
""")
    start_configured_agent(procs, ["--config", str(cfg)], port=port)
    wait_for(lambda: all(t["healthy"] for t in targets(port)), timeout=10, what="the YAML runtime healthy")
    ts = targets(port)
    assert [(t["name"], t["url"]) for t in ts] == [("gpu-zero", engine.url)]
    r = post_json(port, "/v1/chat/completions", chat_body(max_tokens=1))
    assert r.status == 200, r
    assert r.headers["x-infermesh-node"] == "yaml-node"
    assert r.headers["x-infermesh-target"] == "gpu-zero"
    r = post_json(port, "/v1/chat/completions", chat_body("x" * 3000))
    assert r.status == 413, r


def test_flags_override_yaml_and_env_overrides_flags(procs, tmp_path):
    engine = procs.engine(speed="0")
    yaml_port, flag_port, env_port = free_port(), free_port(), free_port()
    cfg = write_yaml(tmp_path, f"node: {{name: yaml-node}}\nlisten: {HOST}:{yaml_port}\n")
    start_configured_agent(procs, ["--config", str(cfg), "--listen", f"{HOST}:{flag_port}", "--name", "flag-node",
                                   "--target", engine.url],
                           env={"INFERMESH_NAME": "env-node", "INFERMESH_LISTEN": f"{HOST}:{env_port}"},
                           port=env_port)
    assert not port_accepts(yaml_port) and not port_accepts(flag_port)
    wait_for(lambda: all(t["healthy"] for t in targets(env_port)), timeout=10, what="target healthy")
    r = post_json(env_port, "/v1/chat/completions", chat_body(max_tokens=1))
    assert r.status == 200 and r.headers["x-infermesh-node"] == "env-node", r


@pytest.mark.parametrize("source", ["flag", "env"])
def test_targets_from_a_higher_source_replace_the_yaml_runtimes(procs, tmp_path, source):
    """Documented precedence: flags override the file, INFERMESH_* override both. For the runtime list that
    means replacing it; targets from the file must not keep receiving traffic."""
    yaml_engine = procs.engine(speed="0", name="engine-yaml")
    override = procs.engine(speed="0", name="engine-override")
    port = free_port()
    cfg = write_yaml(tmp_path, f"listen: {HOST}:{port}\nruntimes:\n  - {{url: {yaml_engine.url}}}\n")
    if source == "flag":
        start_configured_agent(procs, ["--config", str(cfg), "--target", override.url], port=port)
    else:
        start_configured_agent(procs, ["--config", str(cfg)], env={"INFERMESH_TARGETS": override.url}, port=port)
    urls = sorted(t["url"] for t in targets(port))
    assert urls == [override.url], f"{source} targets should replace the YAML runtimes; the agent has {urls}"


def test_env_targets_comma_separated(procs):
    e1, e2 = procs.engines(2, speed="0")
    port = free_port()
    start_configured_agent(procs, ["--listen", f"{HOST}:{port}", "--scrape-interval-ms", "100"],
                           env={"INFERMESH_TARGETS": f"one={e1.url},{e2.url}"}, port=port)
    wait_for(lambda: len(targets(port)) == 2 and all(t["healthy"] for t in targets(port)), timeout=10,
             what="both env targets healthy")
    names = sorted(t["name"] for t in targets(port))
    assert names == sorted(["one", f"{HOST}:{e2.port}"]), names


@pytest.mark.parametrize("yaml_text,needle", [
    ("listen: 127.0.0.1:1\nbogus_setting: 3\n", "bogus_setting"),
    ("runtimes:\n  - {url: ftp://nope}\n", "ftp://nope"),
    ("limits: {max_body_bytes: lots}\n", "lots"),
    ("runtimes: [\n", "infermesh.yaml"),
], ids=["unknown-key", "bad-url", "bad-number", "bad-yaml"])
def test_bad_config_is_exit_2_with_a_message(procs, tmp_path, yaml_text, needle):
    cfg = write_yaml(tmp_path, yaml_text)
    p = procs.infermesh("agent-bad", "agent", "--config", str(cfg), "--listen", f"{HOST}:{free_port()}")
    rc = p.wait(timeout=10)
    assert rc == 2, (rc, p.stderr()[-1500:])
    assert needle in p.stderr(), p.stderr()[-1500:]


def test_missing_config_file_is_exit_2(procs, tmp_path):
    p = procs.infermesh("agent-missing", "agent", "--config", str(tmp_path / "nope.yaml"))
    assert p.wait(timeout=10) == 2
    assert "nope.yaml" in p.stderr()


@pytest.mark.timeout(30)
def test_listener_beyond_loopback_needs_keys(procs):
    """DESIGN §10: an agent reachable from other machines refuses to start without API keys, unless told."""
    from conftest import free_port
    port = free_port()
    p = procs.infermesh("open", "agent", "--listen", f"0.0.0.0:{port}")
    assert p.wait(15) == 2
    assert "--insecure-no-auth" in p.stderr() and "tenants" in p.stderr()
    p = procs.infermesh("open-ok", "agent", "--listen", f"0.0.0.0:{port}", "--insecure-no-auth")
    wait_for(lambda: p.alive() and "without API keys" in p.stderr(), timeout=15, what="the agent's warning")
    p = procs.infermesh("open-keys", "agent", "--listen", f"0.0.0.0:{free_port()}", "--tenant",
                        "name=team,key=sk-test-0123456789")
    wait_for(lambda: p.alive() and "agent listening" in p.stderr(), timeout=15, what="the agent with keys")


@pytest.mark.timeout(40)
def test_target_flag_names_the_runtime_kind(procs):
    """`--target NAME=URL#kind=KIND` says which runtime a target is (YAML's `kind:`); without it, vllm. An unknown
    kind is exit 2 with the valid kinds listed."""
    import re
    import sys
    from pathlib import Path

    from conftest import REPO
    fixtures = REPO.parent / "shared" / "fixtures" / "runtime-metrics"
    if not fixtures.is_dir():
        pytest.skip(f"runtime fixtures not found at {fixtures}")
    replay = procs.start("replay-sglang", [sys.executable, Path(__file__).resolve().parent / "replay_server.py",
                                           "sglang", fixtures])
    m = wait_for(lambda: _check_alive(replay) and re.search(r"listening on http://127\.0\.0\.1:(\d+)", replay.stdout()),
                 timeout=10, what="the SGLang replay server to print its port")
    url = f"http://{HOST}:{m.group(1)}"
    port = free_port()
    start_configured_agent(procs, ["--listen", f"{HOST}:{port}", "--scrape-interval-ms", "100",
                                   "--target", f"sg={url}#kind=sglang"], port=port)
    ts = wait_for(lambda: [t for t in targets(port) if t["healthy"]], timeout=10, what="the sglang target healthy")
    assert [(t["name"], t["url"], t["kind"]) for t in ts] == [("sg", url, "sglang")], ts
    assert ts[0]["models"] == ["meta-llama/Llama-3.1-8B-Instruct"], ts
    assert ts[0]["running"] == 162 and ts[0]["waiting"] == 2826, ts  # read with the SGLang adapter
    assert ts[0]["process"] is None  # no exec: not supervised

    p = procs.infermesh("agent-bad-kind", "agent", "--listen", f"{HOST}:{free_port()}",
                        "--target", f"{url}#kind=sglangx")
    assert p.wait(timeout=10) == 2
    err = p.stderr()
    assert "--target" in err and "'sglangx' is unknown" in err, err[-1500:]
    assert "vllm, sglang, tgi, llamacpp, triton, ollama" in err, err[-1500:]
