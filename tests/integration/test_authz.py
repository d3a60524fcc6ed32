"""Who may do what on the agent's API (the authorization matrix in the README, rendered from src/api/routes.c).

Changes to the mesh (leave, drain, control-plane writes, model load) need the admin token on every listener,
loopback included; an agent forwards a drain only after it checked the token itself. With tenants configured,
the cluster views and /metrics need the admin or the read token: a tenant's key reads neither, and nothing
without a credential.
"""

import subprocess
import time

import pytest

from conftest import BIN, HOST, READ_TOKEN, chat_body, http_request, post_json, wait_for
from test_mesh import init_cluster, share_key, start_node, wait_members

ADMIN = "authz-admin-token"
READ = READ_TOKEN  # every agent the tests start has it (conftest)
KEY = "sk-authz-tenant-key"
FLAGS = ("--tenant", f"name=team,key={KEY}", "--admin-token", ADMIN)
VIEWS = ["/metrics", "/v1/cluster/status", "/v1/cluster/targets", "/v1/cluster/members", "/v1/cluster/raft",
         "/v1/cluster/policies", "/v1/cluster/events"]


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"} if tok else {}


def get(port, path, tok=None):
    # An event stream never ends: a short timeout on a 200 is expected, so only its status line is read.
    if path.endswith("/events"):
        import http.client
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            conn.request("GET", path, headers=bearer(tok))
            return conn.getresponse().status
        finally:
            conn.close()
    return http_request(port, "GET", path, headers=bearer(tok)).status


@pytest.mark.timeout(60)
def test_standalone_agent_with_tenants(procs):
    e = procs.engine()
    ag = procs.agent([e], *FLAGS)
    # Probes are open.
    assert http_request(ag.port, "GET", "/healthz").status == 200
    # Views: read and admin tokens read; a tenant key is the wrong kind of credential; nothing is no credential.
    for path in VIEWS:
        want_ok = 409 if path in ("/v1/cluster/policies", "/v1/cluster/raft") else 200  # standalone: no Raft
        assert get(ag.port, path) == 401, path
        assert get(ag.port, path, "wrong-token") == 401, path
        assert get(ag.port, path, KEY) == 403, path
        assert get(ag.port, path, READ) == want_ok, path
        assert get(ag.port, path, ADMIN) == want_ok, path
    r = http_request(ag.port, "GET", "/metrics")
    assert r.status == 401 and r.headers.get("www-authenticate") == "Bearer"
    assert r.json()["error"]["code"] == "invalid_api_key"
    # Inference and the model list take the tenant key, not the admin token.
    assert post_json(ag.port, "/v1/chat/completions", chat_body(), headers=bearer(KEY)).status == 200
    assert post_json(ag.port, "/v1/chat/completions", chat_body(), headers=bearer(ADMIN)).status == 401
    assert http_request(ag.port, "GET", "/v1/models", headers=bearer(KEY)).status == 200
    # Leave: nothing, a tenant key and the read token change nothing; the agent keeps serving.
    for tok, status in ((None, 401), (KEY, 403), (READ, 403), ("wrong", 401)):
        r = http_request(ag.port, "POST", "/v1/cluster/leave", headers=bearer(tok))
        assert r.status == status, (tok, r)
    time.sleep(0.5)
    assert ag.proc.alive()
    assert post_json(ag.port, "/v1/chat/completions", chat_body(), headers=bearer(KEY)).status == 200
    # A wrong method is a 405 that names the right one, before any credential is asked for.
    r = http_request(ag.port, "GET", "/v1/cluster/leave")
    assert r.status == 405 and r.headers.get("allow") == "POST", r
    # The admin token makes it leave.
    r = http_request(ag.port, "POST", "/v1/cluster/leave", headers=bearer(ADMIN))
    assert r.status == 202, r
    assert ag.proc.wait(15) == 0


@pytest.mark.timeout(60)
def test_changes_need_an_admin_token_even_on_loopback(procs):
    """Without tenants the views are open on loopback, but leave and drain are not: loopback is not
    authorization. An agent with no admin token configured refuses every change."""
    e = procs.engine()
    ag = procs.agent([e])
    assert get(ag.port, "/v1/cluster/status") == 200
    assert get(ag.port, "/metrics") == 200
    r = http_request(ag.port, "POST", "/v1/cluster/leave")
    assert r.status == 403 and "--admin-token" in r.json()["error"]["message"], r
    r = http_request(ag.port, "POST", "/v1/cluster/targets/x/load", body={"model": "m"})
    assert r.status == 403, r
    time.sleep(0.3)
    assert ag.proc.alive()
    r = subprocess.run([BIN, "leave", "--agent", f"http://{HOST}:{ag.port}"], capture_output=True, text=True,
                       timeout=10, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "admin token" in r.stderr, r
    assert ag.proc.alive()


@pytest.fixture
def mesh2(procs, tmp_path):
    init_cluster(tmp_path / "n1")
    share_key(tmp_path / "n1", tmp_path / "n2")
    e1, e2 = procs.engine(name="engine-1"), procs.engine(name="engine-2")
    n1 = start_node(procs, tmp_path, "n1", [e1], data_dir=tmp_path / "n1", extra=FLAGS)
    n2 = start_node(procs, tmp_path, "n2", [e2], join=[n1.gossip], extra=FLAGS)
    wait_members([n1, n2], ["n1", "n2"])
    return n1, n2


def draining(node, name):
    ms = http_request(node.port, "GET", "/v1/cluster/members", headers=bearer(READ)).json()["members"]
    return any(m["name"] == name and m.get("draining") for m in ms)


@pytest.mark.timeout(90)
def test_drain_of_another_node_needs_the_admin_token(mesh2):
    n1, n2 = mesh2
    for tok, status in ((None, 401), (KEY, 403), (READ, 403)):
        r = http_request(n1.port, "POST", "/v1/cluster/nodes/n2/drain", headers=bearer(tok))
        assert r.status == status, (tok, r)
    time.sleep(1.0)  # a drain that got through would show in membership by now
    assert not draining(n1, "n2") and not draining(n2, "n2")
    # The CLI without a token is refused before it sends anything.
    r = subprocess.run([BIN, "drain", "n2", "--agent", f"http://{HOST}:{n1.port}"], capture_output=True,
                       text=True, timeout=10, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, r
    # With the admin token n1 forwards it, signed; n2 drains.
    r = http_request(n1.port, "POST", "/v1/cluster/nodes/n2/drain", headers=bearer(ADMIN))
    assert r.status == 200, r
    wait_for(lambda: draining(n1, "n2"), timeout=10, what="n1 sees n2 draining")
    r = subprocess.run([BIN, "undrain", "n2", "--agent", f"http://{HOST}:{n1.port}", "--token", ADMIN],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not draining(n1, "n2"), timeout=10, what="n2 undrained")
    # The read token lists members with the CLI, and a tenant key does not.
    r = subprocess.run([BIN, "members", "--agent", f"http://{HOST}:{n2.port}", "--token", READ],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "n1" in r.stdout, r
    r = subprocess.run([BIN, "members", "--agent", f"http://{HOST}:{n2.port}", "--token", KEY],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "tenant" in r.stderr, r
