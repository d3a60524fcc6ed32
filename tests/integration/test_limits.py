"""Global resource bounds of the agent's HTTP listener (DESIGN §10), measured on a real agent process:
memory held for request bodies (VmRSS), descriptors (RLIMIT_NOFILE, /proc/PID/fd), event streams, and the
HTTP/1.1 edge cases a real client hits (half-close, invalid UTF-8 in an echoed model name).

Memory is measured with the sanitizer's quarantine off, so that memory the agent frees is given back as it
would be without ASan (the quarantine would otherwise keep every freed large buffer resident)."""

import json
import os
import re
import resource
import select
import socket
import time
from pathlib import Path

import pytest

from conftest import BIN, HOST, chat_body, free_port, http_get, metric_value, parse_prometheus, port_accepts, wait_for

ASAN_ENV = {"ASAN_OPTIONS": "quarantine_size_mb=0:thread_local_quarantine_size_kb=0:detect_leaks=0"}
MB = 1000 * 1000


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def dial(port, timeout=10):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s, timeout=10):
    """One HTTP/1.1 response with a Content-Length: (status, headers dict, body bytes)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:n]


def assert_error_json(body, status):
    obj = json.loads(body.decode("utf-8"))  # strict: must be UTF-8 JSON
    assert set(obj) == {"error"}, obj
    assert set(obj["error"]) >= {"message", "type", "param", "code"}, obj
    return obj


def metrics(port):
    return parse_prometheus(http_get(port, "/metrics").text())


# ---------------------------------------------------------------------------------------------------------------
# memory


@pytest.mark.timeout(90)
def test_stalled_large_bodies_stay_within_the_budget(procs):
    """20 connections each announce a 4 MB body and stall 10 bytes short. With an 8 MB budget two are taken
    in and the other 18 get 503 + Retry-After (OpenAI error JSON) at their headers, so the agent's RSS grows
    by about the budget, not by 80 MB."""
    agent = procs.agent([], "--max-buffered-body-bytes", str(8 * MB), wait_healthy=False, env=ASAN_ENV)
    pid = agent.proc.pid
    assert http_get(agent.port, "/healthz").status == 200
    base = rss_kb(pid)
    body_len = 4 * MB
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {body_len}\r\n\r\n").encode()
    conns = [dial(agent.port) for _ in range(20)]
    for s in conns:
        s.sendall(head)
    # The refusals come back at once; the accepted connections stay silent.
    refused = {}
    deadline = time.monotonic() + 10
    while len(refused) < 18 and time.monotonic() < deadline:
        ready, _, _ = select.select([s for s in conns if s not in refused], [], [], 0.5)
        for s in ready:
            refused[s] = read_response(s)
    accepted = [s for s in conns if s not in refused]
    assert len(refused) == 18 and len(accepted) == 2, (len(refused), len(accepted))
    for status, headers, body in refused.values():
        assert status == 503
        assert headers.get("retry-after") == "1"
        assert headers.get("connection") == "close"
        assert assert_error_json(body, 503)["error"]["type"] == "server_error"
    chunk = b"x" * 65536
    for s in accepted:
        left = body_len - 10
        while left:
            n = s.send(chunk[:min(left, len(chunk))])
            left -= n
    m = wait_for(lambda: (lambda m: metric_value(m, "infermesh_http_buffered_body_bytes") == 2 * body_len and m)(
        metrics(agent.port)), timeout=10, what="both stalled bodies counted")
    assert metric_value(m, "infermesh_http_refused_total", reason="body_budget") == 18
    assert metric_value(m, "infermesh_http_buffered_body_limit_bytes") == 8 * MB
    # Both accepted bodies are in (all but 10 bytes): wait until the agent has read them.
    wait_for(lambda: rss_kb(pid) - base > 6 * 1024, timeout=10, what="the stalled bodies to be read")
    time.sleep(0.3)
    grown = rss_kb(pid) - base
    print(f"RSS {base} kB -> {base + grown} kB (+{grown} kB) with 2 stalled + 18 refused 4 MB bodies")
    assert grown < 24 * 1024, f"RSS grew {grown} kB for an 8 MB budget"
    for s in conns:
        s.close()
    wait_for(lambda: metric_value(metrics(agent.port), "infermesh_http_buffered_body_bytes") == 0, timeout=10,
             what="the budget to be given back")
    # A large body is welcome again once there is room.
    s = dial(agent.port)
    s.sendall(head.replace(b"/v1/chat/completions", b"/nope") + b"x" * body_len)
    status, _, _ = read_response(s)
    assert status == 404
    s.close()


@pytest.mark.timeout(90)
def test_idle_keepalive_connections_do_not_keep_their_bodies(procs):
    """10 keep-alive connections each send one 4 MB request (answered 404) and stay open, idle: the agent
    gives the buffers back after each request, so its RSS ends near where it started (it held ~4 MB per
    connection before)."""
    agent = procs.agent([], wait_healthy=False, env=ASAN_ENV)
    pid = agent.proc.pid
    assert http_get(agent.port, "/healthz").status == 200
    base = rss_kb(pid)
    body = b"y" * (4 * MB)
    conns = []
    for _ in range(10):
        s = dial(agent.port)
        s.sendall(f"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        status, headers, _ = read_response(s)
        assert status == 404 and headers.get("connection") != "close"
        conns.append(s)
    time.sleep(0.3)
    grown = rss_kb(pid) - base
    print(f"RSS {base} kB -> {base + grown} kB (+{grown} kB) with 10 idle connections after a 4 MB request each")
    assert grown < 12 * 1024, f"RSS grew {grown} kB with 10 idle keep-alive connections"
    # They are still usable.
    conns[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(conns[0])[0] == 200
    for s in conns:
        s.close()


# ---------------------------------------------------------------------------------------------------------------
# descriptors


def _raise_own_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


@pytest.mark.timeout(120)
def test_descriptor_limit_is_raised_and_kept_in_reserve(procs):
    """The agent starts with soft RLIMIT_NOFILE 100 under a hard 300. It raises the soft limit (so 150 idle
    connections do not stop it serving: before, every new request failed silently), and when descriptors run
    low it answers new connections 503 (JSON, Retry-After), logs that once, and counts the refusals."""
    _raise_own_nofile(2048)
    port = free_port()
    p = procs.start("agent-nofile", ["prlimit", "--nofile=100:300", "--", BIN, "agent", "--listen", f"{HOST}:{port}",
                                     "--fd-reserve", "40"])
    wait_for(lambda: p.alive() and port_accepts(port), timeout=15, what="agent to listen")
    m = metrics(port)
    assert metric_value(m, "process_max_fds") == 300
    base_fds = metric_value(m, "process_open_fds")
    assert base_fds == pytest.approx(nfds(p.pid), abs=2)
    idle = [dial(port) for _ in range(150)]
    wait_for(lambda: nfds(p.pid) >= base_fds + 148, timeout=10, what="150 idle connections accepted")
    assert http_get(port, "/healthz", timeout=5).status == 200
    # Fill up to the reserve: each new connection is served until one is refused.
    refusals = []
    for _ in range(200):
        s = dial(port)
        idle.append(s)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(s)
        if status == 503:
            refusals.append((headers, body))
            if len(refusals) == 5:
                break
        else:
            assert status == 200
    assert len(refusals) == 5, "no connection was refused near the limit"
    for headers, body in refusals:
        assert headers.get("retry-after") == "1"
        assert_error_json(body, 503)
    # Below the limit by the reserve: the agent still had descriptors to answer and to log, once.
    fds_at_refusal = nfds(p.pid)
    assert fds_at_refusal <= 300 - 30, fds_at_refusal
    lines = [ln for ln in (p.stdout() + p.stderr()).splitlines() if "near the limit" in ln]
    assert len(lines) == 1, lines
    for s in idle:
        s.close()
    wait_for(lambda: nfds(p.pid) < base_fds + 10, timeout=10, what="the connections to close")
    m = metrics(port)
    assert metric_value(m, "infermesh_http_refused_total", reason="descriptors") == 5
    assert metric_value(m, "process_open_fds") < base_fds + 10


# ---------------------------------------------------------------------------------------------------------------
# event streams


def open_events(port):
    s = dial(port)
    s.sendall(b"GET /v1/cluster/events HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    status = int(data.split(b" ", 2)[1])
    return s, status, data


@pytest.mark.timeout(60)
def test_event_streams_are_capped_per_client_and_in_all(procs):
    per = procs.agent([], "--max-event-streams", "10", "--max-event-streams-per-client", "2", wait_healthy=False)
    a, sa, _ = open_events(per.port)
    b, sb, _ = open_events(per.port)
    assert sa == 200 and sb == 200
    c = dial(per.port)
    c.sendall(b"GET /v1/cluster/events HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = read_response(c)
    assert status == 429 and headers.get("retry-after")
    assert_error_json(body, 429)
    c.close()
    # A client that closes a stream gets its slot back at once (not at the next keepalive, 15 s later).
    a.close()
    wait_for(lambda: open_events(per.port)[1] == 200, timeout=5, what="a stream slot after a close")
    m = metrics(per.port)
    assert metric_value(m, "infermesh_event_streams_refused_total", reason="per_client") >= 1
    b.close()

    total = procs.agent([], "--max-event-streams", "2", "--max-event-streams-per-client", "5", wait_healthy=False,
                        name="agent-total")
    x, _, _ = open_events(total.port)
    y, _, _ = open_events(total.port)
    z = dial(total.port)
    z.sendall(b"GET /v1/cluster/events HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = read_response(z)
    assert status == 503 and headers.get("retry-after")
    assert_error_json(body, 503)
    m = metrics(total.port)
    assert metric_value(m, "infermesh_event_streams") == 2
    assert metric_value(m, "infermesh_event_streams_refused_total", reason="total") == 1
    for s in (x, y, z):
        s.close()


# ---------------------------------------------------------------------------------------------------------------
# HTTP edge cases with a real agent


@pytest.fixture(scope="module")
def plain_agent(module_procs):
    return module_procs.agent([], wait_healthy=False)


@pytest.mark.timeout(60)
def test_half_closed_request_is_answered(procs):
    """A client that sends a whole chat completion and then shuts down its sending side gets the response
    (proxied from the engine, so it arrives after the EOF), then EOF. Before: nothing, logged as 499."""
    eng = procs.engine()
    agent = procs.agent([eng])
    body = json.dumps(chat_body()).encode()
    s = dial(agent.port)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(20)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    while data.startswith(b"HTTP/1.1 1"):  # an interim response (the agent's probe for a closed client)
        data = data.partition(b"\r\n\r\n")[2]
    assert data.startswith(b"HTTP/1.1 200"), data[:300]
    resp = json.loads(data.partition(b"\r\n\r\n")[2])
    assert resp["choices"][0]["message"]["content"], resp
    m = metrics(agent.port)
    assert not metric_value(m, "infermesh_requests_total", status="499"), "the half-closed request was aborted"


@pytest.mark.timeout(60)
def test_invalid_utf8_model_name_gets_valid_json(procs):
    """The 404 for an unknown model echoes its name: invalid UTF-8 in it must not make the body invalid JSON."""
    eng = procs.engine()
    agent = procs.agent([eng])
    body = b'{"model":"bad\xff\xfe\xc3name","messages":[{"role":"user","content":"hi"}]}'
    s = dial(agent.port)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    status, _, resp = read_response(s)
    s.close()
    assert status == 404, resp
    obj = assert_error_json(resp, 404)
    assert "bad\ufffd\ufffd\ufffdname" in obj["error"]["message"], obj


@pytest.mark.timeout(30)
@pytest.mark.parametrize("raw", [
    b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /healthz\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
    b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc",
])
def test_ambiguous_requests_get_400_and_close(plain_agent, raw):
    agent = plain_agent
    s = dial(agent.port)
    s.sendall(raw)
    status, headers, body = read_response(s)
    assert status == 400 and headers.get("connection") == "close"
    assert_error_json(body, 400)
    s.settimeout(5)
    assert s.recv(100) == b""
    s.close()
