"""The ledger through real agents: costs in responses (usage.cost, x-infermesh-cost), a record for every request
in DATA_DIR/ledger.db (real SQLite), nothing lost when the agent is killed with SIGKILL under load, settlement
over HTTP exactly once, and bad prices refused with a clear message."""

import json
import signal
import sqlite3
import subprocess
import threading
import time
from decimal import Decimal

import pytest

from conftest import (BIN, HOST, MODEL, READ_TOKEN, chat_body, free_port, http_request, post_json, raw_connect,
                      wait_for)

ADMIN = "ledger-admin-token"
KEY = "sk-ledger-tenant"
PRICE = f"model={MODEL},prompt=0.5,completion=1.5,cached=0.25"


def expected_cost(u):
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    nano = ((u["prompt_tokens"] - cached) * Decimal("0.5") + cached * Decimal("0.25")
            + u["completion_tokens"] * Decimal("1.5")) * 1000
    return Decimal(int(nano.to_integral_value())) / Decimal(10**9)


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


def ledger_sync(port):
    """Ask the agent for its usage: it first moves its journal into SQLite, which the tests then read directly."""
    r = http_request(port, "GET", "/v1/ledger/usage", headers=bearer(READ_TOKEN))
    assert r.status == 200, r


def ledger_rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT request_id, tenant, model, status, prompt_tokens, completion_tokens, cost_nano,"
                           " provider FROM usage").fetchall()
    finally:
        con.close()


def stream(port, body, headers):
    """POST a streaming request; returns (status, parsed data frames, saw [DONE])."""
    s = raw_connect(port)
    payload = json.dumps(body).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) +
            "Connection: close\r\n\r\n").encode()
    s.sendall(head + payload)
    data = b""
    s.settimeout(30)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    text = data.decode(errors="replace")
    status = int(text.split(" ", 2)[1])
    frames = [ln[6:] for ln in text.splitlines() if ln.startswith("data: ")]
    done = "[DONE]" in frames
    return status, [json.loads(f) for f in frames if f != "[DONE]"], done


@pytest.mark.timeout(60)
def test_costs_in_responses_and_records(procs, tmp_path):
    e = procs.engine()
    ag = procs.agent([e], "--data-dir", str(tmp_path / "d"), "--price", PRICE, "--admin-token", ADMIN,
                     "--tenant", f"name=team-a,key={KEY}", "--provider", "acme")
    total = Decimal(0)
    # non-streaming: usage.cost and the header agree with the price
    for i in range(3):
        r = post_json(ag.port, "/v1/chat/completions", chat_body(f"same prefix for caching {i % 2}" * 8),
                      headers={**bearer(KEY), "x-request-id": f"ns-{i}"})
        assert r.status == 200, r
        u = r.json()["usage"]
        assert isinstance(u["cost"], (int, float)), u
        assert Decimal(str(u["cost"])) == expected_cost(u), u
        assert Decimal(r.headers["x-infermesh-cost"]) == expected_cost(u)
        total += expected_cost(u)
    # streaming with usage: the final usage chunk carries the cost
    status, frames, done = stream(ag.port, chat_body("stream me", stream=True,
                                                     stream_options={"include_usage": True}),
                                  {**bearer(KEY), "x-request-id": "st-1"})
    assert status == 200 and done
    u = frames[-1]["usage"]
    assert Decimal(str(u["cost"])) == expected_cost(u) > 0
    total += expected_cost(u)
    # streaming without usage: the client gets none, the ledger still counts the tokens
    status, frames, done = stream(ag.port, chat_body("stream quietly", stream=True),
                                  {**bearer(KEY), "x-request-id": "st-2"})
    assert status == 200 and done and not any(f.get("usage") for f in frames)
    ledger_sync(ag.port)
    rows = {r[0]: r for r in ledger_rows(tmp_path / "d" / "ledger.db")}
    assert set(rows) >= {"ns-0", "ns-1", "ns-2", "st-1", "st-2"}
    assert rows["st-2"][5] > 0 and rows["st-2"][6] > 0  # completion tokens and cost of the quiet stream
    assert all(r[1] == "team-a" and r[7] == "acme" and r[3] == 200 for r in rows.values())
    # the usage API: the read token sees everything, the tenant its own, another tenant's name is refused
    r = http_request(ag.port, "GET", "/v1/ledger/usage?by=tenant", headers=bearer(READ_TOKEN))
    assert r.status == 200, r
    g = r.json()["groups"]
    assert [x["key"] for x in g] == ["team-a"] and g[0]["requests"] == 5
    quiet = Decimal(rows["st-2"][6]) / Decimal(10**9)
    assert Decimal(g[0]["cost"]) == total + quiet
    assert http_request(ag.port, "GET", "/v1/ledger/usage", headers=bearer(KEY)).status == 200
    r = http_request(ag.port, "GET", "/v1/ledger/usage?tenant=team-b", headers=bearer(KEY))
    assert r.status == 403, r
    assert http_request(ag.port, "GET", "/v1/ledger/usage").status == 401
    assert http_request(ag.port, "GET", "/v1/ledger/contributions", headers=bearer(KEY)).status == 403
    # the request log names the tenant
    assert 'tenant=team-a' in ag.proc.stderr()
    # the CLI
    out = subprocess.run([BIN, "ledger", "usage", "--by", "model", "--agent", ag.url, "--token", READ_TOKEN],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and MODEL[:20] in out.stdout, out


@pytest.mark.timeout(120)
def test_sigkill_under_load_loses_no_completed_request(procs, tmp_path):
    """Clients send as fast as they can; the agent is killed with SIGKILL mid-load and restarted on the same data
    dir. Every request whose client got a complete answer has exactly one record."""
    engines = [procs.engine(name=f"engine-{i}") for i in range(2)]
    port = free_port()
    args = ["--data-dir", str(tmp_path / "d"), "--price", PRICE]
    ag = procs.agent(engines, *args, name="agent-1")
    completed, lock, stop = [], threading.Lock(), threading.Event()

    def client(n):
        i = 0
        while not stop.is_set():
            rid = f"c{n}-{i}"
            i += 1
            try:
                if i % 2:
                    r = post_json(ag.port, "/v1/chat/completions", chat_body(f"load {rid}", max_tokens=4),
                                  headers={"x-request-id": rid}, timeout=10)
                    ok = r.status == 200 and r.json()["usage"]["completion_tokens"] > 0
                else:
                    status, _, done = stream(ag.port, chat_body(f"load {rid}", max_tokens=4, stream=True),
                                             {"x-request-id": rid})
                    ok = status == 200 and done
            except Exception:
                ok = False  # the kill cut it: not complete
            if ok:
                with lock:
                    completed.append(rid)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: len(completed) >= 300, timeout=40, what="300 completed requests")
    ag.proc.signal(signal.SIGKILL)
    ag.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(15)
    with lock:
        done_ids = list(completed)
    ag2 = procs.agent(engines, *args, name="agent-2")  # recovers the WAL on open
    assert ag2.proc.alive()
    rows = ledger_rows(tmp_path / "d" / "ledger.db")
    ids = [r[0] for r in rows]
    missing = set(done_ids) - set(ids)
    dup = len(ids) - len(set(ids))
    print(f"completed={len(done_ids)} records={len(ids)} missing={len(missing)} duplicated={dup}")
    assert not missing, sorted(missing)[:10]
    assert dup == 0


@pytest.mark.timeout(60)
def test_settle_over_http_pays_once(procs, tmp_path):
    e = procs.engine()
    ag = procs.agent([e], "--data-dir", str(tmp_path / "d"), "--price", PRICE, "--admin-token", ADMIN,
                     "--provider", "acme")
    for i in range(5):
        assert post_json(ag.port, "/v1/chat/completions", chat_body(f"pay me {i}")).status == 200
    assert http_request(ag.port, "POST", "/v1/ledger/settle?min_amount=0").status == 401
    assert http_request(ag.port, "POST", "/v1/ledger/settle?min_amount=abc", headers=bearer(ADMIN)).status == 400
    # far above what was earned: no batch
    r = http_request(ag.port, "POST", "/v1/ledger/settle?min_amount=1000", headers=bearer(ADMIN))
    assert r.status == 200 and r.json()["batch"] is None, r
    results = []

    def settle():
        results.append(http_request(ag.port, "POST", "/v1/ledger/settle?min_amount=0", headers=bearer(ADMIN)))

    ts = [threading.Thread(target=settle) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    batches = [r.json() for r in results if r.status == 201]
    assert len(batches) == 1 and sum(r.status == 200 for r in results) == 3, [(r.status, r.body) for r in results]
    b = batches[0]
    assert [p["provider"] for p in b["payouts"]] == ["acme"] and b["payouts"][0]["records"] == 5
    c = http_request(ag.port, "GET", "/v1/ledger/contributions").json()["providers"][0]
    assert c["earned"] == c["paid"] == b["payouts"][0]["amount"] and c["unpaid"] == "0"
    csv = http_request(ag.port, "GET", f"/v1/ledger/payouts/{b['batch']}?format=csv").text()
    assert csv.splitlines()[1].startswith(f"{b['batch']},") and f",{b['payouts'][0]['amount']},5" in csv
    out = subprocess.run([BIN, "ledger", "payouts", b["batch"], "--format", "csv", "--agent", ag.url],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout == csv


@pytest.mark.timeout(30)
def test_bad_prices_are_refused(procs, tmp_path):
    p = procs.infermesh("bad-price", "agent", "--listen", f"{HOST}:{free_port()}", "--price",
                        f"model={MODEL},prompt=-1,completion=1")
    assert p.wait(10) == 2
    assert "--price" in p.stderr() and "not a number >= 0" in p.stderr()
    out = subprocess.run([BIN, "price", "set", "m", "--prompt", "0.5"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "--completion" in out.stderr


@pytest.mark.timeout(60)
def test_control_plane_prices(procs, tmp_path):
    """price set through the control plane: a malformed one gets a clear 400; a good one prices the responses
    (and wins over the config's)."""
    from test_mesh import init_cluster
    from test_raft import TOKEN, Server, leader_of
    key = init_cluster(tmp_path / "key")
    e = procs.engine()
    s1 = Server(procs, tmp_path, "s1", key, expect=1)
    wait_for(lambda: leader_of([s1]), timeout=20, what="a Raft leader")
    url = f"http://{HOST}:{s1.port}"
    for bad, why in ((["--prompt", "-1", "--completion", "1"], ">= 0"),
                     (["--prompt", "1", "--completion", "1", "--currency", "usd"], "ISO 4217")):
        out = subprocess.run([BIN, "price", "set", MODEL, *bad, "--agent", url, "--token", TOKEN],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 1 and "400" in out.stderr and why in out.stderr, out
    out = subprocess.run([BIN, "price", "set", MODEL, "--prompt", "2", "--completion", "4", "--currency", "EUR",
                          "--agent", url, "--token", TOKEN], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out
    out = subprocess.run([BIN, "price", "list", "--agent", url, "--json"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and '"EUR"' in out.stdout, out
    # a gateway of this cluster with its own (other) price in the config: the control plane's wins
    from test_mesh import share_key, start_node
    share_key(key, tmp_path / "gw")
    gw = start_node(procs, tmp_path, "gw", [e], join=[s1.gossip], extra=("--price", PRICE))
    wait_for(lambda: subprocess.run([BIN, "price", "get", MODEL, "--agent", gw.agent.url, "--json"],
                                    capture_output=True, timeout=10).returncode == 0, timeout=20,
             what="the price replicated to the gateway")

    def priced_by_control_plane():
        r = post_json(gw.port, "/v1/chat/completions", chat_body("priced by the control plane"))
        assert r.status == 200, r
        u = r.json()["usage"]
        return Decimal(str(u["cost"])) == Decimal(u["prompt_tokens"] * 2 + u["completion_tokens"] * 4) / 10**6

    wait_for(priced_by_control_plane, timeout=10, what="the control plane's price in responses")


# ---- the cluster-wide ledger in a real PostgreSQL ----

PG_BIN = "/usr/lib/postgresql/15/bin"


class Postgres:
    """A throwaway PostgreSQL in a temporary data dir on 127.0.0.1 (as the postgres user when we are root)."""

    def __init__(self, port):
        import os
        import pwd
        import tempfile
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="im-pg-", dir="/tmp")
        self.as_user = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.run([f"{PG_BIN}/initdb", "-D", f"{self.dir}/data", "-A", "trust", "-U", "infermesh", "--no-sync"])
        self.url = f"postgresql://infermesh@127.0.0.1:{port}/postgres"

    def run(self, args, check=True):
        return subprocess.run(self.as_user + args, capture_output=True, text=True, timeout=60, check=check)

    def start(self):
        self.run([f"{PG_BIN}/pg_ctl", "-D", f"{self.dir}/data", "-w", "-l", f"{self.dir}/log", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])

    def stop(self):
        self.run([f"{PG_BIN}/pg_ctl", "-D", f"{self.dir}/data", "-w", "-m", "fast", "stop"], check=False)

    def query(self, sql, check=True):
        r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "infermesh", "-d", "postgres",
                            "-Atc", sql], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0 or not check, r.stderr
        return r.stdout.strip() if r.returncode == 0 else None

    def count(self):
        """Records in the cluster-wide ledger; None while its table does not exist yet."""
        return self.query("SELECT count(*) FROM infermesh_usage", check=False)

    def close(self):
        import shutil
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres():
    import os
    if not os.path.exists(f"{PG_BIN}/initdb"):
        pytest.skip("PostgreSQL 15 is not installed (scripts/bootstrap installs it)")
    pg = Postgres(free_port())
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


@pytest.mark.timeout(120)
def test_postgres_outbox_exactly_once_across_an_outage(procs, tmp_path, postgres):
    e = procs.engine()
    ag = procs.agent([e], "--data-dir", str(tmp_path / "d"), "--price", PRICE, "--name", "n1",
                     "--ledger-postgres", postgres.url)
    sent = []

    def send(n, tag):
        for i in range(n):
            rid = f"{tag}-{i}"
            assert post_json(ag.port, "/v1/chat/completions", chat_body(rid), headers={"x-request-id": rid}).status == 200
            sent.append(rid)

    send(20, "before")
    wait_for(lambda: postgres.count() == "20", timeout=15,
             what="20 records in PostgreSQL")
    assert postgres.query("SELECT version FROM infermesh_schema") == "2"
    postgres.stop()
    t0 = time.time()
    while time.time() - t0 < 10:  # 10 s of load while PostgreSQL is down: the records wait in SQLite
        send(5, f"during-{int((time.time() - t0) * 1000)}")
    assert ag.counter("infermesh_ledger_outbox_failures_total") >= 1
    postgres.start()
    want = len(sent)
    wait_for(lambda: postgres.count() == str(want), timeout=30,
             what=f"{want} records in PostgreSQL after the outage")
    ids = postgres.query("SELECT request_id FROM infermesh_usage WHERE node = 'n1' ORDER BY seq").split("\n")
    assert ids == sent  # every one, once, in order
    assert postgres.query("SELECT count(DISTINCT seq) FROM infermesh_usage") == str(want)
    # the costs match the node's own ledger
    local = sum(r[6] for r in ledger_rows(tmp_path / "d" / "ledger.db"))
    assert int(postgres.query("SELECT sum(cost_nano) FROM infermesh_usage")) == local
    # a restart resends nothing twice (the position is durable) and picks up where it was
    ag.proc.signal(signal.SIGKILL)
    ag.proc.wait(10)
    ag2 = procs.agent([e], "--data-dir", str(tmp_path / "d"), "--price", PRICE, "--name", "n1",
                      "--ledger-postgres", postgres.url, name="agent-2")
    assert post_json(ag2.port, "/v1/chat/completions", chat_body("after"), headers={"x-request-id": "after"}).status == 200
    wait_for(lambda: postgres.count() == str(want + 1), timeout=15,
             what="the record after the restart")


@pytest.mark.timeout(60)
def test_record_at_the_ingress_names_the_serving_nodes_provider(procs, tmp_path):
    """A request that a gateway forwards to another node is recorded once, at the gateway, and earns the
    serving node's provider (announced in membership); the serving node keeps no record of it."""
    from test_mesh import init_cluster, remote_healthy, share_key, start_node, wait_members
    init_cluster(tmp_path / "gw")
    share_key(tmp_path / "gw", tmp_path / "gpu")
    e = procs.engine()
    gw = start_node(procs, tmp_path, "gw", [], data_dir=tmp_path / "gw", extra=("--price", PRICE))
    gpu = start_node(procs, tmp_path, "gpu", [e], join=[gw.gossip], extra=("--provider", "acme", "--price", PRICE))
    wait_members([gw, gpu], ["gw", "gpu"])
    wait_for(lambda: remote_healthy(gw, 1), timeout=15, what="gpu's engine on the gateway")
    assert any(m["name"] == "gpu" and m["provider"] == "acme" for m in gw.members()["members"])
    for i in range(4):
        r = post_json(gw.port, "/v1/chat/completions", chat_body(f"via the gateway {i}"),
                      headers={"x-request-id": f"gw-{i}"})
        assert r.status == 200 and r.headers["x-infermesh-node"] == "gpu", r
        # priced once, at the gateway: one cost in the body (the serving node adds none), equal to the header
        assert r.body.count(b'"cost"') == 1, r.body
        assert Decimal(str(r.json()["usage"]["cost"])) == Decimal(r.headers["x-infermesh-cost"]) > 0
    ledger_sync(gw.port)
    rows = {r[0]: r for r in ledger_rows(tmp_path / "gw" / "ledger.db")}
    assert set(rows) == {f"gw-{i}" for i in range(4)}
    assert all(r[7] == "acme" and r[6] > 0 for r in rows.values())
    assert ledger_rows(tmp_path / "gpu" / "ledger.db") == []
    c = http_request(gw.port, "GET", "/v1/ledger/contributions").json()["providers"]
    assert [p["provider"] for p in c] == ["acme"] and c[0]["records"] == 4


@pytest.mark.timeout(60)
def test_usage_of_the_whole_mesh(procs, tmp_path):
    """Without PostgreSQL, `ledger usage` asks every alive member and adds their ledgers up; a member that does
    not answer is named."""
    from test_mesh import init_cluster, share_key, start_node, wait_members
    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "b")
    ea, eb = procs.engine(name="engine-a"), procs.engine(name="engine-b")
    a = start_node(procs, tmp_path, "a", [ea], data_dir=tmp_path / "a", extra=("--price", PRICE))
    b = start_node(procs, tmp_path, "b", [eb], join=[a.gossip], extra=("--price", PRICE))
    wait_members([a, b], ["a", "b"])
    for node, n in ((a, 3), (b, 4)):
        for i in range(n):
            assert post_json(node.port, "/v1/chat/completions", chat_body(f"{node.name} {i}")).status == 200
    out = subprocess.run([BIN, "ledger", "usage", "--json", "--agent", a.agent.url], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out
    j = json.loads(out.stdout)
    assert sorted(j["nodes"]) == ["a", "b"] and j["not_answered"] == []
    assert sum(g["requests"] for g in j["groups"]) == 7
    local = subprocess.run([BIN, "ledger", "usage", "--json", "--local", "--agent", a.agent.url],
                           capture_output=True, text=True, timeout=30)
    assert sum(g["requests"] for g in json.loads(local.stdout)["groups"]) == 3
    b.agent.proc.signal(signal.SIGKILL)
    b.agent.proc.wait(10)
    out = subprocess.run([BIN, "ledger", "usage", "--agent", a.agent.url], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "not answered: b" in out.stdout and "did not answer" in out.stderr, out
    out = subprocess.run([BIN, "ledger", "usage", "--json", "--agent", a.agent.url], capture_output=True,
                         text=True, timeout=60)
    j = json.loads(out.stdout)
    assert j["nodes"] == ["a"] and j["not_answered"][0].startswith("b"), j
    assert sum(g["requests"] for g in j["groups"]) == 3


@pytest.mark.timeout(90)
def test_with_postgres_queries_and_settlement_are_cluster_wide(procs, tmp_path, postgres):
    """Two nodes forward to one PostgreSQL: any node's usage answers for both (once, not added up twice), and
    settles sent to both nodes at once pay each record once."""
    from test_mesh import ADMIN as MESH_ADMIN, init_cluster, share_key, start_node, wait_members
    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "b")
    ea, eb = procs.engine(name="engine-a"), procs.engine(name="engine-b")
    extra = ("--price", PRICE, "--ledger-postgres", postgres.url)
    a = start_node(procs, tmp_path, "a", [ea], data_dir=tmp_path / "a", extra=extra + ("--provider", "pa"))
    b = start_node(procs, tmp_path, "b", [eb], join=[a.gossip], extra=extra + ("--provider", "pb"))
    wait_members([a, b], ["a", "b"])
    for node, n in ((a, 5), (b, 6)):
        for i in range(n):
            assert post_json(node.port, "/v1/chat/completions", chat_body(f"{node.name} {i}")).status == 200
    wait_for(lambda: postgres.count() == "11", timeout=20, what="11 records in PostgreSQL")
    out = subprocess.run([BIN, "ledger", "usage", "--json", "--agent", b.agent.url], capture_output=True, text=True,
                         timeout=30)
    j = json.loads(out.stdout)
    assert j["scope"] == "cluster" and sum(g["requests"] for g in j["groups"]) == 11, j
    results = []

    def settle(node):
        results.append(http_request(node.port, "POST", "/v1/ledger/settle?min_amount=0",
                                    headers=bearer(MESH_ADMIN)))

    ts = [threading.Thread(target=settle, args=(n,)) for n in (a, b, a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert sorted(r.status for r in results) == [200, 200, 200, 201], [(r.status, r.body) for r in results]
    batch = next(r.json() for r in results if r.status == 201)
    assert sum(p["records"] for p in batch["payouts"]) == 11
    assert {p["provider"] for p in batch["payouts"]} == {"pa", "pb"}
    assert postgres.query("SELECT count(*) FROM infermesh_usage WHERE batch_id IS NULL") == "0"
    paid = int(postgres.query("SELECT sum(amount_nano) FROM infermesh_payouts"))
    assert paid == int(postgres.query("SELECT sum(contribution_nano) FROM infermesh_usage"))
    r = http_request(a.port, "GET", f"/v1/ledger/payouts/{batch['batch']}")
    assert r.status == 200 and r.json() == batch
