"""The capability sets the chart and the systemd unit grant really load and attach the eBPF programs.

Runs deploy/tools/ebpf_caps_probe.py (raw bpf(2): cgroup/connect4, sock_ops, sk_msg on a
SOCKHASH, tp_btf, a hash map) under `setpriv` with exactly the capabilities each deploy target
grants, and shows that each of those capabilities is needed: drop one and the kernel says EPERM.
As the style guide asks of eBPF tests, this fails rather than skips when it runs as root; it
skips only for an unprivileged user, who cannot restrict capabilities to a set it does not hold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "tools"))
import deploy_checks as dc  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set capability sets with setpriv")

PROBE = dc.DEPLOY / "tools" / "ebpf_caps_probe.py"
ALL_OPS = {
    "open_cgroup", "map_create_hash", "load_connect4", "attach_connect4", "load_sock_ops", "attach_sock_ops",
    "map_create_sockhash", "load_sk_msg", "attach_sk_msg", "btf_lookup", "load_tp_btf", "attach_tp_btf",
}  # fmt: skip


def _cgroup2_mount() -> Path:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, target, fstype, *_ = line.split()
        if fstype == "cgroup2":
            return Path(target)
    raise AssertionError("no cgroup2 mount: the gateway's cgroup programs need one")


@pytest.fixture(scope="module")
def env():
    for cmd in ("setpriv", "bpftool"):
        assert shutil.which(cmd), f"{cmd} missing (util-linux / tests/scripts/install-deps.sh)"
    # The probe must be readable, and python runnable, by an unprivileged uid too.
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    workdir = Path(tempfile.mkdtemp(prefix="gw-caps-"))
    workdir.chmod(0o755)
    probe = workdir / "probe.py"
    shutil.copy(PROBE, probe)
    probe.chmod(0o644)
    cgroup = _cgroup2_mount() / f"gw-caps-probe-{os.getpid()}"
    cgroup.mkdir()
    try:
        yield python, probe, cgroup
    finally:
        cgroup.rmdir()  # the probe's links closed with its process, so the group is empty
        shutil.rmtree(workdir)


def run_probe(env, caps: list[str], uid: int | None = None) -> dict[str, str]:
    python, probe, cgroup = env
    spec = ",".join(["-all"] + [f"+{c.lower().removeprefix('cap_')}" for c in caps])
    cmd = ["setpriv", f"--bounding-set={spec}", f"--inh-caps={spec}"]
    if uid is not None:
        # What systemd does for User= + AmbientCapabilities= + NoNewPrivileges=.
        cmd += [f"--reuid={uid}", f"--regid={uid}", "--clear-groups", f"--ambient-caps={spec}", "--no-new-privs"]
    proc = subprocess.run([*cmd, python, str(probe), str(cgroup)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_chart_capabilities_load_and_attach_every_program(env):
    caps = dc.render().container["securityContext"]["capabilities"]["add"]
    assert "SYS_ADMIN" not in caps
    results = run_probe(env, caps)
    assert results == dict.fromkeys(ALL_OPS, "ok"), results


def test_systemd_unit_ambient_capabilities_work_for_a_non_root_user(env):
    text = (dc.DEPLOY / "systemd" / "gateway.service").read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("AmbientCapabilities=")]
    results = run_probe(env, line.split("=", 1)[1].split(), uid=65534)
    assert results == dict.fromkeys(ALL_OPS, "ok"), results


def test_each_granted_capability_is_needed(env):
    base = ["BPF", "NET_ADMIN", "PERFMON"]
    without_net_admin = run_probe(env, ["BPF", "PERFMON"])
    assert without_net_admin["load_connect4"] == "EPERM" and without_net_admin["load_sock_ops"] == "EPERM"
    assert without_net_admin["load_tp_btf"] == "ok"
    without_perfmon = run_probe(env, ["BPF", "NET_ADMIN"])
    assert without_perfmon["load_tp_btf"] == "EPERM" and without_perfmon["attach_connect4"] == "ok"
    without_bpf = run_probe(env, [c for c in base if c != "BPF"])
    assert without_bpf["map_create_hash"] == "EPERM"
