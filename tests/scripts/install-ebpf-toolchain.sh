#!/usr/bin/env bash
# Installs what gateway-user/build.rs needs to build the kernel programs, and nothing else:
#   - rust-src for the toolchain that compiles them with -Z build-std=core (nightly, or
#     $GATEWAY_EBPF_TOOLCHAIN), checked the way build.rs checks it;
#   - bpf-linker 0.13.0, linked against the stable rustc's own libLLVM, so no system LLVM is
#     needed (deploy/Dockerfile builds it the same way).
# Without them an ordinary build still succeeds, with one cargo warning, and the gateway runs
# without eBPF. After this script, build with the programs (and fail if they cannot be built):
#   GATEWAY_REQUIRE_EBPF=1 cargo build --release -p gateway-user
# Idempotent: every step checks before it installs. Versions are pinned. Needs rustup and
# network access to static.rust-lang.org and crates.io (about 4 minutes, mostly bpf-linker).
set -euo pipefail
log() { printf '[install-ebpf-toolchain] %s\n' "$*" >&2; }

TOOLCHAIN="${GATEWAY_EBPF_TOOLCHAIN:-nightly}"
BPF_LINKER_VERSION=0.13.0

# --- rust-src for the kernel build's toolchain.
if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  log "rustup: toolchain $TOOLCHAIN with rust-src"
  rustup toolchain install "$TOOLCHAIN" --profile minimal --component rust-src
fi
SYSROOT="$(rustup run "$TOOLCHAIN" rustc --print sysroot)"
if [ ! -d "$SYSROOT/lib/rustlib/src/rust/library" ]; then
  log "rustup: rust-src ($TOOLCHAIN)"
  rustup component add rust-src --toolchain "$TOOLCHAIN"
fi

# --- bpf-linker. Its default feature (llvm-23) finds no usable LLVM here; llvm-22 against
# rustc's own libLLVM does. A `rustup update stable` changes that file name and breaks the
# linker (`bpf-linker --version` then fails): re-running this script reinstalls it.
if ! bpf-linker --version >/dev/null 2>&1; then
  log "cargo install bpf-linker $BPF_LINKER_VERSION (about 4 minutes)"
  SYSROOT="$(rustc +stable --print sysroot)"
  LLVM_LIBS=("$SYSROOT"/lib/libLLVM.so.*)
  LLVM_SO="$(basename "${LLVM_LIBS[0]}")"
  LINKDIR="$(mktemp -d)"
  trap 'rm -rf "$LINKDIR"' EXIT
  ln -s "$SYSROOT/lib/$LLVM_SO" "$LINKDIR/libLLVM.so"
  LLVM_PREFIX="$SYSROOT" RUSTFLAGS="-L $LINKDIR" \
    cargo +stable install bpf-linker --version "$BPF_LINKER_VERSION" --locked --force \
      --no-default-features --features llvm-22
  bpf-linker --version >/dev/null
fi
log "eBPF toolchain ready ($TOOLCHAIN rust-src, $(bpf-linker --version))"
