"""Runtime supervision: an agent configured with `exec` starts, restarts and stops its runtime (a sim-engine)."""

import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import BIN, HOST, _check_alive, chat_body, free_port, http_get, port_accepts, post_json, wait_for


def pid_alive(pid):
    """True while pid exists and is not a zombie (an orphan's zombie may wait for a slow reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def live_processes():
    """(pid, stat fields after the command name, command line) of every live (not zombie) process."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            yield int(d), fields, cmd


def group_members(pgid):
    """Live processes whose process group is pgid."""
    return [pid for pid, fields, _ in live_processes() if int(fields[2]) == pgid]


class Supervised:
    """An agent (started from a YAML file) supervising one runtime named `eng`."""

    def __init__(self, procs, tmp_path, exec_cmd, engine_port, *flags, health_timeout_ms=None, wrap=None):
        """wrap: a shell prefix the agent's command line is run under (e.g. "exec unshare --pid --fork")."""
        self.port = free_port()
        self.engine_port = engine_port
        sup = ""
        if health_timeout_ms is not None:
            sup = f"supervisor:\n  health_timeout_ms: {health_timeout_ms}\n"
        cfg = tmp_path / "sup.yaml"
        cfg.write_text(f"""
listen: {HOST}:{self.port}
scrape_interval_ms: 100
{sup}runtimes:
  - {{kind: vllm, name: eng, url: "http://{HOST}:{engine_port}", exec: '{exec_cmd}'}}
""")
        argv = [BIN, "agent", "--config", str(cfg), "--runtime-stop-grace-ms", "3000", *flags]
        if wrap:
            argv = ["sh", "-c", f'{wrap} "$@"', "sh", *argv]
        self.proc = procs.start("agent", argv)
        wait_for(lambda: _check_alive(self.proc) and port_accepts(self.port), timeout=15, what="the agent to listen")

    def log(self):
        return self.proc.stderr()

    def target(self):
        return http_get(self.port, "/v1/cluster/targets").json()["targets"][0]

    def wait_healthy(self, timeout=15, count=1):
        wait_for(lambda: _check_alive(self.proc) and self.log().count('msg="runtime healthy"') >= count
                 and self.target()["healthy"], timeout=timeout, what=f"runtime healthy (#{count})")

    def child_pids(self):
        """pids of the runtime's helper (the leader of its process group), one per start."""
        return [int(m) for m in re.findall(r'msg="runtime started" runtime=eng pid=(\d+)', self.log())]

    def engine_pid(self):
        """The sim-engine itself: the member of the current group that is not the helper."""
        helper = self.child_pids()[-1]
        others = [p for p in group_members(helper) if p != helper]
        assert len(others) == 1, others
        return others[0]

    def serves(self):
        r = post_json(self.port, "/v1/chat/completions", chat_body("through the supervisor", max_tokens=4))
        assert r.status == 200, r
        assert r.json()["usage"]["completion_tokens"] == 4
        return r


def engine_cmd(port):
    return f"{BIN} sim-engine --host {HOST} --port {port} --speed 10"


@pytest.mark.timeout(40)
def test_agent_starts_its_runtime_and_serves_through_it(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, engine_cmd(ep), ep)
    a.wait_healthy()
    a.serves()
    log = a.log()
    assert re.search(r'msg="runtime started" runtime=eng pid=\d+ mode=direct', log), log
    # the runtime's own output is in the agent's log, one logfmt line per line, with the runtime's name
    assert re.search(r'msg="runtime output" runtime=eng stream=stdout line="listening on http://127\.0\.0\.1:'
                     + str(ep), log), log
    assert re.search(r'msg="runtime output" runtime=eng stream=stderr line="ts=.*sim-engine listening', log), log
    # its own process group (and session): a signal to the agent's group does not reach it, and vice versa
    pid = a.child_pids()[-1]
    assert os.getpgid(pid) == pid
    assert os.getsid(pid) == pid


@pytest.mark.timeout(50)
def test_killed_runtime_is_restarted_with_backoff_and_serves_again(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, engine_cmd(ep), ep, "--runtime-backoff-ms", "500")
    a.wait_healthy()
    a.serves()
    first, first_engine = a.child_pids()[-1], a.engine_pid()
    t_kill = time.monotonic()
    os.kill(first_engine, signal.SIGKILL)
    m = wait_for(lambda: re.search(r'msg="runtime exited; restarting" runtime=eng status=0 signal=9 '
                                   r'recent_exits=1 restart_in_ms=(\d+)', a.log()), timeout=5,
                 what="the exit to be noticed")
    delay = int(m.group(1))
    assert 400 <= delay <= 600, f"first backoff {delay} ms should be 500 ms +-20% jitter"
    wait_for(lambda: not a.target()["healthy"], timeout=5, what="the target marked down")
    a.wait_healthy(count=2)
    assert time.monotonic() - t_kill >= 0.4, "restarted before its backoff"
    second = a.child_pids()[-1]
    assert second != first and not pid_alive(first) and not pid_alive(first_engine)
    assert not group_members(first)
    a.serves()
    # a second crash soon after doubles the backoff (this time the helper is killed: its command follows)
    os.kill(second, signal.SIGKILL)
    m = wait_for(lambda: re.search(r'signal=9 recent_exits=2 restart_in_ms=(\d+)', a.log()), timeout=5,
                 what="the second exit")
    assert 800 <= int(m.group(1)) <= 1200, m.group(0)
    a.wait_healthy(count=3)
    wait_for(lambda: not group_members(second), timeout=5, what="the second group gone")
    a.serves()


@pytest.mark.timeout(40)
def test_slow_runtime_is_waited_for_with_progress(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, f"sleep 3; exec {engine_cmd(ep)}", ep)
    wait_for(lambda: re.search(r'msg="waiting for runtime eng: [12] s" runtime=eng pid=\d+ waited_s=[12] '
                               r'timeout_s=600', a.log()), timeout=10, what="a progress line while waiting")
    assert not a.target()["healthy"]
    r = post_json(a.port, "/v1/chat/completions", chat_body(max_tokens=4))
    assert r.status == 503, r
    a.wait_healthy()
    a.serves()
    log = a.log()
    assert re.search(r'msg="runtime started" runtime=eng pid=\d+ mode=shell', log), log
    m = re.search(r'msg="runtime healthy" runtime=eng pid=\d+ after_ms=(\d+)', log)
    assert int(m.group(1)) >= 3000, m.group(0)
    assert 'msg="runtime exited' not in log


@pytest.mark.timeout(40)
def test_runtime_that_never_gets_healthy_is_stopped_and_retried(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, "sleep 1000", ep, "--runtime-backoff-ms", "200", health_timeout_ms=1000)
    wait_for(lambda: 'msg="runtime did not become healthy in time: stopping it" runtime=eng' in a.log(),
             timeout=10, what="the health timeout")
    first = a.child_pids()[0]
    wait_for(lambda: len(a.child_pids()) >= 2, timeout=10, what="a new start after the timeout")
    assert not pid_alive(first)
    assert re.search(r'msg="runtime exited; restarting" runtime=eng status=0 signal=15', a.log()), a.log()


@pytest.mark.timeout(40)
def test_agent_sigterm_stops_the_runtime_and_its_group(procs, tmp_path):
    ep = free_port()
    # a shell runtime with a grandchild (sleep) in its process group
    a = Supervised(procs, tmp_path, f"sleep 1000 & exec {engine_cmd(ep)}", ep)
    a.wait_healthy()
    a.serves()
    pid = a.child_pids()[-1]
    members = group_members(pid)
    assert len(members) == 3, f"expected helper, engine and the sleeping sibling in group {pid}: {members}"
    a.proc.signal(signal.SIGTERM)
    rc = a.proc.wait(timeout=15)
    assert rc == 0, f"agent exit status {rc}"
    log = a.log()
    assert f'msg="stopping runtime" runtime=eng pid={pid} signal=SIGTERM' in log, log
    # the engine saw SIGTERM (it logs it) and exited cleanly before the grace ran out
    assert re.search(r'runtime=eng stream=stderr line=".*msg=\\"stopping\\" signal=15', log), log
    assert re.search(rf'msg="runtime stopped" runtime=eng pid={pid} status=0 signal=0', log), log
    assert "SIGKILL" not in log
    assert log.index('msg="drained"') < log.index('msg="stopping runtime"')
    wait_for(lambda: not group_members(pid), timeout=5, what="no process left in the runtime's group")
    assert not port_accepts(ep)


@pytest.mark.timeout(40)
def test_runtime_that_ignores_sigterm_is_killed_after_the_grace(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, 'trap "" TERM; exec sleep 1000', ep, "--runtime-stop-grace-ms", "1000")
    wait_for(lambda: a.child_pids() and len(group_members(a.child_pids()[-1])) == 2, timeout=10,
             what="helper and sleep running")
    pid = a.child_pids()[-1]
    t0 = time.monotonic()
    a.proc.signal(signal.SIGTERM)
    assert a.proc.wait(timeout=10) == 0
    took = time.monotonic() - t0
    assert 0.9 <= took <= 5, f"stop took {took:.1f}s with a 1 s grace"
    log = a.log()
    assert re.search(rf'msg="runtime did not stop in time: SIGKILL" runtime=eng pid={pid} grace_ms=1000', log), log
    assert re.search(rf'msg="runtime stopped" runtime=eng pid={pid} status=0 signal=9', log), log
    assert not group_members(pid)


@pytest.mark.timeout(40)
def test_drain_lets_requests_to_the_runtime_finish_before_stopping_it(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, f"{BIN} sim-engine --host {HOST} --port {ep} --speed 1", ep)
    a.wait_healthy()
    result = {}

    def long_request():
        try:
            result["r"] = post_json(a.port, "/v1/chat/completions", chat_body("drain me", max_tokens=300), timeout=30)
        except Exception as e:  # reported below
            result["r"] = e

    t = threading.Thread(target=long_request, daemon=True)
    t.start()
    wait_for(lambda: a.target()["inflight"] == 1, timeout=5, interval=0.02, what="the request in flight")
    time.sleep(0.3)  # let it run a little: the drain must wait for the rest
    a.proc.signal(signal.SIGTERM)
    t.join(30)
    r = result["r"]
    assert hasattr(r, "status") and r.status == 200, f"the in-flight request failed: {r!r}"
    assert r.json()["usage"]["completion_tokens"] == 300
    assert a.proc.wait(timeout=15) == 0
    log = a.log()
    # the runtime was stopped only after the request had finished
    assert log.index('msg="request"') < log.index('msg="stopping runtime"'), log


@pytest.mark.timeout(40)
def test_agent_sigkill_takes_the_runtime_with_it(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, engine_cmd(ep), ep)
    a.wait_healthy()
    pid, engine = a.child_pids()[-1], a.engine_pid()
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait(timeout=5)
    wait_for(lambda: not pid_alive(engine) and not pid_alive(pid), timeout=5,
             what="the runtime to die with the agent (PDEATHSIG)")
    wait_for(lambda: not port_accepts(ep), timeout=5, what="the runtime's port to close")


@pytest.mark.timeout(40)
def test_agent_sigkill_takes_the_whole_runtime_group_with_it(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, f"sleep 1000 & {engine_cmd(ep)}", ep)  # shell mode: sh, engine, sleep
    a.wait_healthy()
    pid = a.child_pids()[-1]
    assert len(group_members(pid)) == 4, group_members(pid)
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait(timeout=5)
    wait_for(lambda: not group_members(pid), timeout=5, what="every process of the runtime's group to die")
    assert not port_accepts(ep)


@pytest.mark.timeout(40)
def test_runtime_that_exits_at_once_is_a_crash_loop(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, "false", ep, "--runtime-backoff-ms", "50", "--runtime-backoff-max-ms", "400",
                   "--runtime-crash-loop-restarts", "4")
    wait_for(lambda: 'level=error comp=agent msg="runtime crash loop: it stays down; retrying at the longest '
                     'backoff" runtime=eng exits=4' in a.log(), timeout=10, what="the crash loop report")
    # it keeps retrying, at the longest backoff (400 ms +-20%)
    m = wait_for(lambda: re.search(r'msg="runtime still crash-looping" runtime=eng exits=\d+ status=1 signal=0 '
                                   r'restart_in_ms=(\d+)', a.log()), timeout=10, what="a retry in the loop")
    assert 320 <= int(m.group(1)) <= 480, m.group(0)
    assert a.log().count('msg="runtime crash loop') == 1, "the crash loop is reported once, not per exit"
    pr = a.target()["process"]
    assert pr["crash_loop"] is True and pr["state"] in ("crash_loop", "starting"), pr
    assert pr["last_exit"] == {"code": 1, "signal": None, "ago_s": pr["last_exit"]["ago_s"]}, pr
    _check_alive(a.proc)
    assert a.target()["healthy"] is False
    r = post_json(a.port, "/v1/chat/completions", chat_body(max_tokens=4))
    assert r.status == 503, r
    assert http_get(a.port, "/readyz").status == 503
    a.proc.signal(signal.SIGTERM)
    assert a.proc.wait(timeout=10) == 0


@pytest.mark.timeout(50)
def test_targets_show_the_supervised_process(procs, tmp_path):
    """/v1/cluster/targets has a "process" object (and `infermesh targets` a PROCESS column): running with the
    helper's pid; after a crash, backoff with the last exit, then running again with restarts counted."""
    import subprocess

    ep = free_port()
    a = Supervised(procs, tmp_path, engine_cmd(ep), ep, "--runtime-backoff-ms", "1500")
    a.wait_healthy()
    pr = a.target()["process"]
    pid = a.child_pids()[-1]
    assert pr["state"] == "running" and pr["pid"] == pid, pr
    assert pr["restarts"] == 0 and pr["last_exit"] is None and pr["health_wait"] is None, pr
    assert pr["crash_loop"] is False and pr["restart_in_s"] is None and pr["since_s"] >= 0, pr
    out = subprocess.run([BIN, "targets", "--agent", f"http://{HOST}:{a.port}"], capture_output=True, text=True,
                         timeout=10).stdout
    header, row = out.splitlines()[0].split(), out.splitlines()[1].split()
    cols = dict(zip(header, row))
    assert cols["PROCESS"] == f"running:{pid}" and cols["RESTARTS"] == "0", out

    os.kill(a.engine_pid(), signal.SIGKILL)
    pr = wait_for(lambda: (p := a.target()["process"])["state"] == "backoff" and p, timeout=5,
                  what="the process in backoff")
    assert pr["pid"] is None and pr["restarts"] == 0, pr
    assert pr["last_exit"]["signal"] == 9 and pr["last_exit"]["code"] is None, pr
    assert 0 < pr["restart_in_s"] <= 1.8, pr
    out = subprocess.run([BIN, "targets", "--agent", f"http://{HOST}:{a.port}"], capture_output=True, text=True,
                         timeout=10).stdout
    assert re.search(r"\bbackoff\(\d\.\ds\)\s+0\b", out), out
    pr = wait_for(lambda: (p := a.target()["process"])["state"] == "running" and p, timeout=15,
                  what="the process running again")
    assert pr["restarts"] == 1 and pr["pid"] == a.child_pids()[-1] != pid, pr
    assert pr["last_exit"]["signal"] == 9, pr


@pytest.mark.timeout(40)
def test_targets_show_a_slow_start_waiting_for_health(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, f"sleep 3; exec {engine_cmd(ep)}", ep, health_timeout_ms=20000)
    pr = wait_for(lambda: (p := a.target()["process"])["state"] == "starting" and p["health_wait"]["elapsed_s"] >= 1
                  and p, timeout=10, what="the process starting, waiting for health")
    assert pr["pid"] == a.child_pids()[-1], pr
    assert pr["health_wait"]["timeout_s"] == 20 and pr["health_wait"]["elapsed_s"] < 20, pr
    assert pr["restarts"] == 0 and pr["last_exit"] is None, pr
    assert not a.target()["healthy"]
    a.wait_healthy()
    pr = a.target()["process"]
    assert pr["state"] == "running" and pr["health_wait"] is None and pr["pid"] == a.child_pids()[-1], pr


def test_exec_that_cannot_run_is_reported(procs, tmp_path):
    ep = free_port()
    a = Supervised(procs, tmp_path, "/nonexistent/runtime --flag", ep, "--runtime-backoff-ms", "100")
    wait_for(lambda: re.search(r'runtime=eng stream=stderr line="infermesh _exec-child: cannot run '
                               r'/nonexistent/runtime: No such file or directory"', a.log()), timeout=10,
             what="the exec error in the log")
    wait_for(lambda: "status=127" in a.log(), timeout=5, what="exit status 127")
    _check_alive(a.proc)


def pids_running(needle):
    """pids of live processes whose command line contains needle."""
    return [pid for pid, _, cmd in live_processes() if needle in cmd]


@pytest.mark.timeout(40)
@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_runtime_descendants_in_their_own_session_go_with_it(procs, tmp_path, how):
    """A runtime's helper started with setsid (outside its process group) does not outlive the runtime: not when
    the agent is SIGKILLed, not when the agent stops it."""
    ep = free_port()
    marker = f"sleep {3000 + ep % 1000}.5"  # unique to this test run
    a = Supervised(procs, tmp_path, f"setsid {marker} & {engine_cmd(ep)}", ep)
    a.wait_healthy()
    escaped = wait_for(lambda: pids_running(marker), timeout=5, what="the setsid child to run")
    assert os.getsid(escaped[0]) == escaped[0]  # its own session: a kill of the runtime's group misses it
    if how == "sigkill":
        os.kill(a.proc.pid, signal.SIGKILL)
    else:
        a.proc.signal(signal.SIGTERM)
    a.proc.wait(timeout=15)
    wait_for(lambda: not pids_running(marker), timeout=5, what="the setsid child to die with the runtime")


@pytest.mark.timeout(40)
def test_runtime_does_not_inherit_the_agents_open_files(procs, tmp_path):
    """A file descriptor the agent was started with (a launcher's pipe, say) is not passed on to the runtime."""
    ep = free_port()
    held = tmp_path / "held-by-the-launcher"
    held.write_text("")
    a = Supervised(procs, tmp_path, engine_cmd(ep), ep, wrap=f"exec 9>>{held}; exec")
    a.wait_healthy()
    agent_fds = {os.readlink(f"/proc/{a.proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{a.proc.pid}/fd")}
    assert str(held) in agent_fds  # the agent has it ...
    for pid in (a.child_pids()[-1], a.engine_pid()):  # ... its helper and the runtime do not
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert str(held) not in fds, (pid, fds)


@pytest.mark.timeout(40)
@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace needs root")
def test_agent_as_pid_1_starts_its_runtime(procs, tmp_path):
    """As a container's init (PID 1 in its own PID namespace) the agent still starts and serves its runtime."""
    ep = free_port()
    a = Supervised(procs, tmp_path, engine_cmd(ep), ep, wrap="exec unshare --pid --fork --mount-proc")
    a.wait_healthy()
    a.serves()
    assert "bad parent pid" not in a.log()


@pytest.mark.timeout(40)
def test_drain_timeout_still_stops_the_runtime_gently(procs, tmp_path):
    """When the drain times out with a request in flight, the runtime gets SIGTERM and its grace (not SIGKILL
    at once), and the agent exits 1."""
    ep = free_port()
    a = Supervised(procs, tmp_path, f"{BIN} sim-engine --host {HOST} --port {ep} --speed 1", ep,
                   "--drain-timeout-ms", "800")
    a.wait_healthy()
    t = threading.Thread(target=lambda: post_json(a.port, "/v1/chat/completions",
                                                  chat_body("outlast the drain", max_tokens=2000), timeout=30),
                         daemon=True)
    t.start()
    wait_for(lambda: a.target()["inflight"] == 1, timeout=5, interval=0.02, what="the request in flight")
    a.proc.signal(signal.SIGTERM)
    assert a.proc.wait(timeout=20) == 1
    log = a.log()
    assert 'msg="drain timeout' in log
    assert re.search(r'msg="stopping runtime" runtime=eng pid=\d+ signal=SIGTERM', log), log
    assert re.search(r'msg="runtime output" runtime=eng stream=stderr line=".*stopping.*signal=15', log), log


def test_runtime_health_timeout_of_zero_is_refused(tmp_path):
    r = subprocess.run([BIN, "agent", "--target", f"http://{HOST}:1", "--runtime-health-timeout-ms", "0"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "health timeout 0" in r.stderr, (r.returncode, r.stderr)
