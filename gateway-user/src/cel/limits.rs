//! Bounds on what one expression may cost to compile and evaluate, checked on the source text
//! before the parser sees it, in one pass and without allocating per byte.
//!
//! Why: expressions come from config, and a config reload must not stall or run out of memory
//! on one bad string. cel-interpreter 0.10's parser grew to 4.9 GB in 21 s on a 205-byte
//! expression found by fuzzing (`fuzz/regressions/cel/parser-memory-blowup`). The `cel` crate's
//! parser handles that one in 5 ms, but it is ANTLR-generated: its cost per byte is high and
//! some inputs cost more than linear. These bounds keep it, and the recursive evaluator, inside
//! a measured budget whatever it does:
//!
//! - `MAX_EXPRESSION_BYTES`: the longest expression in agentgateway's docs and the seed
//!   documents is under 200 bytes; a 30-clause authorization rule is about 1 KiB.
//! - `MAX_DEPTH`: how deep the expression's tree can be. Each open bracket (`(`, `[`, `{`) is
//!   one level, and so is each `.`, `?`, `in` and operator other than `&&`/`||` chained within
//!   one operand: `a.b.c + 1` is 3 levels, `f(x.y)` is 2. Commas and `&&`/`||` start a new
//!   operand (the parser balances `&&`/`||` chains). The seeds' deepest expression,
//!   `flatten_recursive(llm.completion.map(c, {"role":"assistant", "content": c}))`, is 5
//!   levels deep. The parser needs about 8 KiB of stack per bracket level in release and 170
//!   KiB in debug (it gets a thread of its own, see `parse`); evaluation about 1.6 KiB per
//!   level in release and 40 KiB in debug, on the caller's thread.
//! - Only characters that start a CEL token, outside string literals and comments: the lexer
//!   reports every other one as an error of its own, and 4 KiB of them cost 34 MB and 120 ms.
//!
//! Measured within these bounds (release build, `tests/cel_compile_cost.rs` prints the table):
//! the fuzz-found input is refused in 4 µs; nesting at the limit compiles in under 2 ms and
//! 0.5 MiB; the costliest inputs found are 4 KiB list, map and argument literals and unclosed
//! brackets, 15-30 ms and 9 MiB; typical expressions take well under a millisecond.

/// Longest accepted expression, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;

/// Deepest accepted expression tree, counted as described in the module docs.
pub const MAX_DEPTH: usize = 32;

/// Checks `src` against the bounds; the error completes "CEL expression <src> ...".
pub(super) fn check(src: &str) -> Result<(), String> {
    if src.len() > MAX_EXPRESSION_BYTES {
        return Err(format!(
            "is {} bytes; the limit is {MAX_EXPRESSION_BYTES}",
            src.len()
        ));
    }
    let mut depth = Depth::default();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        i = token(b, i, &mut depth).ok_or_else(|| {
            // The character is printed, not the byte, so take it from the `str`.
            let c = src[start..].chars().next().unwrap_or_default();
            format!("has {c:?} at byte {start}, which starts no CEL token")
        })?;
        if depth.max > MAX_DEPTH {
            return Err(format!(
                "nests {} levels deep at byte {start} (each bracket, and each `.`, call or \
                 operator chained on one operand, is a level); the limit is {MAX_DEPTH}",
                depth.max
            ));
        }
    }
    Ok(())
}

/// Scans the token at `i` into `depth`; returns the index just past it, or `None` for a
/// character no CEL token starts with. Those are refused here because the lexer reports each
/// one as an error of its own, and thousands of them cost the parser quadratic memory.
fn token(b: &[u8], mut i: usize, depth: &mut Depth) -> Option<usize> {
    let c = b[i];
    let next = b.get(i + 1).copied();
    match c {
        b'"' | b'\'' => return Some(skip_string(b, i, false)),
        b'/' if next == Some(b'/') => {
            // A comment runs to the end of the line.
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            return Some(i);
        }
        b'(' | b'[' | b'{' => depth.open(),
        b')' | b']' | b'}' => depth.close(),
        b',' => depth.new_operand(),
        b'&' | b'|' if next == Some(c) => {
            depth.new_operand();
            return Some(i + 2);
        }
        b'=' | b'!' | b'<' | b'>' if next == Some(b'=') => {
            depth.link();
            return Some(i + 2);
        }
        b'.' | b'?' | b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'!' => depth.link(),
        b':' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {}
        // An escaped field name, `a.`b-c``; the parser decides whether it is allowed.
        b'`' => {
            let end = b[i + 1..].iter().position(|&x| x == b'`');
            return Some(end.map_or(b.len(), |e| i + e + 2));
        }
        c if c.is_ascii_alphabetic() || c == b'_' => {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &b[start..i];
            // A string prefix (`r"..."`, `b'...'`, `rb"..."`): raw strings keep backslashes.
            if word.len() <= 2
                && word.iter().all(|w| matches!(w, b'r' | b'R' | b'b' | b'B'))
                && matches!(b.get(i), Some(b'"' | b'\''))
            {
                let raw = word.iter().any(|w| matches!(w, b'r' | b'R'));
                return Some(skip_string(b, i, raw));
            }
            if word == b"in" {
                depth.link();
            }
            return Some(i);
        }
        c if c.is_ascii_digit() => {
            // A number, `1.5e3` included: its `.` is no field selection.
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == b'_'
                    || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            return Some(i);
        }
        _ => return None,
    }
    Some(i + 1)
}

/// Returns the index just past the string literal whose opening quote is at `start`
/// (single-, double- or triple-quoted), or the end of `b` if it is not closed.
fn skip_string(b: &[u8], start: usize, raw: bool) -> usize {
    let q = b[start];
    let triple = b.get(start..start + 3) == Some(&[q, q, q][..]);
    let close: &[u8] = if triple {
        &b[start..start + 3]
    } else {
        &b[start..start + 1]
    };
    let mut i = start + close.len();
    while i < b.len() && !b[i..].starts_with(close) {
        i += if b[i] == b'\\' && !raw { 2 } else { 1 };
    }
    (i + close.len()).min(b.len())
}

/// The tree depth seen so far: the links chained in each open bracket's current operand.
#[derive(Default)]
struct Depth {
    /// Links in the current operand of each open bracket, outermost first; `top` is the
    /// operand outside any bracket.
    open: Vec<usize>,
    top: usize,
    /// Open brackets plus every open level's links: the current path's depth.
    current: usize,
    max: usize,
}

impl Depth {
    fn links(&mut self) -> &mut usize {
        self.open.last_mut().unwrap_or(&mut self.top)
    }

    fn link(&mut self) {
        *self.links() += 1;
        self.current += 1;
        self.max = self.max.max(self.current);
    }

    /// A bracket is one level: a call or index node on its operand (`f(`, `a[`), a list or
    /// map node, or a parenthesised group.
    fn open(&mut self) {
        self.open.push(0);
        self.current += 1;
        self.max = self.max.max(self.current);
    }

    fn close(&mut self) {
        // An unbalanced `)` is the parser's to report.
        if let Some(links) = self.open.pop() {
            self.current -= links + 1;
        }
    }

    fn new_operand(&mut self) {
        let links = std::mem::take(self.links());
        self.current -= links;
    }
}
