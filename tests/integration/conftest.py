"""Fixtures and helpers for infermesh integration tests.

Real processes (the ASan build of `infermesh`) on 127.0.0.1; Python is only the driver (stdlib + pytest).

* Every test is bounded: an autouse SIGALRM fixture fails it after `@pytest.mark.timeout(S)` seconds
  (DEFAULT_TIMEOUT_S otherwise). pytest-timeout is not used.
* Every process a test starts goes through a `Procs` manager: its own session/process group, stdout and
  stderr to files under tmp_path, killed (whole group, SIGKILL) and reaped at teardown even when the test
  fails. When a test fails, the tails of those logs are attached to its report.
* Sanitizer reports (ASan, UBSan, LSan) in any log fail the test at teardown.
* Waiting is always polling with a deadline (`wait_for`), never a bare sleep.
"""

import contextlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("INFERMESH_BIN") or str(REPO / "build-asan" / "infermesh")
PROFILES = REPO / "profiles"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# Every agent the tests start (and every CLI they run) gets this read token: with tenants configured, the
# cluster views and /metrics need it (test_authz checks who may read what without it).
READ_TOKEN = "test-read-token"
os.environ.setdefault("INFERMESH_READ_TOKEN", READ_TOKEN)
READ_AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}
TINY_MODEL = "tiny-test-model"
HOST = "127.0.0.1"
DEFAULT_TIMEOUT_S = 60

SANITIZER_PATTERNS = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|ERROR: UndefinedBehaviorSanitizer|"
    r"AddressSanitizer:DEADLYSIGNAL"
)


# ---------------------------------------------------------------------------------------------------------------
# pytest plumbing: markers, per-test timeout, logs on failure


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): fail the test if it runs longer than this (SIGALRM)")


class PerTestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _per_test_timeout(request):
    """Bound every test (setup of function fixtures included) with SIGALRM."""
    marker = request.node.get_closest_marker("timeout")
    seconds = int(marker.args[0]) if marker else DEFAULT_TIMEOUT_S

    def on_alarm(signum, frame):
        raise PerTestTimeout(f"test exceeded its {seconds}s timeout")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# Every live Procs manager (function- or module-scoped); their logs go into a failed test's report.
_LIVE_MANAGERS = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for mgr in list(_LIVE_MANAGERS):
            for title, text in mgr.log_sections():
                rep.sections.append((title, text))


# ---------------------------------------------------------------------------------------------------------------
# waiting


def wait_for(cond, timeout=10.0, interval=0.05, what="condition"):
    """Poll cond() until it returns a truthy value; return it. Fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, http.client.HTTPException, ValueError) as e:  # not up yet, connection refused, ...
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def wait_reports_after(port, since, timeout=10.0):
    """Wait until the agent on port holds, for every target it lists, a load report taken after `since` (a
    time.monotonic() value). A peer's shared routing decision reserves its work on a target until such a report
    covers it, so a test that reads where a router sends prompts after a burst waits for this first."""
    def fresh():
        ts = http_get(port, "/v1/cluster/targets").json()["targets"]
        elapsed = time.monotonic() - since
        return bool(ts) and all(t["age_ms"] is not None and t["age_ms"] / 1000 < elapsed for t in ts)
    wait_for(fresh, timeout=timeout, what="load reports taken after the routing decisions")


_HANDED_OUT = set()


def _port_window():
    """Ports the kernel never hands out on its own: below (or above) the ephemeral range.

    A port picked inside the ephemeral range can be taken a moment later by any process's connect() or bind(0)
    (a simulated engine's listener, say), which made `dev --port P` find P+1 in use."""
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    if lo - 1 - 10000 >= 2000:
        return 10000, lo - 1
    return hi + 1, 65535


def _bindable(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
            except OSError:
                return False
    return True


def free_ports(n):
    """The first of n consecutive ports that were free a moment ago on 127.0.0.1 (TCP and UDP), outside the
    kernel's ephemeral range and never handed out before in this test run."""
    lo, hi = _port_window()
    for _ in range(1000):
        base = random.randint(lo, hi - n)
        block = range(base, base + n)
        if any(p in _HANDED_OUT for p in block) or not all(_bindable(p) for p in block):
            continue
        _HANDED_OUT.update(block)
        return base
    raise RuntimeError(f"no {n} consecutive free ports in {lo}-{hi}")


def free_port():
    """A port that was free a moment ago on 127.0.0.1 (see free_ports)."""
    return free_ports(1)


def port_accepts(port):
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------------
# processes


class Proc:
    """A child process in its own process group, output captured to files."""

    def __init__(self, name, args, logdir, env=None):
        self.name = name
        self.args = [str(a) for a in args]
        self.out_path = Path(logdir) / f"{name}.stdout"
        self.err_path = Path(logdir) / f"{name}.stderr"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        full_env = dict(os.environ)
        full_env.setdefault("INFERMESH_PROFILES_DIR", str(PROFILES))
        # Keep sanitizer reports in stderr (the default) and make UBSan print stacks.
        full_env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        full_env.pop("INFERMESH_PARENT_PID", None)
        # Never read the machine's own data dir (a cluster key there would make every agent gossip): an agent
        # without --data-dir gets an empty one of its own.
        if "--data-dir" not in self.args:
            full_env["INFERMESH_DATA_DIR"] = str(Path(logdir) / f"{name}.data")
        else:
            full_env.pop("INFERMESH_DATA_DIR", None)
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, env=full_env,
            start_new_session=True, cwd=str(REPO),
        )
        self.pid = self.popen.pid

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Wait for exit; return the exit status (negative = killed by that signal)."""
        return self.popen.wait(timeout=timeout)

    def kill_group(self):
        """SIGKILL the whole process group (children included) and reap."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.popen.wait(timeout=10)
        for f in (self._out, self._err):
            with contextlib.suppress(Exception):
                f.close()

    def describe(self):
        rc = self.popen.poll()
        state = "running" if rc is None else f"exited {rc}"
        return f"{self.name} pid={self.pid} {state}: {' '.join(self.args)}"


class Engine:
    def __init__(self, proc, port, model):
        self.proc, self.port, self.model = proc, port, model
        self.url = f"http://{HOST}:{port}"

    def metrics(self):
        return parse_prometheus(http_get(self.port, "/metrics").text())

    def gauge(self, name):
        return metric_value(self.metrics(), name)


class Agent:
    def __init__(self, proc, port):
        self.proc, self.port = proc, port
        self.url = f"http://{HOST}:{port}"

    def metrics(self):
        return parse_prometheus(http_get(self.port, "/metrics").text())

    def counter(self, name, **labels):
        return metric_value(self.metrics(), name, **labels)

    def targets(self):
        return http_get(self.port, "/v1/cluster/targets").json()["targets"]


class Procs:
    """Starts infermesh processes and guarantees their cleanup."""

    def __init__(self, logdir):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.procs = []
        self._n = 0
        _LIVE_MANAGERS.append(self)

    def start(self, name, args, env=None):
        self._n += 1
        p = Proc(f"{self._n:02d}-{name}", args, self.logdir, env=env)
        self.procs.append(p)
        return p

    def infermesh(self, name, *args, env=None):
        return self.start(name, [BIN, *args], env=env)

    def engine(self, *extra, speed="0", profile=None, model=None, name="engine", wait_ready=True):
        args = ["sim-engine", "--host", HOST, "--port", "0", "--speed", str(speed)]
        if profile:
            args += ["--profile", profile]
        if model:
            args += ["--model", model]
        args += list(extra)
        p = self.infermesh(name, *args)
        m = wait_for(lambda: _check_alive(p) and re.search(r"listening on http://127\.0\.0\.1:(\d+) model=(\S+)",
                                                              p.stdout()),
                     timeout=15, what=f"{p.name} to print its port")
        eng = Engine(p, int(m.group(1)), m.group(2))
        if wait_ready:
            wait_for(lambda: http_get(eng.port, "/health", timeout=2).status == 200, timeout=10,
                     what=f"{p.name} /health")
        return eng

    def engines(self, n, *extra, **kw):
        return [self.engine(*extra, name=f"engine{i}", **kw) for i in range(n)]

    def agent(self, targets, *extra, scrape_ms=200, wait_healthy=True, name="agent", env=None):
        """Start an agent on a free port targeting `targets` (Engines or URLs); wait until every target is
        healthy (or only until it listens, with wait_healthy=False)."""
        urls = [t.url if isinstance(t, Engine) else t for t in targets]
        for _ in range(3):  # the free port may be taken between the probe and the bind: try another
            port = free_port()
            args = ["agent", "--listen", f"{HOST}:{port}", "--scrape-interval-ms", str(scrape_ms)]
            for u in urls:
                args += ["--target", u]
            args += list(extra)
            p = self.infermesh(name, *args, env=env)

            def listening():
                if not p.alive():
                    return "exited"
                return port_accepts(port) and "listening"

            state = wait_for(listening, timeout=15, what=f"{p.name} to listen on {port}")
            if state == "exited" and "in use" in p.stderr():
                continue
            _check_alive(p)
            break
        agent = Agent(p, port)
        if wait_healthy and urls:
            def own_healthy():  # this agent's own runtimes (in a mesh, other nodes' targets appear beside them)
                own = [t for t in agent.targets() if not t.get("remote")]
                return len(own) == len(urls) and all(t["healthy"] for t in own)

            wait_for(lambda: _check_alive(p) and own_healthy(), timeout=15,
                     what=f"{p.name}: all {len(urls)} targets healthy")
        return agent

    def log_sections(self):
        out = []
        for p in self.procs:
            for kind, path in (("stdout", p.out_path), ("stderr", p.err_path)):
                try:
                    text = path.read_text(errors="replace")
                except OSError:
                    continue
                if not text.strip():
                    continue
                lines = text.splitlines()
                if len(lines) > 80:
                    lines = [f"... ({len(lines) - 80} earlier lines in {path})"] + lines[-80:]
                out.append((f"{p.describe()} [{kind}]", "\n".join(lines)))
        return out

    def sanitizer_reports(self):
        bad = []
        for p in self.procs:
            with contextlib.suppress(OSError):
                text = p.err_path.read_text(errors="replace")
                m = SANITIZER_PATTERNS.search(text)
                if m:
                    start = max(0, m.start() - 200)
                    bad.append(f"{p.describe()}:\n{text[start:start + 3000]}")
        return bad

    def cleanup(self):
        for p in reversed(self.procs):
            p.kill_group()
        if self in _LIVE_MANAGERS:
            _LIVE_MANAGERS.remove(self)


def _check_alive(p):
    if not p.alive():
        raise AssertionError(f"{p.describe()} died early\nstderr:\n{p.stderr()[-3000:]}")
    return True


@pytest.fixture
def procs(tmp_path):
    mgr = Procs(tmp_path / "logs")
    try:
        yield mgr
    finally:
        reports = mgr.sanitizer_reports()
        mgr.cleanup()
    if reports:
        pytest.fail("sanitizer report in a process log:\n" + "\n\n".join(reports), pytrace=False)


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory):
    mgr = Procs(tmp_path_factory.mktemp("module-logs"))
    try:
        yield mgr
    finally:
        reports = mgr.sanitizer_reports()
        mgr.cleanup()
    if reports:
        pytest.fail("sanitizer report in a process log:\n" + "\n\n".join(reports), pytrace=False)


@pytest.fixture(scope="module")
def mesh3(module_procs):
    """Three instant engines (speed 0) behind one agent, shared by the tests of a module."""
    engines = module_procs.engines(3, speed="0")
    agent = module_procs.agent(engines)
    return engines, agent


# ---------------------------------------------------------------------------------------------------------------
# HTTP (stdlib http.client)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Resp {self.status} {self.headers} {self.body[:300]!r}>"


def _headers_dict(msg):
    d = {}
    for k, v in msg.items():
        d[k.lower()] = v
    return d


def http_request(port, method, path, body=None, headers=None, timeout=30):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, _headers_dict(r.msg), data)
    finally:
        conn.close()


def http_get(port, path, timeout=10):
    """GET with the tests' read token (see READ_TOKEN)."""
    return http_request(port, "GET", path, headers=READ_AUTH, timeout=timeout)


def post_json(port, path, obj, headers=None, timeout=30):
    return http_request(port, "POST", path, body=obj, headers=headers, timeout=timeout)


def chat_body(content="Hello, mesh!", model=MODEL, max_tokens=8, **extra):
    b = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    b.update(extra)
    return b


class SSEStream:
    """A streaming POST; iterate events as (arrival_time, data_string) as they arrive."""

    def __init__(self, port, path, body, headers=None, timeout=30):
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        h.update(headers or {})
        self.conn.request("POST", path, body=json.dumps(body).encode(), headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = _headers_dict(self.resp.msg)

    def events(self):
        """Yield (t, data) per SSE event; a multi-line data field is joined with newlines."""
        data_lines = []
        while True:
            line = self.resp.readline()
            if not line:
                if data_lines:
                    yield time.monotonic(), "\n".join(data_lines)
                return
            line = line.rstrip(b"\r\n").decode("utf-8")
            if line == "":
                if data_lines:
                    yield time.monotonic(), "\n".join(data_lines)
                    data_lines = []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                data_lines.append(value)

    def raw_socket(self):
        return self.conn.sock

    def close(self):
        with contextlib.suppress(Exception):
            self.resp.close()
        with contextlib.suppress(Exception):
            self.conn.close()


def read_sse(port, path, body, timeout=30):
    """Run a whole stream; return (status, headers, [(t, data), ...])."""
    s = SSEStream(port, path, body, timeout=timeout)
    try:
        if s.status != 200:
            return s.status, s.headers, [(time.monotonic(), s.resp.read().decode())]
        return s.status, s.headers, list(s.events())
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------------------------
# raw sockets (for what http.client will not do: pipelining, slow clients, odd framing)


def raw_connect(port, timeout=10):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class RawReader:
    """Parses HTTP/1.1 responses off a raw socket (Content-Length, chunked, or until close)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0  # consumed prefix of buf
        self.eof = False

    def _fill(self):
        chunk = self.sock.recv(262144)
        if not chunk:
            self.eof = True
            return False
        if self.pos > 1 << 20:  # compact now and then, not on every read
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += chunk
        return True

    def _read_until(self, sep):
        start = self.pos
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                break
            start = max(self.pos, len(self.buf) - len(sep) + 1)
            if not self._fill():
                raise EOFError(f"connection closed before {sep!r}; have {bytes(self.buf[self.pos:self.pos + 200])!r}")
        out = bytes(self.buf[self.pos:i])
        self.pos = i + len(sep)
        return out

    def _read_n(self, n):
        while len(self.buf) - self.pos < n:
            if not self._fill():
                raise EOFError(f"connection closed with {len(self.buf) - self.pos} of {n} body bytes")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def response(self):
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        assert m, f"bad status line {lines[0]!r}"
        status = int(m.group(1))
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        if status == 100:
            return self.response()
        if "content-length" in headers:
            body = self._read_n(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    break
                parts.append(self._read_n(size))
                self._read_until(b"\r\n")
            body = b"".join(parts)
        else:
            while self._fill():
                pass
            body = bytes(self.buf[self.pos:])
            self.pos = len(self.buf)
        return Resp(status, headers, body)

    def closed_by_peer(self, timeout=5):
        """True when the peer closes (EOF or reset) within timeout with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        return data == b""


def raw_request_bytes(method, path, body=b"", headers=None, port=None):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    h = {"Host": f"{HOST}:{port or 0}", "Content-Type": "application/json", "Content-Length": str(len(body))}
    h.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode() + body


# ---------------------------------------------------------------------------------------------------------------
# Prometheus text


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """[(name, {labels}, value)] for every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric_value(samples, name, **labels):
    """Sum of the samples named `name` whose labels include `labels`; None when there is none."""
    vals = [v for n, lab, v in samples if n == name and all(lab.get(k) == str(x) for k, x in labels.items())]
    return sum(vals) if vals else None


def assert_openai_error(resp, status, code=None):
    assert resp.status == status, resp
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    if code is not None:
        assert err["code"] == code, err
    return err
