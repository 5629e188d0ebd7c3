//! Is the eBPF toolchain here, and what does the build do about it?
//!
//! Shared by `build.rs` and, under `cfg(test)`, by the crate's unit tests (`ebpf::build_plan`),
//! so the detection and the messages are tested without a nested cargo build. std only: the
//! build script and the library see different dependency sets.
//!
//! The kernel programs need what aya-build runs: `rustup run <toolchain> cargo build -Z
//! build-std=core` (so the toolchain's `rust-src`) linked by `bpf-linker`. A machine with only
//! the preinstalled stable toolchain has neither; the build then produces a gateway without the
//! programs, with one warning, unless `GATEWAY_REQUIRE_EBPF=1` makes that an error.
#![cfg_attr(
    test,
    allow(
        dead_code,
        reason = "in the library only the tests use it; build.rs uses all of it"
    )
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes a missing toolchain a build error instead of a build without kernel programs.
pub const REQUIRE_ENV: &str = "GATEWAY_REQUIRE_EBPF";
/// aya-build's explicit skip: an empty object, no probing, no warning of ours.
pub const SKIP_ENV: &str = "AYA_BUILD_SKIP";
/// rustup toolchain for the kernel build (default `nightly`), as aya-build's `Custom`.
pub const TOOLCHAIN_ENV: &str = "GATEWAY_EBPF_TOOLCHAIN";
/// The one command that installs what is missing (from the workspace root).
pub const INSTALL_COMMAND: &str = "tests/scripts/install-ebpf-toolchain.sh";
/// Where the rust-src component puts the standard library sources, under the sysroot.
const RUST_SRC: &str = "lib/rustlib/src/rust/library";

/// `1` or `true` (any case), as aya-build reads `AYA_BUILD_SKIP`.
pub fn flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// One missing piece of the toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// Short name for the runtime reason: `nightly rust-src`, `bpf-linker`.
    pub what: String,
    /// What the probe saw, for the build warning.
    pub detail: String,
}

/// The commands the probe runs, as argv prefixes (tests put `sh fake-script` here).
pub struct Probe<'a> {
    pub rustup: &'a [&'a str],
    pub bpf_linker: &'a [&'a str],
    /// The rustup toolchain aya-build will use (`nightly` or `GATEWAY_EBPF_TOOLCHAIN`).
    pub toolchain: &'a str,
}

/// What the probe found.
#[derive(Debug, Default)]
pub struct Found {
    pub missing: Vec<Missing>,
    /// The kernel toolchain's sysroot, when rustup could name it.
    pub sysroot: Option<PathBuf>,
}

impl Probe<'_> {
    /// Checks the two things a fresh machine lacks: the toolchain's `rust-src` (through the same
    /// `rustup run <toolchain>` aya-build uses, so a toolchain rustup refuses counts as missing)
    /// and a `bpf-linker` that runs (`--version`; a `rustup update` can break its libLLVM link).
    pub fn run(&self) -> Found {
        let mut found = Found::default();
        let rust_src = format!("{} rust-src", self.toolchain);
        let sysroot = output(
            self.rustup,
            &["run", self.toolchain, "rustc", "--print", "sysroot"],
        );
        match sysroot {
            Ok(out) => {
                let sysroot = PathBuf::from(out.trim());
                if !sysroot.join(RUST_SRC).is_dir() {
                    found.missing.push(Missing {
                        what: rust_src,
                        detail: format!("no {}", sysroot.join(RUST_SRC).display()),
                    });
                }
                found.sysroot = Some(sysroot);
            }
            Err(why) => found.missing.push(Missing {
                what: rust_src,
                detail: format!(
                    "`rustup run {} rustc --print sysroot`: {why}",
                    self.toolchain
                ),
            }),
        }
        if let Err(why) = output(self.bpf_linker, &["--version"]) {
            found.missing.push(Missing {
                what: "bpf-linker".into(),
                detail: format!("`bpf-linker --version`: {why}"),
            });
        }
        found
    }
}

/// Stdout of `argv + args`, or one line saying why not.
fn output(argv: &[&str], args: &[&str]) -> Result<String, String> {
    let (program, pre) = argv.split_first().ok_or("no command")?;
    let out = Command::new(program)
        .args(pre)
        .args(args)
        // Never download a toolchain from a build script (newer rustup installs on demand).
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{program} not found"),
            _ => format!("{program}: {e}"),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(
            match stderr.lines().map(str::trim).find(|l| !l.is_empty()) {
                Some(first) => format!("{first} ({})", out.status),
                None => out.status.to_string(),
            },
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `build.rs` does.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// `AYA_BUILD_SKIP=1`: empty object, and this runtime reason.
    Skip { reason: String },
    /// Toolchain present: build the programs; a failure is a build error.
    Build,
    /// Toolchain missing: empty object, this one-line cargo warning and this runtime reason.
    Fallback { warning: String, reason: String },
    /// Toolchain missing and `GATEWAY_REQUIRE_EBPF=1`: fail the build with this message.
    Refuse { message: String },
}

/// Decides from the two variables and the probe's findings (`missing` is ignored when `skip`).
pub fn plan(skip: bool, require: bool, missing: &[Missing]) -> Plan {
    if skip {
        return Plan::Skip {
            reason: format!("eBPF object not built (built with {SKIP_ENV}=1)"),
        };
    }
    if missing.is_empty() {
        return Plan::Build;
    }
    let missing_list = missing
        .iter()
        .map(|m| format!("{} ({})", m.what, m.detail))
        .collect::<Vec<_>>()
        .join("; ");
    let install = format!("Install it with one command: {INSTALL_COMMAND}");
    if require {
        return Plan::Refuse {
            message: format!(
                "{REQUIRE_ENV}=1 and the eBPF toolchain is missing: {missing_list}. {install}"
            ),
        };
    }
    let whats: Vec<&str> = missing.iter().map(|m| m.what.as_str()).collect();
    let warning = format!(
        "eBPF toolchain missing: {missing_list}. Building the gateway WITHOUT its kernel \
         programs (it runs, and reports eBPF off). {install} ({REQUIRE_ENV}=1 makes this an error)"
    );
    Plan::Fallback {
        // One cargo warning: a newline would start a second one.
        warning: warning.replace(['\r', '\n'], " "),
        reason: format!(
            "eBPF object not built: this binary was built without the eBPF toolchain \
             (missing {}); install it with {INSTALL_COMMAND}, then rebuild with {REQUIRE_ENV}=1",
            whats.join(", ")
        ),
    }
}

/// Files whose change means the toolchain may have been installed since a fallback build, for
/// `cargo:rerun-if-changed` (each exists: cargo reruns every build for a missing one).
pub fn install_markers(found: &Found, cargo_home: Option<&Path>) -> Vec<PathBuf> {
    let mut marks = Vec::new();
    for m in &found.missing {
        let mark = if m.what == "bpf-linker" {
            // `cargo install bpf-linker` adds a file here.
            cargo_home.map(|h| h.join("bin"))
        } else {
            // `rustup component add rust-src` rewrites the sysroot's component list.
            found
                .sysroot
                .as_ref()
                .map(|s| s.join("lib/rustlib/components"))
        };
        marks.extend(mark.filter(|p| p.exists()));
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch dir with fake `rustup` / `bpf-linker` scripts, run through `sh` (no exec of a
    /// freshly written file, which can fail with ETXTBSY while other tests fork).
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("gw-ebpf-tc-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
        fn script(&self, name: &str, body: &str) -> String {
            let p = self.0.join(name);
            std::fs::write(&p, body).unwrap();
            p.to_str().unwrap().to_owned()
        }
        fn sysroot(&self, with_rust_src: bool) -> PathBuf {
            let s = self.0.join("sysroot");
            std::fs::create_dir_all(s.join("lib/rustlib")).unwrap();
            std::fs::write(s.join("lib/rustlib/components"), "rustc\n").unwrap();
            if with_rust_src {
                std::fs::create_dir_all(s.join(RUST_SRC)).unwrap();
            }
            s
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// fresh-check's shim: refuses `rustup run nightly`, as on a machine without rust-src.
    const REFUSING_RUSTUP: &str = "if [ \"$1\" = run ] && [ \"$2\" = nightly ]; then\n  \
        echo 'error: the nightly toolchain has no rust-src component' >&2; exit 1\nfi\nexit 0\n";
    const GOOD_LINKER: &str = "echo 'bpf-linker 0.13.0'\n";
    const BROKEN_LINKER: &str =
        "echo 'bpf-linker: error while loading shared libraries: libLLVM.so.22.1' >&2; exit 127\n";

    /// Runs the probe with `rustup` answering `run <tc> rustc --print sysroot` with `sysroot`
    /// (or refusing), and `linker` as bpf-linker (`None`: not installed).
    fn probe(s: &Scratch, toolchain: &str, rustup: &str, linker: Option<&str>) -> Found {
        let rustup = s.script("rustup", rustup);
        let linker = linker.map(|body| s.script("bpf-linker", body));
        let absent = s.0.join("no-such-bpf-linker").to_str().unwrap().to_owned();
        let linker_argv: Vec<&str> = match &linker {
            Some(script) => vec!["sh", script],
            None => vec![&absent],
        };
        Probe {
            rustup: &["sh", &rustup],
            bpf_linker: &linker_argv,
            toolchain,
        }
        .run()
    }

    fn sysroot_rustup(toolchain: &str, sysroot: &Path) -> String {
        format!(
            "if [ \"$*\" = 'run {toolchain} rustc --print sysroot' ]; then echo '{}'; exit 0; fi\n\
             echo \"error: toolchain '$2' is not installed\" >&2; exit 1\n",
            sysroot.display()
        )
    }

    fn whats(f: &Found) -> Vec<&str> {
        f.missing.iter().map(|m| m.what.as_str()).collect()
    }

    #[test]
    fn probe_sees_what_a_fresh_machine_lacks() {
        let s = Scratch::new("fresh");
        // fresh-check's machine: rustup refuses nightly; bpf-linker installed.
        let f = probe(&s, "nightly", REFUSING_RUSTUP, Some(GOOD_LINKER));
        assert_eq!(whats(&f), ["nightly rust-src"]);
        assert!(
            f.missing[0]
                .detail
                .contains("rustup run nightly rustc --print sysroot")
                && f.missing[0].detail.contains("no rust-src component"),
            "{:?}",
            f.missing
        );
        assert_eq!(f.sysroot, None);

        // Nightly without rust-src, no bpf-linker at all.
        let root = s.sysroot(false);
        let f = probe(&s, "nightly", &sysroot_rustup("nightly", &root), None);
        assert_eq!(whats(&f), ["nightly rust-src", "bpf-linker"]);
        assert!(
            f.missing[0].detail.contains("lib/rustlib/src/rust/library"),
            "{:?}",
            f.missing
        );
        assert!(f.missing[1].detail.contains("not found"), "{:?}", f.missing);
        assert_eq!(f.sysroot.as_deref(), Some(root.as_path()));

        // A bpf-linker whose libLLVM went away (after `rustup update stable`).
        let f = probe(
            &s,
            "nightly",
            &sysroot_rustup("nightly", &root),
            Some(BROKEN_LINKER),
        );
        assert_eq!(whats(&f), ["nightly rust-src", "bpf-linker"]);
        assert!(f.missing[1].detail.contains("libLLVM"), "{:?}", f.missing);
    }

    #[test]
    fn probe_accepts_a_complete_toolchain_and_uses_the_named_one() {
        let s = Scratch::new("complete");
        let root = s.sysroot(true);
        let f = probe(
            &s,
            "nightly",
            &sysroot_rustup("nightly", &root),
            Some(GOOD_LINKER),
        );
        assert_eq!(f.missing, []);
        // GATEWAY_EBPF_TOOLCHAIN: the probe asks rustup about that toolchain, not nightly.
        let rustup = sysroot_rustup("nightly-2026-05-20", &root);
        let f = probe(&s, "nightly-2026-05-20", &rustup, Some(GOOD_LINKER));
        assert_eq!(f.missing, []);
        let f = probe(&s, "nightly", &rustup, Some(GOOD_LINKER));
        assert_eq!(whats(&f), ["nightly rust-src"]);
        assert!(
            f.missing[0].detail.contains("is not installed"),
            "{:?}",
            f.missing
        );
    }

    #[test]
    fn plan_per_variable_and_toolchain() {
        let missing = [
            Missing {
                what: "nightly rust-src".into(),
                detail: "no /sysroot/lib/rustlib/src/rust/library".into(),
            },
            Missing {
                what: "bpf-linker".into(),
                detail: "`bpf-linker --version`: bpf-linker not found\non PATH".into(),
            },
        ];
        // (skip, require, missing) -> plan kind
        let table: &[(bool, bool, &[Missing], &str)] = &[
            (true, false, &missing, "skip"),
            (true, true, &missing, "skip"),
            (false, false, &[], "build"),
            (false, true, &[], "build"),
            (false, false, &missing, "fallback"),
            (false, true, &missing, "refuse"),
        ];
        for (skip, require, m, want) in table {
            let got = plan(*skip, *require, m);
            let kind = match &got {
                Plan::Skip { .. } => "skip",
                Plan::Build => "build",
                Plan::Fallback { .. } => "fallback",
                Plan::Refuse { .. } => "refuse",
            };
            assert_eq!(
                kind,
                *want,
                "skip={skip} require={require} missing={}",
                m.len()
            );
        }

        let Plan::Skip { reason } = plan(true, false, &[]) else {
            unreachable!()
        };
        assert_eq!(
            reason,
            "eBPF object not built (built with AYA_BUILD_SKIP=1)"
        );

        let Plan::Fallback { warning, reason } = plan(false, false, &missing) else {
            unreachable!()
        };
        assert!(
            !warning.contains('\n'),
            "one cargo warning is one line: {warning}"
        );
        for part in [
            "nightly rust-src (no /sysroot/lib/rustlib/src/rust/library)",
            "bpf-linker (",
            "WITHOUT its kernel programs",
            "Install it with one command: tests/scripts/install-ebpf-toolchain.sh",
            "GATEWAY_REQUIRE_EBPF=1 makes this an error",
        ] {
            assert!(warning.contains(part), "{part:?} not in {warning}");
        }
        assert_eq!(
            reason,
            "eBPF object not built: this binary was built without the eBPF toolchain (missing \
             nightly rust-src, bpf-linker); install it with tests/scripts/install-ebpf-toolchain.sh, \
             then rebuild with GATEWAY_REQUIRE_EBPF=1"
        );

        let Plan::Refuse { message } = plan(false, true, &missing[1..]) else {
            unreachable!()
        };
        assert!(
            message.starts_with(
                "GATEWAY_REQUIRE_EBPF=1 and the eBPF toolchain is missing: bpf-linker ("
            )
        );
        assert!(
            message
                .ends_with("Install it with one command: tests/scripts/install-ebpf-toolchain.sh")
        );
    }

    #[test]
    fn flags_read_like_aya_build_skip() {
        for (v, want) in [
            (None, false),
            (Some(""), false),
            (Some("0"), false),
            (Some("yes"), false),
            (Some("1"), true),
            (Some("true"), true),
            (Some("TRUE"), true),
        ] {
            assert_eq!(flag(v), want, "{v:?}");
        }
    }

    #[test]
    fn markers_exist_and_match_what_is_missing() {
        let s = Scratch::new("markers");
        let root = s.sysroot(false);
        std::fs::create_dir_all(s.0.join("cargo/bin")).unwrap();
        let both = Found {
            missing: vec![
                Missing {
                    what: "nightly rust-src".into(),
                    detail: String::new(),
                },
                Missing {
                    what: "bpf-linker".into(),
                    detail: String::new(),
                },
            ],
            sysroot: Some(root.clone()),
        };
        assert_eq!(
            install_markers(&both, Some(&s.0.join("cargo"))),
            [root.join("lib/rustlib/components"), s.0.join("cargo/bin")]
        );
        // Nothing to watch that does not exist: cargo would rerun the script on every build.
        let unknown = Found {
            sysroot: None,
            ..both
        };
        assert_eq!(
            install_markers(&unknown, Some(&s.0.join("nope"))),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            install_markers(&Found::default(), Some(&s.0.join("cargo"))),
            Vec::<PathBuf>::new()
        );
    }
}
