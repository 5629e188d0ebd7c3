//! Replays the fuzz corpus and every fuzz-found crash through the fuzz harnesses, on stable and
//! without cargo-fuzz: `fuzz/regressions/<target>/*` (inputs that once crashed, kept forever)
//! and `fuzz/corpus/<target>/*` (seed inputs, whose harness invariants must keep holding).
//!
//! The harness code is `fuzz/src/lib.rs`, compiled here as a module, so a replay takes exactly
//! the path the fuzzer took.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs every file under `<kind>/<target>/` through its target's harness; returns how many ran.
/// Every file runs even after one fails, and the panic names all failing files.
fn replay(kind: &str) -> usize {
    let root = fuzz_dir().join(kind);
    let mut ran = 0;
    let mut failed = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("read {}: {e}", root.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some((_, harness)) = harness::TARGETS.iter().find(|(t, _)| *t == name) else {
            panic!("{} is not a fuzz target name", dir.display());
        };
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("read target dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("read input");
            if std::panic::catch_unwind(|| harness(&data)).is_err() {
                failed.push(file.display().to_string());
            }
            ran += 1;
        }
    }
    assert!(failed.is_empty(), "harness panicked on: {failed:#?}");
    ran
}

#[test]
fn fuzz_regressions_replay() {
    let n = replay("regressions");
    assert!(n > 0, "no regression inputs found under fuzz/regressions");
}

#[test]
fn fuzz_corpus_replay() {
    let n = replay("corpus");
    // Every target has seeds; an empty corpus means the layout moved and this test went blind.
    assert!(
        n >= harness::TARGETS.len(),
        "only {n} corpus inputs found under fuzz/corpus"
    );
}
