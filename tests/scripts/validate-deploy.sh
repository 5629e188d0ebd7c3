#!/usr/bin/env bash
# Offline validation of everything under deploy/ (no cluster, no container engine, no systemd):
#   - renders deploy/helm/ai-gateway with helm-python-sdk for the defaults and every ci/*.yaml,
#     runs `helm lint --strict`, validates each manifest with `kubernetes-validate --strict -k 1.31.0`
#     (the ServiceMonitor CRD against deploy/tools/schemas/), checks the gateway config against
#     agentgateway's schema and the pod spec, and checks deploy/kubernetes/ is the current render;
#   - lints deploy/Dockerfile (hadolint) and deploy/kind/run.sh (shellcheck), cross-checks the kind
#     manifests, runs deploy/kind/client.py against a local stub;
#   - runs `systemd-analyze verify` and `systemd-analyze security --offline` on the systemd unit;
#   - as root: loads and attaches every eBPF program type the gateway uses with exactly the
#     capabilities the chart and the unit grant (deploy/tools/ebpf_caps_probe.py under setpriv).
# The checks are pytest tests (tests/python/test_deploy*.py), so the main test runner runs them too.
#
# Usage: tests/scripts/validate-deploy.sh [--regen] [pytest args...]
#   --regen   rewrite deploy/kubernetes/ from the chart first
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${GATEWAY_TEST_VENV:-$ROOT/target/test-venv}"
PY="$VENV/bin/python"
log() { printf '[validate-deploy] %s\n' "$*" >&2; }

if [ ! -x "$PY" ]; then
  log "no venv at $VENV; run tests/scripts/install-deps.sh first (or set GATEWAY_TEST_VENV)"
  exit 2
fi
if ! "$PY" -c 'import helm_python, kubernetes_validate, jsonschema, yaml, pytest' 2>/dev/null; then
  log "installing the pinned deploy-check packages into $VENV"
  uv pip install -q -p "$PY" -r "$ROOT/tests/requirements.txt"
fi
command -v systemd-analyze >/dev/null || log "systemd-analyze missing: the unit gets the key checks only (apt-get install systemd)"

if [ "${1:-}" = "--regen" ]; then
  shift
  "$PY" "$ROOT/deploy/tools/render_manifests.py"
fi
cd "$ROOT"
exec "$PY" -m pytest -q tests/python/test_deploy.py tests/python/test_deploy_hosts.py tests/python/test_deploy_caps.py "$@"
