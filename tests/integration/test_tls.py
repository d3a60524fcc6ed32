"""TLS at the agent's listener: HTTPS/1.1 and ALPN, old protocols and plaintext refused, certificate reload on
SIGHUP under load, client certificates standing for a tenant or the admin, the CLI and the official openai
client over HTTPS. Certificates are made by each test with the openssl CLI."""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import BIN, HOST, MODEL, READ_TOKEN, REPO, chat_body, http_request, wait_for

COMPAT = REPO / "tests" / "compat"
ADMIN = "tls-admin-token"
KEY = "sk-tls-tenant-key"


# ---------------------------------------------------------------------------------------------------------------
# certificates (openssl CLI)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


class Pki:
    """A CA and what it signs, in one folder: server certificates for 127.0.0.1/localhost, client certificates."""

    def __init__(self, folder, name="test-ca"):
        self.dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ca = folder / f"{name}.pem"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-keyout", f"{name}.key", "-out", self.ca.name, "-subj", f"/CN={name}", cwd=folder)

    def issue(self, cn, serial, server=True, san="IP:127.0.0.1,DNS:localhost"):
        """Sign a certificate for cn; return (cert, key) paths. Server ones name san."""
        out = f"{cn}-{serial:x}"
        ext = self.dir / f"{out}.ext"
        ext.write_text(f"subjectAltName={san}\n" if server else "extendedKeyUsage=clientAuth\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{out}.key",
                "-out", f"{out}.csr", "-subj", f"/CN={cn}", cwd=self.dir)
        openssl("x509", "-req", "-in", f"{out}.csr", "-CA", self.ca.name, "-CAkey", f"{self.name}.key", "-days", "2",
                "-set_serial", str(serial), "-extfile", ext.name, "-out", f"{out}.pem", cwd=self.dir)
        return self.dir / f"{out}.pem", self.dir / f"{out}.key"


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


def client_ctx(ca, cert=None, alpn=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


# ---------------------------------------------------------------------------------------------------------------
# HTTPS requests (http.client over ssl)


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Resp {self.status} {self.body[:300]!r}>"


def https(port, ctx, method, path, body=None, headers=None, timeout=30, host=HOST):
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=h)
        r = conn.getresponse()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def https_stream(conn, body, headers=None):
    """One streaming chat request on conn (kept open); return (status, [data...]) once the stream ended."""
    h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    h.update(headers or {})
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers=h)
    r = conn.getresponse()
    frames = [ln[6:].decode() for ln in r.read().split(b"\n") if ln.startswith(b"data: ")]
    return r.status, frames


def curl_h2(port, ca, path, body=None, cert=None):
    """curl over HTTP/2 with TLS (ALPN h2); stdout starts with the status line, then the body."""
    args = ["curl", "-sS", "--http2", "--cacert", str(ca), "-o", "-", "-w", "", "-i"]
    if cert:
        args += ["--cert", str(cert[0]), "--key", str(cert[1])]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    return subprocess.run([*args, f"https://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=15)


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


def tls_agent(procs, pki, *extra, engines=1, speed="0", cert=None):
    """An agent with TLS on (the PKI's server certificate unless cert is given) in front of simulated engines;
    waits until HTTPS answers with every target healthy."""
    engs = procs.engines(engines, speed=speed)
    cert = cert or pki.issue("localhost", 0x1001)
    ag = procs.agent(engs, "--tls-cert", str(cert[0]), "--tls-key", str(cert[1]), *extra, wait_healthy=False)
    ctx = client_ctx(pki.ca)
    wait_for(lambda: (r := https(ag.port, ctx, "GET", "/v1/cluster/targets", headers=bearer(READ_TOKEN),
                                 timeout=5)).status == 200 and all(t["healthy"] for t in r.json()["targets"]),
             timeout=15, what="targets healthy over HTTPS")
    return ag, cert


def peer_serial(port, ca):
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with client_ctx(ca).wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert()["serialNumber"]


# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_https_requests_streams_and_alpn(procs, pki):
    ag, _ = tls_agent(procs, pki)
    assert "tls=on" in ag.proc.stderr()
    ctx = client_ctx(pki.ca)
    r = https(ag.port, ctx, "GET", "/v1/models")
    assert r.status == 200 and [m["id"] for m in r.json()["data"]] == [MODEL], r
    r = https(ag.port, ctx, "POST", "/v1/chat/completions", chat_body())
    assert r.status == 200 and r.json()["usage"]["completion_tokens"] > 0, r
    # several requests and a stream on one keep-alive connection, by its host name
    conn = http.client.HTTPSConnection("localhost", ag.port, context=ctx, timeout=30)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b"ok\n"
        status, frames = https_stream(conn, chat_body(stream=True))
        assert status == 200 and frames[-1] == "[DONE]" and len(frames) > 2, frames
        assert conn.sock.version() == "TLSv1.3"
    finally:
        conn.close()
    # ALPN: h2 when the client offers it (HTTP/2 over TLS), http/1.1 when it offers only that, none works too
    with socket.create_connection((HOST, ag.port), timeout=5) as raw:
        with client_ctx(pki.ca, alpn=["h2", "http/1.1"]).wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "h2"
    r = curl_h2(ag.port, pki.ca, "/v1/chat/completions", chat_body())
    assert r.returncode == 0 and r.stdout.startswith("HTTP/2 200"), r
    for offer, want in ((["http/1.1"], "http/1.1"), (None, None)):
        with socket.create_connection((HOST, ag.port), timeout=5) as raw:
            with client_ctx(pki.ca, alpn=offer).wrap_socket(raw, server_hostname="localhost") as s:
                assert s.selected_alpn_protocol() == want, offer
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok\n"), data


@pytest.mark.timeout(60)
def test_old_tls_and_plaintext_are_refused(procs, pki):
    ag, _ = tls_agent(procs, pki)
    # TLS 1.1: the handshake fails with a protocol_version alert, and the agent says why
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError) as e:
        with socket.create_connection((HOST, ag.port), timeout=5) as raw:
            old.wrap_socket(raw)
    assert "VERSION" in str(e.value).upper(), e.value
    wait_for(lambda: 'msg="TLS handshake failed"' in ag.proc.stderr() and "unsupported protocol" in ag.proc.stderr(),
             timeout=5, what="the refusal of TLS 1.1 in the agent's log")
    # Plain HTTP: a 400 in plaintext, in the OpenAI error format, that says to use https
    r = http_request(ag.port, "GET", "/v1/models")
    assert r.status == 400 and r.json()["error"]["code"] == "https_required", r
    assert "https://" in r.json()["error"]["message"]
    wait_for(lambda: "refused plaintext HTTP on the TLS listener" in ag.proc.stderr(), timeout=5,
             what="the plaintext refusal in the log")
    # and HTTPS still works; both refusals are counted
    assert https(ag.port, client_ctx(pki.ca), "GET", "/healthz").status == 200
    r = https(ag.port, client_ctx(pki.ca), "GET", "/metrics", headers=bearer(READ_TOKEN))
    assert "infermesh_tls_handshake_failures_total 2\n" in r.body.decode(), r


@pytest.mark.timeout(120)
def test_certificate_reload_on_sighup_under_load(procs, pki):
    cert, key = pki.issue("localhost", 0x1001)
    live_cert, live_key = pki.dir / "live.pem", pki.dir / "live.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    ag, _ = tls_agent(procs, pki, speed="20", cert=(live_cert, live_key))
    assert peer_serial(ag.port, pki.ca) == "1001"
    ctx = client_ctx(pki.ca)
    # a keep-alive connection opened before the reload keeps working after it
    kept = http.client.HTTPSConnection(HOST, ag.port, context=ctx, timeout=30)
    kept.request("GET", "/healthz")
    assert kept.getresponse().read() == b"ok\n"
    stop = threading.Event()
    done, failures = {"plain": 0, "stream": 0}, []

    def load(kind):
        while not stop.is_set():
            try:
                if kind == "plain":
                    r = https(ag.port, ctx, "POST", "/v1/chat/completions", chat_body(max_tokens=4))
                    ok = r.status == 200 and r.json()["usage"]["completion_tokens"] > 0
                else:
                    conn = http.client.HTTPSConnection(HOST, ag.port, context=ctx, timeout=30)
                    try:
                        status, frames = https_stream(conn, chat_body(max_tokens=8, stream=True))
                    finally:
                        conn.close()
                    ok = status == 200 and frames[-1] == "[DONE]"
                if not ok:
                    failures.append((kind, "bad answer"))
                done[kind] += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append((kind, repr(e)))

    threads = [threading.Thread(target=load, args=(k,)) for k in ("plain", "plain", "stream", "stream")]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: done["plain"] >= 5 and done["stream"] >= 5, timeout=30, what="load before the reload")
        # the new certificate: same names, another serial
        new_cert, new_key = pki.issue("localhost", 0x2002)
        shutil.copy(new_key, live_key)
        shutil.copy(new_cert, live_cert)
        ag.proc.signal(signal.SIGHUP)
        wait_for(lambda: "TLS certificate reloaded" in ag.proc.stderr(), timeout=10, what="the reload")
        assert peer_serial(ag.port, pki.ca) == "2002"
        before = dict(done)
        wait_for(lambda: done["plain"] >= before["plain"] + 5 and done["stream"] >= before["stream"] + 5,
                 timeout=30, what="load after the reload")
        # a broken certificate file: the reload fails, the agent says so and keeps the one it has
        live_cert.write_text("not a certificate\n")
        ag.proc.signal(signal.SIGHUP)
        wait_for(lambda: "TLS certificate reload failed: keeping the current certificate" in ag.proc.stderr(),
                 timeout=10, what="the failed reload in the log")
        assert "tls.cert" in ag.proc.stderr().split("reload failed")[-1]
        assert peer_serial(ag.port, pki.ca) == "2002"
        before = dict(done)
        wait_for(lambda: done["plain"] >= before["plain"] + 3, timeout=30, what="load after the failed reload")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not failures, failures[:5]
    kept.request("GET", "/healthz")
    assert kept.getresponse().read() == b"ok\n"
    assert kept.sock.getpeercert()["serialNumber"] == "1001"
    kept.close()
    assert ag.proc.alive()


@pytest.mark.timeout(90)
def test_client_certificates_stand_for_a_tenant_or_the_admin(procs, pki, tmp_path):
    ops = pki.issue("ops-laptop", 0x31, server=False)
    billing = pki.issue("billing-svc", 0x32, server=False)
    stranger = pki.issue("stranger", 0x33, server=False)  # trusted, mapped to nothing
    rogue_ca = Pki(tmp_path / "rogue", name="rogue-ca")
    mallory = rogue_ca.issue("billing-svc", 0x34, server=False)  # the right CN from the wrong CA
    cert, key = pki.issue("localhost", 0x1001)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"tls:\n  cert: {cert}\n  key: {key}\n  client_ca: {pki.ca}\n"
                   "  client_map: {ops-laptop: admin, billing-svc: team-a}\n"
                   f"tenants:\n  - {{name: team-a, key: \"{KEY}\"}}\n  - {{name: team-b, key: \"sk-tls-other-key\"}}\n"
                   f"cluster: {{admin_token: {ADMIN}}}\n")
    ag, _ = tls_agent(procs, pki, "--config", str(cfg), "--data-dir", str(tmp_path / "data"), cert=(cert, key))
    plain = client_ctx(pki.ca)
    as_ops, as_billing, as_stranger = (client_ctx(pki.ca, c) for c in (ops, billing, stranger))
    # without a certificate nothing changes: keys and tokens as before
    assert https(ag.port, plain, "GET", "/metrics").status == 401
    assert https(ag.port, plain, "POST", "/v1/chat/completions", chat_body()).status == 401
    assert https(ag.port, plain, "POST", "/v1/chat/completions", chat_body(), headers=bearer(KEY)).status == 200
    # billing-svc is team-a: inference without a key, counted as team-a's; the views stay closed to it
    for i in range(3):
        r = https(ag.port, as_billing, "POST", "/v1/chat/completions", chat_body(),
                  headers={"x-request-id": f"cert-{i}"})
        assert r.status == 200, r
    assert https(ag.port, as_billing, "GET", "/v1/models").status == 200
    assert https(ag.port, as_billing, "GET", "/metrics").status == 403
    assert https(ag.port, as_billing, "POST", "/v1/cluster/leave").status == 403
    # its own usage, as a tenant key would see it; the ledger counts it for team-a
    def team_a_requests():
        r = https(ag.port, plain, "GET", "/v1/ledger/usage?by=tenant", headers=bearer(READ_TOKEN))
        return {g["key"]: g["requests"] for g in r.json()["groups"]}.get("team-a", 0) >= 4
    wait_for(team_a_requests, timeout=10, what="team-a's four requests in the ledger")
    assert https(ag.port, as_billing, "GET", "/v1/ledger/usage").status == 200
    assert https(ag.port, as_billing, "GET", "/v1/ledger/usage?tenant=team-b").status == 403
    log = ag.proc.stderr()
    assert all(f"id=cert-{i} tenant=team-a" in log for i in range(3)), log[-2000:]
    # over HTTP/2 too: the certificate is the connection's, every stream carries it
    r = curl_h2(ag.port, pki.ca, "/v1/chat/completions", chat_body(), cert=billing)
    assert r.returncode == 0 and r.stdout.startswith("HTTP/2 200"), r
    r = curl_h2(ag.port, pki.ca, "/metrics", cert=ops)
    assert r.returncode == 0 and r.stdout.startswith("HTTP/2 200"), r
    # an explicit key wins over the certificate
    r = https(ag.port, as_billing, "POST", "/v1/chat/completions", chat_body(), headers=bearer("sk-tls-other-key"))
    assert r.status == 200
    # a trusted certificate that is mapped to nothing carries no credential
    assert https(ag.port, as_stranger, "POST", "/v1/chat/completions", chat_body()).status == 401
    assert https(ag.port, as_stranger, "GET", "/metrics").status == 401
    # ops-laptop is the admin: views and changes, but it is no tenant
    assert https(ag.port, as_ops, "GET", "/metrics").status == 200
    assert https(ag.port, as_ops, "GET", "/v1/cluster/status").status == 200
    assert https(ag.port, as_ops, "POST", "/v1/chat/completions", chat_body()).status == 401
    # a certificate from another CA is refused in the handshake, with a log line naming it and why
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        https(ag.port, client_ctx(pki.ca, mallory), "POST", "/v1/chat/completions", chat_body(), timeout=5)
    wait_for(lambda: "refused a TLS client certificate" in ag.proc.stderr(), timeout=5, what="the refusal log line")
    line = next(ln for ln in ag.proc.stderr().splitlines() if "refused a TLS client certificate" in ln)
    assert "CN=billing-svc" in line and "unable to get local issuer certificate" in line, line
    # the admin certificate changes the mesh: this agent leaves and exits
    assert https(ag.port, as_ops, "POST", "/v1/cluster/leave").status == 202
    assert ag.proc.wait(timeout=30) == 0


@pytest.mark.timeout(60)
def test_cli_over_https(procs, pki, tmp_path):
    cert, key = pki.issue("localhost", 0x1001)
    live = (pki.dir / "live.pem", pki.dir / "live.key")
    shutil.copy(cert, live[0])
    shutil.copy(key, live[1])
    ag, _ = tls_agent(procs, pki, cert=live)
    url = f"https://127.0.0.1:{ag.port}"
    env = {k: v for k, v in os.environ.items() if k != "INFERMESH_CA"}

    def cli(*args, ca_env=None):
        e = dict(env, INFERMESH_CA=str(ca_env)) if ca_env else env
        return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=15, env=e)

    r = cli("status", "--agent", url, "--ca", str(pki.ca))
    assert r.returncode == 0 and "node" in r.stdout and f"127.0.0.1:{ag.port}" in r.stdout, r
    r = cli("models", "--agent", f"https://localhost:{ag.port}", ca_env=pki.ca)
    assert r.returncode == 0 and MODEL in r.stdout, r
    r = cli("targets", "--json", f"--ca={pki.ca}", "--agent", url)
    assert r.returncode == 0 and json.loads(r.stdout)["targets"][0]["healthy"], r
    # a certificate from a CA the CLI was not told about: a clear error that names the fix
    other = Pki(tmp_path / "other", name="other-ca")
    for args, ca_env in ((("--ca", str(other.ca)), None), ((), other.ca), ((), None)):
        r = cli("status", "--agent", url, *args, ca_env=ca_env)
        assert r.returncode == 1, r
        assert "did not verify" in r.stderr and "--ca FILE" in r.stderr, r.stderr
    # the right CA, the wrong name: a certificate for another host (reloaded on SIGHUP)
    other_host = pki.issue("api.example", 0x2002, san="DNS:api.example")
    shutil.copy(other_host[1], live[1])
    shutil.copy(other_host[0], live[0])
    ag.proc.signal(signal.SIGHUP)
    wait_for(lambda: "TLS certificate reloaded" in ag.proc.stderr(), timeout=10, what="the reload")
    for host, why in (("127.0.0.1", "IP address mismatch"), ("localhost", "hostname mismatch")):
        r = cli("status", "--agent", f"https://{host}:{ag.port}", "--ca", str(pki.ca))
        assert r.returncode == 1 and "did not verify" in r.stderr and why in r.stderr, r.stderr
    r = cli("status", "--agent", url, "--ca")
    assert r.returncode == 2 and "--ca needs a file" in r.stderr, r
    # http:// to the TLS listener: the agent's 400 says to use https
    r = cli("status", "--agent", f"http://127.0.0.1:{ag.port}")
    assert r.returncode == 1 and "https" in r.stderr, r


@pytest.mark.timeout(120)
def test_official_openai_node_client_over_https(procs, pki):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    if not (COMPAT / "node_modules" / "openai").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=COMPAT, check=True, timeout=120,
                       capture_output=True)
    ag, _ = tls_agent(procs, pki, engines=2, speed="10")
    env = {**os.environ, "EXPECT_COST": "0", "NODE_EXTRA_CA_CERTS": str(pki.ca)}
    p = subprocess.run([node, str(COMPAT / "openai_compat.mjs"), f"https://127.0.0.1:{ag.port}/v1"],
                       capture_output=True, text=True, timeout=90, cwd=COMPAT, env=env)
    assert p.returncode == 0, f"openai_compat.mjs failed (rc {p.returncode}):\n{p.stdout}\n{p.stderr}"
    assert "checks passed" in p.stdout and "FAIL" not in p.stdout, p.stdout
    # without the CA the client refuses the agent's certificate (and closes without an alert the agent could log)
    env.pop("NODE_EXTRA_CA_CERTS")
    p = subprocess.run([node, str(COMPAT / "openai_compat.mjs"), f"https://127.0.0.1:{ag.port}/v1"],
                       capture_output=True, text=True, timeout=60, cwd=COMPAT, env=env)
    assert p.returncode != 0 and "Connection error" in p.stdout, p  # the client hides the certificate error
