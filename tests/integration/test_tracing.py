"""OpenTelemetry traces: agents export OTLP/HTTP protobuf to a collector in the test, decoded with the official
opentelemetry-proto definitions (shipped by the npm package in tests/otlp, compiled with grpc_tools.protoc into
a temporary directory at test time).

* one trace across two nodes: the gateway's attempt span is the parent of the serving node's server span, and
  the engine sees that node's attempt span as its parent;
* an incoming traceparent is continued and its tracestate passed on; a malformed one starts a new trace;
* sampling: ratio 0 records nothing, a sampled parent is always recorded, 0.5 records about half;
* a dead collector (port closed, or one that never answers) costs the requests nothing: they succeed and the
  lost spans are counted;
* a retry and a hedge are marked on their attempt spans;
* the spans of the last requests go out when the agent stops.
"""

import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BIN, HOST, MODEL, REPO, chat_body, free_port, metric_value, post_json, wait_for
from test_hedging import LATENCY, hedged_race
from test_mesh import init_cluster, remote_healthy, share_key, start_node, wait_members

OTLP = REPO / "tests" / "otlp"
PROTOS = OTLP / "node_modules" / "@opentelemetry" / "otlp-grpc-exporter-base" / "build" / "protos"
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def otlp_pb(tmp_path_factory):
    """The official ExportTraceServiceRequest message class, compiled from the npm package's .proto files."""
    if not PROTOS.is_dir():
        # scripts/bootstrap normally installs it; do it here when it has not run.
        if not shutil.which("npm"):
            pytest.skip("npm is not installed: cannot fetch the opentelemetry-proto definitions")
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=OTLP, timeout=180, capture_output=True,
                           text=True)
        if r.returncode != 0 or not PROTOS.is_dir():
            pytest.skip(f"the npm registry is unreachable: no opentelemetry-proto definitions ({r.stderr[-300:]})")
    out = tmp_path_factory.mktemp("otlp_pb")
    files = [str(PROTOS / "opentelemetry" / "proto" / p) for p in
             ("collector/trace/v1/trace_service.proto", "trace/v1/trace.proto", "common/v1/common.proto",
              "resource/v1/resource.proto")]
    r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--python_out={out}", *files],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    finally:
        sys.path.remove(str(out))


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Collector:
    """An OTLP/HTTP receiver on 127.0.0.1: POST /v1/traces, decoded; hang=True never answers (until closed)."""

    def __init__(self, pb, hang=False):
        self.pb, self.hang = pb, hang
        self.spans, self.posts, self.bad = [], [], []
        self.lock = threading.Lock()
        self.release = threading.Event()
        col = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if col.hang:
                    col.release.wait(60)
                    return
                try:
                    col._decode(body)
                except Exception as e:  # noqa: BLE001 - reported by the test
                    col.bad.append(repr(e))
                with col.lock:  # after its spans: a POST counted here is one whose spans are in
                    col.posts.append((self.path, self.headers.get("Content-Type")))
                out = col.pb.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{HOST}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _decode(self, body):
        req = self.pb.ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            res = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    span = {"trace": s.trace_id.hex(), "id": s.span_id.hex(), "parent": s.parent_span_id.hex(),
                            "name": s.name, "kind": s.kind, "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano, "status": s.status.code, "msg": s.status.message,
                            "attrs": {kv.key: _value(kv.value) for kv in s.attributes},
                            "node": res.get("service.instance.id"), "service": res.get("service.name"),
                            "scope": ss.scope.name}
                    with self.lock:
                        self.spans.append(span)

    def find(self, **want):
        with self.lock:
            return [s for s in self.spans if all(s.get(k) == v for k, v in want.items())]

    def servers(self, **want):
        return self.find(kind=2, **want)  # SPAN_KIND_SERVER

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector(otlp_pb):
    made = []

    def make(hang=False):
        c = Collector(otlp_pb, hang=hang)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def engine_parents(engine):
    """(traceparent, tracestate) of every request the engine logged (it runs with --log-level debug)."""
    return re.findall(r'msg="request" n=\d+ traceparent=(\S*) tracestate="([^"]*)"', engine.proc.stderr() +
                      engine.proc.stdout())


def one_span(col, **want):
    found = wait_for(lambda: col.find(**want), timeout=15, what=f"a span {want}")
    assert len(found) == 1, found
    return found[0]


@pytest.mark.timeout(120)
def test_one_trace_across_two_nodes(procs, tmp_path, collector):
    col = collector()
    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "b")
    eb = procs.engine("--log-level", "debug", name="engine-b")
    trace = ["--otlp-endpoint", col.url]
    a = start_node(procs, tmp_path, "a", [], data_dir=tmp_path / "a", extra=trace)  # a gateway: no engine
    b = start_node(procs, tmp_path, "b", [eb], join=[a.gossip], extra=trace)
    wait_members([a, b], ["a", "b"])
    wait_for(lambda: remote_healthy(a, 1), timeout=15, what="b's engine seen by a")

    r = post_json(a.port, "/v1/chat/completions", chat_body("traced across the mesh"))
    assert r.status == 200, r
    assert r.headers["x-infermesh-node"] == "b"
    rid = r.headers["x-request-id"]

    a_server = one_span(col, kind=2, node="a")
    b_server = one_span(col, kind=2, node="b")
    tid = a_server["trace"]
    assert a_server["parent"] == ""  # it started the trace
    assert a_server["service"] == "infermesh" and a_server["scope"] == "infermesh"
    assert a_server["name"] == "POST /v1/chat/completions"
    assert a_server["attrs"]["http.response.status_code"] == 200
    assert a_server["attrs"]["infermesh.request_id"] == rid
    assert a_server["attrs"]["gen_ai.request.model"] == MODEL
    assert a_server["start"] < a_server["end"]
    a_attempt = one_span(col, name="attempt", node="a")
    assert a_attempt["trace"] == tid and a_attempt["parent"] == a_server["id"]
    assert a_attempt["kind"] == 3  # SPAN_KIND_CLIENT
    assert a_attempt["attrs"]["infermesh.node"] == "b"
    assert a_attempt["attrs"]["http.response.status_code"] == 200
    assert a_attempt["attrs"]["infermesh.retry"] is False and a_attempt["attrs"]["infermesh.hedge"] is False
    route = one_span(col, name="route", node="a")
    assert route["parent"] == a_server["id"]
    assert route["attrs"]["infermesh.route.candidates"] == 1
    assert route["attrs"]["infermesh.route.chosen"] == a_attempt["attrs"]["infermesh.target"]
    assert route["attrs"]["infermesh.route.top"].startswith(a_attempt["attrs"]["infermesh.target"] + "=")
    assert one_span(col, name="admission", node="a")["parent"] == a_server["id"]

    # The same trace goes on at b: its server span is a child of a's attempt.
    assert b_server["trace"] == tid
    assert b_server["parent"] == a_attempt["id"]
    assert b_server["attrs"]["infermesh.forwarded"] is True
    assert b_server["attrs"]["infermesh.request_id"] == rid
    b_attempt = one_span(col, name="attempt", node="b")
    assert b_attempt["trace"] == tid and b_attempt["parent"] == b_server["id"]
    assert not col.find(name="admission", node="b")  # a admitted it
    # ... and the engine saw b's attempt as its parent.
    assert (f"00-{tid}-{b_attempt['id']}-01", "") in engine_parents(eb)
    # The request log lines carry the trace id on both nodes.
    for n in (a, b):
        assert re.search(rf'msg="request" id={re.escape(rid)} .* trace_id={tid}', n.agent.proc.stderr() +
                         n.agent.proc.stdout()), n.name
    assert col.posts and all(p == ("/v1/traces", "application/x-protobuf") for p in col.posts)
    assert not col.bad, col.bad


@pytest.mark.timeout(90)
def test_incoming_traceparent_is_continued(procs, collector):
    col = collector()
    eng = procs.engine("--log-level", "debug")
    agent = procs.agent([eng], "--otlp-endpoint", col.url + "/")
    r = post_json(agent.port, "/v1/chat/completions", chat_body("continue"),
                  headers={"traceparent": TP, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"})
    assert r.status == 200, r
    server = one_span(col, kind=2, trace="4bf92f3577b34da6a3ce929d0e0e4736")
    assert server["parent"] == "00f067aa0ba902b7"
    attempt = one_span(col, name="attempt", trace=server["trace"])
    assert attempt["parent"] == server["id"]
    assert (f"00-{server['trace']}-{attempt['id']}-01", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7") in \
        engine_parents(eng)

    # Malformed (uppercase hex): a new trace starts, and its tracestate is not passed on.
    bad = TP.upper()
    r = post_json(agent.port, "/v1/chat/completions", chat_body("restart"),
                  headers={"traceparent": bad, "tracestate": "congo=t61rcWkgMzE", "x-request-id": "bad-tp"})
    assert r.status == 200, r
    fresh = wait_for(lambda: [s for s in col.servers() if s["attrs"]["infermesh.request_id"] == "bad-tp"],
                     timeout=15, what="the server span of the malformed traceparent's request")[0]
    assert fresh["trace"] != "4bf92f3577b34da6a3ce929d0e0e4736" and fresh["parent"] == ""
    seen = [(tp, ts) for tp, ts in engine_parents(eng) if fresh["trace"] in tp]
    assert len(seen) == 1 and seen[0][1] == "", seen

    # The last spans go out when the agent stops, before the exporter's next interval.
    n = len(col.spans)
    r = post_json(agent.port, "/v1/chat/completions", chat_body("last one"), headers={"x-request-id": "last"})
    assert r.status == 200
    agent.proc.signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=20) == 0
    assert [s for s in col.servers() if s["attrs"]["infermesh.request_id"] == "last"], col.spans[n:]


def settled(agent, col):
    """Every span the agent queued reached col and was acknowledged: none queued, every POST sent was received,
    and the collector holds as many spans as the agent counts exported."""
    with col.lock:  # the collector first: a POST it has not finished shows as one sent and not received
        posts, spans = len(col.posts), len(col.spans)
    m = agent.metrics()
    return (metric_value(m, "infermesh_trace_spans_queued") == 0 and
            metric_value(m, "infermesh_trace_exports_total") == posts and
            metric_value(m, "infermesh_trace_spans_exported_total") == spans)


def attempts_of(col, server):
    return sorted(col.find(name="attempt", trace=server["trace"], parent=server["id"]),
                  key=lambda s: s["start"])


@pytest.mark.timeout(60)
def test_retry_is_marked(procs, collector):
    col = collector()
    bad = procs.engine("--error-rate", "1.0", name="engine-500")
    good = procs.engine(name="engine-good")
    agent = procs.agent([bad, good], "--otlp-endpoint", col.url)
    for i in range(10):
        assert post_json(agent.port, "/v1/chat/completions", chat_body(f"r{i}", max_tokens=2)).status == 200
    retried = wait_for(lambda: [s for s in col.servers() if s["attrs"]["infermesh.attempts"] == 2], timeout=15,
                       what="a retried request's server span")[0]
    first, second = wait_for(lambda: len(attempts_of(col, retried)) == 2 and attempts_of(col, retried), timeout=10,
                             what="both attempt spans")
    assert first["attrs"]["infermesh.failure"] == "upstream_5xx"
    assert first["attrs"]["http.response.status_code"] == 500
    assert first["status"] == 2 and "500" in first["msg"]  # STATUS_CODE_ERROR, with the upstream's answer
    assert first["attrs"]["infermesh.retry"] is False and first["attrs"]["infermesh.attempt"] == 1
    assert second["attrs"]["infermesh.retry"] is True and second["attrs"]["infermesh.attempt"] == 2
    assert second["attrs"]["http.response.status_code"] == 200 and second["status"] == 0
    assert second["attrs"]["infermesh.target"] == f"{HOST}:{good.port}"
    # Each send had its routing decision.
    routes = sorted(col.find(name="route", trace=retried["trace"]), key=lambda s: s["start"])
    assert [r["attrs"]["infermesh.route.purpose"] for r in routes] == ["first", "retry"]


@pytest.mark.timeout(90)
def test_hedge_is_marked(procs, collector):
    col = collector()
    slow, fast, agent, box = hedged_race(procs, False, LATENCY, agent_extra=("--otlp-endpoint", col.url))
    assert box["r"][0] == 200 and box["r"][1].get("x-infermesh-hedged") == "true", box["r"]
    rid = box["r"][1]["x-request-id"]
    server = wait_for(lambda: [s for s in col.servers() if s["attrs"]["infermesh.request_id"] == rid], timeout=15,
                      what="the hedged request's server span")[0]
    assert server["attrs"]["infermesh.hedged"] is True
    primary, copy = wait_for(lambda: len(attempts_of(col, server)) == 2 and attempts_of(col, server), timeout=10,
                             what="both attempt spans")
    assert primary["attrs"]["infermesh.hedge"] is False
    assert primary["attrs"]["infermesh.target"] == f"{HOST}:{slow.port}"
    assert primary["attrs"]["infermesh.cancelled"] == "lost the hedge race"
    assert copy["attrs"]["infermesh.hedge"] is True and copy["attrs"]["infermesh.retry"] is False
    assert copy["attrs"]["infermesh.target"] == f"{HOST}:{fast.port}"
    assert copy["attrs"]["http.response.status_code"] == 200
    purposes = sorted(r["attrs"]["infermesh.route.purpose"] for r in col.find(name="route", trace=server["trace"]))
    assert purposes == ["first", "hedge"], purposes


@pytest.mark.timeout(60)
def test_grpc_score_targets_has_a_span(procs, collector, tmp_path):
    grpc = pytest.importorskip("grpc")
    from test_grpc import READ, generate_stubs
    stubs = generate_stubs(tmp_path / "stubs")
    col = collector()
    engines = procs.engines(2)
    agent = procs.agent(engines, "--otlp-endpoint", col.url)
    with grpc.insecure_channel(f"{HOST}:{agent.port}") as ch:
        scoring = stubs["scoring_pb2_grpc"].ScoringStub(ch)
        r = scoring.ScoreTargets(stubs["scoring_pb2"].ScoreTargetsRequest(model=MODEL, prompt="Hello"),
                                 metadata=READ + (("traceparent", TP),), timeout=10)
    span = one_span(col, name="infermesh.v1.Scoring/ScoreTargets")
    assert span["kind"] == 2 and span["trace"] == TP[3:35] and span["parent"] == TP[36:52]
    assert span["attrs"]["rpc.grpc.status_code"] == 0
    assert span["attrs"]["infermesh.route.ranked"] == 2
    assert span["attrs"]["infermesh.route.chosen"] == r.targets[0].target
    assert span["attrs"]["infermesh.route.policy"] == r.policy


@pytest.mark.timeout(150)
def test_sampling_ratio(procs, collector):
    col = collector()
    eng = procs.engine("--log-level", "debug")
    none = procs.agent([eng], "--otlp-endpoint", col.url, "--trace-sample", "0", "--name", "zero")
    for i in range(20):
        assert post_json(none.port, "/v1/chat/completions", chat_body(f"unsampled {i}")).status == 200
    # A sampled parent is recorded even at ratio 0; it arrives after the unsampled ones would have.
    r = post_json(none.port, "/v1/chat/completions", chat_body("sampled parent"), headers={"traceparent": TP})
    assert r.status == 200
    one_span(col, kind=2, node="zero")
    wait_for(lambda: settled(none, col), timeout=10, what="zero's spans all delivered")
    assert {s["trace"] for s in col.find(node="zero")} == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    # Unsampled requests still pass a traceparent on (flags 00), so that what comes next can decide alike.
    assert sum(1 for tp, _ in engine_parents(eng) if tp.endswith("-00")) == 20

    # Ratio 0.5, from OpenTelemetry's own variable: about half of N new traces, with a wide bound.
    col = collector()  # its own, so that every POST it sees is this agent's
    half = procs.agent([eng], "--otlp-endpoint", col.url, "--name", "half", env={"OTEL_TRACES_SAMPLER_ARG": "0.5"})
    n = 200
    for i in range(n):
        assert post_json(half.port, "/v1/chat/completions", chat_body(f"half {i}")).status == 200
    # An unsampled parent is not recorded even at 0.5.
    unsampled = TP[:-2] + "00"
    for i in range(10):
        assert post_json(half.port, "/v1/chat/completions", chat_body(f"no {i}"),
                         headers={"traceparent": unsampled}).status == 200
    wait_for(lambda: settled(half, col), timeout=15, what="half's spans all delivered")
    got = len(col.servers(node="half"))
    assert n * 0.3 <= got <= n * 0.7, got
    assert not col.find(node="half", trace="4bf92f3577b34da6a3ce929d0e0e4736")
    assert half.counter("infermesh_trace_spans_dropped_total") == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dead", ["closed", "silent"])
def test_dead_collector_costs_the_requests_nothing(procs, collector, dead):
    if dead == "closed":
        url = f"http://{HOST}:{free_port()}"  # nothing listens there
    else:
        url = collector(hang=True).url  # accepts, reads, never answers
    eng = procs.engine()
    agent = procs.agent([eng], "--otlp-endpoint", url)
    for i in range(800):  # 4 spans each: more than the export queue and a batch in flight hold
        r = post_json(agent.port, "/v1/chat/completions", chat_body(f"r{i}", max_tokens=2))
        assert r.status == 200, (i, r)
    wait_for(lambda: agent.counter("infermesh_trace_spans_dropped_total") > 0, timeout=20,
             what="lost spans counted")
    if dead == "closed":
        assert agent.counter("infermesh_trace_export_failures_total") > 0
    assert agent.counter("infermesh_trace_spans_exported_total") == 0
    assert agent.counter("infermesh_requests_total") >= 800


@pytest.mark.timeout(30)
@pytest.mark.parametrize("args,env,says", [
    (["--otlp-endpoint", "https://127.0.0.1:4318"], {}, "https is not supported"),
    (["--otlp-endpoint", "collector:4318"], {}, "is not http://HOST:PORT[/PATH]"),
    (["--otlp-endpoint", "http://otel-collector:4318"], {}, "must be an IP address or localhost"),
    (["--trace-sample", "1.5"], {}, "--trace-sample: '1.5' is not a number from 0 to 1"),
    ([], {"OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG: 'half' is not a number from 0 to 1"),
    ([], {"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://127.0.0.1:4317"}, "is not http://HOST:PORT[/PATH]"),
], ids=["https", "no-scheme", "hostname", "ratio", "otel-ratio", "otel-endpoint"])
def test_bad_tracing_settings_are_refused_at_start(tmp_path, args, env, says):
    r = subprocess.run([BIN, "agent", "--listen", f"{HOST}:0", "--data-dir", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=20, env={**os.environ, **env})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert says in r.stderr, r.stderr
