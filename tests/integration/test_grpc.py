"""gRPC on the agent's HTTP/2 listener (issue 18): infermesh.v1.Scoring, infermesh.v1.Control and
grpc.health.v1.Health, called with Debian's grpcio through stubs generated from proto/ at test time. One agent
that is its own one-server control plane, with three engines, shared by the module."""

import http.client
import importlib
import shutil
import subprocess
import sys
import threading

import pytest

grpc = pytest.importorskip("grpc")
protoc = pytest.importorskip("grpc_tools.protoc")

from conftest import BIN, HOST, MODEL, READ_TOKEN, free_port, http_get, http_request, wait_for  # noqa: E402
from test_mesh import init_cluster, share_key  # noqa: E402
from test_raft import TOKEN  # noqa: E402

from pathlib import Path  # noqa: E402

PROTO = Path(__file__).resolve().parents[2] / "proto"
ADMIN = (("authorization", f"Bearer {TOKEN}"),)
READ = (("authorization", f"Bearer {READ_TOKEN}"),)


def generate_stubs(out):
    """Python stubs from our .proto files. The health proto is compiled from a copy outside a grpc/ folder: its
    modules would otherwise live under the name `grpc`, which is grpcio's package."""
    out.mkdir(parents=True, exist_ok=True)
    hc = out / "hc_src"
    hc.mkdir(exist_ok=True)
    shutil.copy(PROTO / "grpc/health/v1/health.proto", hc / "health.proto")
    args = [
        ["protoc", f"-I{PROTO}", f"--python_out={out}", f"--grpc_python_out={out}",
         str(PROTO / "infermesh/v1/scoring.proto"), str(PROTO / "infermesh/v1/control.proto")],
        ["protoc", f"-I{hc}", f"--python_out={out}", f"--grpc_python_out={out}", str(hc / "health.proto")],
    ]
    for a in args:
        assert protoc.main(a) == 0, a
    sys.path.insert(0, str(out))
    mods = {}
    for name in ("infermesh.v1.scoring_pb2", "infermesh.v1.scoring_pb2_grpc", "infermesh.v1.control_pb2",
                 "infermesh.v1.control_pb2_grpc", "health_pb2", "health_pb2_grpc"):
        mods[name.split(".")[-1]] = importlib.import_module(name)
    return mods


class Mesh:
    def __init__(self, procs, tmp, stubs):
        self.engines = procs.engines(3, speed="0")
        key = init_cluster(tmp / "key")
        share_key(key, tmp / "s1")
        self.agent = procs.agent(self.engines, "--name", "s1", "--data-dir", str(tmp / "s1"), "--gossip",
                                 f"{HOST}:{free_port()}", "--admin-token", TOKEN, "--server", "--raft",
                                 f"{HOST}:{free_port()}", "--bootstrap-expect", "1", name="s1")
        self.port = self.agent.port
        wait_for(lambda: (http_get(self.port, "/v1/cluster/raft").json().get("leader") or {}).get("id"), timeout=20,
                 what="the one-server control plane to elect itself")
        self.channel = grpc.insecure_channel(f"{HOST}:{self.port}")
        self.pb = stubs
        self.scoring = stubs["scoring_pb2_grpc"].ScoringStub(self.channel)
        self.control = stubs["control_pb2_grpc"].ControlStub(self.channel)
        self.health = stubs["health_pb2_grpc"].HealthStub(self.channel)
        self.s = stubs["scoring_pb2"]
        self.c = stubs["control_pb2"]


@pytest.fixture(scope="module")
def mesh(module_procs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grpc")
    m = Mesh(module_procs, tmp, generate_stubs(tmp / "stubs"))
    yield m
    m.channel.close()


def code_of(fn, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*a, **kw)
    return e.value.code(), e.value.details()


@pytest.mark.timeout(60)
def test_health_check_and_unknown_methods(mesh):
    hp = mesh.pb["health_pb2"]
    r = mesh.health.Check(hp.HealthCheckRequest(service=""), timeout=10)
    assert r.status == hp.HealthCheckResponse.SERVING
    assert mesh.health.Check(hp.HealthCheckRequest(service="infermesh.v1.Scoring"), timeout=10).status == \
        hp.HealthCheckResponse.SERVING
    assert code_of(mesh.health.Check, hp.HealthCheckRequest(service="no.Such"), timeout=10)[0] == \
        grpc.StatusCode.NOT_FOUND
    nope = mesh.channel.unary_unary("/infermesh.v1.Scoring/Nope")
    code, details = code_of(nope, b"", timeout=10)
    assert code == grpc.StatusCode.UNIMPLEMENTED and "Nope" in details


@pytest.mark.timeout(60)
def test_score_targets_ranks_with_the_routers_policy(mesh):
    s = mesh.s
    r = mesh.scoring.ScoreTargets(s.ScoreTargetsRequest(model=MODEL, prompt="hello " * 200, max_tokens=16),
                                  metadata=READ, timeout=10)
    assert r.policy == "ours"
    assert len(r.targets) == 3
    assert r.targets[0].chosen and r.targets[0].reason.startswith("policy choice")
    assert not any(t.chosen for t in r.targets[1:])
    assert [t.score for t in r.targets[1:]] == sorted(t.score for t in r.targets[1:])
    names = {t["name"] for t in mesh.agent.targets()}
    assert {t.target for t in r.targets} == names
    # The prompt's block hashes instead of its text; max_results caps the answer.
    r = mesh.scoring.ScoreTargets(s.ScoreTargetsRequest(model=MODEL, block_hashes=[1, 2, 3], max_results=1),
                                  metadata=READ, timeout=10)
    assert len(r.targets) == 1 and r.targets[0].chosen
    # The control plane's policy for the model picks the strategy, as for the router's own requests.
    mesh.control.SetPolicy(mesh.c.SetPolicyRequest(policy=mesh.c.Policy(model=MODEL, strategy="round-robin")),
                           metadata=ADMIN, timeout=10)
    wait_for(lambda: mesh.scoring.ScoreTargets(s.ScoreTargetsRequest(model=MODEL), metadata=READ,
                                               timeout=10).policy == "round-robin", timeout=5,
             what="the router to follow the new policy")
    mesh.control.DeletePolicy(mesh.c.DeletePolicyRequest(model=MODEL), metadata=ADMIN, timeout=10)
    assert code_of(mesh.scoring.ScoreTargets, s.ScoreTargetsRequest(model="no-such-model"), metadata=READ,
                   timeout=10)[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(mesh.scoring.ScoreTargets, s.ScoreTargetsRequest(), metadata=READ,
                   timeout=10)[0] == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.timeout(60)
def test_admit_and_report_outcome(mesh):
    s = mesh.s
    r = mesh.scoring.Admit(s.AdmitRequest(model=MODEL, token_estimate=100), metadata=READ, timeout=10)
    assert r.decision == s.ADMIT_DECISION_ADMIT and r.reason == ""
    r = mesh.scoring.Admit(s.AdmitRequest(model="no-such-model", token_estimate=100), metadata=READ, timeout=10)
    assert r.decision == s.ADMIT_DECISION_REJECT and r.reason == "no_target" and r.retry_after_s > 0
    assert code_of(mesh.scoring.Admit, s.AdmitRequest(tenant="nobody", model=MODEL, token_estimate=1),
                   metadata=READ, timeout=10)[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(mesh.scoring.Admit, s.AdmitRequest(model=MODEL), metadata=READ,
                   timeout=10)[0] == grpc.StatusCode.INVALID_ARGUMENT
    # Outcomes reach the router's state: failures reported for a target open its circuit breaker.
    target = mesh.agent.targets()[0]["name"]
    ok = s.ReportOutcomeRequest(target=target, model=MODEL, ttft_s=0.05, output_tokens=8, streamed=True,
                                status=s.OUTCOME_STATUS_OK, prompt="hello")
    mesh.scoring.ReportOutcome(ok, metadata=ADMIN, timeout=10)
    bad = s.ReportOutcomeRequest(target=target, model=MODEL, status=s.OUTCOME_STATUS_ERROR)
    for _ in range(5):
        mesh.scoring.ReportOutcome(bad, metadata=ADMIN, timeout=10)
    t = next(t for t in mesh.agent.targets() if t["name"] == target)
    assert t["breaker"] == "open", t
    # Reporting changes routing: the read token is not enough.
    assert code_of(mesh.scoring.ReportOutcome, ok, metadata=READ, timeout=10)[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    assert code_of(mesh.scoring.ReportOutcome, s.ReportOutcomeRequest(target="nope", model=MODEL),
                   metadata=ADMIN, timeout=10)[0] == grpc.StatusCode.NOT_FOUND
    mesh.scoring.ReportOutcome(ok, metadata=ADMIN, timeout=10)  # a success closes it again


@pytest.mark.timeout(60)
def test_control_reads(mesh):
    c = mesh.c
    nodes = mesh.control.ListNodes(c.ListNodesRequest(), metadata=READ, timeout=10).nodes
    assert [(n.name, n.self, n.state) for n in nodes] == [("s1", True, "alive")]
    assert "server" in nodes[0].roles
    models = mesh.control.ListModels(c.ListModelsRequest(), metadata=READ, timeout=10).models
    assert [(m.name, len(m.targets)) for m in models] == [(MODEL, 3)]
    targets = mesh.control.ListTargets(c.ListTargetsRequest(), metadata=READ, timeout=10).targets
    assert sorted(t.name for t in targets) == sorted(t["name"] for t in mesh.agent.targets())
    assert all(t.healthy and list(t.models) == [MODEL] for t in targets)


@pytest.mark.timeout(60)
def test_control_writes_take_the_http_apis_path(mesh):
    c = mesh.c
    pol = c.Policy(model="grpc-model", strategy="power-of-two", slo_class="latency", max_queue=7, hedge="off",
                   fallbacks=[MODEL])
    w = mesh.control.SetPolicy(c.SetPolicyRequest(policy=pol), metadata=ADMIN, timeout=10)
    assert w.index > 0
    got = mesh.control.GetPolicy(c.GetPolicyRequest(model="grpc-model"), metadata=READ, timeout=10)
    assert got == pol
    # The same state over HTTP.
    h = http_get(mesh.port, "/v1/cluster/policies/grpc-model").json()["item"]
    assert h["strategy"] == "power-of-two" and h["hedge"] is False and h["fallbacks"] == [MODEL]
    assert "grpc-model" in [p.model for p in mesh.control.ListPolicies(c.ListPoliciesRequest(), metadata=READ,
                                                                      timeout=10).policies]
    # The control plane's own checks, as over HTTP.
    code, details = code_of(mesh.control.SetPolicy,
                            c.SetPolicyRequest(policy=c.Policy(model="grpc-model", slo_class="fast")),
                            metadata=ADMIN, timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "slo_class" in details
    assert mesh.control.DeletePolicy(c.DeletePolicyRequest(model="grpc-model"), metadata=ADMIN,
                                     timeout=10).index > w.index
    assert code_of(mesh.control.GetPolicy, c.GetPolicyRequest(model="grpc-model"), metadata=READ,
                   timeout=10)[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(mesh.control.DeletePolicy, c.DeletePolicyRequest(model="grpc-model"), metadata=ADMIN,
                   timeout=10)[0] == grpc.StatusCode.NOT_FOUND
    # Pins.
    mesh.control.PinModel(c.PinModelRequest(model="grpc-model", nodes=["s1"]), metadata=ADMIN, timeout=10)
    assert http_get(mesh.port, "/v1/cluster/pins/grpc-model").json()["item"]["nodes"] == ["s1"]
    mesh.control.UnpinModel(c.UnpinModelRequest(model="grpc-model"), metadata=ADMIN, timeout=10)
    assert http_get(mesh.port, "/v1/cluster/pins/grpc-model").status == 404
    assert code_of(mesh.control.PinModel, c.PinModelRequest(model="grpc-model"), metadata=ADMIN,
                   timeout=10)[0] == grpc.StatusCode.INVALID_ARGUMENT
    # Writes need the admin token: the read token is refused, a wrong or missing one is unauthenticated.
    assert code_of(mesh.control.SetPolicy, c.SetPolicyRequest(policy=pol), metadata=READ,
                   timeout=10)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(mesh.control.SetPolicy, c.SetPolicyRequest(policy=pol),
                   metadata=(("authorization", "Bearer wrong"),), timeout=10)[0] == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(mesh.control.DrainNode, c.DrainNodeRequest(node="s1"), timeout=10)[0] == \
        grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.timeout(60)
def test_subscribe_events_sees_a_drain_made_over_http(mesh):
    c = mesh.c
    stream = mesh.control.SubscribeEvents(c.SubscribeEventsRequest(since=1), metadata=READ, timeout=30)
    seen = []

    def read():
        for ev in stream:
            seen.append(ev)
            if ev.kind == "drain" and '"draining":true' in ev.data_json:
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    r = http_request(mesh.port, "POST", "/v1/cluster/nodes/s1/drain", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200, r
    t.join(10)
    assert not t.is_alive(), [e.kind for e in seen]
    ev = seen[-1]
    assert '"node":"s1"' in ev.data_json and ev.seq > 0
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
    stream.cancel()
    # Undrain over gRPC: through the same path.
    r = mesh.control.UndrainNode(c.DrainNodeRequest(node="s1"), metadata=ADMIN, timeout=10)
    assert r.node == "s1" and not r.draining
    r = mesh.control.DrainNode(c.DrainNodeRequest(node="s1"), metadata=ADMIN, timeout=10)
    assert r.draining
    mesh.control.UndrainNode(c.DrainNodeRequest(node="s1"), metadata=ADMIN, timeout=10)
    assert code_of(mesh.control.DrainNode, c.DrainNodeRequest(node="nobody"), metadata=ADMIN,
                   timeout=10)[0] == grpc.StatusCode.NOT_FOUND


def open_streams(mesh):
    return mesh.agent.counter("infermesh_event_streams")


@pytest.mark.timeout(60)
def test_cancel_and_deadline_end_the_stream_on_the_agent(mesh):
    c = mesh.c
    stream = mesh.control.SubscribeEvents(c.SubscribeEventsRequest(), metadata=READ, timeout=30)
    wait_for(lambda: open_streams(mesh) == 1, timeout=5, what="the subscription")
    stream.cancel()  # RST_STREAM
    wait_for(lambda: open_streams(mesh) == 0, timeout=5, what="the cancelled subscription to go")
    stream = mesh.control.SubscribeEvents(c.SubscribeEventsRequest(), metadata=READ, timeout=1)
    with pytest.raises(grpc.RpcError) as e:
        list(stream)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: open_streams(mesh) == 0, timeout=5, what="the expired subscription to go")


@pytest.mark.timeout(60)
def test_malformed_compressed_and_http1_calls(mesh):
    refused = mesh.agent.counter("infermesh_grpc_refused_total")
    raw = mesh.channel.unary_unary("/infermesh.v1.Scoring/ScoreTargets")
    code, details = code_of(raw, b"\xff\xff\xff", metadata=READ, timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ScoreTargetsRequest" in details
    req = mesh.s.ScoreTargetsRequest(model=MODEL).SerializeToString()
    assert code_of(raw, req, metadata=READ, timeout=10, compression=grpc.Compression.Gzip)[0] == \
        grpc.StatusCode.UNIMPLEMENTED
    assert mesh.agent.counter("infermesh_grpc_refused_total") == refused + 2
    # gRPC needs HTTP/2: over HTTP/1.1 a clear 505.
    conn = http.client.HTTPConnection(HOST, mesh.port, timeout=10)
    conn.request("POST", "/infermesh.v1.Scoring/ScoreTargets", body=b"\0\0\0\0\0",
                 headers={"content-type": "application/grpc"})
    r = conn.getresponse()
    assert r.status == 505 and b"HTTP/2" in r.read()
    conn.close()
    # The gRPC path without gRPC's content type.
    r = http_request(mesh.port, "POST", "/infermesh.v1.Scoring/ScoreTargets", body=b"{}",
                     headers={"Authorization": f"Bearer {READ_TOKEN}", "Content-Type": "application/json"})
    assert r.status == 415


@pytest.mark.timeout(60)
def test_the_agent_enforces_grpc_timeout_itself(mesh, tmp_path):
    """A client that does not enforce its own deadline (nghttp sends grpc-timeout and waits): the agent ends the
    stream with DEADLINE_EXCEEDED in the trailers, after the response headers."""
    nghttp = shutil.which("nghttp")
    if not nghttp:
        pytest.skip("nghttp (nghttp2-client) is not installed: run scripts/bootstrap")
    body = tmp_path / "req.bin"
    body.write_bytes(b"\0\0\0\0\0")  # an empty SubscribeEventsRequest
    out = subprocess.run([nghttp, "-v", "-H", "content-type: application/grpc", "-H", "te: trailers", "-H",
                          "grpc-timeout: 300m", "-H", f"authorization: Bearer {READ_TOKEN}", "-d", str(body),
                          f"http://{HOST}:{mesh.port}/infermesh.v1.Control/SubscribeEvents"],
                         capture_output=True, text=True, timeout=20).stdout
    assert ":status: 200" in out, out
    trailers = out[out.index(":status: 200"):]
    assert "grpc-status: 4" in trailers and "deadline" in trailers, out
    wait_for(lambda: open_streams(mesh) == 0, timeout=5, what="the expired subscription to go")


@pytest.mark.timeout(60)
def test_admit_applies_the_tenants_limits(mesh):
    """Runs last: the tenant it adds makes the agent require keys (the tests' read and admin tokens still work)."""
    s = mesh.s
    r = subprocess.run([BIN, "tenant", "add", "team-grpc", "--tokens-per-min", "100", "--agent",
                        f"http://{HOST}:{mesh.port}", "--token", TOKEN], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr

    def known():
        try:
            return mesh.scoring.Admit(s.AdmitRequest(tenant="team-grpc", model=MODEL, token_estimate=500),
                                      metadata=READ, timeout=10)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND
            return None
    r = wait_for(known, timeout=5, what="the router to know the new tenant")
    assert r.decision == s.ADMIT_DECISION_REJECT and r.reason == "too_large" and r.retry_after_s == 0
    r = mesh.scoring.Admit(s.AdmitRequest(tenant="team-grpc", model=MODEL, token_estimate=60), metadata=READ,
                           timeout=10)
    assert r.decision == s.ADMIT_DECISION_ADMIT, r
    r = mesh.scoring.Admit(s.AdmitRequest(tenant="team-grpc", model=MODEL, token_estimate=60), metadata=READ,
                           timeout=10)
    assert r.decision == s.ADMIT_DECISION_REJECT and r.reason == "tokens" and r.retry_after_s > 0, r
    # The tenant's admission state is the router's: its counters show the gateway's requests.
    assert mesh.agent.counter("infermesh_tenant_shed_total", tenant="team-grpc", reason="tokens") == 1
    assert mesh.agent.counter("infermesh_tenant_shed_total", tenant="team-grpc", reason="too_large") >= 1
    assert mesh.agent.counter("infermesh_tenant_admitted_total", tenant="team-grpc") == 1
