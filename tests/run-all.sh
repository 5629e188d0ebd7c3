#!/usr/bin/env bash
# The single test command (see README): dependencies, build (including the eBPF object),
# format and lint gates, Rust tests, then the black-box Python tests through real SDKs.
#
# Every step runs even if an earlier one failed (except install and build, which the rest
# need), and the script exits non-zero if any step failed. Safe to re-run; needs no stdin.
#
# Environment:
#   GATEWAY_TEST_VENV   Python venv (default: target/test-venv, created by install-deps.sh)
#   PYTEST_ARGS         extra pytest arguments (e.g. "-k llm -x")
#   SKIP_INSTALL=1      skip tests/scripts/install-deps.sh
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="${GATEWAY_TEST_VENV:-$ROOT/target/test-venv}"
REPORT_DIR="$ROOT/target/test-reports"
mkdir -p "$REPORT_DIR"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The nested eBPF build must run here: the debug gateway binary embeds the object, and a
# missing eBPF toolchain fails the build instead of producing a gateway without it.
unset AYA_BUILD_SKIP
export GATEWAY_REQUIRE_EBPF=1

failed=()
summary=()

step() {
  local name="$1"
  shift
  printf '\n=== %s: %s\n' "$name" "$*"
  local start=$SECONDS
  if "$@"; then
    summary+=("ok      $name ($((SECONDS - start))s)")
    return 0
  else
    local rc=$?
    summary+=("FAILED  $name (exit $rc, $((SECONDS - start))s)")
    failed+=("$name")
    return "$rc"
  fi
}

finish() {
  printf '\n=== summary\n'
  printf '  %s\n' "${summary[@]}"
  if [ -n "${PYTEST_LINE:-}" ]; then
    printf '  pytest: %s\n' "$PYTEST_LINE"
  fi
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[*]}"
    exit 1
  fi
  echo "all steps passed"
  exit 0
}

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  step install-deps bash tests/scripts/install-deps.sh || finish
fi

# Default members: the whole workspace except gateway-ebpf, which only builds for the BPF
# target (gateway-user's build.rs builds it).
step build cargo build || finish
step fmt cargo fmt --all -- --check
step clippy cargo clippy --all-targets -- -D warnings
step cargo-test cargo test
# Bounded fuzz smoke (7 targets); FUZZ_SECONDS per target.
step fuzz env FUZZ_SECONDS="${FUZZ_SECONDS:-10}" bash tests/scripts/fuzz-smoke.sh

run_pytest() {
  local log="$REPORT_DIR/pytest.log"
  # shellcheck disable=SC2086  # PYTEST_ARGS is a word list on purpose
  "$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider \
    --timeout=180 --junitxml="$REPORT_DIR/pytest-junit.xml" ${PYTEST_ARGS:-} 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  # The last "N passed, M failed in Xs" line, for the summary.
  PYTEST_LINE="$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|skipped)|no tests ran' "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')"
  return "$rc"
}
step pytest run_pytest

finish
