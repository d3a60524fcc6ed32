"""`infermesh init`, `invite` and `keyring`: the cluster secret in the data dir, as a user drives it."""

import base64
import json
import os
import re
import stat
import subprocess
import time

import pytest

from conftest import BIN, SANITIZER_PATTERNS

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def run(*args, env=None, stdin=None, home=None):
    """Run infermesh with args; fail on any sanitizer report. Returns the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.pop("INFERMESH_DATA_DIR", None)
    full_env.pop("XDG_DATA_HOME", None)
    full_env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    if home is not None:
        full_env["HOME"] = str(home)
    if env:
        full_env.update(env)
    p = subprocess.run([BIN, *[str(a) for a in args]], input=stdin, capture_output=True, text=True, env=full_env,
                       timeout=30)
    assert not SANITIZER_PATTERNS.search(p.stderr), p.stderr
    return p


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def decode_token(token):
    assert token.startswith("imt1."), token
    body = token[5:]
    assert "=" not in body
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def keys_of(data):
    return (data / "cluster.key").read_text().split()


def fingerprints(data):
    p = run("keyring", "list", "--json", "--data-dir", data)
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    return [k["fingerprint"] for k in j["keys"]], [k["primary"] for k in j["keys"]]


@pytest.fixture
def cluster(tmp_path):
    """A data dir after a successful `infermesh init`."""
    data = tmp_path / "node-a" / "data"
    p = run("init", "--data-dir", data, "--name", "gpu-a")
    assert p.returncode == 0, p.stderr
    return data


def test_init_creates_private_files(tmp_path):
    data = tmp_path / "deep" / "node" / "data"
    p = run("init", "--data-dir", data, "--name", "gpu-a")
    assert p.returncode == 0, p.stderr
    for d in (tmp_path / "deep", data):
        assert mode(d) == 0o700, d
    for f in ("cluster.key", "cluster.id", "node.key"):
        assert mode(data / f) == 0o600, f
    keys = keys_of(data)
    assert len(keys) == 1 and HEX64.match(keys[0])
    cluster_id = (data / "cluster.id").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{32}", cluster_id)
    # What it prints: the cluster id, the node id, the data dir and the next step; never the key.
    assert cluster_id in p.stdout
    assert re.search(r"node id:\s+[0-9a-f]{12}\b", p.stdout), p.stdout
    assert str(data) in p.stdout
    assert f"infermesh agent --data-dir {data}" in p.stdout
    assert "infermesh invite" in p.stdout
    assert keys[0] not in p.stdout + p.stderr
    assert not list(data.glob(".*tmp*")), "temporary files left behind"


def test_second_init_refused(cluster):
    before = (cluster / "cluster.key").read_text()
    node_before = (cluster / "node.key").read_text()
    p = run("init", "--data-dir", cluster)
    assert p.returncode == 1
    assert "already holds a cluster key" in p.stderr
    assert "invite" in p.stderr  # says how to join instead
    assert (cluster / "cluster.key").read_text() == before
    assert (cluster / "node.key").read_text() == node_before


def test_init_uses_data_dir_from_environment(tmp_path):
    data = tmp_path / "from-env"
    p = run("init", env={"INFERMESH_DATA_DIR": str(data)})
    assert p.returncode == 0, p.stderr
    assert (data / "cluster.key").exists() and str(data) in p.stdout
    # Without the variable (and as a user), HOME decides; as root, /var/lib/infermesh would be used, so only
    # check the user case.
    if os.geteuid() != 0:
        p = run("init", home=tmp_path / "home")
        assert p.returncode == 0, p.stderr
        assert (tmp_path / "home" / ".local" / "share" / "infermesh" / "cluster.key").exists()


def test_invite_json_token(cluster):
    before = int(time.time())
    p = run("invite", "--data-dir", cluster, "--seed", "10.0.0.2:7946", "--seed", "[fd00::3]:7946",
            "--ttl", "30m", "--json")
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert set(j) == {"token", "cluster_id", "seeds", "expires_at"}
    cluster_id = (cluster / "cluster.id").read_text().strip()
    assert j["cluster_id"] == cluster_id
    assert j["seeds"] == ["10.0.0.2:7946", "[fd00::3]:7946"]
    assert before + 1800 <= j["expires_at"] <= int(time.time()) + 1800
    t = decode_token(j["token"])
    assert set(t) == {"c", "s", "t", "e", "k"}
    assert t["c"] == cluster_id and t["s"] == j["seeds"] and t["e"] == j["expires_at"]
    assert re.fullmatch(r"[0-9a-f]{32}", t["t"]) and re.fullmatch(r"[0-9a-f]{64}", t["k"])
    # The token carries a join secret derived from the key, never the key itself.
    key = keys_of(cluster)[0]
    assert key not in j["token"] and key not in json.dumps(t) and t["k"] != key


def test_invite_plain_default_seed_and_ttl(cluster):
    p = run("invite", "--data-dir", cluster)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1, "stdout is the token alone, for scripts"
    t = decode_token(lines[0])
    assert t["s"] == ["127.0.0.1:7946"]
    assert "127.0.0.1:7946" in p.stderr and "--seed" in p.stderr  # says it used the default, and how to change it
    assert abs(t["e"] - (time.time() + 24 * 3600)) < 60  # default 24h
    # Two invites are two different tokens.
    again = decode_token(run("invite", "--data-dir", cluster).stdout.strip())
    assert again["t"] != t["t"] and again["k"] != t["k"]
    # --ttl 0: never expires; days work too.
    j = json.loads(run("invite", "--data-dir", cluster, "--ttl", "0", "--json", "--seed", "h:1").stdout)
    assert j["expires_at"] is None and decode_token(j["token"])["e"] == 0
    j = json.loads(run("invite", "--data-dir", cluster, "--ttl=7d", "--json", "--seed=h:1").stdout)
    assert abs(j["expires_at"] - (time.time() + 7 * 86400)) < 60


@pytest.mark.parametrize("args", [
    ["--ttl", "5x"], ["--ttl", "-1h"], ["--ttl", ""], ["--ttl", "99999d"], ["--seed", "no-port"],
    ["--seed", "10.0.0.2:0"], ["--seed", "http://h:1"], ["--bogus"], ["extra"], ["--seed"],
    ["--seed", "a:1"] * 9,
])
def test_invite_bad_usage(cluster, args):
    p = run("invite", "--data-dir", cluster, *args)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert p.stderr.strip() and not p.stdout.strip()


def test_invite_without_cluster(tmp_path):
    p = run("invite", "--data-dir", tmp_path / "empty")
    assert p.returncode == 1
    assert "no cluster key in" in p.stderr and "infermesh init" in p.stderr


def test_world_readable_key_refused(cluster):
    os.chmod(cluster / "cluster.key", 0o644)
    for args in (["invite"], ["keyring", "list"]):
        p = run(*args, "--data-dir", cluster)
        assert p.returncode == 1, args
        assert "chmod 600" in p.stderr and str(cluster / "cluster.key") in p.stderr
    os.chmod(cluster / "cluster.key", 0o600)
    assert run("keyring", "list", "--data-dir", cluster).returncode == 0


def test_keyring_rotation(cluster):
    old_key = keys_of(cluster)[0]
    (old_fp,), (primary,) = fingerprints(cluster)
    assert primary and re.fullmatch(r"[0-9a-f]{8}", old_fp) and old_fp not in old_key

    p = run("keyring", "generate")
    assert p.returncode == 0
    new_key = p.stdout.strip()
    assert HEX64.match(new_key)
    assert run("keyring", "generate").stdout.strip() != new_key

    # 1. install: a secondary key; the primary stays.
    p = run("keyring", "install", new_key, "--data-dir", cluster)
    assert p.returncode == 0, p.stderr
    assert new_key not in p.stdout + p.stderr
    assert keys_of(cluster) == [old_key, new_key]
    assert mode(cluster / "cluster.key") == 0o600
    fps, prim = fingerprints(cluster)
    assert fps[0] == old_fp and prim == [True, False]
    new_fp = fps[1]
    p = run("keyring", "install", new_key, "--data-dir", cluster)  # idempotent
    assert p.returncode == 0 and "already installed" in p.stdout
    assert keys_of(cluster) == [old_key, new_key]

    # The table names both and marks the primary; it never shows a key.
    p = run("keyring", "list", "--data-dir", cluster)
    assert p.returncode == 0
    assert old_fp in p.stdout and new_fp in p.stdout and "primary" in p.stdout
    assert old_key not in p.stdout and new_key not in p.stdout

    # 2. use (by fingerprint): the new key is primary, the old one still installed.
    p = run("keyring", "use", new_fp, "--data-dir", cluster)
    assert p.returncode == 0, p.stderr
    assert keys_of(cluster) == [new_key, old_key]
    assert fingerprints(cluster) == ([new_fp, old_fp], [True, False])
    # Invites now come from the new key; the cluster id is unchanged.
    j = json.loads(run("invite", "--data-dir", cluster, "--json", "--seed", "h:1").stdout)
    assert j["cluster_id"] == (cluster / "cluster.id").read_text().strip()

    # The primary cannot be removed.
    p = run("keyring", "remove", new_key, "--data-dir", cluster)
    assert p.returncode == 1 and "primary" in p.stderr and "use" in p.stderr
    assert keys_of(cluster) == [new_key, old_key]

    # 3. remove the old key (by its full value).
    p = run("keyring", "remove", old_key, "--data-dir", cluster)
    assert p.returncode == 0, p.stderr
    assert keys_of(cluster) == [new_key]
    p = run("keyring", "remove", new_key, "--data-dir", cluster)  # the last key
    assert p.returncode == 1 and "only one" in p.stderr
    p = run("keyring", "use", old_fp, "--data-dir", cluster)  # gone
    assert p.returncode == 1 and "no installed key" in p.stderr
    p = run("keyring", "use", old_key, "--data-dir", cluster)
    assert p.returncode == 1 and "not installed" in p.stderr and "install" in p.stderr


def test_keyring_install_from_stdin(cluster):
    new_key = run("keyring", "generate").stdout.strip()
    p = run("keyring", "install", "-", "--data-dir", cluster, stdin=new_key + "\n")
    assert p.returncode == 0, p.stderr
    assert keys_of(cluster)[1] == new_key


@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["install"], ["install", "abc"], ["install", "0" * 63], ["install", "g" * 64],
    ["use", "xyz"], ["list", "extra"], ["generate", "extra"], ["list", "--bogus"], ["install", "0" * 64, "1" * 64],
])
def test_keyring_bad_usage(cluster, args):
    before = (cluster / "cluster.key").read_text()
    p = run("keyring", *args, "--data-dir", cluster)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert p.stderr.strip()
    assert "0" * 32 not in p.stderr and "1" * 32 not in p.stderr  # a key-like argument is not echoed
    assert (cluster / "cluster.key").read_text() == before


def test_keyring_full(cluster):
    for _ in range(3):
        assert run("keyring", "install", run("keyring", "generate").stdout.strip(),
                   "--data-dir", cluster).returncode == 0
    p = run("keyring", "install", run("keyring", "generate").stdout.strip(), "--data-dir", cluster)
    assert p.returncode == 1 and "full" in p.stderr
    assert len(keys_of(cluster)) == 4


def test_help_and_usage():
    for cmd in ("init", "invite", "keyring"):
        p = run(cmd, "--help")
        assert p.returncode == 0, cmd
        assert p.stdout.startswith(f"usage: infermesh {cmd}"), p.stdout
        assert "exit codes" in p.stdout
    assert "SIGHUP" in run("keyring", "--help").stdout
    assert "--ttl" in run("invite", "-h").stdout
    top = run("--help").stdout
    section = top[top.index("cluster:"):]
    for cmd in ("init", "invite", "keyring"):
        assert re.search(rf"^\s+{cmd}\s", section, re.M), cmd
    p = run("init", "--bogus")
    assert p.returncode == 2 and "usage: infermesh init" in p.stderr
    assert run("init", "--name", "bad name!", "--data-dir", "/nonexistent/never").returncode == 2
    assert run("init", "--data-dir").returncode == 2


def test_init_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = run("init", "--data-dir", blocker / "data")
    assert p.returncode == 1
    assert str(blocker) in p.stderr and "--data-dir" in p.stderr
