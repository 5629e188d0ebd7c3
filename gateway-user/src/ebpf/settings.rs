//! `config.ebpf` compiled and checked: steer rules parsed into prefixes, node addresses split
//! by family. Errors name the YAML path and the bad value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::config::ebpf::{RawEbpf, RawEbpfMode};

use super::EbpfError;

/// One steer rule: connections to `addr/prefix_len` port `port` go to gateway port `bind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteerRule {
    /// Network address (host bits cleared).
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub port: u16,
    pub bind: u16,
}

/// The validated `config.ebpf`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub mode: RawEbpfMode,
    /// The steered cgroup as configured. `None`: the loader attaches at the cgroup v2 mount
    /// read from `/proc/self/mountinfo` at start-up (see `mountinfo.rs`).
    pub cgroup: Option<PathBuf>,
    pub steer: Vec<SteerRule>,
    pub node_ip4: Option<Ipv4Addr>,
    pub node_ip6: Option<Ipv6Addr>,
    pub accelerate: bool,
}

impl Settings {
    /// Checks `raw` against the gateway's listener ports (a steer rule must name one of them,
    /// unless the list is empty).
    pub fn compile(raw: &RawEbpf, listen_ports: &[u16]) -> Result<Settings, EbpfError> {
        let mut steer = Vec::with_capacity(raw.steer.len());
        for (i, s) in raw.steer.iter().enumerate() {
            let mut rule = parse_address(&s.address).map_err(|why| EbpfError::Config {
                path: format!("config.ebpf.steer[{i}].address"),
                value: s.address.clone(),
                why,
            })?;
            if s.bind == 0 || (!listen_ports.is_empty() && !listen_ports.contains(&s.bind)) {
                return Err(EbpfError::Config {
                    path: format!("config.ebpf.steer[{i}].bind"),
                    value: s.bind.to_string(),
                    why: format!("not a gateway listener port (listeners: {listen_ports:?})"),
                });
            }
            rule.bind = s.bind;
            steer.push(rule);
        }
        let (mut node_ip4, mut node_ip6) = (None, None);
        for (i, a) in raw.node_address.iter().enumerate() {
            let dup = match a {
                IpAddr::V4(v4) => node_ip4.replace(*v4).is_some(),
                IpAddr::V6(v6) => node_ip6.replace(*v6).is_some(),
            };
            if dup || a.is_unspecified() {
                return Err(EbpfError::Config {
                    path: format!("config.ebpf.nodeAddress[{i}]"),
                    value: a.to_string(),
                    why: "give at most one IPv4 and one IPv6 address, not unspecified".into(),
                });
            }
        }
        if let Some(cg) = &raw.cgroup
            && !cg.is_absolute()
        {
            return Err(EbpfError::Config {
                path: "config.ebpf.cgroup".into(),
                value: cg.display().to_string(),
                why: "must be an absolute path to a cgroup v2 directory".into(),
            });
        }
        Ok(Settings {
            mode: raw.mode,
            cgroup: raw.cgroup.clone(),
            steer,
            node_ip4,
            node_ip6,
            accelerate: raw.accelerate,
        })
    }
}

/// Parses `ip:port`, `[ipv6]:port`, `cidr:port` or `[cidr6]:port`.
fn parse_address(s: &str) -> Result<SteerRule, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected ip:port or cidr:port".to_string())?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("bad port {port:?}"))?;
    let bracketed = host.starts_with('[');
    let host = if bracketed {
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .ok_or_else(|| "unbalanced brackets".to_string())?
    } else {
        host
    };
    let (ip, prefix) = match host.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (host, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| format!("bad IP address {ip:?}"))?;
    if ip.is_ipv6() && !bracketed {
        return Err("write IPv6 addresses in brackets: [fd00::1]:80".into());
    }
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("bad prefix length {p:?}"))?,
        None => max,
    };
    let addr = match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    };
    Ok(SteerRule {
        addr,
        prefix_len,
        port,
        bind: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ebpf::RawSteer;

    #[test]
    fn parses_address_forms() {
        let table: &[(&str, &str, u8, u16)] = &[
            ("10.96.0.10:80", "10.96.0.10", 32, 80),
            ("10.96.1.7/24:443", "10.96.1.0", 24, 443),
            ("0.0.0.0/0:8080", "0.0.0.0", 0, 8080),
            ("[fd00::1]:80", "fd00::1", 128, 80),
            ("[fd00::1/64]:80", "fd00::", 64, 80),
        ];
        for (input, addr, len, port) in table {
            let r = parse_address(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.addr, addr.parse::<IpAddr>().unwrap(), "{input}");
            assert_eq!((r.prefix_len, r.port), (*len, *port), "{input}");
        }
        for bad in [
            "10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "10.0.0.1/33:80",
            "fd00::1:80",
            "[fd00::1:80",
            "host:80",
        ] {
            assert!(parse_address(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn errors_name_the_yaml_path() {
        let raw = RawEbpf {
            steer: vec![
                RawSteer {
                    address: "10.0.0.1:80".into(),
                    bind: 3000,
                },
                RawSteer {
                    address: "nope".into(),
                    bind: 3000,
                },
            ],
            ..RawEbpf::default()
        };
        let err = Settings::compile(&raw, &[3000]).unwrap_err().to_string();
        assert!(
            err.contains("config.ebpf.steer[1].address") && err.contains("nope"),
            "{err}"
        );

        let raw = RawEbpf {
            steer: vec![RawSteer {
                address: "10.0.0.1:80".into(),
                bind: 4000,
            }],
            ..RawEbpf::default()
        };
        let err = Settings::compile(&raw, &[3000]).unwrap_err().to_string();
        assert!(
            err.contains("config.ebpf.steer[0].bind") && err.contains("4000"),
            "{err}"
        );
        assert!(Settings::compile(&raw, &[]).is_ok());
    }

    #[test]
    fn node_addresses_split_by_family() {
        let raw = RawEbpf {
            node_address: vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            ..RawEbpf::default()
        };
        let s = Settings::compile(&raw, &[]).unwrap();
        assert_eq!(s.node_ip4, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert!(s.node_ip6.is_some());
        let raw = RawEbpf {
            node_address: vec!["10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap()],
            ..RawEbpf::default()
        };
        assert!(Settings::compile(&raw, &[]).is_err());
    }
}
