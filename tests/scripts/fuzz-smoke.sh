#!/usr/bin/env bash
# Short, bounded fuzz run of every cargo-fuzz target in gateway-user/fuzz (SSE parser, LLM
# usage/model observers, stream handlers, format translation, config loader, CEL).
#
# Each target starts from its checked-in corpus plus the regression inputs and runs for
# FUZZ_SECONDS (default 20). New corpus entries go to a scratch dir (the checked-in corpus is
# never modified); a crash leaves its input under target/fuzz-artifacts/<target>/ and fails the
# script. To keep a crash as a regression test, copy the file to
# gateway-user/fuzz/regressions/<target>/ and fix the bug (see gateway-user/fuzz/README.md).
#
# Needs the nightly toolchain and cargo-fuzz (tests/scripts/install-deps.sh installs both).
# Environment:
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_TARGETS   space-separated subset of targets (default: all)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
FUZZ_DIR="$ROOT/gateway-user/fuzz"
SECS="${FUZZ_SECONDS:-20}"
ART="$ROOT/target/fuzz-artifacts"
# The fuzz build never needs the kernel object.
export AYA_BUILD_SKIP=1
# Safe Rust: AddressSanitizer adds build time and finds nothing libFuzzer's own crash and
# allocation-limit checks miss. Debug assertions stay on so integer overflow panics.
FLAGS=(--sanitizer none --debug-assertions)

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: cargo-fuzz (nightly) not found; run tests/scripts/install-deps.sh" >&2
  exit 1
fi

cd "$ROOT/gateway-user"
echo "fuzz-smoke: building targets"
cargo +nightly fuzz build "${FLAGS[@]}"

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo +nightly fuzz list | tr '\n' ' ')}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "$ART/$t" "$FUZZ_DIR/corpus/$t"
  seeds=("$FUZZ_DIR/corpus/$t")
  [ -d "$FUZZ_DIR/regressions/$t" ] && seeds+=("$FUZZ_DIR/regressions/$t")
  # A target's dictionary (gateway-user/fuzz/<target>.dict) steers inputs toward its grammar.
  dict=()
  [ -f "$FUZZ_DIR/$t.dict" ] && dict=(-dict="$FUZZ_DIR/$t.dict")
  echo "fuzz-smoke: $t for ${SECS}s"
  if ! cargo +nightly fuzz run "${FLAGS[@]}" "$t" "$scratch/$t" "${seeds[@]}" -- "${dict[@]}" \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$ART/$t/" -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    failed+=("$t")
    tail -40 "$scratch/$t.log" >&2
    echo "fuzz-smoke: $t FAILED; input saved under $ART/$t/" >&2
  else
    grep -E '^stat::number_of_executed_units|^Done ' "$scratch/$t.log" | tr '\n' ' '
    echo
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz-smoke: ${#targets[@]} targets, ${SECS}s each, no crashes"
