//! Paired CPU comparison: two gateways served at the same fixed rate at the same time, round
//! after round, so both run under the same load average, clock and neighbours. Sequential runs
//! (the fixed-rate table) see this VM's CPU time per request move by ±10 µs between runs of
//! the same gateway; paired, that movement hits both sides alike and their difference is their
//! own work. An A/A pair (two gateways with the same config) shows what is left of the noise.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::openloop;
use super::procs::{Proc, cpu_ns};
use super::{CHAT_BODY, CHAT_PATH};

/// Rounds per pair, seconds measured per round (after 1 s of warm-up).
pub const ROUNDS: usize = 6;
pub const SECS: u64 = 5;

/// One pair's gateway CPU per request, round by round: (A, B) in µs.
pub struct Pair {
    pub label: &'static str,
    pub rate: f64,
    pub rounds: Vec<(f64, f64)>,
}

impl Pair {
    /// B − A per round.
    pub fn diffs(&self) -> Vec<f64> {
        self.rounds.iter().map(|(a, b)| b - a).collect()
    }

    pub fn median_diff(&self) -> f64 {
        median(self.diffs())
    }

    pub fn median_a(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.0).collect())
    }

    pub fn median_b(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.1).collect())
    }

    /// (smallest, largest) B − A.
    pub fn range(&self) -> (f64, f64) {
        let d = self.diffs();
        (
            d.iter().copied().fold(f64::INFINITY, f64::min),
            d.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Serves `a` and `b` at `rate` req/s each, concurrently, for `ROUNDS` rounds; CPU per
/// request of each from the scheduler's per-thread run time (`procs::cpu_ns`, nanoseconds)
/// over the round (warm-up included, as in the fixed-rate table) divided by its requests.
pub fn run(
    label: &'static str,
    a: (&Proc, SocketAddr),
    b: (&Proc, SocketAddr),
    rate: f64,
) -> anyhow::Result<Pair> {
    let target = |addr| openloop::Target {
        addr,
        path: CHAT_PATH.into(),
        body: Bytes::from_static(CHAT_BODY.as_bytes()),
    };
    let (ta, tb) = (target(a.1), target(b.1));
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let (ca, cb) = (cpu_ns(a.0.pid())?, cpu_ns(b.0.pid())?);
        let run = |t: &openloop::Target| {
            openloop::run(t, rate, Duration::from_secs(1), Duration::from_secs(SECS))
        };
        let (sa, sb) = std::thread::scope(|s| {
            let ha = s.spawn(|| run(&ta));
            let hb = s.spawn(|| run(&tb));
            (ha.join(), hb.join())
        });
        let (sa, sb) = (
            sa.map_err(|_| anyhow::anyhow!("load generator panicked"))??,
            sb.map_err(|_| anyhow::anyhow!("load generator panicked"))??,
        );
        if sa.errors + sb.errors > 0 {
            anyhow::bail!("{label}: {} and {} errors", sa.errors, sb.errors);
        }
        let per =
            |ns: u64, s: &openloop::Samples| ns as f64 / 1e3 / (s.latency_us.len().max(1) as f64);
        let ua = per(cpu_ns(a.0.pid())?.saturating_sub(ca), &sa);
        let ub = per(cpu_ns(b.0.pid())?.saturating_sub(cb), &sb);
        println!(
            "    round {} {label}: A {ua:.1} µs/req  B {ub:.1} µs/req  B − A {:+.1} µs",
            round + 1,
            ub - ua
        );
        rounds.push((ua, ub));
    }
    Ok(Pair {
        label,
        rate,
        rounds,
    })
}

/// The paired section of BENCHMARKS.md: method and one row per pair (empty without pairs).
pub fn markdown(pairs: &[Pair]) -> String {
    let Some(first) = pairs.first() else {
        return String::new();
    };
    let mut m = format!(
        "**Paired CPU.** Two gateways served at once, each at {:.0} req/s by its own open-loop generator, for {} rounds of {SECS} s (`loadbench/paired.rs`): both see the same load, clock and neighbours, so the difference of their CPU per request is their own work; run one after the other (the table above), the same gateway's figure moves by ±10 µs on this VM. The A/A row pairs two gateways with the same config: its spread is what is left of the noise.\n\n",
        first.rate,
        first.rounds.len(),
    );
    m.push_str("| pair (A, B) | A µs/req (median) | B µs/req (median) | B − A median µs | B − A range µs |\n");
    m.push_str("|---|---|---|---|---|\n");
    for p in pairs {
        let (lo, hi) = p.range();
        m.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:+.1} | {lo:+.1} to {hi:+.1} |\n",
            p.label,
            p.median_a(),
            p.median_b(),
            p.median_diff()
        ));
    }
    m.push('\n');
    m
}

/// The virtual-model target's figure and verdict from the pairs (A/A, plain→shorthand,
/// shorthand→routed, plain→routed): the virtual model against the same `llm:` config's plain
/// model, with the control and the plain `ai` route beside it. `None` without those pairs.
pub fn virtual_model_target(pairs: &[Pair]) -> Option<(String, bool)> {
    let (aa, vm, all) = (pairs.first()?, pairs.get(2)?, pairs.get(3)?);
    Some((
        format!(
            "{:+.1} µs paired over the same `llm:` config's plain model (median of {} rounds, {:.0} req/s each; A/A control {:+.1} µs; over the plain `ai` route {:+.1} µs)",
            vm.median_diff(),
            vm.rounds.len(),
            vm.rate,
            aa.median_diff(),
            all.median_diff()
        ),
        vm.median_diff() <= 2.0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        let p = Pair {
            label: "x",
            rate: 1.0,
            rounds: vec![(10.0, 11.0), (12.0, 11.0), (10.0, 14.0)],
        };
        assert_eq!(p.diffs(), vec![1.0, -1.0, 4.0]);
        assert_eq!(p.median_diff(), 1.0);
        assert_eq!(p.range(), (-1.0, 4.0));
        assert_eq!(p.median_a(), 10.0);
        let m = markdown(std::slice::from_ref(&p));
        assert!(
            m.starts_with("**Paired CPU.**") && m.ends_with("|\n\n"),
            "{m}"
        );
        assert!(
            m.contains("| x | 10.0 | 11.0 | +1.0 | -1.0 to +4.0 |\n"),
            "{m}"
        );
        assert_eq!(markdown(&[]), "");
        assert!(virtual_model_target(std::slice::from_ref(&p)).is_none());
    }
}
