"""Offline checks of the Helm chart and the plain manifests under deploy/ (no cluster needed).

Renders deploy/helm/ai-gateway with helm-python-sdk for the chart defaults and for every values
file in its ci/ directory, validates each manifest with `kubernetes-validate --strict` (Kubernetes
1.31 schemas; the ServiceMonitor CRD against deploy/tools/schemas/), runs `helm lint --strict`,
checks the rendered gateway config against agentgateway's schema and against the pod spec that
serves it, and checks deploy/kubernetes/ is the current render.
Run: target/test-venv/bin/python -m pytest tests/python/test_deploy.py tests/python/test_deploy_hosts.py
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "tools"))
import deploy_checks as dc  # noqa: E402

helm_python = pytest.importorskip("helm_python", reason="helm-python-sdk not installed (tests/requirements.txt)")
jsonschema = pytest.importorskip("jsonschema")

VALUE_CASES = [None, *sorted(p.name for p in dc.CI_VALUES.glob("*.yaml"))]
CASE_IDS = ["defaults" if c is None else c.removesuffix("-values.yaml") for c in VALUE_CASES]


# === helm lint, kubernetes-validate ===


@pytest.mark.parametrize("case", VALUE_CASES, ids=CASE_IDS)
def test_helm_lint_strict_has_no_warning(case):
    report = helm_python.lint(
        str(dc.CHART), dc.load_values(case) if case else None, strict=True, kube_version=dc.KUBE_VERSION
    )
    assert report["errors"] == [], report
    # Severity 1 is informational ("icon is recommended"); 2 warning, 3 error.
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("case", VALUE_CASES, ids=CASE_IDS)
def test_every_rendered_manifest_validates_strictly(case, tmp_path):
    r = dc.render(case)
    rc, out = dc.kubernetes_validate(r.docs, tmp_path)
    assert rc == 0, out
    kinds = {d["kind"] for d in r.docs}
    assert {"ConfigMap", "DaemonSet", "Service", "ServiceAccount"} <= kinds


def test_validator_rejects_an_unknown_field(tmp_path):
    """Guards the check above: a misspelt field in the DaemonSet must fail --strict validation."""
    ds = copy.deepcopy(dc.render().daemonset)
    ds["spec"]["template"]["spec"]["hostNetwrk"] = True
    rc, out = dc.kubernetes_validate([ds], tmp_path)
    assert rc != 0 and "hostNetwrk" in out, out


def test_servicemonitor_schema_rejects_a_misspelt_field():
    sm = copy.deepcopy(dc.render("all-options-values.yaml").one("ServiceMonitor"))
    schema = json.loads(dc.CRD_SCHEMAS[("monitoring.coreos.com/v1", "ServiceMonitor")].read_text())
    jsonschema.Draft202012Validator(schema).validate(sm)
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.Draft202012Validator(schema).validate(sm)


def test_plain_manifests_are_the_current_render():
    proc = subprocess.run(
        [sys.executable, str(dc.DEPLOY / "tools" / "render_manifests.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, (
        f"stale deploy/kubernetes/; run deploy/tools/render_manifests.py\n{proc.stdout}{proc.stderr}"
    )


def test_plain_manifests_validate_strictly(tmp_path):
    docs = [d for d in yaml.safe_load_all((dc.DEPLOY / "kubernetes" / "ai-gateway.yaml").read_text()) if d]
    assert [d["kind"] for d in docs][0] == "Namespace"
    ns = docs[0]["metadata"]
    assert ns["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert all(d["metadata"].get("namespace", ns["name"]) == ns["name"] for d in docs)
    rc, out = dc.kubernetes_validate(docs, tmp_path)
    assert rc == 0, out


# === the gateway config the chart ships ===


@pytest.mark.parametrize("case", VALUE_CASES, ids=CASE_IDS)
def test_config_is_agentgateway_format(case):
    """config.yaml validates against agentgateway's own schema; config.ebpf against ours."""
    cfg = dc.render(case).config
    ebpf_schema = json.loads((dc.SCHEMAS / "gateway-config-ebpf.json").read_text())
    jsonschema.Draft202012Validator(ebpf_schema).validate(cfg["config"]["ebpf"])
    schema = dc.agentgateway_schema()
    if schema is None:
        pytest.skip("agentgateway schema/config.json not available on this machine (set AGW_SCHEMA)")
    upstream = copy.deepcopy(cfg)
    del upstream["config"]["ebpf"]  # our extension; agentgateway's RawConfig is closed
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(upstream), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors]


def test_agentgateway_schema_check_can_fail():
    schema = dc.agentgateway_schema()
    if schema is None:
        pytest.skip("agentgateway schema/config.json not available on this machine (set AGW_SCHEMA)")
    cfg = copy.deepcopy(dc.render().config)
    del cfg["config"]["ebpf"]
    cfg["binds"][0]["listeners"][0]["routes"][0]["backends"][0]["ai"]["provider"] = {"openAi": {}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(cfg))


def test_default_config_routes_openai_with_key_from_secret():
    r = dc.render()
    cfg = r.config
    assert cfg["config"]["adminAddr"] == "localhost:15000"
    (bind,) = cfg["binds"]
    (listener,) = bind["listeners"]
    (route,) = listener["routes"]
    assert route["backends"] == [{"ai": {"name": "openai", "provider": {"openAI": {}}}}]
    assert route["policies"]["backendAuth"] == {"key": "$OPENAI_API_KEY"}
    key = r.env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert key == {"name": "ai-gateway-provider-keys", "key": "OPENAI_API_KEY", "optional": False}
    assert "tracing" not in cfg["config"]


@pytest.mark.parametrize("case", VALUE_CASES, ids=CASE_IDS)
def test_every_config_variable_is_in_the_container_env(case):
    r = dc.render(case)
    text = r.one("ConfigMap")["data"]["config.yaml"]
    wanted = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    assert wanted, "the config references no secret at all"
    assert wanted <= set(r.env), f"config.yaml needs {sorted(wanted - set(r.env))} that the pod does not set"


@pytest.mark.parametrize("case", VALUE_CASES, ids=CASE_IDS)
def test_config_addresses_match_the_pod(case):
    r = dc.render(case)
    cfg, c = r.config, r.container
    bind_port = cfg["binds"][0]["port"]
    assert dc.container_port(c, "http") == bind_port
    assert dc.host_port(cfg["config"]["statsAddr"]) == ("0.0.0.0", dc.container_port(c, "metrics"))
    assert dc.host_port(cfg["config"]["readinessAddr"]) == ("0.0.0.0", dc.container_port(c, "readiness"))
    assert dc.host_port(cfg["config"]["adminAddr"])[0] in ("localhost", "127.0.0.1"), "admin must stay on loopback"
    ready = c["readinessProbe"]["httpGet"]
    assert (ready["path"], ready["port"]) == ("/healthz/ready", "readiness")
    assert c["startupProbe"]["httpGet"]["port"] == "readiness"
    assert c["livenessProbe"]["tcpSocket"]["port"] == "readiness"
    assert c["args"] == ["-f", "/etc/gateway/config.yaml"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "config"]
    # A subPath mount never sees ConfigMap updates, and hot reload depends on them.
    assert mount["mountPath"] == "/etc/gateway" and "subPath" not in mount


@pytest.mark.parametrize("case", VALUE_CASES, ids=CASE_IDS)
def test_termination_grace_covers_the_drain_deadline(case):
    r = dc.render(case)
    deadline = r.config["config"]["connectionTerminationDeadline"]
    assert re.fullmatch(r"\d+s", deadline)
    margin = r.values.get("drain", {}).get("marginSeconds", 5)
    assert r.pod["terminationGracePeriodSeconds"] == int(deadline[:-1]) + margin
    assert margin > 0


# === eBPF: capabilities, host mounts, steering ===


def _caps(r: dc.Render) -> list[str]:
    return r.container["securityContext"].get("capabilities", {}).get("add", [])


def test_default_pod_has_least_privilege_for_ebpf():
    r = dc.render()
    pod, sc = r.pod, r.container["securityContext"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert _caps(r) == ["BPF", "NET_ADMIN", "PERFMON"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["name"]: m for m in r.container["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    for name, path, ro in [
        ("bpffs", "/sys/fs/bpf", False),
        ("cgroup", "/sys/fs/cgroup", True),
        ("btf", "/sys/kernel/btf", True),
    ]:
        assert vols[name]["hostPath"] == {"path": path, "type": "Directory"}
        assert mounts[name]["mountPath"] == path
        assert mounts[name].get("readOnly", False) is ro
    # Bidirectional propagation is only allowed for privileged containers.
    assert mounts["bpffs"]["mountPropagation"] == "HostToContainer"


def test_sysadmin_option_drops_the_no_escalation_flag():
    """The API server rejects allowPrivilegeEscalation: false together with CAP_SYS_ADMIN."""
    r = dc.render("sysadmin-values.yaml")
    assert _caps(r) == ["BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"]
    assert "allowPrivilegeEscalation" not in r.container["securityContext"]


def test_privileged_option_replaces_the_capability_list():
    r = dc.render("all-options-values.yaml")
    sc = r.container["securityContext"]
    assert sc["privileged"] is True
    assert "capabilities" not in sc and "allowPrivilegeEscalation" not in sc
    bpffs = next(m for m in r.container["volumeMounts"] if m["name"] == "bpffs")
    assert bpffs["mountPropagation"] == "Bidirectional"
    assert r.pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_ebpf_off_needs_no_capability_and_no_host_path():
    r = dc.render("ebpf-off-values.yaml")  # written as unquoted `mode: off` (YAML 1.1 false)
    assert r.values["ebpf"]["mode"] is False
    assert r.config["config"]["ebpf"] == {"mode": "off"}
    assert _caps(r) == []
    assert not [v for v in r.pod["volumes"] if "hostPath" in v]
    assert r.container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("case", [c for c in VALUE_CASES if c != "ebpf-off-values.yaml"], ids=str)
def test_steering_targets_the_service_address_and_the_bind(case):
    r = dc.render(case)
    ebpf = r.config["config"]["ebpf"]
    svc = r.one("Service", r.daemonset["metadata"]["name"])
    spec = svc["spec"]
    assert spec["internalTrafficPolicy"] == "Local"
    assert spec["selector"].items() <= r.daemonset["spec"]["template"]["metadata"]["labels"].items()
    (port,) = spec["ports"]
    assert ebpf["steer"][0] == {"address": f"{spec['clusterIP']}:{port['port']}", "bind": r.config["binds"][0]["port"]}
    assert port["targetPort"] == "http"
    mount = r.values.get("hostPaths", {}).get("cgroup", "/sys/fs/cgroup")
    assert ebpf["cgroup"] == mount or ebpf["cgroup"].startswith(mount + "/"), "the cgroup must be under the mount"
    assert all(s["bind"] in [b["port"] for b in r.config["binds"]] for s in ebpf["steer"])


def test_update_strategy_never_surges():
    for case in VALUE_CASES:
        strategy = dc.render(case).daemonset["spec"]["updateStrategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxSurge"] == 0
        assert strategy["rollingUpdate"]["maxUnavailable"] in (1, "10%")


# === observability ===


def test_default_pods_carry_prometheus_annotations_and_no_servicemonitor():
    r = dc.render()
    ann = r.daemonset["spec"]["template"]["metadata"]["annotations"]
    assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/metrics"}
    assert r.all("ServiceMonitor") == []
    assert "checksum/config" not in ann  # the gateway reloads in place


def test_servicemonitor_selects_the_headless_metrics_service():
    r = dc.render("all-options-values.yaml")
    sm = r.one("ServiceMonitor")
    assert sm["metadata"]["namespace"] == "monitoring"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["namespaceSelector"]["matchNames"] == ["ai-gateway"]
    selected = [
        s for s in r.all("Service") if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["node-gw-metrics"]
    (svc,) = selected
    assert svc["spec"]["clusterIP"] == "None"
    (ep,) = sm["spec"]["endpoints"]
    (port,) = svc["spec"]["ports"]
    assert (ep["port"], ep["path"], ep["interval"]) == (port["name"], "/metrics", "15s")
    assert port["targetPort"] == "metrics"


def test_otlp_endpoint_and_headers_from_a_secret():
    r = dc.render("all-options-values.yaml")
    env = r.env
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["valueFrom"]["secretKeyRef"] == {
        "name": "otlp-credentials",
        "key": "endpoint",
    }
    assert env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"] == {
        "name": "otlp-credentials",
        "key": "headers",
    }
    tracing = r.config["config"]["tracing"]
    assert tracing["otlpEndpoint"] == "$OTEL_EXPORTER_OTLP_ENDPOINT"
    assert tracing["otlpProtocol"] == "http"
    assert tracing["randomSampling"] == "0.25"
    assert tracing["fields"]["add"]["gen_ai.system"] == "llm.provider"
    assert "value" not in env["OTEL_EXPORTER_OTLP_HEADERS"]


def test_otlp_endpoint_and_headers_from_values():
    r = dc.render("sysadmin-values.yaml")
    assert r.env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.monitoring.svc:4317"
    assert r.env["OTEL_EXPORTER_OTLP_HEADERS"]["value"] == "x-tenant=ai"
    # Resource attributes expand variables declared earlier in the list.
    names = [e["name"] for e in r.container["env"]]
    assert names.index("NODE_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")


def test_all_options_reach_the_manifests():
    r = dc.render("all-options-values.yaml")
    ds, pod, cfg = r.daemonset, r.pod, r.config
    assert ds["metadata"]["name"] == "node-gw"
    assert pod["serviceAccountName"] == "node-gw-sa" and r.one("ServiceAccount")["metadata"]["name"] == "node-gw-sa"
    assert pod["terminationGracePeriodSeconds"] == 70
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    ann = ds["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in ann and ann["example.com/team"] == "ai"
    assert re.fullmatch(r"[0-9a-f]{64}", ann["checksum/config"])
    assert cfg["config"]["workerThreads"] == 2
    assert cfg["config"]["adminAddr"] == "localhost:15000", "extraConfig must not override chart-owned keys"
    assert cfg["policies"] == []
    assert cfg["config"]["ebpf"]["mode"] == "required"
    assert cfg["config"]["ebpf"]["steer"][1] == {"address": "10.96.0.101:443", "bind": 8080}
    assert _caps(r) == [] and "SYS_RESOURCE" not in json.dumps(r.container)  # privileged: caps moot
    assert {"ANTHROPIC_API_KEY", "OPENAI_API_KEY"} <= set(r.env)
    assert r.env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert r.env["RUST_BACKTRACE"]["value"] == "1"


def test_extra_capabilities_are_added_when_not_privileged():
    r = dc.Render({"security": {"extraCapabilities": ["SYS_RESOURCE", "BPF"]}})
    assert _caps(r) == ["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"]


# === values that must not render ===


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ebpf": {"mode": "sometimes"}}, "ebpf/mode"),
        ({"ebpf": {"mdoe": "auto"}}, "mdoe"),
        ({"service": {"clusterIP": ""}}, "service.clusterIP"),
        ({"service": {"enabled": False}}, "service.enabled"),
        ({"tracing": {"enabled": True}}, "tracing.otlpEndpoint"),
        ({"tracing": {"enabled": True, "otlpSecret": {"endpointKey": "e"}}}, "tracing.otlpSecret.name"),
        ({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}, "maxSurge"),
        ({"gateway": {"routes": []}}, "routes"),
    ],
)
def test_bad_values_fail_with_the_value_named(values, message):
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        dc.Render(values)


def test_steering_off_allows_a_dynamic_cluster_ip():
    r = dc.Render({"ebpf": {"steerService": False}, "service": {"clusterIP": ""}})
    assert "clusterIP" not in r.one("Service")["spec"]
    assert r.config["config"]["ebpf"]["steer"] == []


def test_notes_tell_how_to_create_the_secret_and_call_the_gateway():
    notes = dc.render().notes
    assert "create secret generic ai-gateway-provider-keys" in notes
    assert '--from-literal=OPENAI_API_KEY="$OPENAI_API_KEY"' in notes
    assert "http://ai-gateway.ai-gateway.svc.cluster.local:80/v1" in notes
    assert "rollout status daemonset/ai-gateway" in notes


def test_default_cluster_ip_is_in_the_static_band_of_the_kubeadm_service_cidr():
    ip = ipaddress.ip_address(dc.render().one("Service")["spec"]["clusterIP"])
    # kubeadm/kind default 10.96.0.0/12; since 1.26 dynamic allocation avoids the first 256 addresses.
    assert ip in ipaddress.ip_network("10.96.0.0/24") and int(ip) - int(ipaddress.ip_address("10.96.0.0")) >= 16
