//! Recording what guards did into `ctx::GuardInfo`: one `GuardCheck` per guard that ran, and
//! the phase summary (most severe action, rule types with counts, masked spans).

use std::time::Instant;

use crate::ctx::{GuardAction, GuardCheck, GuardHttp, GuardInfo, GuardPhase, PhaseOutcome};

/// A guard check being timed.
pub struct Timer {
    pub phase: GuardPhase,
    pub kind: &'static str,
    pub index: usize,
    pub start: Instant,
}

impl Timer {
    pub fn start(phase: GuardPhase, kind: &'static str, index: usize) -> Timer {
        Timer {
            phase,
            kind,
            index,
            start: Instant::now(),
        }
    }
}

/// What one check found.
#[derive(Default)]
pub struct Found {
    pub action: GuardAction,
    pub rules: Vec<(String, u32)>,
    pub masked: u32,
    pub error: Option<String>,
    pub http: Option<GuardHttp>,
}

impl Found {
    pub fn rule(&mut self, name: String) {
        add_rule(&mut self.rules, name, 1);
    }
}

fn add_rule(rules: &mut Vec<(String, u32)>, name: String, n: u32) {
    match rules.iter_mut().find(|(r, _)| *r == name) {
        Some((_, c)) => *c += n,
        None => rules.push((name, n)),
    }
}

/// The rule type a regex hit reports: the builtin's name, with `promptInjection`'s family.
pub fn rule_name(info: &super::scan::PatternInfo) -> String {
    match info.family {
        Some(f) => format!("{}:{f}", info.rule),
        None => info.rule.to_owned(),
    }
}

impl GuardInfo {
    pub fn phase_mut(&mut self, phase: GuardPhase) -> &mut PhaseOutcome {
        let slot = match phase {
            GuardPhase::Request => &mut self.request,
            GuardPhase::Response => &mut self.response,
        };
        slot.get_or_insert_with(PhaseOutcome::default)
    }

    /// Records a finished check and folds it into its phase's outcome.
    pub fn record(&mut self, t: Timer, found: Found) {
        let end = Instant::now();
        let busy = end - t.start;
        self.record_span(t, found, end, busy);
    }

    /// Records a check whose busy time differs from its wall time (a stream).
    pub fn record_span(&mut self, t: Timer, found: Found, end: Instant, busy: std::time::Duration) {
        let phase = self.phase_mut(t.phase);
        if found.action > phase.action {
            phase.action = found.action;
        }
        if found.action == GuardAction::Reject && phase.rejected_by.is_none() {
            phase.rejected_by = Some(format!("{}[{}]", t.kind, t.index));
        }
        phase.masked += found.masked;
        for (r, n) in &found.rules {
            add_rule(&mut phase.rules, r.clone(), *n);
        }
        self.checks.push(GuardCheck {
            phase: t.phase,
            kind: t.kind,
            index: t.index,
            span_id: rand::random(),
            start: t.start,
            end,
            busy,
            action: found.action,
            rules: found.rules,
            masked: found.masked,
            error: found.error,
            http: found.http,
        });
    }
}
