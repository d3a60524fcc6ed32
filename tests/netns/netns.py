"""A throwaway multi-host network in Linux network namespaces, for membership tests and the gossip benchmark.

    with Net(5, logdir) as net:            # 5 hosts imt<pid>-<n>-h0..h4 on one bridge (its own namespace)
        p = net.start(net.hosts[0], "agent", [BIN, "agent", ...])   # a managed process inside host 0
        net.hosts[1].http("GET", 8080, "/healthz")                  # HTTP from here into a namespace
        net.partition([0, 1], [2, 3, 4]); net.heal()
        net.impair(loss_pct=10, delay_ms=50)                        # nft loss; netem delay when the kernel has it
        net.capture("run.pcap", "port 7946")                        # tcpdump on the bridge

Layout: host i is namespace PREFIX-h<i> with `eth0` = 10.213.0.(i+1)/24 (MAC 02:d5:00:00:00:i+1, and a permanent
neighbour entry for every other host: no ARP, see _setup) and `lo` up; the other end of its veth pair (`v<i>`)
sits in namespace PREFIX-br on bridge `br0`. Nothing is created in, or changed in, the root
namespace; the addresses exist only inside these namespaces. The test process reaches a host's sockets by
creating them inside its namespace (setns(2) on the calling thread, switched back at once), so no route from
the root namespace is needed.

Impairments are nftables rules in each host (table `inet imt`): a partition drops traffic to and from the
addresses of other groups (input and output); loss drops a random fraction of the packets a host receives on
eth0 (each packet crosses exactly one receiving host, so the per-packet loss is the given fraction). Delay
needs sch_netem (`tc qdisc ... netem`); kernels without it (e.g. this Firecracker VM) get no delay, and
`impair` says so in its result instead of faking it.

Cleanup is unconditional: `close()` (also run by the context manager, by an atexit hook and on SIGTERM via
the caller) kills every process started through the net's process manager, then any other process still
inside its namespaces (all ours: the namespaces are unique to this run), then deletes the namespaces (the
veths and the bridge go with them). `cleanup_stale()` removes namespaces left by earlier runs that crashed
(prefix `imt<pid>-` whose pid is gone).
"""

import atexit
import contextlib
import ctypes
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUBNET = "10.213.0"
PREFIX_BASE = "imt"
_STALE_RE = re.compile(r"^" + PREFIX_BASE + r"(\d+)-")
CLONE_NEWNET = 0x40000000

# ---------------------------------------------------------------------------------------------------------------
# The process manager and helpers are tests/integration/conftest.py's (same logs, same sanitizer check, same
# failure report). It imports pytest, which scripts/bootstrap installs (python3-pytest).

try:
    _spec = importlib.util.spec_from_file_location("im_integration_conftest",
                                                   REPO / "tests" / "integration" / "conftest.py")
    _ITC = importlib.util.module_from_spec(_spec)
    sys.modules["im_integration_conftest"] = _ITC
    _spec.loader.exec_module(_ITC)
except ImportError as e:  # pytest missing
    raise SystemExit(f"tests/netns needs python3-pytest (run scripts/bootstrap): {e}")

Procs = _ITC.Procs
wait_for = _ITC.wait_for
Resp = _ITC.Resp
parse_prometheus = _ITC.parse_prometheus
metric_value = _ITC.metric_value
SANITIZER_PATTERNS = _ITC.SANITIZER_PATTERNS


# ---------------------------------------------------------------------------------------------------------------
# capability checks


def _run(args, check=True, timeout=30, input=None):
    r = subprocess.run([str(a) for a in args], input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def unavailable_reason():
    """None when network namespaces can be used here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "netns tests need root (ip netns, veth, bridges, nftables)"
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            return f"netns tests need `{tool}` (iproute2 / nftables; scripts/bootstrap installs them)"
    probe = f"{PREFIX_BASE}{os.getpid()}-probe"
    try:
        r = _run(["ip", "netns", "add", probe], check=False, timeout=10)
        if r.returncode != 0:
            return f"`ip netns add` does not work here: {r.stderr.strip()}"
        r = _run(["ip", "-n", probe, "link", "add", "vprobe0", "type", "veth", "peer", "name", "vprobe1"],
                 check=False, timeout=10)
        if r.returncode != 0:
            return f"veth pairs cannot be created here: {r.stderr.strip()}"
        r = _run(["ip", "netns", "exec", probe, "nft", "add", "table", "inet", "imtprobe"], check=False, timeout=10)
        if r.returncode != 0:
            return f"nftables does not work in a namespace here: {r.stderr.strip()}"
    except (OSError, subprocess.SubprocessError) as e:
        return f"network namespaces unavailable: {e}"
    finally:
        _run(["ip", "netns", "del", probe], check=False, timeout=10)
    return None


_NETEM = None


def netem_available():
    """Whether this kernel has sch_netem (checked once, in a scratch namespace)."""
    global _NETEM
    if _NETEM is None:
        probe = f"{PREFIX_BASE}{os.getpid()}-netem"
        try:
            _run(["ip", "netns", "add", probe], timeout=10)
            _run(["ip", "-n", probe, "link", "set", "lo", "up"], timeout=10)
            r = _run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
                      "1ms"], check=False, timeout=10)
            _NETEM = r.returncode == 0
        except (OSError, RuntimeError, subprocess.SubprocessError):
            _NETEM = False
        finally:
            _run(["ip", "netns", "del", probe], check=False, timeout=10)
    return _NETEM


# ---------------------------------------------------------------------------------------------------------------
# entering a namespace from this process (for sockets)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_setns_lock = threading.Lock()


@contextlib.contextmanager
def in_netns(ns):
    """Run the body with this thread in network namespace `ns` (sockets created inside stay there)."""
    with _setns_lock, open(f"/run/netns/{ns}", "rb") as target, open("/proc/thread-self/ns/net", "rb") as orig:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({ns}): {os.strerror(e)}")
        try:
            yield
        finally:
            if _libc.setns(orig.fileno(), CLONE_NEWNET) != 0:  # never go on in the wrong namespace
                os.write(2, b"netns.py: cannot return to the original network namespace\n")
                os._exit(70)


def ns_socket(ns, family=socket.AF_INET, type=socket.SOCK_STREAM):
    with in_netns(ns):
        return socket.socket(family, type)


class NsHTTPConnection(http.client.HTTPConnection):
    """http.client connection whose socket lives in network namespace `ns`."""

    def __init__(self, ns, host, port, timeout=10):
        super().__init__(host, port, timeout=timeout)
        self.ns = ns

    def connect(self):
        s = ns_socket(self.ns)
        try:
            s.settimeout(self.timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.connect((self.host, self.port))
        except BaseException:
            s.close()
            raise
        self.sock = s


# ---------------------------------------------------------------------------------------------------------------
# the network


class Host:
    def __init__(self, net, index):
        self.net = net
        self.index = index
        self.ns = f"{net.prefix}-h{index}"
        self.ip = f"{SUBNET}.{index + 1}"
        self.veth = f"v{index}"  # the bridge-side end, in net.br_ns
        self.mac = f"02:d5:00:00:{(index + 1) >> 8:02x}:{(index + 1) & 255:02x}"  # locally administered

    def __repr__(self):
        return f"<Host {self.index} {self.ns} {self.ip}>"

    def cmd(self, args):
        """argv that runs `args` inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *[str(a) for a in args]]

    def run(self, args, check=True, timeout=30, input=None):
        """Run a short command in this host and wait for it (not for long-running processes: use Net.start)."""
        return _run(self.cmd(args), check=check, timeout=timeout, input=input)

    def nft(self, script, check=True):
        return self.run(["nft", "-f", "-"], check=check, input=script)

    def http(self, method, port, path, body=None, headers=None, timeout=10, host=None):
        """An HTTP request from inside this host to host:port (default this host's own address)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        conn = NsHTTPConnection(self.ns, host or self.ip, port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return Resp(r.status, {k.lower(): v for k, v in r.msg.items()}, data)
        finally:
            conn.close()

    def get_json(self, port, path, timeout=10, host=None):
        r = self.http("GET", port, path, timeout=timeout, host=host)
        if r.status != 200:
            raise ValueError(f"GET {path} on {host or self.ip}:{port} answered {r.status}: {r.body[:300]!r}")
        return r.json()

    def metrics(self, port, host=None, timeout=10):
        return parse_prometheus(self.http("GET", port, "/metrics", host=host, timeout=timeout).text())

    def accepts(self, port, host=None):
        s = ns_socket(self.ns)
        try:
            s.settimeout(0.5)
            s.connect((host or self.ip, port))
            return True
        except OSError:
            return False
        finally:
            s.close()


_LIVE_NETS = []
_SEQ = [0]


def _close_all_at_exit():
    for n in list(_LIVE_NETS):
        with contextlib.suppress(Exception):
            n.close()


atexit.register(_close_all_at_exit)


def _pid_is_live_runner(pid):
    """Whether pid is a live process that may still own its namespaces (a Python test or benchmark run)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"python" in cmdline


def list_namespaces():
    r = _run(["ip", "netns", "list"], check=False, timeout=10)
    return [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]


def _kill_ns_processes(ns):
    """SIGKILL every process still inside namespace ns (ours by construction) and give them a moment to die."""
    r = _run(["ip", "netns", "pids", ns], check=False, timeout=10)
    pids = [int(p) for p in r.stdout.split() if p.isdigit() and int(p) != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
        if pids:
            time.sleep(0.02)
    return pids


def _is_zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def cleanup_stale(log=None):
    """Delete namespaces named imt<pid>-* whose pid is no longer a running test/benchmark (a crashed run)."""
    removed = []
    for ns in list_namespaces():
        m = _STALE_RE.match(ns)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_is_live_runner(pid):
            continue
        _kill_ns_processes(ns)
        _run(["ip", "netns", "del", ns], check=False, timeout=10)
        removed.append(ns)
    if removed and log:
        log(f"removed stale namespaces from crashed runs: {' '.join(removed)}")
    return removed


class Net:
    """K hosts on one bridge. Use as a context manager, or call close() in a finally."""

    def __init__(self, k, logdir, procs=None):
        if not 1 <= k <= 250:
            raise ValueError("1..250 hosts")
        _SEQ[0] += 1
        self.prefix = f"{PREFIX_BASE}{os.getpid()}-{_SEQ[0]}"
        self.br_ns = f"{self.prefix}-br"
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.own_procs = procs is None
        self.procs = procs if procs is not None else Procs(self.logdir)
        self.hosts = [Host(self, i) for i in range(k)]
        self.captures = []
        self.impairment = None
        self.partitioned = False
        self._closed = False
        self._created = []
        _LIVE_NETS.append(self)
        try:
            cleanup_stale()
            self._setup()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def host(self, h):
        return h if isinstance(h, Host) else self.hosts[h]

    # --- building

    def _setup(self):
        _run(["ip", "netns", "add", self.br_ns])
        self._created.append(self.br_ns)
        br = ["link add br0 type bridge", "link set br0 up", "link set lo up"]
        for h in self.hosts:
            _run(["ip", "netns", "add", h.ns])
            self._created.append(h.ns)
        for h in self.hosts:
            br.append(f"link add {h.veth} type veth peer name eth0 netns {h.ns}")
            br.append(f"link set {h.veth} master br0 up")
        _run(["ip", "-n", self.br_ns, "-batch", "-"], input="\n".join(br) + "\n", timeout=120)
        # Bridged frames need not go through netfilter in the bridge's namespace (the rules live in the hosts).
        _run(["ip", "netns", "exec", self.br_ns, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"],
             check=False)
        # Fixed MACs and permanent neighbour entries: the kernel's ARP table is one table for all namespaces,
        # and its gc_thresh3 (1024 by default, a global setting we leave alone) caps the dynamic entries of all
        # of them together. A full mesh of K hosts needs K*(K-1) entries (K=33 already overflows: "neighbour
        # table overflow", packets silently dropped). Permanent entries are not counted against that cap.
        neigh = "".join(f"neigh replace {o.ip} lladdr {o.mac} dev eth0 nud permanent\n" for o in self.hosts)
        for h in self.hosts:
            _run(["ip", "-n", h.ns, "-batch", "-"], input=(
                f"link set eth0 address {h.mac}\naddr add {h.ip}/24 dev eth0\nlink set eth0 up\nlink set lo up\n"
                + neigh.replace(f"neigh replace {h.ip} lladdr {h.mac} dev eth0 nud permanent\n", "")))
            h.nft(self._base_ruleset())

    @staticmethod
    def _base_ruleset():
        return """
table inet imt {
  set blocked { type ipv4_addr; }
  chain part_in { type filter hook input priority 0; policy accept; ip saddr @blocked drop; }
  chain part_out { type filter hook output priority 0; policy accept; ip daddr @blocked drop; }
  chain loss { type filter hook input priority 10; policy accept; }
}
"""

    # --- processes

    def start(self, host, name, args, env=None):
        """Start a long-running process inside host (managed: own process group, logs, killed at close)."""
        h = self.host(host)
        return self.procs.start(f"h{h.index}-{name}", h.cmd(args), env=env)

    # --- partitions

    def partition(self, *groups):
        """Split hosts into groups (lists of hosts or indices); traffic between groups is dropped both ways.
        Hosts not named form one more group."""
        groups = [[self.host(h) for h in g] for g in groups]
        named = {h.index for g in groups for h in g}
        rest = [h for h in self.hosts if h.index not in named]
        if rest:
            groups.append(rest)
        for g in groups:
            others = [h.ip for og in groups if og is not g for h in og]
            for h in g:
                script = "flush set inet imt blocked\n"
                if others:
                    script += f"add element inet imt blocked {{ {', '.join(others)} }}\n"
                h.nft(script)
        self.partitioned = True

    def heal(self):
        for h in self.hosts:
            h.nft("flush set inet imt blocked\n")
        self.partitioned = False

    # --- loss and delay

    def impair(self, loss_pct=0.0, delay_ms=0, hosts=None, protocols=("udp", "tcp")):
        """Drop loss_pct % of the packets each host receives on eth0 (nftables, numgen random) and, when the
        kernel has sch_netem, delay everything it sends by delay_ms. Returns a dict saying what was applied;
        'delay_skipped' holds the reason when a delay was asked for and could not be applied."""
        hosts = [self.host(h) for h in (hosts if hosts is not None else self.hosts)]
        applied = {"loss_pct": loss_pct, "loss_via": "nftables numgen (ingress eth0, per host)" if loss_pct else None,
                   "delay_ms": 0, "delay_skipped": None, "hosts": [h.index for h in hosts]}
        per_mille = int(round(loss_pct * 10))
        for h in hosts:
            script = "flush chain inet imt loss\n"
            if per_mille > 0:
                script += (f"add rule inet imt loss iifname \"eth0\" meta l4proto {{ {', '.join(protocols)} }} "
                           f"numgen random mod 1000 < {per_mille} counter drop\n")
            h.nft(script)
        if delay_ms:
            if netem_available():
                for h in hosts:
                    h.run(["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", f"{int(delay_ms)}ms"])
                applied["delay_ms"] = delay_ms
            else:
                applied["delay_skipped"] = (f"{delay_ms} ms delay NOT applied: this kernel lacks sch_netem "
                                            "(tc qdisc netem is unknown); loss only, via nftables")
        self.impairment = applied
        return applied

    def clear_impairments(self, hosts=None):
        hosts = [self.host(h) for h in (hosts if hosts is not None else self.hosts)]
        for h in hosts:
            h.nft("flush chain inet imt loss\n")
            if self.impairment and self.impairment.get("delay_ms"):
                h.run(["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
        self.impairment = None

    def loss_counters(self):
        """{host index: (packets, bytes)} dropped so far by the loss rule."""
        out = {}
        for h in self.hosts:
            r = h.run(["nft", "list", "chain", "inet", "imt", "loss"], check=False)
            m = re.search(r"counter packets (\d+) bytes (\d+)", r.stdout)
            out[h.index] = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        return out

    # --- capture

    def capture(self, path, bpf=""):
        """tcpdump every frame crossing the bridge (optionally filtered) into a pcap at path. Returns the
        process; stop it with stop_capture (close() does too)."""
        if not shutil.which("tcpdump"):
            raise RuntimeError("tcpdump is not installed (scripts/bootstrap installs it)")
        # --immediate-mode: without it libpcap hands packets over in blocks (up to 1 s late), and the ones
        # still in the ring when tcpdump is stopped never reach the file.
        args = ["ip", "netns", "exec", self.br_ns, "tcpdump", "-i", "br0", "-n", "-U", "--immediate-mode", "-s", "0",
                "-Z", "root", "-w", str(path)]
        if bpf:
            args += bpf.split()
        p = self.procs.start(f"tcpdump-{Path(path).stem}", args)
        wait_for(lambda: ("listening on" in p.stderr()) or (not p.alive() and "exited"), timeout=10,
                 what="tcpdump to start listening")
        if not p.alive():
            raise RuntimeError(f"tcpdump exited: {p.stderr()[-2000:]}")
        self.captures.append(p)
        return p

    def stop_capture(self, p):
        """Stop a capture and wait until the file is complete."""
        p.signal(signal.SIGTERM)
        with contextlib.suppress(Exception):
            p.wait(timeout=10)
        if p.alive():
            p.kill_group()

    # --- teardown

    def close(self):
        """Kill our processes, then anything left inside our namespaces, then delete the namespaces."""
        if self._closed:
            return
        self._closed = True
        for p in self.captures:
            with contextlib.suppress(Exception):
                self.stop_capture(p)
        if self.own_procs:
            with contextlib.suppress(Exception):
                self.procs.cleanup()
        else:  # the caller's manager reaps them later; kill the ones in our namespaces now
            for p in list(self.procs.procs):
                if any(a.startswith(self.prefix) for a in p.args):
                    with contextlib.suppress(Exception):
                        p.kill_group()
        for ns in [n for n in reversed(self._created)] + [n for n in list_namespaces()
                                                          if n.startswith(self.prefix + "-")]:
            if ns in list_namespaces():
                _kill_ns_processes(ns)
                _run(["ip", "netns", "del", ns], check=False, timeout=10)
        if self in _LIVE_NETS:
            _LIVE_NETS.remove(self)

    def leftovers(self):
        """Namespaces of this net that still exist (should be [] after close)."""
        return [n for n in list_namespaces() if n.startswith(self.prefix + "-")]


# ---------------------------------------------------------------------------------------------------------------
# pcap reading (classic libpcap format, Ethernet), enough to split gossip frames from the rest


def read_pcap(path):
    """[(ts, proto, src, sport, dst, dport, payload_bytes, frame_bytes)] for IPv4 TCP/UDP frames; others get
    proto None."""
    import struct
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    nano = magic in (0xa1b23c4d, 0x4d3cb2a1)
    off, out = 24, []
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        ts = sec + frac / (1e9 if nano else 1e6)
        rec = (ts, None, None, None, None, None, b"", frame)
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
            ip = frame[14:]
            ihl = (ip[0] & 15) * 4
            proto = ip[9]
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            l4 = ip[ihl:]
            if proto == 17 and len(l4) >= 8:
                sport, dport = struct.unpack(">HH", l4[:4])
                rec = (ts, "udp", src, sport, dst, dport, l4[8:], frame)
            elif proto == 6 and len(l4) >= 20:
                sport, dport = struct.unpack(">HH", l4[:4])
                doff = (l4[12] >> 4) * 4
                rec = (ts, "tcp", src, sport, dst, dport, l4[doff:], frame)
        out.append(rec)
    return out
