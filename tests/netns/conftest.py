"""Fixtures for the multi-host tests (tests/netns): hosts in network namespaces on one bridge.

Same conventions as tests/integration: every test is bounded (@pytest.mark.timeout, SIGALRM), every process
goes through a Procs manager (own process group, logs, SIGKILL + reap at teardown, log tails in failure
reports), sanitizer reports in any log fail the test, waiting is polling with deadlines. On top of that every
namespace a test creates is deleted at teardown (and by an atexit hook, and on SIGTERM), and namespaces left by
earlier crashed runs are removed first.
"""

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import netns  # noqa: E402

# The integration suite's plumbing: the per-test SIGALRM timeout, the timeout marker and failure-report logs.
if netns._ITC is not None:
    _per_test_timeout = netns._ITC._per_test_timeout
    pytest_configure = netns._ITC.pytest_configure
    pytest_runtest_makereport = netns._ITC.pytest_runtest_makereport

from cluster import BIN  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _netns_session():
    """Remove namespaces of crashed earlier runs; turn SIGTERM into an interrupt so teardown still runs."""
    reason = netns.unavailable_reason()
    if reason is None:
        netns.cleanup_stale(log=print)
    old = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    if old in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        if old in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, old)


@pytest.fixture
def make_net(tmp_path):
    """make_net(k) -> a netns.Net of k hosts whose processes and namespaces go away at teardown."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    if not Path(BIN).exists():
        pytest.skip(f"{BIN} is not built (make asan)")
    procs = netns.Procs(tmp_path / "logs")
    nets = []

    def make(k):
        n = netns.Net(k, tmp_path / "logs", procs=procs)
        nets.append(n)
        return n

    reports, leftovers = [], []
    try:
        yield make
    finally:
        try:
            reports = procs.sanitizer_reports()
        finally:
            procs.cleanup()
            for n in nets:
                n.close()
                leftovers += n.leftovers()
            if procs in getattr(netns._ITC, "_LIVE_MANAGERS", []):
                netns._ITC._LIVE_MANAGERS.remove(procs)
    if reports:
        pytest.fail("sanitizer report in a process log:\n" + "\n\n".join(reports), pytrace=False)
    if leftovers:
        pytest.fail(f"namespaces left behind after teardown: {leftovers}", pytrace=False)
