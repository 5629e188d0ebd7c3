//! Child processes of the benchmark (upstream, gateways, receiver, load tools) and what the
//! kernel says about them: CPU time from `/proc/<pid>/stat`, memory from `/proc/<pid>/status`,
//! the load average, and the open-file limit.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A child killed (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub name: &'static str,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> anyhow::Result<Proc> {
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc { name, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited (e.g. a port was taken).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!("{} exited early with {st}", self.name);
        }
        Ok(())
    }

    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_time(self.pid())
    }

    pub fn mem(&self) -> anyhow::Result<Mem> {
        mem(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so a gateway drains and exits cleanly.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, not yet reaped, so the pid cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ticks per second of `/proc/<pid>/stat` times.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process (all its threads).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu(&stat, clk_tck()).with_context(|| format!("parsing /proc/{pid}/stat"))
}

/// Time on CPU of a process's threads in nanoseconds, from the scheduler's own accounting
/// (`/proc/<pid>/task/*/schedstat`, first field), summed over the threads alive now: the
/// clock-tick `stat` times move in 10 ms steps, too coarse to compare a few µs per request.
/// Threads of the gateway live as long as it does, so deltas between two reads are exact.
pub fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("parsing {}", path.display()))?;
    }
    Ok(total)
}

/// Fields 14 and 15 (utime, stime), counted after the `)` that closes the command name
/// (which may itself contain spaces and parentheses).
fn parse_cpu(stat: &str, tck: f64) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / tck))
}

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Mem {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

pub fn mem(pid: u32) -> anyhow::Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(parse_mem(&status))
}

fn parse_mem(status: &str) -> Mem {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Raises the open-file limit (soft and, as root, hard) so 10k streams fit; children inherit.
pub fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    let target = libc::rlimit {
        rlim_cur: want.max(lim.rlim_cur),
        rlim_max: want.max(lim.rlim_max),
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &target) } == 0 {
        return Ok(target.rlim_cur);
    }
    // Not root: the soft limit can still go up to the hard one.
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } != 0 {
        bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    Ok(lim.rlim_max)
}

/// Blocking `GET path` with `connection: close`; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// Polls `GET path` until it answers 200, for at most `within`.
pub fn wait_http(
    addr: &str,
    path: &str,
    what: &str,
    proc: &mut Proc,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        proc.check_alive()?;
        if let Ok((200, _)) = http_get(addr, path) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not answer 200 on {addr}{path} within {within:?}")
}

/// Polls until something accepts TCP connections on `addr`.
pub fn wait_tcp(addr: &str, what: &str, proc: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        proc.check_alive()?;
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not listen on {addr} within 60 s")
}

/// One value of a Prometheus text exposition (summed over label sets), if present.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        // An empty float sum is -0.0; report it as 0.
        .sum::<f64>()
        + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fields_after_comm_with_spaces() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 99 1000 200";
        assert_eq!(parse_cpu(stat, 100.0), Some(Duration::from_secs(3)));
        assert_eq!(parse_cpu("garbage", 100.0), None);
    }

    #[test]
    fn mem_fields() {
        let m = parse_mem("Name:\tgw\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n");
        assert_eq!((m.rss_kib, m.hwm_kib), (10240, 20480));
        assert_eq!(m.rss_mib(), 10.0);
        assert_eq!(parse_mem("").rss_kib, 0);
    }

    #[test]
    fn metric_sum_over_labels() {
        let text = "# HELP x\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3\nx_total_other 9\n";
        assert_eq!(metric_sum(text, "x_total"), 5.0);
        assert_eq!(metric_sum(text, "missing"), 0.0);
    }

    #[test]
    fn cpu_of_self_is_readable() {
        let pid = std::process::id();
        assert!(cpu_time(pid).is_ok());
        assert!(mem(pid).expect("mem").rss_kib > 0);
    }
}
