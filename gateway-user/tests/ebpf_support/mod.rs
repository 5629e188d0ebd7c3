//! Shared harness of the eBPF integration tests: a tiny test runner (harness = false), test
//! cgroups that clean up after themselves, the re-exec'd client process and bpftool queries.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use gateway::ebpf::probe;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;
pub type TestFn = fn() -> TestResult;

/// Runs `tests` (or one child `roles` entry when `EBPF_TEST_ROLE` is set). A free argument
/// filters tests by substring, as libtest does.
pub fn run_main(tests: &[(&str, TestFn)], roles: &[(&str, TestFn)]) -> ExitCode {
    if let Ok(role) = std::env::var("EBPF_TEST_ROLE") {
        let f = if role == "client" {
            Some(client_main as TestFn)
        } else {
            roles.iter().find(|(n, _)| *n == role).map(|(_, f)| *f)
        };
        return match f.map(|f| f()) {
            Some(Ok(())) => ExitCode::SUCCESS,
            Some(Err(e)) => {
                eprintln!("role {role} failed: {e}");
                ExitCode::FAILURE
            }
            None => {
                eprintln!("unknown role {role}");
                ExitCode::FAILURE
            }
        };
    }
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("GATEWAY_EBPF_TESTS_ALLOW_SKIP").is_ok_and(|v| v == "1") {
            println!("SKIP: eBPF tests need root (GATEWAY_EBPF_TESTS_ALLOW_SKIP=1)");
            return ExitCode::SUCCESS;
        }
        eprintln!("FAIL: eBPF tests need root; set GATEWAY_EBPF_TESTS_ALLOW_SKIP=1 to skip");
        return ExitCode::FAILURE;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|flt| !name.contains(flt)) {
            continue;
        }
        ran += 1;
        let started = std::time::Instant::now();
        let res = std::panic::catch_unwind(f);
        match res {
            Ok(Ok(())) => println!("test {name} ... ok ({:?})", started.elapsed()),
            Ok(Err(e)) => {
                println!("test {name} ... FAILED: {e}");
                failed.push(*name);
            }
            Err(_) => {
                println!("test {name} ... FAILED (panicked)");
                failed.push(*name);
            }
        }
    }
    println!("{ran} tests, {} failed {failed:?}", failed.len());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A private cgroup tree for one test:
/// `<cgroup2>/gw-ebpf-test-<pid>-<name>/{pods/<apps>, gateway, outside}`.
/// `pods` is what the programs attach to; the test process itself moves into `gateway`.
pub struct Cgroups {
    pub root: PathBuf,
    pub pods: PathBuf,
    pub gateway: PathBuf,
    pub outside: PathBuf,
    original: PathBuf,
    apps: std::cell::RefCell<Vec<PathBuf>>,
    entered: std::cell::Cell<bool>,
}

impl Cgroups {
    pub fn create(name: &str) -> Result<Cgroups, Box<dyn std::error::Error>> {
        let mount = probe::cgroup2_mount().ok_or("cgroup v2 not mounted")?;
        let original = probe::own_cgroup().ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
        let root = mount.join(format!("gw-ebpf-test-{}-{name}", std::process::id()));
        let cg = Cgroups {
            pods: root.join("pods"),
            gateway: root.join("gateway"),
            outside: root.join("outside"),
            root,
            original,
            apps: Default::default(),
            entered: Default::default(),
        };
        for d in [&cg.root, &cg.pods, &cg.gateway, &cg.outside] {
            std::fs::create_dir(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        Ok(cg)
    }

    /// A child cgroup of `pods` for one app process.
    pub fn app(&self, name: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
        let p = self.pods.join(name);
        std::fs::create_dir(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
        self.apps.borrow_mut().push(p.clone());
        Ok(p)
    }

    /// Moves this (test) process into the `gateway` cgroup.
    pub fn enter_gateway(&self) -> TestResult {
        join_cgroup(&self.gateway)?;
        self.entered.set(true);
        Ok(())
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        if self.entered.get() {
            let _ = join_cgroup(&self.original);
        }
        let mut dirs: Vec<PathBuf> = self.apps.borrow().clone();
        dirs.extend([
            self.pods.clone(),
            self.gateway.clone(),
            self.outside.clone(),
            self.root.clone(),
        ]);
        for d in dirs {
            // rmdir fails for a short while after the last process left.
            for _ in 0..50 {
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

pub fn join_cgroup(dir: &Path) -> TestResult {
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
        .map_err(|e| format!("joining {}: {e}", dir.display()))?;
    Ok(())
}

/// What a client process saw.
#[derive(Debug)]
pub struct ClientOut {
    pub local_port: u16,
    pub lines: Vec<String>,
}

/// Runs a client process in `cgroup`: it connects to `target`, sends `rounds` lines
/// (`ping <i>`) and prints each reply.
pub fn spawn_client(
    cgroup: &Path,
    target: &str,
    rounds: usize,
) -> Result<ClientOut, Box<dyn std::error::Error>> {
    let out = Command::new(std::env::current_exe()?)
        .env("EBPF_TEST_ROLE", "client")
        .env("EBPF_CG", cgroup)
        .env("EBPF_TARGET", target)
        .env("EBPF_ROUNDS", rounds.to_string())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "client to {target} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut lines = stdout.lines();
    let local: std::net::SocketAddr = lines
        .next()
        .and_then(|l| l.strip_prefix("LOCAL "))
        .ok_or("client printed no LOCAL line")?
        .parse()?;
    Ok(ClientOut {
        local_port: local.port(),
        lines: lines.map(str::to_owned).collect(),
    })
}

/// The client role: join the cgroup first, then do network I/O.
fn client_main() -> TestResult {
    let cg = std::env::var("EBPF_CG")?;
    join_cgroup(Path::new(&cg))?;
    let target: std::net::SocketAddr = std::env::var("EBPF_TARGET")?.parse()?;
    let rounds: usize = std::env::var("EBPF_ROUNDS")?.parse()?;
    let sock = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    println!("LOCAL {}", sock.local_addr()?);
    let mut reader = BufReader::new(sock.try_clone()?);
    let mut w = sock;
    for i in 0..rounds {
        w.write_all(format!("ping {i}\n").as_bytes())?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        println!("{}", line.trim_end());
    }
    Ok(())
}

/// Programs attached directly to a cgroup, as `attach_type:name`, from `bpftool cgroup show`.
pub fn bpftool_cgroup_progs(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let out = Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(dir)
        .output()
        .map_err(|e| format!("running bpftool: {e}"))?;
    if !out.status.success() {
        return Err(format!("bpftool: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    format!(
                        "{}:{}",
                        p["attach_type"].as_str().unwrap_or("?"),
                        p["name"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}
