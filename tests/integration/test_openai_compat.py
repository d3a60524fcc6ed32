"""The official `openai` npm client against `infermesh dev` (tests/compat/openai_compat.mjs)."""

import os
import shutil
import subprocess

import pytest

from conftest import MODEL, REPO, free_port, wait_for

COMPAT = REPO / "tests" / "compat"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("priced", [False, True], ids=["no-price", "priced"])
def test_official_openai_node_client(procs, priced):
    """Every response parses with the official client; with a price, usage.cost is a number in both modes."""
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    if not (COMPAT / "node_modules" / "openai").is_dir():
        # The bootstrap normally does this; do it here when it has not run.
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=COMPAT, check=True, timeout=120,
                       capture_output=True)
    port = free_port()
    env = {"INFERMESH_PRICES": f"model={MODEL},prompt=0.5,completion=1.5"} if priced else None
    dev = procs.infermesh("dev", "dev", "--port", str(port), "--engines", "2", "--speed", "10", env=env)
    wait_for(lambda: dev.alive() and "mesh ready" in dev.stdout(), timeout=20, what="the dev banner")
    p = subprocess.run([node, str(COMPAT / "openai_compat.mjs"), f"http://127.0.0.1:{port}/v1"],
                       capture_output=True, text=True, timeout=60, cwd=COMPAT,
                       env={**os.environ, "EXPECT_COST": "1" if priced else "0"})
    assert p.returncode == 0, f"openai_compat.mjs failed (rc {p.returncode}):\n{p.stdout}\n{p.stderr}"
    assert "all" in p.stdout and "checks passed" in p.stdout, p.stdout
    assert "FAIL" not in p.stdout
