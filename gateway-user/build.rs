//! Builds `gateway-ebpf` for `bpfel-unknown-none` with aya-build and leaves the object at
//! `$OUT_DIR/gateway`. `AYA_BUILD_SKIP=1` skips the kernel build (for host-only checks); the
//! daemon then reports "eBPF object not built" and runs without BPF.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-env-changed=GATEWAY_EBPF_TOOLCHAIN");
    let out_dir = std::env::var("OUT_DIR").context("OUT_DIR")?;
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    if skip {
        // An empty object: the loader treats it as "not built" and says so.
        std::fs::write(format!("{out_dir}/gateway"), b"")?;
        return Ok(());
    }
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
    let tc = std::env::var("GATEWAY_EBPF_TOOLCHAIN").ok();
    let toolchain = match tc.as_deref() {
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
