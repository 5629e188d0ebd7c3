//! The scanner of `regex` guards: every rule of a guard compiled into one multi-pattern
//! automaton, so a text is searched once for all of them, and a masker that gives the same
//! answer whether the text arrives whole or cut into stream events.
//!
//! # What counts as a match
//!
//! Matching is leftmost-first over all the guard's patterns (the first rule listed wins a tie),
//! and is defined position by position, so that a stream can apply it incrementally:
//!
//! - from the current position `c`, find the first position `s >= c` at which an anchored
//!   search succeeds; the search reads at most `WINDOW` bytes from `s` (and sees the end of the
//!   text only if it falls inside that window), and the match must pass its rule's validator;
//! - replace `[s, e)`, continue at `e`.
//!
//! A whole text uses a fast unanchored search to jump between candidates; a stream steps the
//! lazy DFA from each position itself, and holds back text from the first position whose
//! search is still alive at the end of what has arrived: only the bytes that could still
//! become a match, never more than `WINDOW`. Both apply the same definition, so for any cut of a
//! text into pieces the streamed output equals the whole-text output (tested, and fuzzed by
//! the `guard_stream` target).

use std::sync::Arc;

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::meta;
use regex_automata::nfa::thompson;
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, MatchKind};
use regex_syntax::hir::{self, Hir, HirKind, Look};

use super::builtins::{self, Validator};

/// Longest match the scanner considers, and the most a stream holds back. A PEM private key
/// (about 3.3 KB for RSA-4096) fits.
pub const WINDOW: usize = 8 * 1024;

/// One rule of a `regex` guard, as configured.
#[derive(Clone, Debug)]
pub enum RuleSpec {
    Builtin(String),
    Pattern(String),
}

/// What a pattern reports when it matches.
#[derive(Clone, Debug)]
pub struct PatternInfo {
    /// The rule type: a builtin's name, or `pattern` for a custom one.
    pub rule: &'static str,
    /// `promptInjection`'s pattern family.
    pub family: Option<&'static str>,
    /// Replacement text.
    pub mask: &'static str,
    /// The index of the configured rule this pattern came from.
    pub rule_index: usize,
    validate: Option<Validator>,
}

/// A rule that did not compile: its index in `rules` and why.
#[derive(Debug)]
pub struct RuleError {
    pub index: usize,
    pub message: String,
}

/// The compiled rules of one guard.
pub struct RuleSet {
    patterns: Vec<PatternInfo>,
    meta: meta::Regex,
    dfa: DFA,
    caches: Pool<Cache, CacheFn>,
}

type CacheFn = Box<dyn Fn() -> Cache + Send + Sync>;

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

/// The outcome of an anchored search from one position.
#[derive(Debug, PartialEq, Eq)]
enum Run {
    /// No match starts here, whatever follows.
    Dead,
    /// `[s, end)` matched pattern `pid`, whatever follows.
    Match { end: usize, pid: usize },
    /// Undecided until more text arrives.
    Alive,
}

/// Where an anchored search runs: from `s` over `hay[..end]` (`eoi`: `end` ends the text),
/// for all rules or one, and optionally only for matches ending by `limit`.
#[derive(Clone, Copy)]
struct RunAt {
    s: usize,
    end: usize,
    eoi: bool,
    anchored: Anchored,
    limit: Option<usize>,
}

/// One match, as reported to the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub pattern: usize,
}

impl RuleSet {
    pub fn compile(rules: &[RuleSpec]) -> Result<RuleSet, RuleError> {
        let mut hirs = Vec::new();
        let mut patterns = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let err = |message: String| RuleError { index, message };
            match rule {
                RuleSpec::Builtin(name) => {
                    let b = builtins::find(name).ok_or_else(|| {
                        err(format!(
                            "unknown builtin {name:?} (known: {})",
                            builtins::names()
                        ))
                    })?;
                    for bp in b.patterns {
                        hirs.push(parse(bp.regex).map_err(&err)?);
                        patterns.push(PatternInfo {
                            rule: b.name,
                            family: bp.family,
                            mask: b.mask,
                            rule_index: index,
                            validate: bp.validate,
                        });
                    }
                }
                RuleSpec::Pattern(re) => {
                    // A pattern that can match empty text (`\\d*`) masks only its non-empty
                    // matches, as agentgateway does.
                    hirs.push(parse(re).map_err(&err)?);
                    patterns.push(PatternInfo {
                        rule: "pattern",
                        family: None,
                        mask: "<masked>",
                        rule_index: index,
                        validate: None,
                    });
                }
            }
        }
        let first = |message: String| RuleError { index: 0, message };
        if hirs.is_empty() {
            return Err(first("a regex guard needs at least one rule".into()));
        }
        let meta = meta::Builder::new()
            .configure(meta::Config::new().match_kind(MatchKind::LeftmostFirst))
            .build_many_from_hir(&hirs)
            .map_err(|e| first(format!("rules do not compile together: {e}")))?;
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().utf8(true))
            .build_many_from_hir(&hirs)
            .map_err(|e| first(format!("rules do not compile together: {e}")))?;
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::LeftmostFirst)
                    // A match its rule's validator refuses gives way to the next rule at the
                    // same position, which needs a start state per pattern.
                    .starts_for_each_pattern(true),
            )
            .build_from_nfa(nfa)
            .map_err(|e| first(format!("rules do not compile together: {e}")))?;
        let for_cache = dfa.clone();
        let caches: Pool<Cache, CacheFn> = Pool::new(Box::new(move || for_cache.create_cache()));
        Ok(RuleSet {
            patterns,
            meta,
            dfa,
            caches,
        })
    }

    pub fn pattern(&self, pid: usize) -> &PatternInfo {
        &self.patterns[pid]
    }

    /// The anchored search from `s` over `hay[..end]`; `eoi` says `end` is the end of the text.
    fn run_at(&self, cache: &mut Cache, hay: &[u8], s: usize, end: usize, eoi: bool) -> Run {
        self.run_anchored(
            cache,
            hay,
            RunAt {
                s,
                end,
                eoi,
                anchored: Anchored::Yes,
                limit: None,
            },
        )
    }

    /// The match at `s`: the first rule (in order) that matches there and passes its
    /// validator, with the longest match that does. `first` is the combined search's answer
    /// (the first rule that matches, its longest match).
    fn decide_at(
        &self,
        cache: &mut Cache,
        hay: &[u8],
        s: usize,
        end: usize,
        eoi: bool,
        first: Run,
    ) -> Run {
        let Run::Match { end: e, pid } = first else {
            return first;
        };
        if let Some(r) = self.settle(cache, hay, s, pid, e) {
            return r;
        }
        for q in pid + 1..self.patterns.len() {
            let Ok(qid) = regex_automata::PatternID::try_from(q) else {
                break;
            };
            match self.run_anchored(
                cache,
                hay,
                RunAt {
                    s,
                    end,
                    eoi,
                    anchored: Anchored::Pattern(qid),
                    limit: None,
                },
            ) {
                Run::Dead => {}
                Run::Alive => return Run::Alive,
                Run::Match { end: e, .. } => {
                    if let Some(r) = self.settle(cache, hay, s, q, e) {
                        return r;
                    }
                }
            }
        }
        Run::Dead
    }

    /// Rule `pid` matched `[s, e)`: that match if its validator agrees, else the longest
    /// shorter match of the same rule it agrees with (a 20-digit run whose first 16 digits
    /// are a card number).
    fn settle(&self, cache: &mut Cache, hay: &[u8], s: usize, pid: usize, e: usize) -> Option<Run> {
        let mut e = e;
        loop {
            if e > s && self.valid_bytes(pid, &hay[s..e]) {
                return Some(Run::Match { end: e, pid });
            }
            if self.patterns[pid].validate.is_none() || e <= s + 1 {
                return None;
            }
            let qid = regex_automata::PatternID::try_from(pid).ok()?;
            // Decided whatever follows: the run stops at the byte after `e - 1`, which exists.
            match self.run_anchored(
                cache,
                hay,
                RunAt {
                    s,
                    end: hay.len(),
                    eoi: false,
                    anchored: Anchored::Pattern(qid),
                    limit: Some(e - 1),
                },
            ) {
                Run::Match { end, .. } if end < e => e = end,
                _ => return None,
            }
        }
    }

    fn valid_bytes(&self, pid: usize, b: &[u8]) -> bool {
        // Matches of a UTF-8 automaton started on a char boundary are whole characters.
        std::str::from_utf8(b).is_ok_and(|t| self.valid(pid, t))
    }

    fn run_anchored(&self, cache: &mut Cache, hay: &[u8], at: RunAt) -> Run {
        let RunAt {
            s,
            end,
            eoi,
            anchored,
            limit,
        } = at;
        let input = Input::new(&hay[..end]).span(s..end).anchored(anchored);
        let Ok(mut sid) = self.dfa.start_state_forward(cache, &input) else {
            return Run::Dead;
        };
        let mut cap = end.min(s.saturating_add(WINDOW));
        if let Some(l) = limit.filter(|l| *l < end) {
            // Matches ending by `l` only: they are confirmed by the byte at `l`, the last read.
            cap = cap.min(l + 1);
        }
        let mut last: Option<(usize, usize)> = None;
        for (i, &b) in hay[s..cap].iter().enumerate() {
            let Ok(next) = self.dfa.next_state(cache, sid, b) else {
                return Run::Dead;
            };
            sid = next;
            if sid.is_tagged() {
                if sid.is_match() {
                    // Matches are reported one byte late: this one ends before byte `s + i`.
                    last = Some((s + i, self.dfa.match_pattern(cache, sid, 0).as_usize()));
                } else if sid.is_dead() || sid.is_quit() {
                    return decided(last);
                }
            }
        }
        if cap - s >= WINDOW || limit.is_some_and(|l| l < end) {
            // The window (or the limit) is used up: what matched inside it stands.
            return decided(last);
        }
        if !eoi {
            return Run::Alive;
        }
        if let Ok(e) = self.dfa.next_eoi_state(cache, sid)
            && e.is_match()
        {
            last = Some((end, self.dfa.match_pattern(cache, e, 0).as_usize()));
        }
        decided(last)
    }

    fn valid(&self, pid: usize, text: &str) -> bool {
        self.patterns[pid].validate.is_none_or(|v| v(text))
    }

    /// The whole-text masked form of `text`, or `None` when nothing matched. `hits` receives
    /// one entry per match.
    pub fn mask(&self, text: &str, hits: &mut Vec<Hit>) -> Option<String> {
        // Fast path: one unanchored search; most texts have nothing to mask.
        let first = self.meta.search(&Input::new(text))?;
        let mut m = Masker::new();
        let mut out = String::with_capacity(text.len());
        let before = hits.len();
        m.buf.push_str(text);
        m.advance_from(self, true, Some(first), &mut out, hits);
        (hits.len() > before).then_some(out)
    }

    /// Whether anything in `text` matches (for `reject` guards): the first hit.
    pub fn first_hit(&self, text: &str) -> Option<Hit> {
        let first = self.meta.search(&Input::new(text))?;
        let mut hits = Vec::new();
        let mut out = String::new();
        let mut m = Masker::new();
        m.stop_at_first = true;
        m.buf.push_str(text);
        m.advance_from(self, true, Some(first), &mut out, &mut hits);
        hits.first().copied()
    }
}

fn decided(last: Option<(usize, usize)>) -> Run {
    match last {
        Some((end, pid)) => Run::Match { end, pid },
        None => Run::Dead,
    }
}

/// Parses a pattern with ASCII word boundaries. The lazy DFA cannot step through a Unicode
/// `\b` on non-ASCII text, and every builtin is ASCII anyway; `\w`, `.` and classes stay
/// Unicode.
fn parse(re: &str) -> Result<Hir, String> {
    let h = regex_syntax::ParserBuilder::new()
        .build()
        .parse(re)
        .map_err(|e| format!("invalid regex {re:?}: {e}"))?;
    Ok(ascii_boundaries(h))
}

fn ascii_boundaries(h: Hir) -> Hir {
    match h.into_kind() {
        HirKind::Look(l) => Hir::look(match l {
            Look::WordUnicode => Look::WordAscii,
            Look::WordUnicodeNegate => Look::WordAsciiNegate,
            Look::WordStartUnicode => Look::WordStartAscii,
            Look::WordEndUnicode => Look::WordEndAscii,
            Look::WordStartHalfUnicode => Look::WordStartHalfAscii,
            Look::WordEndHalfUnicode => Look::WordEndHalfAscii,
            other => other,
        }),
        HirKind::Repetition(r) => Hir::repetition(hir::Repetition {
            sub: Box::new(ascii_boundaries(*r.sub)),
            ..r
        }),
        // Groups only matter to capture positions, which the scanner never reads.
        HirKind::Capture(c) => ascii_boundaries(*c.sub),
        HirKind::Concat(v) => Hir::concat(v.into_iter().map(ascii_boundaries).collect()),
        HirKind::Alternation(v) => Hir::alternation(v.into_iter().map(ascii_boundaries).collect()),
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(l) => Hir::literal(l.0),
        HirKind::Class(c) => Hir::class(c),
    }
}

/// Incremental masking of one text (a stream's choice or content block). Holds the text that
/// could still be the start of a match, plus one byte of context for look-behind.
#[derive(Debug, Default)]
pub struct Masker {
    /// `buf[..c]` is context already emitted; `buf[c..]` is held back.
    buf: String,
    c: usize,
    stop_at_first: bool,
}

impl Masker {
    pub fn new() -> Self {
        Masker::default()
    }

    /// Bytes held back, waiting for more text.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.c
    }

    /// Appends `delta`; writes what is decided to `out`.
    pub fn push(&mut self, rules: &RuleSet, delta: &str, out: &mut String, hits: &mut Vec<Hit>) {
        self.buf.push_str(delta);
        self.advance(rules, false, out, hits);
    }

    /// A whole text at once: the same result as `push` then `finish`, searched with the
    /// unanchored engine between candidates instead of position by position.
    pub fn whole(&mut self, rules: &RuleSet, text: &str, out: &mut String, hits: &mut Vec<Hit>) {
        self.buf.push_str(text);
        self.finish(rules, out, hits);
    }

    /// The text ended: writes the rest.
    pub fn finish(&mut self, rules: &RuleSet, out: &mut String, hits: &mut Vec<Hit>) {
        self.advance(rules, true, out, hits);
        self.buf.clear();
        self.c = 0;
    }

    fn advance(&mut self, rules: &RuleSet, eoi: bool, out: &mut String, hits: &mut Vec<Hit>) {
        self.advance_from(rules, eoi, None, out, hits);
    }

    /// `first`: the whole-text search's first match, when the caller already ran it.
    fn advance_from(
        &mut self,
        rules: &RuleSet,
        eoi: bool,
        mut first: Option<regex_automata::Match>,
        out: &mut String,
        hits: &mut Vec<Hit>,
    ) {
        let mut cache = rules.caches.get();
        let hay = self.buf.as_bytes();
        let len = hay.len();
        let mut c = self.c;
        let mut p = c;
        while p < len {
            let first_run = if eoi {
                // The whole text is here: jump to the next candidate. Positions before it have
                // no match at all, so the anchored search would find none there either.
                let found = first
                    .take()
                    .or_else(|| rules.meta.search(&Input::new(hay).span(p..len)));
                let Some(m) = found else {
                    p = len;
                    break;
                };
                p = m.start();
                if m.len() < WINDOW {
                    // Within the window the anchored leftmost-first search finds this same
                    // match: no need to run it again.
                    Run::Match {
                        end: m.end(),
                        pid: m.pattern().as_usize(),
                    }
                } else {
                    rules.run_at(&mut cache, hay, p, len, eoi)
                }
            } else {
                rules.run_at(&mut cache, hay, p, len, eoi)
            };
            match rules.decide_at(&mut cache, hay, p, len, eoi, first_run) {
                Run::Alive => break,
                Run::Match { end, pid } => {
                    out.push_str(&self.buf[c..p]);
                    out.push_str(rules.patterns[pid].mask);
                    hits.push(Hit { pattern: pid });
                    c = end;
                    p = end;
                    if self.stop_at_first {
                        break;
                    }
                }
                _ => p = next_char(&self.buf, p),
            }
        }
        out.push_str(&self.buf[c..p]);
        // Keep one character before `p` as look-behind context for `\b` and `^`.
        let keep = prev_char(&self.buf, p);
        self.buf.drain(..keep);
        self.c = p - keep;
    }
}

fn next_char(s: &str, i: usize) -> usize {
    let mut j = i + 1;
    while j < s.len() && !s.is_char_boundary(j) {
        j += 1;
    }
    j
}

fn prev_char(s: &str, i: usize) -> usize {
    if i == 0 {
        return 0;
    }
    let mut j = i - 1;
    while j > 0 && !s.is_char_boundary(j) {
        j -= 1;
    }
    j
}

/// Shared, so guards and stream maskers hold the same compiled rules.
pub type Rules = Arc<RuleSet>;

#[cfg(test)]
mod tests;
