//! Can this machine run the kernel programs? And where are the cgroups?
//!
//! Every check returns the one-line reason that ends up in the log and in
//! `agentgateway_ebpf_enabled{reason}` when eBPF is disabled.

use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::mountinfo;

/// Environment override that makes `start` behave as if BPF were unavailable, with the given
/// reason. For tests and for operators who want to rule the kernel side out quickly.
pub const FORCE_UNAVAILABLE_ENV: &str = "GATEWAY_EBPF_FORCE_UNAVAILABLE";

/// Why `build.rs` left the object empty: `AYA_BUILD_SKIP=1`, or the eBPF toolchain was missing
/// (then what, and how to install it). Empty when the object was built.
const NOT_BUILT: &str = env!("GATEWAY_EBPF_NOT_BUILT");

const MOUNTINFO: &str = "/proc/self/mountinfo";
const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Why eBPF cannot run here, or `None` when the preconditions hold.
pub fn unavailable_reason(object: &[u8]) -> Option<String> {
    if let Ok(reason) = std::env::var(FORCE_UNAVAILABLE_ENV) {
        let reason = if reason.is_empty() {
            "forced".into()
        } else {
            reason
        };
        return Some(format!("{FORCE_UNAVAILABLE_ENV}={reason}"));
    }
    if object.is_empty() {
        // `NOT_BUILT` is empty only when the object was built: then only a test gets here.
        let why = if NOT_BUILT.is_empty() {
            "eBPF object not built"
        } else {
            NOT_BUILT
        };
        return Some(why.into());
    }
    match effective_caps() {
        Some(caps) => {
            let has = |c: u32| caps & (1u64 << c) != 0;
            if !(has(CAP_BPF) || has(CAP_SYS_ADMIN)) || !(has(CAP_NET_ADMIN) || has(CAP_SYS_ADMIN))
            {
                return Some("missing CAP_BPF and CAP_NET_ADMIN (not root)".into());
            }
        }
        None => return Some("cannot read capabilities from /proc/self/status".into()),
    }
    if !Path::new(BTF_VMLINUX).exists() {
        return Some(format!("kernel BTF not available ({BTF_VMLINUX} missing)"));
    }
    if let Err(reason) = find_cgroup2_mount() {
        return Some(reason);
    }
    None
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup` or, on hybrid hosts,
/// `/sys/fs/cgroup/unified`), from the mount table.
pub fn cgroup2_mount() -> Option<PathBuf> {
    find_cgroup2_mount().ok()
}

/// [`cgroup2_mount`], or the one-line reason eBPF is off without it.
pub fn find_cgroup2_mount() -> Result<PathBuf, String> {
    let info =
        std::fs::read_to_string(MOUNTINFO).map_err(|e| format!("cannot read {MOUNTINFO}: {e}"))?;
    cgroup2_mount_in(&info)
}

fn cgroup2_mount_in(mountinfo: &str) -> Result<PathBuf, String> {
    mountinfo::cgroup2_mount(mountinfo)
        .ok_or_else(|| format!("cgroup v2 is not mounted (no cgroup2 entry in {MOUNTINFO})"))
}

/// The cgroup v2 directory this process is in.
pub fn own_cgroup() -> Option<PathBuf> {
    let mount = cgroup2_mount()?;
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(rel.trim_start_matches('/')))
}

/// cgroup v2 id of a cgroup directory: its inode number, as `bpf_get_current_cgroup_id` sees it.
pub fn cgroup_id(dir: &Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(dir)?.ino())
}

/// Whether `inner` is `outer` or one of its descendants.
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

/// Cookie of this process's network namespace (`SO_NETNS_COOKIE`, Linux 5.14+), the value
/// `bpf_get_netns_cookie` returns for sockets in it.
pub fn own_netns_cookie() -> std::io::Result<u64> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd, out pointer and length of a u64.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_cgroup2_mount_the_reason_says_so() {
        let v1_only = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                       32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            cgroup2_mount_in(v1_only),
            Err("cgroup v2 is not mounted (no cgroup2 entry in /proc/self/mountinfo)".into())
        );
        let hybrid =
            format!("{v1_only}41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            cgroup2_mount_in(&hybrid),
            Ok(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn nested_cgroups() {
        assert!(is_within(Path::new("/cg/pods/a"), Path::new("/cg/pods")));
        assert!(is_within(Path::new("/cg/pods"), Path::new("/cg/pods")));
        assert!(!is_within(Path::new("/cg/podsx"), Path::new("/cg/pods")));
        assert!(!is_within(Path::new("/cg/gw"), Path::new("/cg/pods")));
    }

    #[test]
    fn empty_object_is_reported() {
        // Only meaningful without the override set by the environment.
        if std::env::var_os(FORCE_UNAVAILABLE_ENV).is_none() {
            let reason = unavailable_reason(b"").expect("empty object is unavailable");
            assert!(reason.contains("not built"), "{reason}");
        }
    }
}
