"""Agent-to-agent traffic across hosts is encrypted: a packet capture on the bridge between two network
namespaces, taken while a gateway forwards a chat completion to the node that serves it, holds neither the
prompt nor the completion (tests/netns: run as root, see test_membership.py)."""

import re
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


@pytest.mark.skipif(not (LLAMA / "bin" / "rpc-server").exists(), reason=f"no llama.cpp at {LLAMA}")
@pytest.mark.timeout(120)
def test_split_model_rpc_is_not_plaintext_between_hosts(make_net, tmp_path):
    """A host's llama-server keeps its layers in a worker's rpc-server, one host away: the capture on the
    bridge holds none of the tensor names llama.cpp's RPC protocol sends in clear (it does when llama-server
    talks to an rpc-server across the bridge directly, the control). The token embeddings stay on the host's
    CPU, so the names looked for are those of the layers the worker holds."""
    net = make_net(2)
    hh, hw = net.hosts
    mesh = Mesh(net, BIN, tmp_path)
    rpc, server, gguf = LLAMA / "bin" / "rpc-server", LLAMA / "bin" / "llama-server", LLAMA / "models" / "tiny-llama.gguf"
    worker = mesh.start(hw, "worker", extra=("--rpc-server", str(rpc), "--rpc-port", "50052"))
    pcap = tmp_path / "rpc.pcap"
    cap = net.capture(pcap)
    cmd = f"{server} -m {gguf} --host 127.0.0.1 --port 8102 -c 1024 -np 1 -t 1 --metrics -ngl 99 --rpc {{rpc}}"
    host = mesh.start(hh, "host", join=[worker], targets=["split=http://127.0.0.1:8102#kind=llamacpp&alias=split"],
                      extra=("--split-target", "split", "--split-exec", cmd))
    body = {"model": "split", "max_tokens": 8, "messages": [{"role": "user", "content": "hello across hosts"}]}

    def served():
        r = hh.http("POST", 8080, "/v1/chat/completions", body=body, timeout=15)
        return r if r.status == 200 else None
    netns.wait_for(served, timeout=60, what="the split model to answer on the host")
    net.stop_capture(cap)
    raw = pcap.read_bytes()
    report(f"split over the tunnel: pcap {pcap} {len(raw)} bytes; worker accepted "
           f"{worker.counter('infermesh_tunnel_accepted_total'):.0f} streams")
    assert len(raw) > 1_000_000, "the capture holds too little to prove anything (the layers are megabytes)"
    for name in (b"blk.0.", b"attn_", b"output_norm"):
        assert name not in raw, f"tensor name {name!r} crossed the bridge in plaintext ({pcap})"
    assert host.counter("infermesh_tunnel_bytes_total", dir="out") > 1_000_000

    # Control: llama-server on the host reaching an rpc-server on the worker directly across the bridge.
    net.start(hw, "rpc-direct", [str(rpc), "-H", hw.ip, "-p", "50060"])
    netns.wait_for(lambda: hh.accepts(50060, host=hw.ip), timeout=15, what="the direct rpc-server")
    ctl_pcap = tmp_path / "rpc-direct.pcap"
    ctl = net.capture(ctl_pcap, "tcp port 50060")
    direct = net.start(hh, "llama-direct", [str(server), "-m", str(gguf), "--host", "127.0.0.1", "--port", "8103",
                                            "-c", "1024", "-np", "1", "-t", "1", "-ngl", "99", "--rpc",
                                            f"{hw.ip}:50060"])
    netns.wait_for(lambda: hh.http("GET", 8103, "/health", host="127.0.0.1", timeout=5).status == 200, timeout=60,
                   what="the direct llama-server to load")
    netns.wait_for(lambda: b"attn_" in ctl_pcap.read_bytes(), timeout=10,
                   what="plaintext tensor names in the direct RPC capture (the grep works)")
    net.stop_capture(ctl)
    assert direct.alive()
