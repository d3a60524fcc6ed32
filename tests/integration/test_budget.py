"""Spend limits: a tenant's budget per day, month or in total, enforced on the spend of the whole mesh (every
ingress node learns the others' spend from gossip spend reports), refused with OpenAI's 429 insufficient_quota
naming the budget and when it resets; spend survives a restart (read back from the ledger); a malformed budget
is refused with a clear message. The overshoot of three ingress nodes driving one tenant at full speed is
measured and printed (bench/results/ledger.md reports it)."""

import datetime
import json
import signal
import sqlite3
import subprocess
import threading
import time
from decimal import Decimal

import pytest

from conftest import BIN, HOST, MODEL, READ_AUTH, chat_body, free_port, http_request, post_json, wait_for
from test_ledger import ledger_sync

KEY_A, KEY_B = "sk-budget-a", "sk-budget-b"
# 100 per million tokens: a short chat (~40 tokens) costs about 0.004.
PRICE = f"model={MODEL},prompt=100,completion=100"


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


def spent_in(db, tenant):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        (n,) = con.execute("SELECT COALESCE(SUM(cost_nano), 0) FROM usage WHERE tenant = ?", (tenant,)).fetchone()
        return Decimal(n) / Decimal(10**9)
    finally:
        con.close()


def records_of(db, tenant):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM usage WHERE tenant = ?", (tenant,)).fetchone()[0]
    finally:
        con.close()


def ask(port, key, i=0):
    return post_json(port, "/v1/chat/completions", chat_body(f"budget request {i}"), headers=bearer(key))


def next_midnight_utc():
    now = datetime.datetime.now(datetime.timezone.utc)
    return (now + datetime.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")


@pytest.mark.timeout(90)
def test_budget_per_day_is_enforced_and_survives_a_restart(procs, tmp_path):
    e = procs.engine()
    data = tmp_path / "d"
    args = ("--data-dir", str(data), "--price", PRICE, "--tenant", f"name=team-a,key={KEY_A},budget=0.02,period=day",
            "--tenant", f"name=team-b,key={KEY_B}")
    ag = procs.agent([e], *args)
    served = 0
    for i in range(200):
        r = ask(ag.port, KEY_A, i)
        if r.status == 429:
            break
        assert r.status == 200, r
        served += 1
    assert 0 < served < 200, served
    err = r.json()["error"]
    assert err["code"] == "insufficient_quota" and err["type"] == "insufficient_quota", err
    assert "team-a" in err["message"] and "budget of 0.02 per day" in err["message"], err
    assert next_midnight_utc() in err["message"], err
    assert 0 < int(r.headers["retry-after"]) <= 86400
    # spend reached the budget, and no request was let through after it did
    ledger_sync(ag.port)
    spent = spent_in(data / "ledger.db", "team-a")
    assert spent >= Decimal("0.02"), spent
    last = Decimal(r.json()["error"]["message"].split(" has spent ")[1].split(" ")[0])
    assert last == spent
    # a tenant without a budget is not limited; the refusal is counted
    assert ask(ag.port, KEY_B).status == 200
    m = http_request(ag.port, "GET", "/metrics", headers=READ_AUTH).body.decode()
    assert 'infermesh_admission_shed_total{reason="budget"} 1' in m, m[:2000]
    # restarted on the same data dir, the agent still knows what team-a spent today
    ag.proc.signal(signal.SIGTERM)
    ag.proc.wait(15)
    ag = procs.agent([e], *args)
    r = ask(ag.port, KEY_A)
    assert r.status == 429 and r.json()["error"]["code"] == "insufficient_quota", r


@pytest.mark.timeout(30)
def test_malformed_budgets_are_refused(procs, tmp_path):
    for spec, why in ((f"name=t,key={KEY_A},budget=-1", "budget '-1' is not an amount"),
                      (f"name=t,key={KEY_A},budget=1,period=week", "period 'week' is not day, month or total")):
        p = procs.infermesh("bad-budget", "agent", "--listen", f"{HOST}:{free_port()}", "--tenant", spec)
        assert p.wait(10) == 2
        assert why in p.stderr(), p.stderr()


def drive(port, key, stop, out):
    """Send requests one after another until stop is set; count what was served and refused."""
    while not stop.is_set():
        r = ask(port, key)
        if r.status == 200:
            out["ok"] += 1
        elif r.status == 429:
            out["refused"] += 1
            out["first_refusal"] = out["first_refusal"] or time.monotonic()
        else:
            out["other"] += 1


@pytest.mark.timeout(150)
def test_budget_across_three_ingress_nodes(procs, tmp_path):
    """A budget set through the control plane holds for the spend of the whole mesh: a node that served nothing
    refuses once the others spent the budget; three nodes driving one tenant at full speed overshoot by what is
    in flight and in the last report interval (measured and printed)."""
    from test_mesh import init_cluster, share_key, start_node, wait_members
    from test_raft import TOKEN, Server, leader_of
    key = init_cluster(tmp_path / "key")
    s1 = Server(procs, tmp_path, "s1", key, expect=1)
    wait_for(lambda: leader_of([s1]), timeout=20, what="a Raft leader")
    url = f"http://{HOST}:{s1.port}"
    budget = Decimal("0.4")
    out = subprocess.run([BIN, "tenant", "add", "team", "--budget", "0.4", "--period", "month", "--agent", url,
                          "--token", TOKEN, "--json"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out
    tkey = json.loads(out.stdout)["api_key"]
    bad = subprocess.run([BIN, "tenant", "limits", "team", "--budget", "ten", "--agent", url, "--token", TOKEN],
                         capture_output=True, text=True, timeout=20)
    assert bad.returncode == 1 and "400" in bad.stderr and "budget" in bad.stderr, bad
    nodes = []
    for name in ("n1", "n2", "n3"):
        share_key(key, tmp_path / name)
        e = procs.engine(name=f"engine-{name}")
        nodes.append(start_node(procs, tmp_path, name, [e], join=[s1.gossip], extra=("--price", PRICE)))
    wait_members(nodes, ["s1", "n1", "n2", "n3"])
    for n in nodes:  # the control plane's tenant is enforced: a wrong key is refused, the tenant's served
        wait_for(lambda: ask(n.port, "sk-wrong").status == 401 and ask(n.port, tkey).status == 200, timeout=20,
                 what=f"the tenant on {n.name}")

    # Provider n1 (the node's name: no --provider) earns a quarter of what it serves; the others all of it.
    out = subprocess.run([BIN, "provider", "set", "n1", "--share", "0.25", "--agent", url, "--token", TOKEN],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out
    bad = subprocess.run([BIN, "provider", "set", "n2", "--share", "2", "--agent", url, "--token", TOKEN],
                         capture_output=True, text=True, timeout=20)
    assert bad.returncode == 1 and "400" in bad.stderr and "[0, 1]" in bad.stderr, bad
    for n in nodes:
        wait_for(lambda: subprocess.run([BIN, "provider", "get", "n1", "--agent", n.agent.url],
                                        capture_output=True, timeout=10).returncode == 0,
                 timeout=20, what=f"the provider share on {n.name}")

    # 1. One node spends the budget; the two others learn it from spend reports and refuse too.
    n1, n2, n3 = nodes
    for i in range(400):
        if ask(n1.port, tkey, i).status == 429:
            break
    else:
        pytest.fail("n1 never refused")
    t0 = time.monotonic()
    wait_for(lambda: ask(n2.port, tkey).status == 429 and ask(n3.port, tkey).status == 429, timeout=10,
             what="n2 and n3 to refuse on n1's spend")
    learned_s = time.monotonic() - t0
    # the budgets view: a tenant sees its own, spent >= budget and when it resets
    r = http_request(n2.port, "GET", "/v1/ledger/budgets", headers=bearer(tkey))
    assert r.status == 200, r
    (b,) = r.json()["budgets"]
    assert b["tenant"] == "team" and b["budget"] == "0.4" and b["exhausted"] and b["remaining"] == "0", b
    assert Decimal(b["spent"]) >= budget and b["period"] == "month"
    cli = subprocess.run([BIN, "ledger", "budgets", "--agent", n2.agent.url], capture_output=True, text=True,
                         timeout=20)
    assert cli.returncode == 0 and "team" in cli.stdout and "RESETS" in cli.stdout, cli
    err = ask(n3.port, tkey).json()["error"]
    assert err["code"] == "insufficient_quota" and "per month" in err["message"], err
    now = datetime.datetime.now(datetime.timezone.utc)
    first = datetime.datetime(now.year + (now.month == 12), now.month % 12 + 1, 1)
    assert first.strftime("%Y-%m-%dT00:00:00Z") in err["message"], err

    # 2. Raise the budget by 0.4 and let three ingress nodes drive the tenant at full speed (4 clients each).
    out = subprocess.run([BIN, "tenant", "limits", "team", "--budget", "0.8", "--agent", url, "--token", TOKEN],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out
    for n in nodes:
        wait_for(lambda: ask(n.port, tkey).status == 200, timeout=20, what=f"the raised budget on {n.name}")
    phase2_ms = int(time.time() * 1000)
    stop = threading.Event()
    counts = [{"ok": 0, "refused": 0, "other": 0, "first_refusal": None} for _ in range(12)]
    threads = [threading.Thread(target=drive, args=(nodes[i % 3].port, tkey, stop, counts[i])) for i in range(12)]
    for t in threads:
        t.start()
    wait_for(lambda: all(c["refused"] > 0 for c in counts), timeout=60, what="every client refused")
    # keep driving: anything still admitted after the refusals started shows up as overshoot
    wait_for(lambda: all(c["refused"] >= 20 for c in counts), timeout=60, what="20 refusals at every client")
    stop.set()
    for t in threads:
        t.join(30)
    assert sum(c["other"] for c in counts) == 0, counts
    for n in nodes:
        ledger_sync(n.port)
    total = sum(spent_in(n.data_dir / "ledger.db", "team") for n in nodes)
    overshoot = total - Decimal("0.8")
    n_records = sum(records_of(n.data_dir / "ledger.db", "team") for n in nodes)
    per_request = total / n_records
    print(f"\nbudget 0.8 across 3 ingress nodes x 4 clients: spent {total}, overshoot {overshoot} "
          f"({overshoot / per_request:.1f} requests of ~{per_request:.4f}); "
          f"served {sum(c['ok'] for c in counts)}, refused {sum(c['refused'] for c in counts)}; "
          f"n2/n3 learned n1's spend within {learned_s:.2f} s")
    # the mesh stopped the tenant: spend reached the budget, and the overshoot is what was in flight, not a
    # multiple of the budget (each node alone would have let 0.8 through: 2.4 in all)
    assert total >= Decimal("0.8")
    assert overshoot < budget, overshoot
    # contributions: cost x the serving node's provider share (set long before phase 2)
    for n in nodes:
        con = sqlite3.connect(f"file:{n.data_dir / 'ledger.db'}?mode=ro", uri=True, timeout=10)
        rows = con.execute("SELECT provider, cost_nano, contribution_nano FROM usage WHERE tenant = 'team'"
                           " AND ts_ms > ?", (phase2_ms,)).fetchall()
        con.close()
        assert {p for p, _, _ in rows} >= {"n1"}, rows[:5]
        for p, cost, contrib in rows:
            assert contrib == (round(cost * 0.25) if p == "n1" else cost), (p, cost, contrib)
