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

/// Upstream TCP metrics fed by `Ebpf::record_upstream`.
#[derive(Clone)]
pub struct UpstreamMetrics {
    connect: Histogram,
    retransmits: IntCounter,
}

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
        })
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
