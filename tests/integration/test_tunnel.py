"""The agent-to-agent tunnel (src/tunnel): forwarded requests, control calls and forwarders travel through it.

Agents on 127.0.0.1 with their own identities and a shared cluster key (test_mesh.py's helpers). The tunnel
shares each agent's gossip port; its counters on /metrics say which streams it carried, so each test also
checks that what it sent went through the tunnel and not around it.
"""

import signal
import socket
import socketserver
import subprocess
import threading

import pytest

from conftest import BIN, HOST, chat_body, free_port, metric_value, parse_prometheus, post_json, read_sse, wait_for
from conftest import http_get
from test_mesh import ADMIN, init_cluster, remote_healthy, share_key, start_node, wait_members


def tunnel(node, name, **labels):
    return metric_value(parse_prometheus(http_get(node.port, "/metrics").text()), name, **labels) or 0


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


@pytest.fixture
def echo():
    srv = socketserver.ThreadingTCPServer((HOST, 0), EchoHandler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def pair(procs, tmp_path, echo):
    """a: one engine, allows the echo server's port; g: a gateway with two forwarders to a, one to the echo
    server (allowed) and one to a's engine (a real service on a's loopback that a does not allow)."""
    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "g")
    ea = procs.engine(name="engine-a")
    a = start_node(procs, tmp_path, "a", [ea], data_dir=tmp_path / "a", extra=("--tunnel-allow", str(echo)))
    fwd_ok, fwd_bad = free_port(), free_port()
    g = start_node(procs, tmp_path, "g", [], join=[a.gossip],
                   extra=("--tunnel-forward", f"{fwd_ok}=a:{echo},127.0.0.1:{fwd_bad}=a:{ea.port}"))
    wait_members([a, g], ["a", "g"])
    wait_for(lambda: remote_healthy(g, 1), timeout=15, what="a's target healthy on g")
    return {"a": a, "g": g, "engine": ea, "fwd_ok": fwd_ok, "fwd_bad": fwd_bad}


@pytest.mark.timeout(60)
def test_forwarded_chat_completions_go_through_the_tunnel(pair):
    a, g = pair["a"], pair["g"]
    before = tunnel(a, "infermesh_tunnel_accepted_total")
    for i in range(3):
        r = post_json(g.port, "/v1/chat/completions", chat_body(f"through the tunnel {i}"))
        assert r.status == 200, r.text()
        assert r.headers["x-infermesh-node"] == "a"
        assert r.json()["choices"][0]["message"]["content"]
    status, headers, events = read_sse(g.port, "/v1/chat/completions", chat_body("streamed", stream=True))
    assert status == 200 and headers["x-infermesh-node"] == "a"
    data = [d for _, d in events]
    assert data[-1] == "[DONE]" and len(data) > 2
    # g dialed a through the tunnel (its keep-alive pool reuses the stream), and a relayed it to its API.
    assert tunnel(a, "infermesh_tunnel_accepted_total") > before
    assert tunnel(g, "infermesh_tunnel_dials_total", result="all") >= 1
    assert tunnel(g, "infermesh_tunnel_bytes_total", dir="in") > 0
    assert tunnel(g, "infermesh_tunnel_refused_total", reason="identity") == 0


@pytest.mark.timeout(60)
def test_a_burst_of_new_streams_is_served(pair):
    """Many requests at once make the gateway open many streams to a at once, all on a's gossip port: none
    may be taken for an idle gossip connection and closed to make room."""
    g = pair["g"]
    results = []

    def one(i):
        results.append(post_json(g.port, "/v1/chat/completions", chat_body(f"burst {i}")).status)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 48


@pytest.mark.timeout(60)
def test_drain_is_forwarded_through_the_tunnel(pair):
    a, g = pair["a"], pair["g"]
    before = tunnel(a, "infermesh_tunnel_accepted_total")
    for verb in ("drain", "undrain"):
        r = subprocess.run([BIN, verb, "--token", ADMIN, "a", "--agent", f"http://{HOST}:{g.port}"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        want = verb == "drain"
        wait_for(lambda: any(m["name"] == "a" and bool(m.get("draining")) == want for m in g.members()["members"]),
                 timeout=10, what=f"g sees a {verb}ed")
    assert tunnel(a, "infermesh_tunnel_accepted_total") >= before + 2


@pytest.mark.timeout(60)
def test_forwarder_reaches_an_allowed_port_and_no_other(pair):
    a = pair["a"]
    with socket.create_connection((HOST, pair["fwd_ok"]), timeout=10) as s:
        for msg in (b"ping", b"x" * 200000):
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(65536)
                assert chunk, "the forwarder closed the stream"
                got += chunk
            assert got == msg
    # a's engine listens on a's loopback but a does not allow its port: the stream is refused and closed.
    with socket.create_connection((HOST, pair["fwd_bad"]), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert s.recv(65536) == b"", "a disallowed port answered"
        except ConnectionResetError:
            pass  # closed with our request unread
    wait_for(lambda: tunnel(a, "infermesh_tunnel_refused_total", reason="port") >= 1, timeout=5,
             what="a counts the refused port")
    assert "refused a stream to a port that is not allowed" in a.agent.proc.stderr()


@pytest.mark.timeout(90)
def test_a_node_answering_with_another_identity_is_refused(procs, tmp_path):
    """b knows member a by its identity; a dies and another node of the cluster (holding the cluster key but
    not a's identity) takes a's address before b has noticed: b refuses to talk to it."""
    init_cluster(tmp_path / "a")
    for n in ("b", "m"):
        share_key(tmp_path / "a", tmp_path / n)
    slow = ("--probe-interval-ms", "5000")  # b notices a's death only after several seconds
    ea = procs.engine(name="engine-a")
    a = start_node(procs, tmp_path, "a", [ea], data_dir=tmp_path / "a", extra=slow)
    b = start_node(procs, tmp_path, "b", [], join=[a.gossip], extra=slow)
    wait_members([a, b], ["a", "b"])
    a.agent.proc.signal(signal.SIGKILL)
    a.agent.proc.wait(10)
    gport = int(a.gossip.rsplit(":", 1)[1])
    m = procs.agent([], "--name", "m", "--data-dir", str(tmp_path / "m"), "--gossip", f"{HOST}:{gport}",
                    "--admin-token", ADMIN, name="impostor")
    r = subprocess.run([BIN, "drain", "--token", ADMIN, "a", "--agent", f"http://{HOST}:{b.port}"],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode != 0
    assert "the peer is not the member it should be" in b.agent.proc.stderr()
    assert tunnel(b, "infermesh_tunnel_refused_total", reason="identity") >= 1
    me = [x for x in http_get(m.port, "/v1/cluster/members").json()["members"] if x["self"]]
    assert me and not me[0]["draining"]


@pytest.mark.timeout(90)
def test_forwarding_to_a_node_with_tls_on_its_listener(procs, tmp_path):
    """A node whose listener speaks only HTTPS still serves forwarded requests: the tunnel relays them to a
    plaintext listener of its own on loopback (the tunnel already encrypted them)."""
    from test_tls import Pki
    pki = Pki(tmp_path / "pki")
    cert, key = pki.issue("localhost", 0x2001)
    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "g")
    ea = procs.engine(name="engine-a")
    gossip_a = f"{HOST}:{free_port()}"
    procs.agent([ea], "--name", "a", "--data-dir", str(tmp_path / "a"), "--gossip", gossip_a, "--admin-token", ADMIN,
                "--tls-cert", str(cert), "--tls-key", str(key), name="a", wait_healthy=False)
    g = start_node(procs, tmp_path, "g", [], join=[gossip_a])
    wait_for(lambda: remote_healthy(g, 1), timeout=20, what="a's target healthy on g")
    r = post_json(g.port, "/v1/chat/completions", chat_body("to a node with TLS on"))
    assert r.status == 200, r.text()
    assert r.headers["x-infermesh-node"] == "a"
    status, headers, events = read_sse(g.port, "/v1/chat/completions", chat_body("streamed to TLS", stream=True))
    assert status == 200 and headers["x-infermesh-node"] == "a"
    assert [d for _, d in events][-1] == "[DONE]"
