"""Cache state shared by every gateway: simulated engines publish KV-cache events (vLLM's protocol: ZMQ PUB,
msgpack batches), their node's agent subscribes, and a gateway node learns over the mesh which prompt blocks
each engine holds; prompts then route to the engine that holds them, though no router ever routed them there.
Where runtimes publish nothing, routers share their routing decisions instead."""

import time

import pytest

from conftest import HOST, MODEL, free_ports, http_get, post_json, wait_for, wait_reports_after
from test_mesh import init_cluster, remote_healthy, share_key, start_node, wait_members

BLOCK_BYTES = 64  # 16-token blocks of 4 bytes a token (routers and the simulated engine hash alike)


def prompt(i):
    """A completions prompt of 20 full blocks whose first block differs per i (so no two share a prefix).
    The routers and the engine hash the raw JSON string, quotes included: 20 * 64 - 2 bytes of text."""
    head = f"p{i:03d}-"
    return (head + "lorem ipsum dolor sit amet " * 60)[: 20 * BLOCK_BYTES - 2]


def blocks_of(p):
    return (len(p) + 2) // BLOCK_BYTES


def target_view(node, engine_port):
    for t in node.agent.targets():
        if t["url"].endswith(f":{engine_port}") or t["name"].endswith(f":{engine_port}"):
            return t
    return None


def cached_blocks(node, engine_port):
    t = target_view(node, engine_port)
    return t and t["kv_cached_blocks"]


def complete(port, p, **headers):
    r = post_json(port, "/v1/completions", {"model": MODEL, "prompt": p, "max_tokens": 1}, headers=headers)
    assert r.status == 200, r
    return r


@pytest.fixture
def kv_mesh(procs, tmp_path):
    """Node a: two engines publishing KV-cache events; node b: a gateway with no runtime."""
    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "b")
    base = free_ports(2)
    zports = [base, base + 1]
    engines = [procs.engine("--kv-events", f"tcp://{HOST}:{zp}", name=f"engine{i}") for i, zp in enumerate(zports)]
    targets = [f"{e.url}#kv_events=tcp://{HOST}:{zp}" for e, zp in zip(engines, zports)]
    a = start_node(procs, tmp_path, "a", targets, data_dir=tmp_path / "a")
    b = start_node(procs, tmp_path, "b", [], join=[a.gossip])
    wait_members([a, b], ["a", "b"])
    wait_for(lambda: remote_healthy(b, 2), timeout=15, what="a's engines healthy on the gateway")
    return a, b, engines


@pytest.mark.timeout(120)
def test_gateway_learns_engine_cache_and_routes_to_it(kv_mesh):
    a, b, engines = kv_mesh
    # Nothing cached yet: the engines reported nothing, so the views say 0 or null.
    for e in engines:
        assert not cached_blocks(a, e.port)
    expected = {e.port: 0 for e in engines}
    # Node a routes a few prompts itself: its agent sees the engines' events name the blocks of prompts it
    # routed (the routers' hashing), and from then on passes them to the mesh.
    hit, j = set(), 0
    while hit != {e.port for e in engines} and j < 32:
        q = prompt(500 + j)
        port = int(complete(a.port, q).headers["x-infermesh-target"].rsplit(":", 1)[1])
        hit.add(port)
        expected[port] += blocks_of(q)
        j += 1
    assert hit == {e.port for e in engines}
    prompts = [prompt(i) for i in range(8)]
    # Warm each prompt on a chosen engine directly, behind every router's back.
    for i, p in enumerate(prompts):
        e = engines[i % 2]
        complete(e.port, p)
        expected[e.port] += blocks_of(p)
    # The engines' node sees exactly what they hold, from their events ...
    for e in engines:
        wait_for(lambda: cached_blocks(a, e.port) == expected[e.port], timeout=10,
                 what=f"node a's view of engine {e.port}: {expected[e.port]} blocks")
    # ... and the gateway learns the same over the mesh, within a bound.
    for e in engines:
        wait_for(lambda: cached_blocks(b, e.port) == expected[e.port], timeout=10,
                 what=f"gateway b's view of engine {e.port}: {expected[e.port]} blocks")
        assert target_view(b, e.port)["kv_report_age_ms"] is not None
    # Routing through the gateway lands each prompt on the engine that holds it (by chance: 1 in 256).
    for i, p in enumerate(prompts):
        r = complete(b.port, p)
        want = engines[i % 2].port
        assert r.headers.get("x-infermesh-node") == "a", r.headers
        assert r.headers.get("x-infermesh-target", "").endswith(f":{want}"), (i, r.headers)
        assert r.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0, r.json()["usage"]
    # The engines' counters agree: the agent applied events and dropped none as malformed.
    m = a.agent.metrics()
    applied = sum(v for n, l, v in m if n == "infermesh_kv_events_total" and l.get("outcome") == "applied")
    bad = sum(v for n, l, v in m
              if n == "infermesh_kv_events_total" and l.get("outcome") in ("malformed_batch", "sequence_gap"))
    assert applied >= len(prompts) and bad == 0


@pytest.mark.timeout(120)
def test_routing_decisions_are_shared_when_runtimes_publish_nothing(procs, tmp_path):
    """No KV events: gateway c's routing decisions reach node a, whose router then sends the same prompts
    where c sent them. c routes round robin, blind to prefixes, so only what it shared can tell a where each
    prompt went (a alone would pick by its own rendezvous hash: right half the time)."""
    init_cluster(tmp_path / "a")
    for n in ("b", "c"):
        share_key(tmp_path / "a", tmp_path / n)
    ea, eb = procs.engine(name="engine-a"), procs.engine(name="engine-b")
    a = start_node(procs, tmp_path, "a", [ea], data_dir=tmp_path / "a")
    b = start_node(procs, tmp_path, "b", [eb], join=[a.gossip])
    c = start_node(procs, tmp_path, "c", [], join=[a.gossip], extra=("--routing-policy", "round-robin"))
    wait_members([a, b, c], ["a", "b", "c"])
    wait_for(lambda: remote_healthy(c, 2) and remote_healthy(a, 1), timeout=15, what="remote targets healthy")
    prompts = [prompt(100 + i) for i in range(8)]
    where = [complete(c.port, p).headers["x-infermesh-node"] for p in prompts]
    assert set(where) == {"a", "b"}
    wait_for(lambda: a.agent.counter("infermesh_kv_mesh_reports_total", dir="in") >= len(prompts), timeout=10,
             what="c's routing decisions at a")
    # c's decisions also reserve their work at a until reports of both engines taken after them cover it.
    wait_reports_after(a.port, time.monotonic())
    again = [complete(a.port, p).headers["x-infermesh-node"] for p in prompts]
    assert again == where
