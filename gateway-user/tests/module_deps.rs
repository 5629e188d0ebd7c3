//! Dependencies between the daemon's subsystems (the top-level modules of `gateway-user/src`)
//! stay one-directional: this test reads the sources, records every `crate::<module>` path
//! (including `use crate::{a, b}` groups, tests and comments) per top-level module, and fails
//! on any cycle in that graph, naming the modules and a file:line for each edge. It also keeps
//! the edges ARCHITECTURE.md rules out ("`llm`, `mcp`, `cel`, `telemetry` never import
//! `proxy`").
//!
//! Paths into another subsystem are written `crate::<module>::...`; `super::` only ever moves
//! within a subsystem, so this scan sees every edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges ARCHITECTURE.md forbids outright, cycle or not.
const FORBIDDEN: &[(&str, &str)] = &[
    ("llm", "proxy"),
    ("mcp", "proxy"),
    ("cel", "proxy"),
    ("telemetry", "proxy"),
    ("guard", "proxy"),
    ("spend", "proxy"),
    ("limit", "proxy"),
    ("auth", "proxy"),
    ("store", "proxy"),
    ("cloud", "proxy"),
];

/// `from → to → [file:line, ...]`.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules, as declared in `lib.rs`.
fn top_level_modules(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_owned())
        })
        .collect()
}

/// Every `.rs` file of module `m`: `m.rs` and everything under `m/`.
fn module_files(src: &Path, m: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src.join(format!("{m}.rs"));
    if file.is_file() {
        out.push(file);
    }
    let mut dirs = vec![src.join(m)];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("read dir entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn leading_ident(s: &str) -> &str {
    let s = s.trim_start();
    &s[..s.find(|c: char| !is_ident(c)).unwrap_or(s.len())]
}

/// The first segment after each `crate::` in `text`, with the byte offset of the `crate::`.
/// `crate::{a::x, b}` yields `a` and `b`.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("crate::") {
        let at = from + i;
        from = at + "crate::".len();
        if text[..at].chars().next_back().is_some_and(is_ident) {
            continue; // `my_crate::`
        }
        let rest = &text[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the (possibly nested, multi-line) group.
            let mut depth = 0;
            let mut item_start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push((at, leading_ident(&group[item_start..j]).to_owned()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push((at, leading_ident(&group[item_start..j]).to_owned()));
                        item_start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push((at, leading_ident(rest).to_owned()));
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let mods = top_level_modules(src);
    assert!(
        mods.len() > 5,
        "found only {mods:?} in src/lib.rs; has the crate layout changed?"
    );
    let known: BTreeSet<&str> = mods.iter().map(String::as_str).collect();
    let mut g = Graph::new();
    for m in &mods {
        let edges = g.entry(m.clone()).or_default();
        for file in module_files(src, m) {
            let text = std::fs::read_to_string(&file).expect("read source file");
            let rel = file
                .strip_prefix(src)
                .unwrap_or(&file)
                .display()
                .to_string();
            for (at, target) in crate_paths(&text) {
                if target != *m && known.contains(target.as_str()) {
                    let line = text[..at].matches('\n').count() + 1;
                    edges
                        .entry(target)
                        .or_default()
                        .push(format!("{rel}:{line}"));
                }
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan): each is a set of
/// modules that all reach one another, sorted.
fn components(g: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        sccs: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.g.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.sccs.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        sccs: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.sccs.sort();
    t.sccs
}

fn describe(g: &Graph, from: &str, to: &str) -> String {
    let at = &g[from][to];
    let more = if at.len() > 3 {
        format!(" and {} more", at.len() - 3)
    } else {
        String::new()
    };
    format!(
        "  {from} -> {to}: {}{more}",
        at.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
    )
}

#[test]
fn top_level_modules_form_no_cycle() {
    let g = graph(&src_dir());
    let mut report = Vec::new();
    for scc in components(&g) {
        report.push(format!(
            "these modules import one another in a cycle: {}",
            scc.join(", ")
        ));
        for from in &scc {
            for to in g[from].keys().filter(|to| scc.contains(to)) {
                report.push(describe(&g, from, to));
            }
        }
    }
    for (from, to) in FORBIDDEN {
        if g.get(*from).is_some_and(|e| e.contains_key(*to)) {
            report.push(format!(
                "forbidden by ARCHITECTURE.md:\n{}",
                describe(&g, from, to)
            ));
        }
    }
    assert!(
        report.is_empty(),
        "dependencies between top-level modules of gateway-user/src must be one-directional \
         (see \"Dependencies between modules\" in ARCHITECTURE.md); move the shared piece to the \
         lower module or to ctx/time:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_scan_finds_grouped_paths_and_cycles() {
    let paths: Vec<String> = crate_paths(
        "use crate::{a::X, b::{c, d}, e};\nlet _ = crate::f::g();\nuse my_crate::h;\nuse $crate::i;",
    )
    .into_iter()
    .map(|(_, m)| m)
    .collect();
    assert_eq!(paths, ["a", "b", "e", "f", "i"]);

    let mut g = Graph::new();
    for (a, b) in [("x", "y"), ("y", "z"), ("z", "x"), ("z", "w")] {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), vec!["f.rs:1".into()]);
    }
    g.entry("w".into()).or_default();
    assert_eq!(components(&g), vec![vec!["x", "y", "z"]]);
}
