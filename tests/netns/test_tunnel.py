"""Agent-to-agent traffic across hosts is encrypted: a packet capture on the bridge between two network
namespaces, taken while a gateway forwards a chat completion to the node that serves it, holds neither the
prompt nor the completion (tests/netns: run as root, see test_membership.py)."""

import os
import re
import time
from pathlib import Path

import pytest

import netns
from cluster import BIN, Mesh

_REASON = netns.unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def report(msg):
    print(f"\n[netns] {msg}", flush=True)


@pytest.mark.timeout(90)
def test_forwarded_chat_completion_is_not_plaintext_on_the_wire(make_net, tmp_path):
    net = make_net(2)
    ha, hb = net.hosts
    eng = net.start(ha, "engine", [BIN, "sim-engine", "--host", "127.0.0.1", "--port", "0", "--speed", "0"])
    m = netns.wait_for(lambda: re.search(r"listening on http://127\.0\.0\.1:(\d+) model=(\S+)", eng.stdout()),
                       timeout=15, what="sim-engine to print its port")
    port, model = int(m.group(1)), m.group(2)
    mesh = Mesh(net, BIN, tmp_path)
    a = mesh.start(ha, "server-a", targets=[f"http://127.0.0.1:{port}"])
    b = mesh.start(hb, "gateway-b", join=[a])

    def chat(prompt, host=None):
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}
        r = hb.http("POST", 8080, "/v1/chat/completions", body=body, timeout=15, host=host)
        return r if r.status == 200 else None

    netns.wait_for(lambda: chat("warm up the route"), timeout=30, what="a chat completion through gateway-b")
    secret = "the-secret-prompt-5f3a9c1e tell me about otters"
    pcap = tmp_path / "hop.pcap"
    cap = net.capture(pcap)  # everything that crosses the bridge
    r = chat(secret)
    assert r and r.headers.get("x-infermesh-node") == "server-a", r

    def tcp_payload():
        return sum(len(f[6]) for f in netns.read_pcap(pcap) if f[1] == "tcp" and f[6])
    # the whole exchange is in the file before it is searched: request and response, sealed, are larger
    netns.wait_for(lambda: tcp_payload() > len(r.body) + len(secret), timeout=10, what="the hop in the capture")
    net.stop_capture(cap)
    completion = r.json()["choices"][0]["message"]["content"]
    assert len(completion) >= 8, completion
    raw = pcap.read_bytes()
    report(f"forwarded chat: pcap {pcap} {len(netns.read_pcap(pcap))} frames, {tcp_payload()} TCP payload bytes")
    for text in (secret, "5f3a9c1e", completion):
        assert text.encode() not in raw, f"{text!r} crossed the bridge in plaintext ({pcap})"
    assert a.counter("infermesh_tunnel_accepted_total") >= 1

    # Control: the same kind of request sent straight to server-a's API across the bridge IS readable.
    ctl_pcap = tmp_path / "control.pcap"
    ctl = net.capture(ctl_pcap, "tcp port 8080")
    assert chat("the-control-canary-77d1", host=ha.ip)
    netns.wait_for(lambda: b"the-control-canary-77d1" in ctl_pcap.read_bytes(), timeout=10,
                   what="the plaintext request in the control capture (the grep works)")
    net.stop_capture(ctl)


LLAMA = Path(__file__).resolve().parents[2].parent / "shared" / "runtimes" / "llama.cpp"


def pids_of(exe, port):
    """pids of the processes of exe (rpc-server, llama-server) with port on their command line (from /proc:
    the namespaces share the pid namespace)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(exe) and str(port).encode() in cmd:
                out.append(int(d))
    return out


@pytest.mark.skipif(not (LLAMA / "bin" / "rpc-server").exists(), reason=f"no llama.cpp at {LLAMA}")
@pytest.mark.timeout(180)
def test_split_model_over_two_workers_in_other_namespaces(make_net, tmp_path):
    """Three hosts: a split host and two workers, each in its own namespace. The host's agent leases both
    workers' rpc-servers through their agents and runs llama-server over them through the tunnel. The capture
    on the bridge holds none of the tensor names llama.cpp's RPC protocol sends in clear (it does when
    llama-server talks to an rpc-server across the bridge directly, the control), nor the prompt or the
    completion. A worker killed: the host serves again over the other one (the time is reported). No
    rpc-server or llama-server outlives its agent, even a SIGKILLed one. The token embeddings stay on the
    host's CPU, so the names looked for are those of the layers the workers hold."""
    net = make_net(3)
    hh, hw1, hw2 = net.hosts
    mesh = Mesh(net, BIN, tmp_path)
    rpc, server, gguf = LLAMA / "bin" / "rpc-server", LLAMA / "bin" / "llama-server", LLAMA / "models" / "tiny-llama.gguf"
    fast = ("--probe-interval-ms", "200", "--suspicion-mult", "2")
    w1 = mesh.start(hw1, "w1", extra=("--rpc-server", str(rpc), "--rpc-port", "50052", *fast))
    w2 = mesh.start(hw2, "w2", join=[w1], extra=("--rpc-server", str(rpc), "--rpc-port", "50053", *fast))
    assert not pids_of(b"rpc-server", 50052) and not pids_of(b"rpc-server", 50053), "rpc-servers before a host"
    pcap = tmp_path / "rpc.pcap"
    cap = net.capture(pcap)
    cmd = f"{server} -m {gguf} --host 127.0.0.1 --port 8102 -c 1024 -np 1 -t 1 --metrics -ngl 99 --rpc {{rpc}}"
    host = mesh.start(hh, "host", join=[w1], targets=["split=http://127.0.0.1:8102#kind=llamacpp&alias=split"],
                      extra=("--split-target", "split", "--split-workers", "2", "--split-exec", cmd, *fast))

    def chat(prompt):
        body = {"model": "split", "max_tokens": 12, "messages": [{"role": "user", "content": prompt}]}
        r = hh.http("POST", 8080, "/v1/chat/completions", body=body, timeout=15)
        return r if r.status == 200 else None
    netns.wait_for(lambda: chat("hello across hosts"), timeout=90, what="the split model to answer on the host")
    assert re.search(r"workers=w[12],w[12] ", "".join(host.log_lines("starting llama-server"))), \
        host.log_lines("split:")
    secret = "the-secret-prompt-9d2e71 about otters"
    r = chat(secret)
    assert r, "the split model stopped answering"
    completion = r.json()["choices"][0]["message"]["content"]
    net.stop_capture(cap)
    raw = pcap.read_bytes()
    report(f"split over 2 workers through the tunnel: pcap {pcap} {len(raw)} bytes; workers accepted "
           f"{w1.counter('infermesh_tunnel_accepted_total'):.0f} + {w2.counter('infermesh_tunnel_accepted_total'):.0f}"
           f" streams")
    assert len(raw) > 1_000_000, "the capture holds too little to prove anything (the layers are megabytes)"
    for w in (w1, w2):  # each holds a share of the layers
        assert w.counter("infermesh_tunnel_bytes_total", dir="in") > 500_000, w
    for name in (b"blk.0.", b"blk.1.", b"attn_", b"ffn_", b"output_norm"):
        assert name not in raw, f"tensor name {name!r} crossed the bridge in plaintext ({pcap})"
    for text in (secret, "9d2e71") + ((completion,) if len(completion) >= 8 else ()):
        assert text.encode() not in raw, f"{text!r} crossed the bridge in plaintext ({pcap})"
    # The RPC commands' payloads: the layers' weights (random bytes: no chance match) travel in set_tensor
    # commands; none of these samples of the file's second half (the layers, past the embeddings) is in clear.
    # (The direct control below shows them only when tcpdump keeps up with the burst on a loaded machine, so
    # it checks the tensor names alone.)
    weights = gguf.read_bytes()
    samples = [weights[o:o + 32] for o in range(len(weights) // 2, len(weights) - 64, len(weights) // 40)]
    assert not [x for x in samples if x in raw], f"model weights crossed the bridge in plaintext ({pcap})"
    assert pids_of(b"rpc-server", 50052) and pids_of(b"rpc-server", 50053)

    # A worker's agent is killed: its rpc-server goes with it, and the host serves again over the other one.
    t0 = w2.kill9()
    netns.wait_for(lambda: not pids_of(b"rpc-server", 50053), timeout=10, what="w2's rpc-server gone with w2")
    netns.wait_for(lambda: chat("still there?"), timeout=90, interval=0.1, what="the split model over w1 alone")
    report(f"split: back in service {time.time() - t0:.2f} s after worker w2's agent was SIGKILLed")
    assert host.log_lines("workers=w1 ")

    # The host's agent is SIGKILLed: its llama-server dies with it, and w1 frees its rpc-server once membership
    # calls the host dead.
    assert pids_of(b"llama-server", 8102)
    host.kill9()
    netns.wait_for(lambda: not pids_of(b"llama-server", 8102), timeout=10, what="llama-server gone with its agent")
    netns.wait_for(lambda: not pids_of(b"rpc-server", 50052), timeout=30, what="w1's rpc-server freed")
    assert w1.log_lines("the host left the mesh")

    # Control: llama-server on the host reaching an rpc-server on a worker directly across the bridge.
    net.start(hw1, "rpc-direct", [str(rpc), "-H", hw1.ip, "-p", "50060"])
    netns.wait_for(lambda: hh.accepts(50060, host=hw1.ip), timeout=15, what="the direct rpc-server")
    ctl_pcap = tmp_path / "rpc-direct.pcap"
    ctl = net.capture(ctl_pcap, "tcp port 50060")
    direct = net.start(hh, "llama-direct", [str(server), "-m", str(gguf), "--host", "127.0.0.1", "--port", "8103",
                                            "-c", "1024", "-np", "1", "-t", "1", "-ngl", "99", "--rpc",
                                            f"{hw1.ip}:50060"])
    netns.wait_for(lambda: hh.http("GET", 8103, "/health", host="127.0.0.1", timeout=5).status == 200, timeout=60,
                   what="the direct llama-server to load")
    netns.wait_for(lambda: b"attn_" in ctl_pcap.read_bytes(), timeout=10,
                   what="plaintext tensor names in the direct RPC capture (the grep works)")
    net.stop_capture(ctl)
    assert direct.alive()
