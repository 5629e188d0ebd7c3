#!/usr/bin/env bash
# End-to-end check on a local kind cluster: build the image, load it, install the chart, run the
# provider simulator and an OTLP collector, send one LLM request from a pod through the node
# gateway, and find the gateway's span for that request in the collector output.
#
# Needs docker (with BuildKit), kind, kubectl and helm on PATH, and network access to pull the
# kindest/node, python and otel collector images. It does not run on the project's CI machines
# (no container engine there); tests/python/test_deploy.py validates every file it uses instead.
#
# Usage: deploy/kind/run.sh            # create the cluster, run the check, delete the cluster
#        KEEP_CLUSTER=1 deploy/kind/run.sh   # leave the cluster up for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
KIND_DIR="$ROOT/deploy/kind"
CLUSTER="${KIND_CLUSTER_NAME:-ai-gateway}"
IMAGE="ai-gateway:dev"
GW_NS="ai-gateway"
E2E_NS="ai-gateway-e2e"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
CTX="kind-$CLUSTER"

log() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
k() { kubectl --context "$CTX" "$@"; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH (see deploy/README.md, section kind)"
done
docker info >/dev/null 2>&1 || die "docker daemon not reachable"

# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    log "diagnostics:"
    k -n "$GW_NS" get pods -o wide >&2 || true
    k -n "$GW_NS" logs daemonset/ai-gateway --tail=100 >&2 || true
    k -n "$E2E_NS" logs job/e2e-client >&2 || true
  fi
  if [ "$KEEP_CLUSTER" = "1" ]; then
    log "cluster $CLUSTER kept (kind delete cluster --name $CLUSTER)"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT

if ! kind get clusters | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$KIND_DIR/cluster.yaml" --wait 120s
fi

log "building $IMAGE (first build compiles bpf-linker and the workspace: 10-20 min)"
DOCKER_BUILDKIT=1 docker build -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "test peers: provider-sim, otel-collector"
k apply -f "$KIND_DIR/e2e.yaml"
k -n "$E2E_NS" rollout status deployment/provider-sim --timeout=120s
k -n "$E2E_NS" rollout status deployment/otel-collector --timeout=180s

log "installing the chart"
k create namespace "$GW_NS" --dry-run=client -o yaml | k apply -f -
k label namespace "$GW_NS" pod-security.kubernetes.io/enforce=privileged --overwrite
# provider-sim accepts any key; the point is that the gateway injects it from the Secret.
k -n "$GW_NS" create secret generic ai-gateway-provider-keys \
  --from-literal=OPENAI_API_KEY=sk-kind-e2e-not-a-real-key --dry-run=client -o yaml | k apply -f -
helm --kube-context "$CTX" upgrade --install ai-gateway "$ROOT/deploy/helm/ai-gateway" \
  -n "$GW_NS" -f "$KIND_DIR/values-kind.yaml" --wait --timeout 180s
k -n "$GW_NS" rollout status daemonset/ai-gateway --timeout=180s
log "eBPF status from the gateway log:"
k -n "$GW_NS" logs daemonset/ai-gateway --tail=200 | grep -i ebpf >&2 || log "(no eBPF lines)"

log "running the client"
k -n "$E2E_NS" delete job e2e-client --ignore-not-found
k -n "$E2E_NS" create configmap e2e-client --from-file=client.py="$KIND_DIR/client.py" \
  --dry-run=client -o yaml | k apply -f -
k apply -f "$KIND_DIR/client-job.yaml"
if ! k -n "$E2E_NS" wait --for=condition=complete job/e2e-client --timeout=300s; then
  die "client job did not complete"
fi
client_log="$(k -n "$E2E_NS" logs job/e2e-client)"
printf '%s\n' "$client_log" >&2
trace_id="$(printf '%s\n' "$client_log" | sed -n 's/^TRACE_ID=\([0-9a-f]\{32\}\)$/\1/p')"
[ -n "$trace_id" ] || die "client printed no TRACE_ID"

log "looking for trace $trace_id in the collector output"
for _ in $(seq 1 30); do
  if k -n "$E2E_NS" logs deployment/otel-collector | grep -q "Trace ID *: *$trace_id"; then
    k -n "$E2E_NS" logs deployment/otel-collector | grep -A40 "Trace ID *: *$trace_id" | grep -E "Name|gen_ai" >&2 || true
    log "PASS: the request was proxied by the node gateway and traced end to end"
    exit 0
  fi
  sleep 2
done
die "no span with trace id $trace_id reached the collector within 60s"
