"""Control-plane policies and tenants at request time, on a one-server control plane: a tenant limited to some
models gets 403 for the others (and /v1/models lists only its own); a model's policy sends requests to its
fallback models when no target serves it; caps the model's queued requests; turns hedging on or off and fixes
its delay."""

import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (BIN, HOST, MODEL, assert_openai_error, chat_body, free_port, http_get, http_request, metric_value,
                      post_json, wait_for)
from test_mesh import init_cluster, share_key
from test_raft import TOKEN

LATENCY = {"x-infermesh-slo": "latency"}


class ControlAgent:
    """An agent that is also the only Raft server (bootstrap-expect 1), with the given engines."""

    def __init__(self, procs, tmp_path, engines, *extra, scrape_ms=200):
        key = init_cluster(tmp_path / "key")
        data_dir = tmp_path / "s1"
        share_key(key, data_dir)
        self.agent = procs.agent(engines, "--name", "s1", "--data-dir", str(data_dir), "--gossip",
                                 f"{HOST}:{free_port()}", "--admin-token", TOKEN, "--server", "--raft",
                                 f"{HOST}:{free_port()}", "--bootstrap-expect", "1", *extra, name="s1",
                                 scrape_ms=scrape_ms)
        self.port = self.agent.port
        wait_for(lambda: (http_get(self.port, "/v1/cluster/raft").json().get("leader") or {}).get("id"), timeout=20,
                 what="the one-server control plane to elect itself")

    def cli(self, *args, ok=True):
        r = subprocess.run([BIN, *args, "--agent", f"http://{HOST}:{self.port}", "--token", TOKEN],
                           capture_output=True, text=True, timeout=20)
        if ok:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def enforce(self, *args):
        """Run a CLI write, then wait until this node's router follows the state it produced."""
        self.cli(*args)
        want = http_get(self.port, "/v1/cluster/raft").json()["fsm_index"]
        wait_for(lambda: http_get(self.port, "/v1/cluster/raft").json()["enforced_index"] >= want, timeout=5,
                 interval=0.02, what=f"the router to follow index {want}")

    def chat(self, model, content="hello", headers=None, **kw):
        return post_json(self.port, "/v1/chat/completions", chat_body(content, model=model, **kw), headers=headers,
                         timeout=30)


def enforced(ctl, what, cond, timeout=5):
    """Writes are applied at once on the one server, and the router follows on its next tick (~100 ms)."""
    return wait_for(cond, timeout=timeout, interval=0.05, what=what)


@pytest.mark.timeout(90)
def test_tenant_limited_to_models_gets_403_for_others(procs, tmp_path):
    a = procs.engine(model="model-a", name="engine-a")
    b = procs.engine(model="model-b", name="engine-b")
    ctl = ControlAgent(procs, tmp_path, [a, b])
    out = ctl.cli("tenant", "add", "team-a", "--model", "model-a").stdout
    key_a = re.search(r"(imk-\S+)", out).group(1)
    key_all = re.search(r"(imk-\S+)", ctl.cli("tenant", "add", "team-all").stdout).group(1)
    auth_a, auth_all = {"Authorization": f"Bearer {key_a}"}, {"Authorization": f"Bearer {key_all}"}
    enforced(ctl, "both keys to work", lambda: ctl.chat("model-a").status == 401
             and ctl.chat("model-a", headers=auth_all).status == 200)
    assert ctl.chat("model-a", headers=auth_a).status == 200
    r = ctl.chat("model-b", headers=auth_a)
    err = assert_openai_error(r, 403)
    assert err["type"] == "permission_error" and "team-a" in err["message"] and "model-b" in err["message"]
    # An unknown model is refused the same way (a limited tenant does not learn which models exist).
    assert_openai_error(ctl.chat("no-such-model", headers=auth_a), 403)
    assert ctl.chat("model-b", headers=auth_all).status == 200
    ids = lambda auth: sorted(m["id"] for m in http_request(ctl.port, "GET", "/v1/models", headers=auth).json()["data"])
    assert ids(auth_a) == ["model-a"]
    assert ids(auth_all) == ["model-a", "model-b"]
    assert metric_value(ctl.agent.metrics(), "infermesh_admission_forbidden_total") == 2
    listed = json.loads(ctl.cli("tenant", "list", "--json").stdout)["items"]
    assert any(t["name"] == "team-a" and t["models"] == ["model-a"] for t in listed), listed
    # A fallback never takes a tenant to a model it may not use: team-a may use "alias", whose policy falls
    # back to model-b, which team-a may not; team-all gets model-b.
    ctl.cli("policy", "set", "alias", "--fallback", "model-b")
    r = http_request(ctl.port, "PUT", "/v1/cluster/tenants/team-a", body={"models": ["model-a", "alias"]},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200, r.text()
    enforced(ctl, "the alias policy", lambda: ctl.chat("alias", headers=auth_all).status == 200)
    enforced(ctl, "team-a's new list", lambda: ctl.chat("alias", headers=auth_a).status == 404)
    # The limit is durable configuration: lifting it (models: []) opens every model to the tenant.
    r = http_request(ctl.port, "PUT", "/v1/cluster/tenants/team-a", body={"models": []},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200, r.text()
    enforced(ctl, "the lifted limit", lambda: ctl.chat("model-b", headers=auth_a).status == 200)


@pytest.mark.timeout(90)
def test_policy_fallback_serves_a_model_without_targets(procs, tmp_path):
    a = procs.engine(model="model-a", name="engine-a")
    b = procs.engine(model="model-b", name="engine-b")
    ctl = ControlAgent(procs, tmp_path, [a, b])
    # A model no target serves at all: without a policy, 404.
    assert_openai_error(ctl.chat("big-model"), 404)
    ctl.cli("policy", "set", "big-model", "--fallback", "model-c", "--fallback", "model-a")
    r = enforced(ctl, "the fallback", lambda: (x := ctl.chat("big-model", max_tokens=3)).status == 200 and x)
    assert r.headers["x-infermesh-fallback-from"] == "big-model"
    assert r.headers["x-infermesh-target"] == f"127.0.0.1:{a.port}"
    assert r.json()["model"] == "model-a"  # the engine saw the fallback's name, not the one asked for
    # Streaming too: the body is rewritten around the stream_options the proxy inserts (five parts).
    r = post_json(ctl.port, "/v1/chat/completions", chat_body("s", model="big-model", max_tokens=3, stream=True))
    assert r.status == 200 and r.headers["x-infermesh-fallback-from"] == "big-model"
    assert '"model":"model-a"' in r.text() and r.text().endswith("data: [DONE]\n\n")
    # A served model whose targets are all ruled out (pinned to a node that does not exist) falls back too.
    ctl.cli("policy", "set", "model-b", "--fallback", "model-a")
    ctl.cli("pin", "model-b", "--node", "nowhere")
    r = enforced(ctl, "model-b to fall back",
                 lambda: (x := ctl.chat("model-b")).status == 200 and "x-infermesh-fallback-from" in x.headers and x)
    assert r.headers["x-infermesh-target"] == f"127.0.0.1:{a.port}"
    ctl.cli("unpin", "model-b")
    enforced(ctl, "model-b served by its own engine again",
             lambda: ctl.chat("model-b").headers.get("x-infermesh-target") == f"127.0.0.1:{b.port}")


@pytest.mark.timeout(90)
def test_policy_max_queue_caps_the_models_waiting_requests(procs, tmp_path):
    engine = procs.engine(speed="1")
    # a target counts the requests routed to it since its last report: a slow scrape keeps the long one counted
    ctl = ControlAgent(procs, tmp_path, [engine], "--max-waiting", "1", scrape_ms=5000)
    model = engine.model
    ctl.enforce("policy", "set", model, "--max-queue", "1")
    results = {}

    def send(name, tokens):
        results[name] = ctl.chat(model, content=name, max_tokens=tokens)

    long_t = threading.Thread(target=send, args=("long", 200), daemon=True)
    long_t.start()
    wait_for(lambda: metric_value(ctl.agent.metrics(), "infermesh_requests_in_flight") == 1, timeout=5,
             what="the long request in flight")
    queued_t = threading.Thread(target=send, args=("queued", 2), daemon=True)
    queued_t.start()
    wait_for(lambda: metric_value(ctl.agent.metrics(), "infermesh_admission_queue_depth") == 1, timeout=5,
             interval=0.01, what="one request to queue")
    r = ctl.chat(model, content="over", max_tokens=2)
    err = assert_openai_error(r, 429, code="queue_full")
    assert "max_queue" in err["message"] and r.headers["retry-after"] == "1"
    long_t.join(30)
    queued_t.join(30)
    assert results["long"].status == 200 and results["queued"].status == 200


def race(ctl, slow, n=12):
    """Latency-class requests until one lands on the slow engine first; its (status, headers, seconds)."""
    for i in range(n):
        box = {}

        def send():
            t0 = time.monotonic()
            r = post_json(ctl.port, "/v1/chat/completions", chat_body(f"hedge me {i}", max_tokens=2),
                          headers=LATENCY, timeout=30)
            box["r"] = (r.status, r.headers, time.monotonic() - t0)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        on_slow, deadline = False, time.monotonic() + 0.25
        while time.monotonic() < deadline and t.is_alive() and not on_slow:
            on_slow = (slow.gauge("vllm:num_requests_running") or 0) >= 1
            time.sleep(0.005)
        t.join(30)
        assert "r" in box, "the request did not finish"
        if on_slow:
            return box["r"]
    raise AssertionError(f"no request went to the slow engine first in {n} tries")


@pytest.mark.timeout(120)
def test_policy_turns_hedging_on_with_its_delay_and_off(procs, tmp_path):
    # speed 0.02: one engine step takes ~0.3 s, so a 2-token answer takes ~1 s on the slow engine.
    slow = procs.engine(speed="0.02", name="engine-slow")
    fast = procs.engine(speed="0", name="engine-fast")
    # The router's own default: no hedging at all (cap 0).
    ctl = ControlAgent(procs, tmp_path, [slow, fast], "--hedge-max-fraction", "0", "--hedge-delay-ms", "5000")
    model = fast.model
    ctl.enforce("policy", "set", model, "--hedge", "true", "--hedge-delay-ms", "150", "--hedge-max-pct", "100")
    status, headers, took = race(ctl, slow)
    assert status == 200 and headers.get("x-infermesh-hedged") == "true", headers
    assert headers["x-infermesh-target"] == f"127.0.0.1:{fast.port}"
    assert took < 0.9, took  # the policy's 150 ms delay, not the router's 5 s nor the slow engine's ~1 s
    sent = metric_value(ctl.agent.metrics(), "infermesh_hedges_sent_total")
    assert sent >= 1
    # hedge false: never hedged, whatever the router's default.
    ctl.enforce("policy", "set", model, "--hedge", "false")
    status, headers, took = race(ctl, slow)
    assert status == 200 and "x-infermesh-hedged" not in headers
    assert headers["x-infermesh-target"] == f"127.0.0.1:{slow.port}"
    assert metric_value(ctl.agent.metrics(), "infermesh_hedges_sent_total") == sent
    got = json.loads(ctl.cli("policy", "get", model, "--json").stdout)
    assert got["item"]["hedge"] is False, got


@pytest.mark.timeout(60)
def test_control_plane_clients_that_leave_and_retries(procs, tmp_path):
    """Reads waiting for an index whose clients hang up are let go at once (nothing held, a quick drain); a
    tenant create retried with its command id shows the key that works; a PUT cannot smuggle in a key hash."""
    e = procs.engine(name="engine-a")
    ctl = ControlAgent(procs, tmp_path, [e], "--drain-timeout-ms", "20000")
    active = lambda: ctl.agent.counter("infermesh_http_active_requests")  # noqa: E731 (this one included)
    socks = []
    for _ in range(20):
        s = socket.create_connection((HOST, ctl.port), timeout=5)
        s.sendall(b"GET /v1/cluster/policies?index=999999&wait_ms=25000 HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    wait_for(lambda: active() >= 21, timeout=10, what="20 reads waiting for index 999999")
    for s in socks:
        s.close()
    wait_for(lambda: active() == 1, timeout=10, what="the waiting reads let go once their clients left")

    hdr = {"Authorization": f"Bearer {TOKEN}", "x-infermesh-command-id": "create-acme-1"}
    t1 = http_request(ctl.port, "POST", "/v1/cluster/tenants", body={"name": "acme"}, headers=hdr)
    assert t1.status == 201, t1.text()
    t2 = http_request(ctl.port, "POST", "/v1/cluster/tenants", body={"name": "acme"}, headers=hdr)
    assert t2.status == 201 and t2.json()["duplicate"] is True, t2.text()
    assert t2.json()["api_key"] == t1.json()["api_key"]  # the retry shows the key that was stored
    auth = {"Authorization": f"Bearer {t2.json()['api_key']}"}
    enforced(ctl, "keys to be required", lambda: ctl.chat(MODEL).status == 401)
    assert ctl.chat(MODEL, headers=auth).status == 200  # the key the retry showed is the one that works
    other = http_request(ctl.port, "POST", "/v1/cluster/tenants", body={"name": "acme2"},
                         headers=dict(hdr, **{"x-infermesh-command-id": "create-acme2-1"}))
    assert other.json()["api_key"] != t1.json()["api_key"]

    body = b'{"key\\u005fhash":"' + b"ab" * 32 + b'"}'
    r = http_request(ctl.port, "PUT", "/v1/cluster/tenants/acme", body=body,
                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status == 400 and "key cannot be set" in r.json()["error"]["message"], r.text()
    assert ctl.chat(MODEL, headers=auth).status == 200

    # Nothing is left waiting: SIGTERM drains at once, not after the 20 s drain timeout.
    ctl.agent.proc.signal(signal.SIGTERM)
    assert ctl.agent.proc.wait(10) == 0
    assert 'msg="drained"' in ctl.agent.proc.stderr()


@pytest.mark.timeout(60)
def test_revoked_tenant_waiting_requests_get_401_in_flight_ones_finish(procs, tmp_path):
    e = procs.engine(speed="1")
    ctl = ControlAgent(procs, tmp_path, [e], "--max-waiting", "1", scrape_ms=5000)
    key = re.search(r"(imk-\S+)", ctl.cli("tenant", "add", "team-q").stdout).group(1)
    auth = {"Authorization": f"Bearer {key}"}
    enforced(ctl, "keys to be required", lambda: ctl.chat(MODEL, max_tokens=1).status == 401)
    assert ctl.chat(MODEL, headers=auth, max_tokens=1).status == 200
    out = {}

    def call(name, max_tokens):
        out[name] = ctl.chat(MODEL, headers=auth, content=name, max_tokens=max_tokens)

    blocker = threading.Thread(target=call, args=("blocker", 1500), daemon=True)  # ~10 s at speed 1
    blocker.start()
    wait_for(lambda: ctl.agent.counter("infermesh_requests_in_flight") == 1, timeout=5, what="the blocker in flight")
    waiting = [threading.Thread(target=call, args=(f"w{i}", 8), daemon=True) for i in range(3)]
    for t in waiting:
        t.start()
    depth = lambda: ctl.agent.counter("infermesh_admission_queue_depth")  # noqa: E731
    wait_for(lambda: depth() == 3, timeout=5, interval=0.02, what="three requests waiting")
    assert blocker.is_alive(), "the blocker finished before the queue formed: the test proves nothing"
    ctl.enforce("tenant", "revoke", "team-q")
    assert blocker.is_alive()
    for t in waiting:
        t.join(10)
    for i in range(3):
        err = assert_openai_error(out[f"w{i}"], 401)
        assert "revoked" in err["message"], err
    blocker.join(30)
    assert out["blocker"].status == 200  # in flight when revoked: it finishes
    assert depth() == 0
