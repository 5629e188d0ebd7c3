//! What one CEL compile may cost: adversarial expressions just inside the bounds of
//! `gateway::cel` (length, nesting) compile within a time and memory budget, and the fuzz-found
//! input that took the previous engine to 4.9 GB is refused at once.
//!
//! A binary of its own because it counts every allocation through a global allocator, and runs
//! its cases one after another in one test, so the peak is this compile's alone. The budgets are
//! ten times what a release build measures (`cargo test --release -p gateway-user --test
//! cel_compile_cost -- --nocapture` prints the table) and allow for a debug build's slowness.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use gateway::cel::{CelError, Expression, MAX_DEPTH, MAX_EXPRESSION_BYTES};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which `System.alloc` shares.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let q = unsafe { System.realloc(p, layout, new) };
        if !q.is_null() {
            if new >= layout.size() {
                grew(new - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new, Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// `unit` joined by `sep` as many times as fits in `MAX_EXPRESSION_BYTES` with `head` and `tail`.
fn fill(head: &str, unit: &str, sep: &str, tail: &str) -> String {
    let room = MAX_EXPRESSION_BYTES - head.len() - tail.len() + sep.len();
    let n = room / (unit.len() + sep.len());
    format!("{head}{}{tail}", vec![unit; n].join(sep))
}

/// A deterministic pseudo-random expression of CEL tokens, up to the length bound: short
/// clauses of random tokens, their brackets closed, joined by `||` so that the whole stays
/// within the nesting bound and reaches the parser.
fn tokens(seed: u64) -> String {
    const TOKENS: &[&str] = &[
        "[", "(", "{", "]", ")", "}", ",", "-", "!", "a", ".", "1", "\"s\"", "==", "?", ":", "in",
        "+", "llm", "size(", ".map(",
    ];
    let mut x = seed;
    let mut next = move || {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut s = String::new();
    loop {
        let mut clause = String::new();
        let mut open = Vec::new();
        for _ in 0..(next() % 12) {
            let t = TOKENS[(next() % TOKENS.len() as u64) as usize];
            if t.ends_with('(') || t == "[" || t == "{" {
                open.push(match t.as_bytes()[t.len() - 1] {
                    b'[' => ']',
                    b'{' => '}',
                    _ => ')',
                });
            }
            clause.push_str(t);
            // Apart, so that `!` and `==` do not make `!==`, which has a lone `=`.
            clause.push(' ');
        }
        clause.extend(open.iter().rev());
        if s.len() + clause.len() + 4 > MAX_EXPRESSION_BYTES {
            return s;
        }
        if !s.is_empty() {
            s.push_str(" || ");
        }
        s.push_str(&clause);
    }
}

struct Cost {
    took: Duration,
    peak: usize,
    result: Result<(), CelError>,
}

fn compile(src: &str) -> Cost {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let t0 = Instant::now();
    let result = Expression::compile(src).map(drop);
    let took = t0.elapsed();
    Cost {
        took,
        peak: PEAK.load(Relaxed).saturating_sub(base),
        result,
    }
}

#[test]
fn compile_cost_is_bounded() {
    let fuzz = include_str!("../fuzz/regressions/cel/parser-memory-blowup");
    let deep = include_str!("../fuzz/regressions/cel/parser-memory-blowup-cel-chars");
    let d = MAX_DEPTH;
    // (name, source, refused before parsing?)
    let mut cases: Vec<(String, String, bool)> = vec![
        ("fuzz input (205 B)".into(), fuzz.into(), true),
        ("fuzz input, CEL chars (198 B)".into(), deep.into(), true),
        ("12 KiB".into(), "1 || ".repeat(2400) + "1", true),
        (
            format!("[ x{d}"),
            format!("{}1{}", "[".repeat(d), "]".repeat(d)),
            false,
        ),
        (
            format!("( x{d}"),
            format!("{}1{}", "(".repeat(d), ")".repeat(d)),
            false,
        ),
        (
            format!("{{1: x{d}"),
            format!("{}1{}", "{1: ".repeat(d), "}".repeat(d)),
            false,
        ),
        (
            format!("size([ x{}", d / 2),
            format!("{}1{}", "size([".repeat(d / 2), "])".repeat(d / 2)),
            false,
        ),
        (
            format!("unclosed [ x{}", d - 1),
            fill(&"[".repeat(d - 1), "1", ",", ""),
            false,
        ),
        ("list literal".into(), fill("[", "1", ",", "]"), false),
        ("map literal".into(), fill("{", "1:1", ",", "}"), false),
        ("call arguments".into(), fill("f(", "a", ",", ")"), false),
        ("|| chain".into(), fill("", "a", "||", ""), false),
        (
            "&& of comparisons".into(),
            fill("", "llm.a.b == \"x\"", " && ", ""),
            false,
        ),
        (
            "fuzz pattern, closed".into(),
            fill("", &("--(--[[G".repeat(4) + &"]])".repeat(4)), " || ", ""),
            false,
        ),
        (
            "string literal".into(),
            format!("'{}'", "x".repeat(MAX_EXPRESSION_BYTES - 2)),
            false,
        ),
        ("commas".into(), fill("[", "", ",", "]"), false),
        (
            "closers".into(),
            ")]}".repeat(MAX_EXPRESSION_BYTES / 3),
            false,
        ),
    ];
    for seed in 1..=8 {
        cases.push((format!("random tokens #{seed}"), tokens(seed), false));
    }

    let (budget, budget_refused) = if cfg!(debug_assertions) {
        (Duration::from_secs(5), Duration::from_millis(50))
    } else {
        (Duration::from_millis(400), Duration::from_millis(5))
    };
    const BUDGET_BYTES: usize = 96 << 20;
    let mut report = Vec::new();
    let mut parsed = 0;
    for (name, src, refused) in &cases {
        let cost = compile(src);
        let was_refused = matches!(cost.result, Err(CelError::Rejected { .. }));
        report.push(format!(
            "{name:32} {:5} B  {:>9.3} ms  {:>7} KiB  {}",
            src.len(),
            cost.took.as_secs_f64() * 1e3,
            cost.peak >> 10,
            match &cost.result {
                Ok(()) => "compiles".to_owned(),
                Err(e @ CelError::Rejected { .. }) => {
                    let e = e.to_string();
                    format!("refused: {}", e.rsplit('…').next().unwrap_or(&e))
                }
                Err(_) => "parse error".to_owned(),
            }
        ));
        if *refused {
            assert!(
                was_refused,
                "{name}: {:?}",
                cost.result.map_err(|e| e.to_string())
            );
            assert!(cost.took < budget_refused, "{name}: {:?}", cost.took);
            assert!(cost.peak < 64 << 10, "{name}: {} bytes", cost.peak);
        } else if !was_refused {
            parsed += 1;
            assert!(cost.took < budget, "{name}: {:?}", cost.took);
            assert!(cost.peak < BUDGET_BYTES, "{name}: {} bytes", cost.peak);
        } else if !name.starts_with("random") {
            let e = cost.result.map_err(|e| e.to_string());
            panic!("{name} was meant to pass the bounds: {e:?}");
        }
    }
    println!("{}", report.join("\n"));
    assert!(parsed >= 15, "only {parsed} cases reached the parser");
}
