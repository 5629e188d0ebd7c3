//! Builds `gateway-ebpf` for `bpfel-unknown-none` with aya-build and leaves the object at
//! `$OUT_DIR/gateway`.
//!
//! - Toolchain present (the `GATEWAY_EBPF_TOOLCHAIN` or nightly toolchain with `rust-src`, and
//!   `bpf-linker`): builds the programs; a failed kernel build fails the build.
//! - Toolchain missing: one cargo warning naming what is missing and the command that installs
//!   it, and an empty object; the daemon runs without BPF and says why (`GATEWAY_EBPF_NOT_BUILT`,
//!   read by `src/ebpf/probe.rs`). `GATEWAY_REQUIRE_EBPF=1` turns this into a build error, for
//!   builds that ship or test the kernel programs.
//! - `AYA_BUILD_SKIP=1`: an empty object without probing (host-only checks, fuzzing, benches).
use anyhow::{Context as _, anyhow};

#[path = "build/ebpf_toolchain.rs"]
mod ebpf_toolchain;

use ebpf_toolchain::{Plan, Probe, REQUIRE_ENV, SKIP_ENV, TOOLCHAIN_ENV};

/// How the crate learns why the object is empty (empty when it is not).
const NOT_BUILT_ENV: &str = "GATEWAY_EBPF_NOT_BUILT";

fn main() -> anyhow::Result<()> {
    for var in [SKIP_ENV, TOOLCHAIN_ENV, REQUIRE_ENV] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let out_dir = std::env::var("OUT_DIR").context("OUT_DIR")?;
    let skip = ebpf_toolchain::flag(std::env::var(SKIP_ENV).ok().as_deref());
    let require = ebpf_toolchain::flag(std::env::var(REQUIRE_ENV).ok().as_deref());
    let toolchain = std::env::var(TOOLCHAIN_ENV).ok().filter(|t| !t.is_empty());
    let found = if skip {
        Default::default()
    } else {
        Probe {
            rustup: &["rustup"],
            bpf_linker: &["bpf-linker"],
            toolchain: toolchain.as_deref().unwrap_or("nightly"),
        }
        .run()
    };
    let not_built = |reason: &str| -> anyhow::Result<()> {
        // An empty object: the loader treats it as "not built" and reports `reason`.
        std::fs::write(format!("{out_dir}/gateway"), b"")?;
        println!("cargo:rustc-env={NOT_BUILT_ENV}={reason}");
        Ok(())
    };
    match ebpf_toolchain::plan(skip, require, &found.missing) {
        Plan::Skip { reason } => not_built(&reason),
        Plan::Refuse { message } => {
            // Not through anyhow: with RUST_BACKTRACE set the message would drown in a trace.
            eprintln!("error: {message}");
            std::process::exit(1)
        }
        Plan::Fallback { warning, reason } => {
            println!("cargo:warning={warning}");
            let cargo_home = std::env::var_os("CARGO_HOME").map(Into::into).or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo"))
            });
            for mark in ebpf_toolchain::install_markers(&found, cargo_home.as_deref()) {
                println!("cargo:rerun-if-changed={}", mark.display());
            }
            not_built(&reason)
        }
        Plan::Build => {
            println!("cargo:rustc-env={NOT_BUILT_ENV}=");
            build_ebpf(toolchain.as_deref())
        }
    }
}

fn build_ebpf(toolchain: Option<&str>) -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "gateway-ebpf")
        .ok_or_else(|| anyhow!("gateway-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("gateway-ebpf manifest has no parent"))?
        .as_str()
        .to_owned();
    let toolchain = match toolchain {
        Some(t) => aya_build::Toolchain::Custom(t),
        None => aya_build::Toolchain::Nightly,
    };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "gateway-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        toolchain,
    )
}
