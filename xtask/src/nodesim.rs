//! `cargo xtask node-sim`: builds the workspace like `tests/run-all.sh` does (gateway with the
//! kernel object, provider simulator), then runs the node simulation, `tests/python/test_ebpf_node.py`: two "pods"
//! (netns + veth + their own child cgroup of the steered cgroup) call the gateway's virtual
//! address with the real openai SDK. Needs root and the test venv (`GATEWAY_TEST_VENV`, default
//! `target/test-venv`). Extra arguments go to pytest.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let status = crate::nested_cargo()
        .current_dir(&root)
        .env_remove("AYA_BUILD_SKIP")
        // The simulation needs the kernel programs: a missing toolchain is a build error here.
        .env("GATEWAY_REQUIRE_EBPF", "1")
        .arg("build")
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let venv = std::env::var("GATEWAY_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/test-venv"));
    let python = venv.join("bin/python");
    if !python.exists() {
        bail!(
            "{} not found: run tests/scripts/install-deps.sh first",
            python.display()
        );
    }
    let status = Command::new(&python)
        .current_dir(&root)
        .args(["-m", "pytest", "tests/python/test_ebpf_node.py", "-v"])
        .args(args)
        .status()
        .context("running pytest")?;
    if !status.success() {
        bail!("node simulation failed");
    }
    Ok(())
}
