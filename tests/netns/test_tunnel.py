"""Agent-to-agent traffic across hosts is encrypted: a packet capture on the bridge between two network
namespaces, taken while a gateway forwards a chat completion to the node that serves it, holds neither the
prompt nor the completion (tests/netns: run as root, see test_membership.py)."""

import re

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
    net.stop_capture(cap)
    assert r and r.headers.get("x-infermesh-node") == "server-a", r
    completion = r.json()["choices"][0]["message"]["content"]
    assert len(completion) >= 8, completion
    raw = pcap.read_bytes()
    frames = netns.read_pcap(pcap)
    payload = sum(len(f[6]) for f in frames if f[1] == "tcp" and f[6])
    report(f"forwarded chat: pcap {pcap} {len(frames)} frames, {payload} TCP payload bytes")
    assert payload > len(secret), "the capture holds too little traffic to prove anything"
    for text in (secret, "5f3a9c1e", completion):
        assert text.encode() not in raw, f"{text!r} crossed the bridge in plaintext ({pcap})"
    assert a.counter("infermesh_tunnel_accepted_total") >= 1

    # Control: the same kind of request sent straight to server-a's API across the bridge IS readable.
    ctl_pcap = tmp_path / "control.pcap"
    ctl = net.capture(ctl_pcap, "tcp port 8080")
    assert chat("the-control-canary-77d1", host=ha.ip)
    net.stop_capture(ctl)
    assert b"the-control-canary-77d1" in ctl_pcap.read_bytes(), "the capture cannot see plaintext HTTP"
