"""Node simulation: pods on a node call the gateway's virtual address through the real openai SDK.

Two "pods", each a network namespace wired to the root namespace by a veth pair and a process in
its own child cgroup of the steered cgroup, call ``http://10.96.0.10:80/openai/v1`` (an address
nothing serves). The gateway's cgroup/connect4 program rewrites the connect to the node address
and the gateway's listener, the gateway recovers the original destination from the kernel, and
the request reaches the provider simulator. With ``mode: auto`` and BPF made unavailable the
same gateway serves local requests and says why.

Needs root and a kernel with BPF (CI has both): as root these tests FAIL when anything of that
is missing; a non-root run fails too unless ``GATEWAY_EBPF_TESTS_ALLOW_SKIP=1``. Only addresses
inside the namespaces the test creates (10.200.x.y) and loopback are used. Namespaces, veths and
cgroups are removed afterwards, processes are stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest
import requests

from conftest import CLIENT_KEY, wait_until

VIRTUAL = "10.96.0.10:80"
PY = os.environ.get("GATEWAY_TEST_PYTHON") or str(Path(os.sys.executable))

if os.geteuid() != 0:
    if os.environ.get("GATEWAY_EBPF_TESTS_ALLOW_SKIP") == "1":
        pytest.skip("eBPF node simulation needs root", allow_module_level=True)
    pytest.fail("eBPF node simulation needs root (GATEWAY_EBPF_TESTS_ALLOW_SKIP=1 to skip)", pytrace=False)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def cgroup2_mount() -> Path:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup2":
            return Path(left.split()[4])
    pytest.fail("cgroup v2 is not mounted", pytrace=False)


def own_cgroup(mount: Path) -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return mount / line[3:].lstrip("/")
    pytest.fail("no cgroup v2 entry in /proc/self/cgroup", pytrace=False)


def join_cgroup(cg: Path) -> None:
    (cg / "cgroup.procs").write_text(str(os.getpid()))


@dataclass
class Pod:
    name: str
    netns: str
    cgroup: Path
    ip: str
    node_ip: str


@dataclass
class Node:
    root: Path
    pods_cgroup: Path
    gateway_cgroup: Path
    pods: list[Pod] = field(default_factory=list)

    @property
    def node_ip(self) -> str:
        return self.pods[0].node_ip

    def run_in_pod(self, pod: Pod, script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs ``python -c script args`` as a process in the pod's cgroup and netns. The shell
        joins the cgroup first (``ip netns exec`` remounts sysfs), then execs into the netns."""
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONUNBUFFERED"] = "1"
        cmd = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$@"',
               str(pod.cgroup), pod.netns, PY, "-c", script, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def node() -> Iterable[Node]:
    """A node with two pods; this pytest process moves into the gateway's cgroup, so the gateway
    it starts runs there (and is excluded from steering by that cgroup's id)."""
    pid = os.getpid()
    mount = cgroup2_mount()
    original = own_cgroup(mount)
    root = mount / f"gw-node-{pid}"
    pods_cg, gw_cg = root / "pods", root / "gateway"
    base = 10 + (pid % 100) * 2
    made_cgroups: list[Path] = []
    made_netns: list[str] = []
    made_links: list[str] = []
    node = Node(root, pods_cg, gw_cg)
    try:
        for d in (root, pods_cg, gw_cg):
            d.mkdir()
            made_cgroups.append(d)
        for i in (1, 2):
            ns, host_if, pod_if = f"gwn{pid}p{i}", f"gwn{pid % 100000}h{i}", f"gwn{pid % 100000}p{i}"
            net = f"10.200.{base + i - 1}"
            cg = pods_cg / f"pod{i}"
            cg.mkdir()
            made_cgroups.append(cg)
            sh("ip", "netns", "add", ns)
            made_netns.append(ns)
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if)
            made_links.append(host_if)
            sh("ip", "link", "set", pod_if, "netns", ns)
            sh("ip", "addr", "add", f"{net}.1/24", "dev", host_if)
            sh("ip", "link", "set", host_if, "up")
            sh("ip", "-n", ns, "addr", "add", f"{net}.2/24", "dev", pod_if)
            sh("ip", "-n", ns, "link", "set", pod_if, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", f"{net}.1")
            node.pods.append(Pod(f"pod{i}", ns, cg, f"{net}.2", f"{net}.1"))
        join_cgroup(gw_cg)
        yield node
    finally:
        join_cgroup(original)
        for ns in made_netns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in made_links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for d in reversed(made_cgroups):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


NODE_CONFIG = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
  ebpf:
    mode: {mode}
    cgroup: {pods_cgroup}
    nodeAddress: [{node_ip}]
    steer:
    - address: "{virtual}"
      bind: {port}
binds:
- port: {port}
  listeners:
  - name: default
    routes:
    - name: openai
      matches: [{path: {pathPrefix: /openai}}]
      backends:
      - ai: {name: openai, provider: {openAI: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "sk-test-secret"}
"""

POD_CLIENT = """
import json, sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0, timeout=20)
r = client.chat.completions.create(model="gpt-4o-mini",
                                   messages=[{"role": "user", "content": "hello from " + sys.argv[3]}])
print(json.dumps({"model": r.model, "content": r.choices[0].message.content}))
"""


def metrics(gw) -> str:
    return requests.get(f"http://127.0.0.1:{gw.stats_port}/metrics", timeout=5).text


def test_pods_reach_provider_through_the_virtual_address(node: Node, gateway_factory, sim, monkeypatch):
    monkeypatch.setenv("RUST_LOG", "info,gateway::app=debug,gateway::ebpf=debug")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("GATEWAY_EBPF_FORCE_UNAVAILABLE", raising=False)
    gw = gateway_factory(NODE_CONFIG, mode="required", pods_cgroup=node.pods_cgroup,
                         node_ip=node.node_ip, virtual=VIRTUAL)
    text = metrics(gw)
    assert 'agentgateway_ebpf_enabled{reason="enabled"} 1' in text, text

    for pod in node.pods:
        res = node.run_in_pod(pod, POD_CLIENT, f"http://{VIRTUAL}/openai/v1", CLIENT_KEY, pod.name)
        assert res.returncode == 0, f"{pod.name} failed:\n{res.stdout}\n{res.stderr}\n--- gateway ---\n{gw.output()[-3000:]}"
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert out["content"], out

    # Both requests reached the simulator, with the backend key (not the client's).
    got = sim.requests("openai.chat")
    assert len(got) == 2, got
    for r in got:
        auth = {k.lower(): v for k, v in r["headers"].items()}.get("authorization", "")
        assert auth == "Bearer sk-test-secret", r["headers"]
        assert CLIENT_KEY not in json.dumps(r)

    # The gateway learned where each pod meant to go (one line per accepted steered connection),
    # and the connection came from the pod's own address (no NAT on the way).
    def steered_lines():
        return [l for l in gw.output().splitlines() if "steered connection accepted" in l]
    lines = wait_until(lambda: len(steered_lines()) >= 2 and steered_lines(), 5, what="steered-connection log lines")
    for pod in node.pods:
        mine = [l for l in lines if re.search(rf"peer=(\[::ffff:)?{re.escape(pod.ip)}\]?:\d+", l)]
        assert mine, f"no steered connection from {pod.ip}: {lines}"
        assert all(f"original_dst={VIRTUAL}" in l for l in mine), mine
    # The kernel logged the rewrite (aya-log -> tracing at debug).
    assert f"connect4: steer {VIRTUAL} -> {node.node_ip}:{gw.port}" in gw.output()

    text = metrics(gw)
    steered = re.search(r'agentgateway_ebpf_events_total\{event="steered"\} (\d+)', text)
    assert steered and int(steered.group(1)) >= 2, text

    # Stopping the gateway detaches everything from the pods' cgroup.
    assert gw.stop() == 0, gw.output()[-2000:]
    left = subprocess.run(["bpftool", "-j", "cgroup", "show", str(node.pods_cgroup)],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert left in ("", "[]"), left
    # And a pod's connect to the virtual address is no longer steered.
    res = node.run_in_pod(node.pods[0], "import socket,sys; socket.create_connection((sys.argv[1], 80), timeout=2)",
                          VIRTUAL.split(":")[0], timeout=30)
    assert res.returncode != 0, "virtual address still reachable after the gateway exited"


def test_auto_mode_without_bpf_serves_and_says_why(node: Node, gateway_factory, sim, monkeypatch):
    monkeypatch.setenv("GATEWAY_EBPF_FORCE_UNAVAILABLE", "simulated-no-bpf")
    monkeypatch.setenv("NO_COLOR", "1")
    gw = gateway_factory(NODE_CONFIG, mode="auto", pods_cgroup=node.pods_cgroup,
                         node_ip=node.node_ip, virtual=VIRTUAL)
    text = metrics(gw)
    assert 'agentgateway_ebpf_enabled{reason="GATEWAY_EBPF_FORCE_UNAVAILABLE=simulated-no-bpf"} 0' in text, text
    why = [l for l in gw.output().splitlines() if "eBPF disabled" in l]
    assert len(why) == 1 and "simulated-no-bpf" in why[0], why
    # Requests to the gateway itself still work.
    import openai
    client = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content
    # Nothing was attached.
    left = subprocess.run(["bpftool", "-j", "cgroup", "show", str(node.pods_cgroup)],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert left in ("", "[]"), left


def test_required_mode_without_bpf_fails_start_up(node: Node, gateway_factory, sim, monkeypatch):
    monkeypatch.setenv("GATEWAY_EBPF_FORCE_UNAVAILABLE", "simulated-no-bpf")
    gw = gateway_factory(NODE_CONFIG, wait_ready=False, mode="required", pods_cgroup=node.pods_cgroup,
                         node_ip=node.node_ip, virtual=VIRTUAL)
    rc = gw.proc.wait(timeout=20)
    assert rc != 0
    assert "simulated-no-bpf" in gw.output(), gw.output()
