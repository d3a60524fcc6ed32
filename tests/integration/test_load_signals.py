"""Load signals across a mesh of four gateways (a 2 x 2 relay grid): a change of one node's engine load reaches
every other node's view well before the next full load report (every 10 s), so through the deltas relayed
over the grid. The bound here is generous (5 s); how fresh the signals really are is measured in
bench/routing_traffic.py (bench/results/routing-traffic.md)."""

import pytest

from conftest import SSEStream, chat_body, wait_for
from test_mesh import init_cluster, share_key, start_node, wait_members, remote_healthy


def running_seen(node, target_node):
    ts = [t for t in node.agent.targets() if t["remote"] and t["name"].startswith(target_node + "/")]
    return ts[0]["running"] if ts else None


@pytest.mark.timeout(90)
def test_engine_load_change_reaches_every_gateway(procs, tmp_path):
    init_cluster(tmp_path / "a")
    for n in ("b", "c", "d"):
        share_key(tmp_path / "a", tmp_path / n)
    engine = procs.engine(speed="1", name="engine-a")
    a = start_node(procs, tmp_path, "a", [engine], data_dir=tmp_path / "a")
    others = [start_node(procs, tmp_path, n, [], join=[a.gossip]) for n in ("b", "c", "d")]
    wait_members([a, *others], ["a", "b", "c", "d"])
    wait_for(lambda: all(remote_healthy(n, 1) for n in others), timeout=15, what="a's engine seen by every gateway")
    # The full reports of joining are behind us: load a's engine directly (no router counts these).
    streams = [SSEStream(engine.port, "/v1/chat/completions", chat_body(f"long {i}", max_tokens=4000, stream=True))
               for i in range(3)]
    try:
        wait_for(lambda: all(running_seen(n, "a") == 3 for n in others), timeout=5,
                 what="every gateway to see 3 requests running on a's engine")
    finally:
        for s in streams:
            s.close()
    wait_for(lambda: all(running_seen(n, "a") == 0 for n in others), timeout=5,
             what="every gateway to see a's engine idle again")
