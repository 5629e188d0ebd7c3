//! `/proc/self/mountinfo` (proc(5)), read just far enough to find where cgroup v2 is mounted.
//! Pure: the caller reads the file.
//!
//! That mount is the default steered cgroup (`config.ebpf.cgroup` unset): `/sys/fs/cgroup` on
//! unified hosts, `/sys/fs/cgroup/unified` on hybrid ones (cgroup v1 controllers under
//! `/sys/fs/cgroup`, where a fixed `/sys/fs/cgroup` finds no `cgroup.procs`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};

/// The fields of one mountinfo line that matter here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Directory of the filesystem mounted here: `/`, or the subtree of a bind mount.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
}

/// Parses `id parent major:minor root mount_point options [optional fields...] - fstype source
/// super_options`. `None` for a line that does not have that shape.
pub fn parse_line(line: &str) -> Option<Mount> {
    // The kernel separates fields with one space and escapes spaces inside them, so a mount
    // point containing " - " cannot be mistaken for the separator.
    let mut fields = line.split(' ');
    fields.next()?.parse::<u64>().ok()?;
    fields.next()?.parse::<u64>().ok()?;
    if !fields.next()?.contains(':') {
        return None;
    }
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    let _options = fields.next()?;
    fields.by_ref().find(|f| *f == "-")?;
    let fstype = fields.next().filter(|f| !f.is_empty())?;
    Some(Mount {
        root,
        mount_point,
        fstype: fstype.to_owned(),
    })
}

/// Undoes the kernel's `\ooo` octal escapes (it escapes space, tab, newline and backslash).
/// A backslash not followed by three octal digits stays as it is.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(&[d0, d1, d2]) = b.get(i + 1..i + 4)
            && [d0, d1, d2].iter().all(|d| (b'0'..=b'7').contains(d))
            && d0 <= b'3'
        {
            out.push((d0 - b'0') * 64 + (d1 - b'0') * 8 + (d2 - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Mount point of the cgroup v2 hierarchy: the first `cgroup2` mount of the whole hierarchy
/// (root `/`), else the first `cgroup2` mount at all. `None` when cgroup v2 is not mounted.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut first = None;
    for m in mountinfo.lines().filter_map(parse_line) {
        if m.fstype != "cgroup2" {
            continue;
        }
        if m.root == Path::new("/") {
            return Some(m.mount_point);
        }
        first.get_or_insert(m.mount_point);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        /// (root, mount point, fstype)
        type Fields = (&'static str, &'static str, &'static str);
        let table: &[(&str, Option<Fields>)] = &[
            (
                "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate",
                Some(("/", "/sys/fs/cgroup", "cgroup2")),
            ),
            // No optional fields (this machine's kind of line).
            (
                "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
                Some(("/", "/sys/fs/cgroup/unified", "cgroup2")),
            ),
            // Several optional fields.
            (
                "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 propagate_from:2 - ext3 /dev/root rw",
                Some(("/mnt1", "/mnt2", "ext3")),
            ),
            // Octal escapes: space, tab, newline, backslash; " - " inside a path.
            (
                r"50 29 0:40 /a\040b /mnt/my\040cg\011x\012y\134z rw - cgroup2 cgroup2 rw",
                Some(("/a b", "/mnt/my cg\tx\ny\\z", "cgroup2")),
            ),
            (
                r"51 29 0:41 / /mnt/a\040-\040b rw - tmpfs tmpfs rw",
                Some(("/", "/mnt/a - b", "tmpfs")),
            ),
            // Not an escape: kept as written.
            (
                r"52 29 0:42 / /mnt/x\9y\4000 rw - tmpfs tmpfs rw",
                Some(("/", r"/mnt/x\9y\4000", "tmpfs")),
            ),
            ("", None),
            ("not a mountinfo line", None),
            ("x 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw", None),
            ("29 23 0-26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw", None),
            (
                "29 23 0:26 / /sys/fs/cgroup rw shared:4 cgroup2 cgroup2 rw",
                None,
            ),
            ("29 23 0:26 / /sys/fs/cgroup rw -", None),
        ];
        for (line, want) in table {
            let got = parse_line(line);
            let want = want.map(|(root, mp, fs)| Mount {
                root: root.into(),
                mount_point: mp.into(),
                fstype: fs.into(),
            });
            assert_eq!(got, want, "{line:?}");
        }
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let unified = "22 1 254:0 / / rw - ext4 /dev/vda rw\n\
                       29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        // This machine: cgroup v1 controllers under a tmpfs at /sys/fs/cgroup.
        let hybrid = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                      31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        // A bind mount of a subtree listed before the whole hierarchy.
        let bind_first = "60 1 0:26 /kubepods.slice /pods ro - cgroup2 cgroup2 rw\n\
                          61 1 0:26 / /host/sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        let only_subtree = "60 1 0:26 /kubepods.slice /pods ro - cgroup2 cgroup2 rw\n";
        let escaped = "70 1 0:26 / /run/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        let v1_only = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                       32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let table: &[(&str, Option<&str>)] = &[
            (unified, Some("/sys/fs/cgroup")),
            (hybrid, Some("/sys/fs/cgroup/unified")),
            (bind_first, Some("/host/sys/fs/cgroup")),
            (only_subtree, Some("/pods")),
            (escaped, Some("/run/my cgroup")),
            (v1_only, None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(cgroup2_mount(text), want.map(PathBuf::from), "{text}");
        }
    }
}
