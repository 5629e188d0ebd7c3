//! Raw (serde) types for `config.ebpf`. Owned by the eBPF subsystem.
//!
//! ```yaml
//! config:
//!   ebpf:
//!     mode: auto            # auto | required | off
//!     cgroup: /sys/fs/cgroup/kubepods.slice
//!     nodeAddress: 10.0.0.5 # where pods in their own netns are steered to
//!     steer:
//!     - address: "10.96.0.10:80"      # ip:port
//!       bind: 3000                    # the gateway listener that serves it
//!     - address: "10.96.1.0/24:443"   # cidr:port
//!       bind: 3001
//!     accelerate: false
//! ```

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `config.ebpf`: kernel-side steering of app connections into the gateway, and kernel flow
/// timing (connect time, RTT, retransmits, bytes) of the gateway's own connections.
///
/// Read once at start-up: a config reload does not re-attach programs or change steer rules
/// (restart the gateway for that). Absent block: `mode: auto` without steering.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawEbpf {
    /// Whether the kernel programs must load. `auto` (default): load them if this machine can
    /// (root, kernel BTF, cgroup v2, object built) and otherwise run without, logging why;
    /// `required`: refuse to start without them; `off`: never load them.
    #[serde(default)]
    pub mode: RawEbpfMode,
    /// cgroup v2 directory (absolute path) whose processes are steered: on a node, the pods'
    /// cgroup tree (in a container, through a host mount such as
    /// `/host/sys/fs/cgroup/kubepods.slice`). Default: the cgroup v2 mount found in
    /// `/proc/self/mountinfo` (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts),
    /// i.e. every process on the node; without one, eBPF is off and the reason says so. The
    /// gateway's own connections are never steered: they are recognised by the gateway's cgroup
    /// id, so the gateway must not share its cgroup with the apps it serves.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// Virtual addresses to steer into the gateway. Empty: no steering, flow timing only.
    #[serde(default)]
    pub steer: Vec<RawSteer>,
    /// Address that clients in other network namespaces (pods) are steered to: an address of
    /// the gateway's node they can route to (the node IP, or the pod's veth gateway). Clients in
    /// the gateway's own netns are steered to loopback. Without it, connects from other
    /// namespaces are left alone (counted as `skip_no_node_address`). One per family at most
    /// (give an IPv4 and/or an IPv6 address).
    #[serde(default)]
    pub node_address: Vec<IpAddr>,
    /// Hand bytes between a local app socket and the gateway's socket with sk_msg redirect
    /// instead of the TCP/IP stack. Default off. Kernel TCP counters (RTT, bytes) of such
    /// connections then stop moving.
    #[serde(default)]
    pub accelerate: bool,
}

/// `config.ebpf.mode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RawEbpfMode {
    #[default]
    Auto,
    Required,
    Off,
}

/// One `config.ebpf.steer[]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawSteer {
    /// `ip:port`, `[ipv6]:port`, `cidr:port` (`10.96.0.0/16:80`) or `[cidr6]:port`.
    pub address: String,
    /// Port of the gateway listener (its `binds[].port`) that steered connections are sent to.
    pub bind: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_block() {
        let y = r#"
mode: required
cgroup: /sys/fs/cgroup/pods
nodeAddress: [10.0.0.5]
steer:
- address: "10.96.0.10:80"
  bind: 3000
- address: "10.96.1.0/24:443"
  bind: 3001
accelerate: true
"#;
        let raw: RawEbpf = yaml_serde::from_str(y).expect("parses");
        assert_eq!(raw.mode, RawEbpfMode::Required);
        assert_eq!(raw.steer.len(), 2);
        assert_eq!(raw.steer[1].bind, 3001);
        assert!(raw.accelerate);
        assert_eq!(
            raw.node_address,
            vec!["10.0.0.5".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn defaults_to_auto_and_rejects_unknown_fields() {
        let raw: RawEbpf = yaml_serde::from_str("{}").expect("parses");
        assert_eq!(raw.mode, RawEbpfMode::Auto);
        assert!(!raw.accelerate);
        let err = yaml_serde::from_str::<RawEbpf>("mode: auto\nsteering: []").unwrap_err();
        assert!(err.to_string().contains("steering"), "{err}");
        assert!(yaml_serde::from_str::<RawEbpf>("mode: maybe").is_err());
    }
}
