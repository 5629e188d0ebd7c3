//! Prometheus metrics of the eBPF subsystem.
//!
//! - `agentgateway_ebpf_enabled{reason}`: 1 when the kernel programs run (reason `enabled`),
//!   0 with the reason they do not.
//! - `agentgateway_upstream_tcp_connect_seconds`: kernel-measured TCP connect time of the
//!   gateway's upstream connections (SYN sent to ESTABLISHED).
//! - `agentgateway_upstream_tcp_retransmits_total`: retransmitted segments on them.
//! - `agentgateway_ebpf_events_total{event}`: counters kept by the kernel programs, read at
//!   scrape time (one per-CPU map lookup per event).

use aya::maps::{MapData, PerCpuArray};
use gateway_common::stats::Stat;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::ctx::FlowTiming;

/// Registers `agentgateway_ebpf_enabled` with one series for `reason`.
pub fn register_enabled(
    registry: &Registry,
    enabled: bool,
    reason: &str,
) -> prometheus::Result<()> {
    let g = IntGaugeVec::new(
        Opts::new(
            "agentgateway_ebpf_enabled",
            "Whether the eBPF programs are loaded (1) or not (0), with the reason",
        ),
        &["reason"],
    )?;
    g.with_label_values(&[reason]).set(i64::from(enabled));
    registry.register(Box::new(g))
}

/// Upstream TCP metrics fed by `Ebpf::record_upstream` / `record_upstream_conn`.
pub struct UpstreamMetrics {
    connect: Histogram,
    retransmits: IntCounter,
    /// Upstream connections already counted: cookie -> retransmits counted so far. Bounded:
    /// cleared when it outgrows `SEEN_MAX` (the worst case is one connect time counted twice).
    seen: std::sync::Mutex<std::collections::HashMap<u64, u32>>,
}

const SEEN_MAX: usize = 65536;

impl UpstreamMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let connect = Histogram::with_opts(
            HistogramOpts::new(
                "agentgateway_upstream_tcp_connect_seconds",
                "Kernel-measured TCP connect time of upstream connections (SYN to ESTABLISHED)",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
        )?;
        let retransmits = IntCounter::new(
            "agentgateway_upstream_tcp_retransmits_total",
            "TCP segments retransmitted on upstream connections",
        )?;
        registry.register(Box::new(connect.clone()))?;
        registry.register(Box::new(retransmits.clone()))?;
        Ok(UpstreamMetrics {
            connect,
            retransmits,
            seen: Default::default(),
        })
    }

    /// Like [`UpstreamMetrics::record`], per connection: the connect time is observed once per
    /// cookie and retransmits are counted as the increase since the previous call.
    pub fn record_conn(&self, cookie: u64, flow: &FlowTiming) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() >= SEEN_MAX && !seen.contains_key(&cookie) {
            seen.clear();
        }
        let retrans = flow.retransmits.unwrap_or(0);
        match seen.insert(cookie, retrans) {
            None => {
                if let Some(c) = flow.connect {
                    self.connect.observe(c.as_secs_f64());
                }
                self.retransmits.inc_by(u64::from(retrans));
            }
            Some(before) => self
                .retransmits
                .inc_by(u64::from(retrans.saturating_sub(before))),
        }
    }

    pub fn record(&self, flow: &FlowTiming) {
        if let Some(c) = flow.connect {
            self.connect.observe(c.as_secs_f64());
        }
        if let Some(r) = flow.retransmits {
            self.retransmits.inc_by(u64::from(r));
        }
    }
}

/// Exposes the kernel's `STATS` per-CPU counters as `agentgateway_ebpf_events_total{event}`.
pub struct KernelStats {
    map: PerCpuArray<MapData, u64>,
    template: IntCounterVec,
}

impl KernelStats {
    pub fn new(map: PerCpuArray<MapData, u64>) -> prometheus::Result<Self> {
        Ok(KernelStats {
            map,
            template: Self::family()?,
        })
    }

    fn family() -> prometheus::Result<IntCounterVec> {
        IntCounterVec::new(
            Opts::new(
                "agentgateway_ebpf_events_total",
                "Events counted by the gateway's eBPF programs",
            ),
            &["event"],
        )
    }

    /// Sum over CPUs of one counter.
    pub fn get(&self, stat: Stat) -> u64 {
        self.map
            .get(&(stat as u32), 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}

impl Collector for KernelStats {
    fn desc(&self) -> Vec<&Desc> {
        self.template.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(fresh) = Self::family() else {
            return Vec::new();
        };
        for (stat, label) in Stat::ALL {
            fresh.with_label_values(&[label]).inc_by(self.get(stat));
        }
        fresh.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_connection_recording_counts_connect_once_and_retransmit_deltas() {
        let registry = Registry::new();
        let m = UpstreamMetrics::register(&registry).expect("register");
        let flow = |retransmits| FlowTiming {
            connect: Some(Duration::from_millis(2)),
            retransmits: Some(retransmits),
            ..FlowTiming::default()
        };
        m.record_conn(7, &flow(1));
        m.record_conn(7, &flow(3));
        m.record_conn(7, &flow(3));
        m.record_conn(8, &flow(0));
        assert_eq!(m.connect.get_sample_count(), 2);
        assert_eq!(m.retransmits.get(), 3);
        m.record(&flow(2));
        assert_eq!(m.connect.get_sample_count(), 3);
        assert_eq!(m.retransmits.get(), 5);
    }
}
