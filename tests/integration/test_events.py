"""GET /v1/cluster/events and `infermesh events`: membership, target health and config changes, live, as SSE."""

import http.client
import json
import queue
import signal
import subprocess
import threading
import time

import pytest

from conftest import BIN, HOST, wait_for
from test_mesh import init_cluster, share_key, start_node, wait_members


class Stream:
    """Subscribes to an agent's event stream; a thread parses SSE frames into a queue."""

    def __init__(self, port, since=None):
        self.conn = http.client.HTTPConnection(HOST, port, timeout=10)
        path = "/v1/cluster/events" + (f"?since={since}" if since is not None else "")
        self.conn.request("GET", path, headers={"Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.getheader("Content-Type") == "text/event-stream"
        self.conn.sock.settimeout(None)
        self.q = queue.Queue()
        self.ended = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        ev = {}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line.startswith("id: "):
                    ev["id"] = int(line[4:])
                elif line.startswith("event: "):
                    ev["event"] = line[7:]
                elif line.startswith("data: "):
                    ev["data"] = json.loads(line[6:])
                elif line == "" and ev:
                    self.q.put(ev)
                    ev = {}
        except Exception:
            pass
        self.ended.set()

    def expect(self, pred, timeout=20, what="event"):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                ev = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(ev)
            if pred(ev):
                return ev
        raise AssertionError(f"no {what} within {timeout}s; saw {seen}")

    def close(self):
        self.conn.close()


def member(name, state):
    return lambda e: e["event"] == "member" and e["data"]["name"] == name and e["data"]["state"] == state


@pytest.fixture
def pair(procs, tmp_path):
    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "b")
    ea = procs.engine(name="engine-a")
    a = start_node(procs, tmp_path, "a", [ea], data_dir=tmp_path / "a")
    return {"a": a, "engine": ea, "procs": procs, "tmp": tmp_path}


@pytest.mark.timeout(60)
def test_member_target_events_and_replay(pair):
    a, procs, tmp = pair["a"], pair["procs"], pair["tmp"]
    s = Stream(a.port)
    b = start_node(procs, tmp, "b", [procs.engine(name="engine-b")], join=[a.gossip])
    alive = s.expect(member("b", "alive"), what="member b alive")
    assert alive["data"]["id_short"] and alive["data"]["incarnation"] >= 0 and alive["data"]["ts"] > 1e12
    assert isinstance(alive["id"], int) and alive["id"] > 0
    wait_members([a], ["b"])
    b.agent.proc.signal(signal.SIGKILL)
    s.expect(member("b", "dead"), timeout=30, what="member b dead")
    pair["engine"].proc.signal(signal.SIGKILL)
    down = s.expect(lambda e: e["event"] == "target" and not e["data"]["healthy"] and e["data"]["node"] == "",
                    what="local target down")
    assert down["data"]["reason"]
    # ?since= replays what came after a sequence number, in order, with the same ids.
    r = Stream(a.port, since=alive["id"] - 1)
    first = r.expect(lambda e: True, timeout=5)
    assert first["id"] == alive["id"] and first["data"] == alive["data"]
    r.expect(lambda e: e["id"] == down["id"], timeout=5, what="replayed target event")
    r.close()
    s.close()


@pytest.mark.timeout(60)
def test_events_cli_prints_live(pair):
    a, procs, tmp = pair["a"], pair["procs"], pair["tmp"]
    cli = subprocess.Popen([BIN, "events", "--json", "--agent", f"http://{HOST}:{a.port}"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in cli.stdout], daemon=True).start()
    try:
        time.sleep(0.5)
        start_node(procs, tmp, "b", [], join=[a.gossip])
        deadline = time.monotonic() + 20
        got = None
        while time.monotonic() < deadline and got is None:
            try:
                ev = json.loads(lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                break
            if ev["event"] == "member" and ev["data"]["name"] == "b" and ev["data"]["state"] == "alive":
                got = ev
        assert got, "infermesh events printed no member event for b while running"
        assert cli.poll() is None  # still streaming
    finally:
        cli.terminate()
        rc = cli.wait(timeout=10)
    assert rc == 0
    r = subprocess.run([BIN, "events", "--agent", "http://127.0.0.1:1"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "cannot reach the agent" in r.stderr
    r = subprocess.run([BIN, "events", "--bogus"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2


@pytest.mark.timeout(60)
def test_sigterm_with_subscriber_exits_promptly(procs):
    e = procs.engine()
    ag = procs.agent([e])
    s = Stream(ag.port)
    t0 = time.monotonic()
    ag.proc.signal(signal.SIGTERM)
    assert ag.proc.wait(timeout=15) == 0
    assert time.monotonic() - t0 < 10
    assert s.ended.wait(5), "the event stream did not end at shutdown"
    s.close()


@pytest.mark.timeout(60)
def test_drain_cli_durable_with_token_and_config_events(procs, tmp_path):
    from test_raft import TOKEN, Server, leader_of
    key = init_cluster(tmp_path / "key")
    s1 = Server(procs, tmp_path, "s1", key, expect=1)
    wait_for(lambda: leader_of([s1]), timeout=20, what="a Raft leader")
    s = Stream(s1.port)
    url = f"http://{HOST}:{s1.port}"
    r = subprocess.run([BIN, "drain", "s1", "--agent", url], capture_output=True, text=True, timeout=20,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "admin token" in r.stderr, r  # a drain changes the mesh: no token, no drain
    assert not any(m.get("draining") for m in s1.get("/v1/cluster/members").json()["members"])
    r = subprocess.run([BIN, "drain", "s1", "--agent", url, "--token", TOKEN], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "durable" in r.stdout and "records the drain" in r.stdout
    s.expect(lambda e: e["event"] == "drain" and e["data"] == {**e["data"], "node": "s1", "draining": True},
             what="drain event")
    assert s1.get("/v1/cluster/drains/s1").status == 200
    cfg = s.expect(lambda e: e["event"] == "config", what="config event")
    assert cfg["data"]["index"] > 0
    assert (cfg["data"]["kind"], cfg["data"]["name"], cfg["data"]["op"]) == ("drain", "s1", "put")
    r = subprocess.run([BIN, "undrain", "s1", "--agent", url, "--token", TOKEN], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "dropped the drain" in r.stdout
    gone = s.expect(lambda e: e["event"] == "config" and e["data"]["index"] > cfg["data"]["index"],
                    what="2nd config")
    assert (gone["data"]["kind"], gone["data"]["name"], gone["data"]["op"]) == ("drain", "s1", "delete")
    # A changed item is an update, named, on every node's stream (here: a tenant's limits).
    r = subprocess.run([BIN, "tenant", "add", "team-a", "--agent", url, "--token", TOKEN], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    s.expect(lambda e: e["event"] == "config" and e["data"]["kind"] == "tenant" and e["data"]["op"] == "put"
             and e["data"]["name"] == "team-a", what="tenant put")
    r = subprocess.run([BIN, "tenant", "limits", "team-a", "--rps", "5", "--agent", url, "--token", TOKEN],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    s.expect(lambda e: e["event"] == "config" and e["data"] == {**e["data"], "kind": "tenant", "name": "team-a",
                                                                "op": "update"}, what="tenant update")
    s.close()
