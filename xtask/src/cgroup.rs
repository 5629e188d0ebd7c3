//! Throw-away cgroup v2 trees for benchmarks and the node simulation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use gateway::ebpf::probe;

/// `<cgroup2>/<name>-<pid>/` with child directories created on demand; removed on drop after
/// this process moved back to where it came from.
pub struct CgroupTree {
    pub root: PathBuf,
    original: PathBuf,
    dirs: Vec<PathBuf>,
    entered: bool,
}

impl CgroupTree {
    pub fn create(name: &str) -> anyhow::Result<CgroupTree> {
        let mount = probe::cgroup2_mount().context("cgroup v2 not mounted")?;
        let original = probe::own_cgroup().context("no cgroup v2 entry in /proc/self/cgroup")?;
        let root = mount.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&root).with_context(|| format!("mkdir {}", root.display()))?;
        Ok(CgroupTree {
            root,
            original,
            dirs: Vec::new(),
            entered: false,
        })
    }

    /// Creates `<root>/<rel>` (parents first).
    pub fn dir(&mut self, rel: &str) -> anyhow::Result<PathBuf> {
        let mut p = self.root.clone();
        for part in rel.split('/') {
            p = p.join(part);
            if !p.exists() {
                std::fs::create_dir(&p).with_context(|| format!("mkdir {}", p.display()))?;
                self.dirs.push(p.clone());
            }
        }
        Ok(p)
    }

    /// Moves this process into `dir` (moved back on drop).
    pub fn enter(&mut self, dir: &Path) -> anyhow::Result<()> {
        join(dir)?;
        self.entered = true;
        Ok(())
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        if self.entered {
            let _ = join(&self.original);
        }
        for d in self.dirs.iter().rev().chain(std::iter::once(&self.root)) {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Writes this process's pid into `dir/cgroup.procs`.
pub fn join(dir: &Path) -> anyhow::Result<()> {
    if !dir.join("cgroup.procs").exists() {
        bail!("{} is not a cgroup", dir.display());
    }
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
        .with_context(|| format!("joining {}", dir.display()))
}
