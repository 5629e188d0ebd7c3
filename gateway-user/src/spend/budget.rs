//! `policies.budgets` (our extension; agentgateway OSS has no budgets): spend limits in USD
//! (priced by `config.modelCatalog`) or tokens over a rolling window, per route or per caller.
//!
//! ```yaml
//! budgets:
//! - name: team-daily
//!   usd: "25.00"                 # or tokens: 2000000
//!   window: day                  # day | week | month (30 days), rolling
//!   onExceeded: block            # or audit
//!   descriptors: [{key: team, value: apiKey.team}]   # optional: one budget per value
//!   failureMode: failOpen        # when Redis fails: failOpen (default) | failClosed
//! ```
//!
//! A window is 24 slots (an hour for `day`, 7 hours for `week`, 30 for `month`); what was
//! spent is the sum of the last 24, so old spend falls out slot by slot. Before an LLM request
//! goes upstream each budget that applies is checked: spent at or over the limit blocks (429,
//! `budget exceeded`) or, with `audit`, only marks the span and counts. The request's real
//! cost or tokens are added when it ends (streams included), so the request that crosses a
//! limit completes and the next one is refused. The remaining amount (before this request) is
//! in `x-gateway-budget-remaining`, on the span and in `agentgateway_budget_remaining`.
//!
//! With `config.redis` the state is in Redis (one script call checks every budget of a
//! request; a restart or another node loses nothing); without it, it is this process's alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::cel::{Executor, Refs};
use crate::ctx::{BudgetStatus, LlmInfo, RequestLog, Settle};
use crate::limit::global::FailureMode;
use crate::limit::spec::{Descriptor, key_of, parse_descriptors};
use crate::store::{Failure, Shared};

/// Slots per window.
const SLOTS: u64 = 24;
/// USD are kept as whole nano-dollars (exact for every catalog rate).
const NANOS: i64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Nano-dollars.
    Usd,
    Tokens,
}

#[derive(Debug)]
pub struct Budget {
    pub name: String,
    pub unit: Unit,
    /// In the unit's smallest step (nano-dollars or tokens).
    pub limit: i64,
    pub window: Duration,
    pub block: bool,
    pub failure_mode: FailureMode,
    descriptors: Vec<Descriptor>,
    refs: Refs,
}

/// A route's budgets.
#[derive(Debug, Default)]
pub struct Budgets {
    pub list: Vec<Budget>,
}

pub type ParseError = (String, String);

impl Budgets {
    pub fn parse(v: &Value, path: &str) -> Result<Budgets, ParseError> {
        let list = v.as_array().ok_or_else(|| {
            (
                path.to_owned(),
                format!("expected a list of budgets, got {v}"),
            )
        })?;
        let mut out = Vec::new();
        for (i, b) in list.iter().enumerate() {
            let b = Budget::parse(b, &format!("{path}[{i}]"))?;
            if out.iter().any(|o: &Budget| o.name == b.name) {
                return Err((
                    format!("{path}[{i}].name"),
                    format!("{:?} is used by an earlier budget", b.name),
                ));
            }
            out.push(b);
        }
        Ok(Budgets { list: out })
    }

    pub fn references(&self) -> Refs {
        self.list
            .iter()
            .fold(Refs::default(), |r, b| r.union(b.refs))
    }
}

impl Budget {
    fn parse(v: &Value, p: &str) -> Result<Budget, ParseError> {
        let o = v
            .as_object()
            .ok_or_else(|| (p.to_owned(), format!("expected a mapping, got {v}")))?;
        if let Some(k) = o.keys().find(|k| {
            !matches!(
                k.as_str(),
                "name" | "usd" | "tokens" | "window" | "onExceeded" | "descriptors" | "failureMode"
            )
        }) {
            return Err((format!("{p}.{k}"), "unknown field".into()));
        }
        let name = match o.get("name") {
            Some(Value::String(s))
                if !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
            {
                s.clone()
            }
            Some(other) => {
                return Err((
                    format!("{p}.name"),
                    format!("{other}: expected a name of letters, digits, `-`, `_`, `.`"),
                ));
            }
            None => return Err((format!("{p}.name"), "required".into())),
        };
        let (unit, limit) = match (o.get("usd"), o.get("tokens")) {
            (Some(u), None) => (Unit::Usd, usd(u, &format!("{p}.usd"))?),
            (None, Some(t)) => {
                let n = t.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    (
                        format!("{p}.tokens"),
                        format!("expected a whole number above 0, got {t}"),
                    )
                })?;
                (Unit::Tokens, i64::try_from(n).unwrap_or(i64::MAX))
            }
            _ => {
                return Err((p.to_owned(), "set exactly one of `usd` or `tokens`".into()));
            }
        };
        let window = match o.get("window").and_then(Value::as_str) {
            Some("day") => Duration::from_secs(86_400),
            Some("week") => Duration::from_secs(7 * 86_400),
            Some("month") => Duration::from_secs(30 * 86_400),
            _ => {
                return Err((
                    format!("{p}.window"),
                    format!(
                        "{}: expected `day`, `week` or `month`",
                        o.get("window")
                            .map(Value::to_string)
                            .unwrap_or("missing".into())
                    ),
                ));
            }
        };
        let block = match o.get("onExceeded").map(|v| v.as_str()) {
            None | Some(Some("block")) => true,
            Some(Some("audit")) => false,
            Some(_) => {
                return Err((
                    format!("{p}.onExceeded"),
                    format!("{}: expected `block` or `audit`", o["onExceeded"]),
                ));
            }
        };
        // A blip in Redis should not stop all spending: budgets fail open unless told.
        let failure_mode = FailureMode::parse(
            o.get("failureMode"),
            &format!("{p}.failureMode"),
            FailureMode::FailOpen,
        )?;
        let (descriptors, refs) = match o.get("descriptors") {
            Some(d) => parse_descriptors(d, &format!("{p}.descriptors"))?,
            None => (Vec::new(), Refs::default()),
        };
        Ok(Budget {
            name,
            unit,
            limit,
            window,
            block,
            failure_mode,
            descriptors,
            refs,
        })
    }

    fn slot_ms(&self) -> u64 {
        (self.window.as_millis() as u64 / SLOTS).max(1)
    }

    /// An amount in this budget's unit as people read it (`4.25` USD, `1200` tokens).
    pub fn show(&self, amount: i64) -> String {
        match self.unit {
            Unit::Tokens => amount.to_string(),
            Unit::Usd => (Decimal::from(amount) / Decimal::from(NANOS))
                .normalize()
                .to_string(),
        }
    }
}

/// A USD amount as a decimal string or number, to nano-dollars.
fn usd(v: &Value, path: &str) -> Result<i64, ParseError> {
    let d: Option<Decimal> = match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    };
    let d = d
        .filter(|d| d.is_sign_positive() && !d.is_zero())
        .ok_or_else(|| {
            (
                path.to_owned(),
                format!("expected an amount above 0, got {v}"),
            )
        })?;
    use rust_decimal::prelude::ToPrimitive;
    (d * Decimal::from(NANOS))
        .ceil()
        .to_i64()
        .ok_or_else(|| (path.to_owned(), format!("{d} is too large")))
}

/// Sums a budget's live slots and drops old ones (ARGV: mode 1 read / 2 add, slot-ms, amount;
/// per key). Returns the spend per key (after the add).
const BUDGET_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local slot_ms = tonumber(ARGV[2 * i])
  local amount = tonumber(ARGV[2 * i + 1])
  local idx = math.floor(now / slot_ms)
  if mode == 2 and amount ~= 0 then
    redis.call('HINCRBY', key, tostring(idx), amount)
    redis.call('PEXPIRE', key, slot_ms * 25)
  end
  local all = redis.call('HGETALL', key)
  local sum = 0
  for j = 1, #all, 2 do
    local s = tonumber(all[j])
    if s == nil or s <= idx - 24 then
      redis.call('HDEL', key, all[j])
    else
      sum = sum + tonumber(all[j + 1])
    end
  end
  out[#out + 1] = sum
end
return out
";

static SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(BUDGET_LUA));

/// Spend per slot, for budgets kept in this process.
#[derive(Debug, Default)]
struct Window {
    slots: VecDeque<(u64, i64)>,
}

impl Window {
    fn spent(&mut self, idx: u64) -> i64 {
        while self.slots.front().is_some_and(|(s, _)| *s + SLOTS <= idx) {
            self.slots.pop_front();
        }
        self.slots.iter().map(|(_, a)| a).sum()
    }

    fn add(&mut self, idx: u64, amount: i64) {
        match self.slots.back_mut() {
            Some((s, a)) if *s == idx => *a += amount,
            _ => self.slots.push_back((idx, amount)),
        }
    }
}

/// Budget state for the process: local windows, the shared store, the gauge.
pub struct Ledger {
    local: Mutex<HashMap<String, Window>>,
    store: Arc<Shared>,
    /// `agentgateway_budget_remaining{budget, key}`.
    gauge: prometheus::GaugeVec,
    /// `agentgateway_budget_exceeded_total{budget, action}`.
    exceeded: prometheus::IntCounterVec,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

/// Why a budget refused the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The named budget is spent (`onExceeded: block`).
    Exceeded(String),
    /// The store failed and the budget's `failureMode` is `failClosed`.
    Unavailable(Failure),
}

/// The budgets that apply to one request, prepared by `Ledger::prepare`.
#[derive(Debug)]
pub struct BudgetCheck {
    budgets: Arc<Budgets>,
    applied: Vec<Applied>,
    shared: bool,
    keys: Vec<String>,
    args: Vec<i64>,
}

impl BudgetCheck {
    /// The script call that reads the spend, when the budgets live in Redis.
    pub fn call(&self) -> Option<crate::store::Call<'_>> {
        self.shared.then(|| crate::store::Call {
            script: &SCRIPT,
            keys: &self.keys,
            args: &self.args,
        })
    }
}

/// One budget that applies to a request: where its state is and what it had left.
#[derive(Debug)]
struct Applied {
    index: usize,
    key: String,
    remaining: i64,
}

impl Ledger {
    pub fn new(
        store: Arc<Shared>,
        gauge: prometheus::GaugeVec,
        exceeded: prometheus::IntCounterVec,
    ) -> Arc<Ledger> {
        Arc::new(Ledger {
            local: Mutex::new(HashMap::new()),
            store,
            gauge,
            exceeded,
        })
    }

    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// The budgets of `budgets` that apply to the request in `log`, and, when they live in
    /// Redis, the script call that reads what they spent. `None` when none applies.
    pub fn prepare(&self, budgets: &Arc<Budgets>, log: &RequestLog) -> Option<BudgetCheck> {
        let refs = budgets.references();
        let exec = (refs != Refs::default()).then(|| Executor::new(log, refs));
        let mut applied = Vec::new();
        for (index, b) in budgets.list.iter().enumerate() {
            let values = if b.descriptors.is_empty() {
                Vec::new()
            } else {
                match exec.as_ref().and_then(|e| key_of(&b.descriptors, e)) {
                    Some(v) => v,
                    None => continue,
                }
            };
            applied.push(Applied {
                index,
                key: values.join("/"),
                remaining: 0,
            });
        }
        if applied.is_empty() {
            return None;
        }
        let shared = self.store.configured();
        let (keys, args) = if shared {
            self.script_args(budgets, &applied, 1, |_| 0)
        } else {
            (Vec::new(), Vec::new())
        };
        Some(BudgetCheck {
            budgets: budgets.clone(),
            applied,
            shared,
            keys,
            args,
        })
    }

    /// Decides with what the budgets spent: `result` is the script's answer when they live
    /// in Redis (`None`: this process's windows are read). On success the request's spend is
    /// added when it ends (`log.settle`).
    pub fn finish(
        self: &Arc<Self>,
        check: BudgetCheck,
        result: Option<Result<Vec<i64>, Failure>>,
        log: &mut RequestLog,
    ) -> Result<(), Refused> {
        let BudgetCheck {
            budgets,
            mut applied,
            shared,
            ..
        } = check;
        let spent = match result {
            None => self.local_spent(&budgets, &applied),
            Some(Ok(s)) if s.len() == applied.len() => s,
            Some(r) => {
                let f = r.err().unwrap_or(Failure::Error);
                log.store_failure = Some(f.as_str());
                if applied
                    .iter()
                    .any(|a| budgets.list[a.index].failure_mode == FailureMode::FailClosed)
                {
                    return Err(Refused::Unavailable(f));
                }
                // failOpen: the request goes on; its spend is still added at the end.
                vec![0; applied.len()]
            }
        };
        let mut status = BudgetStatus::default();
        let mut tightest = f64::INFINITY;
        for (a, s) in applied.iter_mut().zip(spent) {
            let b = &budgets.list[a.index];
            a.remaining = (b.limit - s).max(0);
            self.gauge
                .with_label_values(&[b.name.as_str(), a.key.as_str()])
                .set(match b.unit {
                    Unit::Usd => a.remaining as f64 / NANOS as f64,
                    Unit::Tokens => a.remaining as f64,
                });
            let shown = format!("{}={}", b.name, b.show(a.remaining));
            let share = a.remaining as f64 / b.limit as f64;
            if share < tightest {
                tightest = share;
                status.tightest = Some(shown.clone());
            }
            status.remaining.push(shown);
            if a.remaining == 0 {
                let action = if b.block { "block" } else { "audit" };
                self.exceeded
                    .with_label_values(&[b.name.as_str(), action])
                    .inc();
                status.exceeded.push(b.name.clone());
                if b.block {
                    log.budget = Some(Box::new(status));
                    return Err(Refused::Exceeded(b.name.clone()));
                }
            }
        }
        log.budget = Some(Box::new(status));
        log.settle.push(Arc::new(BudgetSettle {
            ledger: self.clone(),
            budgets,
            applied,
            shared,
        }));
        Ok(())
    }

    /// `prepare`, one script call when shared, `finish`.
    pub async fn check(
        self: &Arc<Self>,
        budgets: &Arc<Budgets>,
        log: &mut RequestLog,
    ) -> Result<(), Refused> {
        let Some(c) = self.prepare(budgets, log) else {
            return Ok(());
        };
        let result = match c.call() {
            Some(call) => Some(
                self.store
                    .run("budget", call.script, call.keys, call.args)
                    .await,
            ),
            None => None,
        };
        self.finish(c, result, log)
    }

    /// What each applied budget spent in its window, in this process.
    fn local_spent(&self, budgets: &Budgets, applied: &[Applied]) -> Vec<i64> {
        let now = self.now_ms();
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        applied
            .iter()
            .map(|a| {
                let b = &budgets.list[a.index];
                let idx = now / b.slot_ms();
                local
                    .get_mut(&local_key(b, &a.key))
                    .map_or(0, |w| w.spent(idx))
            })
            .collect()
    }

    fn script_args(
        &self,
        budgets: &Budgets,
        applied: &[Applied],
        mode: i64,
        amount: impl Fn(&Budget) -> i64,
    ) -> (Vec<String>, Vec<i64>) {
        let prefix = self.store.key_prefix().unwrap_or_default();
        let mut keys = Vec::with_capacity(applied.len());
        let mut args = vec![mode];
        for a in applied {
            let b = &budgets.list[a.index];
            keys.push(crate::store::key(&prefix, "budget", &[&b.name, &a.key]));
            args.push(i64::try_from(b.slot_ms()).unwrap_or(i64::MAX));
            args.push(amount(b));
        }
        (keys, args)
    }

    fn add_local(&self, budgets: &Budgets, applied: &[Applied], amount: impl Fn(&Budget) -> i64) {
        let now = self.now_ms();
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        for a in applied {
            let b = &budgets.list[a.index];
            let n = amount(b);
            if n > 0 {
                local
                    .entry(local_key(b, &a.key))
                    .or_default()
                    .add(now / b.slot_ms(), n);
            }
        }
    }
}

fn local_key(b: &Budget, key: &str) -> String {
    format!("{}\0{}", b.name, key)
}

/// Adds a request's real spend to the budgets it was checked against.
#[derive(Debug)]
struct BudgetSettle {
    ledger: Arc<Ledger>,
    budgets: Arc<Budgets>,
    applied: Vec<Applied>,
    shared: bool,
}

/// What a request spent, in `unit`.
fn spend(llm: Option<&LlmInfo>, unit: Unit) -> i64 {
    let Some(l) = llm else { return 0 };
    match unit {
        Unit::Tokens => i64::try_from(
            l.input_tokens
                .unwrap_or(0)
                .saturating_add(l.output_tokens.unwrap_or(0)),
        )
        .unwrap_or(i64::MAX),
        Unit::Usd => {
            use rust_decimal::prelude::ToPrimitive;
            l.cost
                .as_ref()
                .and_then(|c| c.total())
                .and_then(|t| (t * Decimal::from(NANOS)).ceil().to_i64())
                .unwrap_or(0)
        }
    }
}

impl Settle for BudgetSettle {
    fn settle(&self, llm: Option<&LlmInfo>) {
        let amount = |b: &Budget| spend(llm, b.unit);
        if self.budgets.list.iter().all(|b| amount(b) == 0) {
            return;
        }
        if !self.shared {
            self.ledger.add_local(&self.budgets, &self.applied, amount);
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (keys, args) = self
            .ledger
            .script_args(&self.budgets, &self.applied, 2, amount);
        let ledger = self.ledger.clone();
        rt.spawn(async move {
            let _: Result<Vec<i64>, _> = ledger
                .store
                .run("budget_settle", &SCRIPT, &keys, &args)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ledger() -> Arc<Ledger> {
        let f =
            prometheus::IntCounterVec::new(prometheus::Opts::new("f", "f"), &["a", "b"]).unwrap();
        let g =
            prometheus::GaugeVec::new(prometheus::Opts::new("g", "g"), &["budget", "key"]).unwrap();
        Ledger::new(Shared::new(f.clone()), g, f)
    }

    #[test]
    fn parse_errors_name_the_path() {
        let p = "policies.budgets";
        let e =
            Budgets::parse(&json!([{"name": "b", "usd": "ten", "window": "day"}]), p).unwrap_err();
        assert_eq!(e.0, "policies.budgets[0].usd");
        let e =
            Budgets::parse(&json!([{"name": "b", "tokens": 5, "window": "year"}]), p).unwrap_err();
        assert_eq!(e.0, "policies.budgets[0].window");
        let e = Budgets::parse(&json!([{"name": "b", "window": "day"}]), p).unwrap_err();
        assert_eq!(e.0, "policies.budgets[0]");
        let e = Budgets::parse(
            &json!([{"name": "b", "tokens": 5, "window": "day", "onExceeded": "warn"}]),
            p,
        )
        .unwrap_err();
        assert_eq!(e.0, "policies.budgets[0].onExceeded");
        let b = Budgets::parse(
            &json!([{"name": "b", "usd": "0.0000015", "window": "day"}]),
            p,
        )
        .unwrap();
        assert_eq!(b.list[0].limit, 1500);
        assert_eq!(b.list[0].show(1500), "0.0000015");
    }

    #[tokio::test]
    async fn local_budgets_block_after_the_spend_that_crossed_them() {
        let l = ledger();
        let budgets = Arc::new(
            Budgets::parse(
                &json!([{"name": "t", "tokens": 100, "window": "day"},
                        {"name": "a", "tokens": 50, "window": "day", "onExceeded": "audit"}]),
                "p",
            )
            .unwrap(),
        );
        let mut log = RequestLog::new("gw".into(), "l".into());
        l.check(&budgets, &mut log).await.unwrap();
        assert_eq!(
            log.budget.as_ref().unwrap().remaining,
            vec!["t=100".to_owned(), "a=50".to_owned()]
        );
        let usage = LlmInfo {
            input_tokens: Some(70),
            output_tokens: Some(40),
            ..LlmInfo::default()
        };
        for s in std::mem::take(&mut log.settle) {
            s.settle(Some(&usage));
        }
        let mut log = RequestLog::new("gw".into(), "l".into());
        let r = l.check(&budgets, &mut log).await.unwrap_err();
        // `t` is checked first and blocks; `a` would only have been audited.
        assert_eq!(r, Refused::Exceeded("t".into()));
    }
}
