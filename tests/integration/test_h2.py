"""HTTP/2 on the agent's listener: h2c with prior knowledge (curl, h2load from nghttp2-client, and a raw frame
client for what those will not do), the same API, errors and authorization as HTTP/1.1, and its limits."""

import contextlib
import json
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import HOST, READ_TOKEN, chat_body, http_request, metric_value, wait_for

ADMIN = "h2-admin-token"
KEY = "sk-h2-tenant-key"


def curl(port, method, path, body=None, headers=None, h2=True, timeout=20):
    """One request with curl; (status, headers with lower-cased names, body bytes, protocol line)."""
    args = ["curl", "-sS", "-N", "-D", "-", "-X", method, "--max-time", str(timeout),
            "--http2-prior-knowledge" if h2 else "--http1.1"]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary",
                 json.dumps(body) if isinstance(body, (dict, list)) else body]
    out = subprocess.run(args + [f"http://{HOST}:{port}{path}"], capture_output=True, timeout=timeout + 5).stdout
    head, _, rest = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, rest, lines[0]


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"} if tok else {}


# ---- a raw HTTP/2 client: frames and HPACK literals (no Huffman, no indexing), enough to misbehave on purpose

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
CANCEL, REFUSED_STREAM, PROTOCOL_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x7, 0x1, 0xb


def _hpack_int(v, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if v < limit:
        return bytes([first | v])
    out = [first | limit]
    v -= limit
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def hpack(headers):
    out = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v
    return out


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


class H2Raw:
    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0))

    def send(self, data):
        self.sock.sendall(data)

    @staticmethod
    def request(sid, method, path, port, body=None, extra=()):
        hs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", f"{HOST}:{port}"),
              *extra]
        if body is None:
            return frame(HEADERS, END_HEADERS | END_STREAM, sid, hpack(hs))
        data = json.dumps(body).encode()
        hs.append(("content-type", "application/json"))
        return frame(HEADERS, END_HEADERS, sid, hpack(hs)) + frame(DATA, END_STREAM, sid, data)

    def read_frame(self):
        """The next frame (type, flags, stream id, payload), or None at EOF; SETTINGS are acknowledged."""
        while True:
            while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return None
                self.buf += chunk
            n = int.from_bytes(self.buf[:3], "big")
            ftype, flags, sid = self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
            if ftype == SETTINGS and not flags & ACK:
                with contextlib.suppress(OSError):  # the agent may have closed already
                    self.send(frame(SETTINGS, ACK, 0))
            return ftype, flags, sid, payload

    def until(self, pred, what):
        """Read frames until pred(frame) is true; returns that frame (fails at EOF)."""
        while True:
            f = self.read_frame()
            assert f is not None, f"connection closed while waiting for {what}"
            if pred(f):
                return f

    def close(self):
        self.sock.close()


# ---- fixtures


@pytest.fixture
def fast(procs):
    engine = procs.engine()
    return engine, procs.agent([engine])


@pytest.fixture
def slow(procs):
    engine = procs.engine(speed="1", name="engine-slow")
    return engine, procs.agent([engine])


# ---- the API over h2c


@pytest.mark.timeout(40)
def test_chat_completion_over_h2c_is_the_http1_answer(fast):
    _, agent = fast
    status, h, body, proto = curl(agent.port, "POST", "/v1/chat/completions", chat_body(max_tokens=5))
    assert proto.startswith("HTTP/2"), proto
    assert status == 200, body
    doc = json.loads(body)
    assert doc["object"] == "chat.completion" and doc["usage"]["completion_tokens"] == 5
    assert h["content-type"] == "application/json"
    assert int(h["content-length"]) == len(body)
    s1, h1, _, proto1 = curl(agent.port, "POST", "/v1/chat/completions", chat_body(max_tokens=5), h2=False)
    assert proto1.startswith("HTTP/1.1") and s1 == 200
    for name in ("x-request-id", "x-infermesh-target", "x-infermesh-node", "content-type"):
        assert name in h and name in h1, name
    assert h["x-infermesh-node"] == h1["x-infermesh-node"]
    assert "transfer-encoding" not in h and "connection" not in h  # HTTP/2 has its own framing
    assert agent.counter("infermesh_http2_connections_total") >= 1
    assert agent.counter("infermesh_http2_streams_total") >= 1


@pytest.mark.timeout(40)
def test_streaming_over_h2c(fast):
    _, agent = fast
    status, h, body, proto = curl(agent.port, "POST", "/v1/chat/completions",
                                  chat_body(max_tokens=6, stream=True))
    assert proto.startswith("HTTP/2") and status == 200, body
    assert h["content-type"].startswith("text/event-stream")
    events = [ln[6:] for ln in body.decode().split("\n") if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert len(text.split()) == 6


@pytest.mark.timeout(60)
def test_errors_and_authorization_are_those_of_http1(procs):
    engine = procs.engine()
    agent = procs.agent([engine], "--tenant", f"name=team,key={KEY}", "--admin-token", ADMIN)
    cases = [
        ("POST", "/v1/chat/completions", chat_body(model="no-such-model"), bearer(KEY)),
        ("POST", "/v1/chat/completions", "{not json", bearer(KEY)),
        ("POST", "/v1/chat/completions", chat_body(), {}),
        ("POST", "/v1/chat/completions", chat_body(), bearer(ADMIN)),
        ("GET", "/metrics", None, {}),
        ("GET", "/metrics", None, bearer(KEY)),
        ("GET", "/v1/cluster/status", None, bearer(READ_TOKEN)),
        ("POST", "/v1/cluster/leave", None, bearer(READ_TOKEN)),
        ("POST", "/v1/cluster/leave", None, bearer("wrong")),
        ("GET", "/v1/cluster/leave", None, {}),
        ("GET", "/no/such/path", None, {}),
        ("DELETE", "/v1/models", None, bearer(KEY)),
    ]
    for method, path, body, hdrs in cases:
        s1, h1, b1, _ = curl(agent.port, method, path, body, hdrs, h2=False)
        s2, h2, b2, proto = curl(agent.port, method, path, body, hdrs, h2=True)
        assert proto.startswith("HTTP/2")
        assert s2 == s1, (method, path, s1, s2, b2)
        assert h2.get("content-type") == h1.get("content-type"), (method, path)
        for name in ("www-authenticate", "allow", "retry-after"):
            assert h2.get(name) == h1.get(name), (method, path, name)
        if s1 >= 400 and h1.get("content-type") == "application/json":
            e1, e2 = json.loads(b1)["error"], json.loads(b2)["error"]
            assert e2 == e1, (method, path)
    assert curl(agent.port, "POST", "/v1/chat/completions", chat_body(), bearer(KEY))[0] == 200
    assert agent.proc.alive()


@pytest.mark.timeout(60)
def test_many_concurrent_streams_on_one_connection(fast, tmp_path):
    _, agent = fast
    body = tmp_path / "body.json"
    body.write_text(json.dumps(chat_body(max_tokens=4)))
    conns0 = agent.counter("infermesh_http2_connections_total") or 0
    out = subprocess.run(["h2load", "-n", "400", "-c", "1", "-m", "64", "-d", str(body), "-H",
                          "content-type: application/json", f"http://{HOST}:{agent.port}/v1/chat/completions"],
                         capture_output=True, text=True, timeout=50).stdout
    assert "400 succeeded, 0 failed" in out, out
    assert "400 2xx" in out, out
    assert agent.counter("infermesh_http2_connections_total") == conns0 + 1
    assert agent.counter("infermesh_http2_streams_total") >= 400
    assert metric_value(agent.metrics(), "infermesh_requests_total", status="200") >= 400


@pytest.mark.timeout(40)
def test_limits_answer_in_the_api_format(procs):
    engine = procs.engine()
    agent = procs.agent([engine], "--max-body-bytes", "4096")
    big = chat_body(content="x" * 8000)
    s1, _, b1, _ = curl(agent.port, "POST", "/v1/chat/completions", big, h2=False)
    s2, _, b2, _ = curl(agent.port, "POST", "/v1/chat/completions", big)
    assert s1 == s2 == 413
    assert json.loads(b2)["error"]["message"] == json.loads(b1)["error"]["message"]
    s3, _, b3, _ = curl(agent.port, "GET", "/healthz", headers={"x-big": "y" * 20000})
    assert s3 == 431, b3
    assert json.loads(b3)["error"]["type"] == "invalid_request_error"
    assert curl(agent.port, "POST", "/v1/chat/completions", chat_body())[0] == 200


# ---- flow control, resets and the stream limit (raw frames)


def running(engine):
    return engine.gauge("vllm:num_requests_running")


@pytest.mark.timeout(40)
def test_client_reset_mid_stream_aborts_the_upstream_request(slow):
    engine, agent = slow
    aborts0 = agent.counter("infermesh_client_aborts_total")
    c = H2Raw(agent.port)
    try:
        c.send(H2Raw.request(1, "POST", "/v1/chat/completions", agent.port,
                             chat_body("long story", max_tokens=2000, stream=True)))
        got = 0
        while got < 3:  # a few chunks have arrived: the stream is relayed
            ftype, _, sid, payload = c.until(lambda f: f[0] == DATA and f[2] == 1, "DATA on stream 1")
            got += payload.count(b"chat.completion.chunk")
        assert running(engine) == 1
        c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)))
        wait_for(lambda: running(engine) == 0, timeout=3, interval=0.02,
                 what="the engine to stop the request whose stream was reset")
        wait_for(lambda: agent.counter("infermesh_client_aborts_total") == aborts0 + 1, timeout=3,
                 what="infermesh_client_aborts_total to count the reset")
        assert agent.counter("infermesh_requests_in_flight") == 0
        # The connection itself goes on: another request on it is answered.
        c.send(H2Raw.request(3, "GET", "/healthz", agent.port))
        _, _, _, payload = c.until(lambda f: f[0] == DATA and f[2] == 3 and f[1] & END_STREAM, "/healthz answer")
        assert payload == b"ok\n"
    finally:
        c.close()
    assert metric_value(agent.metrics(), "infermesh_requests_total", status="200") is None


@pytest.mark.timeout(40)
def test_rapid_reset_flood_gets_goaway_and_the_agent_stays_healthy(fast):
    engine, agent = fast
    c = H2Raw(agent.port)
    try:
        burst = b"".join(H2Raw.request(sid, "GET", "/v1/models", agent.port)
                         + frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)) for sid in range(1, 2001, 2))
        try:
            c.send(burst)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent may close before it read the whole burst
        f = c.until(lambda f: f[0] == GOAWAY, "GOAWAY")
        assert int.from_bytes(f[3][4:8], "big") == ENHANCE_YOUR_CALM
    finally:
        c.close()
    assert agent.counter("infermesh_http_refused_total", reason="rapid_reset") == 1
    assert agent.proc.alive()
    assert http_request(agent.port, "GET", "/healthz").status == 200
    assert curl(agent.port, "POST", "/v1/chat/completions", chat_body())[0] == 200


@pytest.mark.timeout(60)
def test_streams_over_the_concurrency_limit_are_refused(slow):
    engine, agent = slow
    c = H2Raw(agent.port)
    try:
        # 101 requests in the first flight, before the client has seen the agent's SETTINGS: the 101st stream
        # is refused (RST_STREAM REFUSED_STREAM, a stream error: the client may retry it), the others run.
        body = chat_body("long story", max_tokens=2000)
        c.send(b"".join(H2Raw.request(sid, "POST", "/v1/chat/completions", agent.port, body)
                        for sid in range(1, 2 * 101, 2)))
        wait_for(lambda: agent.counter("infermesh_requests_in_flight") == 100, timeout=10,
                 what="100 requests in flight")
        _, _, _, payload = c.until(lambda f: f[0] == SETTINGS and not f[1] & ACK, "the agent's SETTINGS")
        settings = {int.from_bytes(payload[i:i + 2], "big"): int.from_bytes(payload[i + 2:i + 6], "big")
                    for i in range(0, len(payload), 6)}
        assert settings.get(0x3) == 100, settings  # SETTINGS_MAX_CONCURRENT_STREAMS
        f = c.until(lambda f: f[0] == RST_STREAM, "RST_STREAM for the 101st stream")
        assert f[2] == 201 and int.from_bytes(f[3], "big") == REFUSED_STREAM, f
        assert agent.counter("infermesh_requests_in_flight") == 100
        # (reading the agent's SETTINGS sent our ack) A client that goes past the limit it acknowledged gets GOAWAY (nghttp2's answer to a peer that
        # ignores SETTINGS), which ends the connection and aborts its requests.
        c.send(H2Raw.request(203, "POST", "/v1/chat/completions", agent.port, body))
        f = c.until(lambda f: f[0] == GOAWAY, "GOAWAY for a stream past the acknowledged limit")
        assert int.from_bytes(f[3][4:8], "big") in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM), f
    finally:
        c.close()
    wait_for(lambda: agent.counter("infermesh_requests_in_flight") == 0, timeout=10, what="no request in flight")
    wait_for(lambda: running(engine) == 0, timeout=10, what="the engine to stop them")
    assert agent.proc.alive()
    assert curl(agent.port, "GET", "/healthz")[0] == 200


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))


@pytest.mark.timeout(90)
def test_flow_control_holds_the_upstream_back_and_the_stream_completes(procs):
    """A client that grants no HTTP/2 window: the stream's bytes stay bounded in the agent (the upstream read
    pauses, as for a slow HTTP/1.1 reader), nothing times out, and once the client opens its window the whole
    stream arrives."""
    engine = procs.engine(speed="0", name="engine-instant")
    agent = procs.agent([engine], "--upstream-timeout-ms", "1500")
    n = 20000  # ~4 MB of SSE, generated at once
    c = H2Raw(agent.port, timeout=30)
    try:
        rss0 = rss_kb(agent.proc.pid)
        c.send(H2Raw.request(1, "POST", "/v1/chat/completions", agent.port,
                             chat_body(max_tokens=n, stream=True, stream_options={"include_usage": True})))
        got = bytearray()
        # The default windows (64 KiB for the stream and the connection) fill up; no WINDOW_UPDATE is sent.
        while len(got) < 60000:
            ftype, flags, sid, payload = c.until(lambda f: f[0] == DATA, "the first DATA frames")
            got += payload
        wait_for(lambda: (engine.gauge("vllm:generation_tokens_total") or 0) >= n, timeout=20,
                 what="the engine to have generated the whole stream")
        time.sleep(2.0)  # longer than the upstream timeout: paused, it does not run
        grown_mb = (rss_kb(agent.proc.pid) - rss0) / 1024
        assert grown_mb < 4, f"the agent grew by {grown_mb:.1f} MB holding a stream the client does not read"
        # Open the windows: the rest arrives.
        c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, (1 << 31) - 1))
               + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", (1 << 31) - 1 - 65535)))
        while True:
            ftype, flags, sid, payload = c.until(lambda f: f[0] in (DATA, RST_STREAM, GOAWAY), "the rest")
            assert ftype == DATA, (ftype, payload)
            got += payload
            if flags & END_STREAM:
                break
    finally:
        c.close()
    frames = [ln[6:] for ln in got.decode().split("\n") if ln.startswith("data: ")]
    assert frames[-1] == "[DONE]", frames[-3:]
    usage = json.loads(frames[-2])
    assert "error" not in usage, usage
    assert usage["usage"]["completion_tokens"] == n
    assert len(frames) == n + 3


@pytest.mark.timeout(40)
def test_sigterm_sends_goaway_and_lets_open_streams_finish(procs):
    engine = procs.engine(speed="1", name="engine-slow")
    agent = procs.agent([engine])
    c = H2Raw(agent.port, timeout=30)
    try:
        c.send(H2Raw.request(1, "POST", "/v1/chat/completions", agent.port,
                             chat_body("drain me", max_tokens=40, stream=True)))
        c.until(lambda f: f[0] == DATA and f[2] == 1, "the stream to start")
        agent.proc.signal(signal.SIGTERM)
        f = c.until(lambda f: f[0] == GOAWAY, "GOAWAY")
        assert int.from_bytes(f[3][4:8], "big") == 0  # NO_ERROR: a graceful shutdown
        assert int.from_bytes(f[3][:4], "big") & 0x7FFFFFFF == 1  # stream 1 was taken and will be answered
        got = bytearray()
        while True:
            ftype, flags, sid, payload = c.until(lambda f: f[0] in (DATA, RST_STREAM), "the rest of stream 1")
            assert ftype == DATA, (ftype, payload)
            got += payload
            if flags & END_STREAM:
                break
        assert c.read_frame() is None  # then the connection closes
    finally:
        c.close()
    assert got.decode().rstrip().endswith("data: [DONE]")
    assert agent.proc.wait(15) == 0


def data_frames(sid, data, end_stream):
    chunks = [data[i:i + 16384] for i in range(0, len(data), 16384)] or [b""]
    return b"".join(frame(DATA, END_STREAM if end_stream and i == len(chunks) - 1 else 0, sid, c)
                    for i, c in enumerate(chunks))


@pytest.mark.timeout(40)
def test_large_bodies_count_against_the_global_budget(procs):
    """The server-wide budget for large request bodies holds for HTTP/2 streams as for HTTP/1.1: a body that
    does not fit while others are being received gets 503 with Retry-After, in the API's format."""
    engine = procs.engine()
    agent = procs.agent([engine], "--max-buffered-body-bytes", "200000")
    refused0 = agent.counter("infermesh_http_refused_total", reason="body_budget")
    big = json.dumps(chat_body(content="x" * 150000, max_tokens=2)).encode()
    head = [("content-type", "application/json")]
    c = H2Raw(agent.port)
    try:
        hs = [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
              (":authority", f"{HOST}:{agent.port}"), *head]
        # Stream 1 sends its 150 KB body but not its end: the agent holds it, counted against the budget.
        c.send(frame(HEADERS, END_HEADERS, 1, hpack(hs)) + data_frames(1, big, False))
        # Stream 3's whole 150 KB does not fit next to it.
        c.send(frame(HEADERS, END_HEADERS, 3, hpack(hs)) + data_frames(3, big, True))
        body3 = bytearray()
        while True:
            _, flags, _, payload = c.until(lambda f: f[0] == DATA and f[2] == 3, "the answer on stream 3")
            body3 += payload
            if flags & END_STREAM:
                break
        err = json.loads(body3)["error"]
        assert "too many large request bodies" in err["message"] and err["type"] == "server_error"
        # Stream 1 ends and is served.
        c.send(frame(DATA, END_STREAM, 1))
        body1 = bytearray()
        while True:
            _, flags, _, payload = c.until(lambda f: f[0] == DATA and f[2] == 1, "the answer on stream 1")
            body1 += payload
            if flags & END_STREAM:
                break
        assert json.loads(body1)["object"] == "chat.completion"
    finally:
        c.close()
    assert agent.counter("infermesh_http_refused_total", reason="body_budget") == refused0 + 1
    wait_for(lambda: metric_value(agent.metrics(), "infermesh_http_buffered_body_bytes") == 0, timeout=5,
             what="the budget to be given back")
