//! Reading `/proc`: the one set of parsers the runtime and the tables share.
//!
//! Much of what is read here belongs to jailed processes, which are hostile:
//! a jail chooses its command names and arguments and names its mount
//! points. So every read is bounded, every parser is pure (it takes the
//! file's text and is tested on fixtures, hostile ones among them) and none
//! panics on garbage: a field it cannot parse is `None`, a line it cannot
//! parse is skipped. The proc root is a parameter ([`Proc`]), so the same
//! code reads a fixture tree in tests.
//!
//! `/proc/PID/stat` is parsed by the `procfs-core` crate, behind a check of
//! its shape ([`parse_stat`]). The other files have parsers of their own;
//! each says why `procfs-core` does not serve there.

use std::ffi::OsString;
use std::fmt::Display;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

pub use procfs_core::process::Stat;

/// What went wrong while reading a `/proc` file.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is longer than {limit} bytes: too many mounts to list", path.display())]
    TooLong { path: PathBuf, limit: usize },
}

/// At most this much of `/proc/PID/stat` (one line of about 50 numbers and
/// a command name of at most 64 bytes) is read.
pub const STAT_LIMIT: usize = 16 << 10;
/// At most this much of `/proc/PID/status` is read.
pub const STATUS_LIMIT: usize = 64 << 10;
/// At most this much of a command line is read (the rest is not shown).
pub const CMDLINE_LIMIT: usize = 64 << 10;
/// A mountinfo longer than this is refused. A jail can mount as much as it
/// likes in its own mount namespace; 16 MiB holds some 100,000 mounts.
pub const MOUNTINFO_LIMIT: usize = 16 << 20;
/// At most this much of the small files (`uid_map`, `comm`, `boot_id`,
/// `/proc/stat`, `/proc/locks`, `fib_trie`) is read.
pub const SMALL_LIMIT: usize = 1 << 20;

/// At most `limit` bytes of `path`, and whether there was more.
pub fn read_bounded(path: &Path, limit: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut buf)?;
    let truncated = buf.len() > limit;
    buf.truncate(limit);
    Ok((buf, truncated))
}

/// The complete lines among the first `limit` bytes of `path`: a line cut
/// by the limit is dropped, so it is never parsed as if it were whole.
fn read_lines(path: &Path, limit: usize) -> std::io::Result<String> {
    let (mut buf, truncated) = read_bounded(path, limit)?;
    if truncated {
        let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(end);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Parses `/proc/PID/stat`. The command name (field 2) may hold spaces,
/// parentheses and newlines: it ends at the last `)`.
///
/// `procfs-core` parses the fields, but slices the text by the positions
/// of the parentheses without checking them and panics on a line that is
/// not shaped like the kernel's (`(x) R`, `1 )(`, a multi-byte character
/// next to a parenthesis); so the shape is checked here first.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    use procfs_core::FromRead;
    let s = String::from_utf8_lossy(text);
    let t = s.trim().as_bytes();
    let open = t.iter().position(|b| *b == b'(')?;
    let close = t.iter().rposition(|b| *b == b')')?;
    let shaped = open > 0 && t[open - 1] == b' ' && close > open && t.get(close + 1) == Some(&b' ');
    if !shaped {
        return None;
    }
    Stat::from_read(t).ok()
}

/// The fields of `/proc/PID/status` that are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// As the kernel wrote it (it escapes a newline or backslash in it).
    pub name: Option<String>,
    /// `S (sleeping)`.
    pub state: Option<String>,
    /// Real, effective, saved, filesystem.
    pub uid: Option<[i64; 4]>,
    pub gid: Option<[i64; 4]>,
    /// `NSpid`: the pid in each pid namespace, outermost first.
    pub nspid: Vec<i64>,
    pub vm_rss_kb: Option<i64>,
    pub vm_size_kb: Option<i64>,
    pub threads: Option<i64>,
    pub cap_inh: Option<u64>,
    pub cap_prm: Option<u64>,
    pub cap_eff: Option<u64>,
    pub cap_bnd: Option<u64>,
    pub cap_amb: Option<u64>,
    pub no_new_privs: Option<i64>,
    pub seccomp: Option<i64>,
}

fn ids4(v: &str) -> Option<[i64; 4]> {
    let mut it = v.split_ascii_whitespace().map(|x| x.parse::<i64>().ok());
    Some([it.next()??, it.next()??, it.next()??, it.next()??])
}

fn kb(v: &str) -> Option<i64> {
    v.split_ascii_whitespace().next()?.parse().ok()
}

/// Parses `/proc/PID/status`; lines it does not know or cannot parse are
/// left as `None`.
///
/// Not `procfs-core`'s: it fails the whole file unless some forty fields
/// are there and parse, and cuts each line at its second `:`, so a process
/// named `a:b` would be shown as `a`.
pub fn parse_status(s: &str) -> Status {
    let mut st = Status::default();
    for line in s.lines() {
        let Some((key, raw)) = line.split_once(':') else {
            continue;
        };
        let v = raw.trim();
        let hex = || u64::from_str_radix(v, 16).ok();
        match key {
            // Only the tab after the colon is the kernel's.
            "Name" => st.name = Some(raw.strip_prefix('\t').unwrap_or(raw).to_string()),
            "State" => st.state = Some(v.to_string()),
            "Uid" => st.uid = ids4(v),
            "Gid" => st.gid = ids4(v),
            "NSpid" => {
                st.nspid = v
                    .split_ascii_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            }
            "VmRSS" => st.vm_rss_kb = kb(v),
            "VmSize" => st.vm_size_kb = kb(v),
            "Threads" => st.threads = v.parse().ok(),
            "CapInh" => st.cap_inh = hex(),
            "CapPrm" => st.cap_prm = hex(),
            "CapEff" => st.cap_eff = hex(),
            "CapBnd" => st.cap_bnd = hex(),
            "CapAmb" => st.cap_amb = hex(),
            "NoNewPrivs" => st.no_new_privs = v.parse().ok(),
            "Seccomp" => st.seccomp = v.parse().ok(),
            _ => {}
        }
    }
    st
}

/// `/proc/PID/cmdline`: the NUL-separated arguments joined by spaces (an
/// empty argument shows as an empty place, as in `ps`).
pub fn parse_cmdline(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.trim_end_matches('\0')
        .split('\0')
        .collect::<Vec<_>>()
        .join(" ")
}

/// `btime` of `/proc/stat`: boot time in UNIX seconds.
///
/// Not `procfs-core`'s `KernelStats`: it wants every `cpu` line, `ctxt` and
/// `processes` and the clock tick to give this one number.
pub fn parse_btime(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The inode of a namespace link target: `pid:[4026531836]` -> `4026531836`.
pub fn parse_ns_link(target: &str) -> Option<String> {
    let start = target.find(":[")? + 2;
    let end = target.rfind(']')?;
    target.get(start..end).map(str::to_string)
}

/// One line of `uid_map` / `gid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: i64,
    pub outside: i64,
    pub count: i64,
}

/// Parses `/proc/PID/uid_map` or `gid_map`.
pub fn parse_id_map(s: &str) -> Vec<IdMap> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_ascii_whitespace().map(|x| x.parse::<i64>().ok());
            Some(IdMap {
                inside: it.next()??,
                outside: it.next()??,
                count: it.next()??,
            })
        })
        .collect()
}

/// One line of `/proc/PID/mountinfo`, its escapes undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `major:minor` of the filesystem's device.
    pub device: String,
    /// The root of the mount within its filesystem.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options, as the kernel wrote them.
    pub options: String,
    pub fstype: String,
    pub source: String,
    /// Per-filesystem options, as the kernel wrote them.
    pub super_options: String,
}

impl MountEntry {
    /// Whether the mount, or its filesystem, is read-only.
    pub fn read_only(&self) -> bool {
        let ro = |o: &str| o.split(',').any(|x| x == "ro");
        ro(&self.options) || ro(&self.super_options)
    }
}

/// Undoes the kernel's octal escapes in mountinfo (`\040` space, `\011`
/// tab, `\012` newline, `\134` backslash). Anything else, a lone or
/// trailing backslash among it, is kept as it is.
pub fn unescape_octal(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let Some(byte) = octal_at(b, i) {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The byte escaped as `\NNN` at `b[i..]`, if there is one.
fn octal_at(b: &[u8], i: usize) -> Option<u8> {
    if b.get(i) != Some(&b'\\') {
        return None;
    }
    let digits = b.get(i + 1..i + 4)?;
    if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
    u8::try_from(v).ok()
}

fn unescape_path(s: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape_octal(s)))
}

fn unescape_text(s: &str) -> String {
    String::from_utf8_lossy(&unescape_octal(s)).into_owned()
}

/// Parses the text of a mountinfo file. Malformed lines are skipped.
///
/// Not `procfs-core`'s: it leaves the escapes in mount points, keeps the
/// options in a map (their order lost), drops a source named `none`, and
/// fails the whole file on one line it cannot parse.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // Fields are separated by single spaces: a space in a path is escaped.
    let (pre, post) = line.split_once(" - ")?;
    let mut f = pre.split(' ');
    let mount_id = f.next()?.parse().ok()?;
    let parent_id = f.next()?.parse().ok()?;
    let device = f.next()?.to_string();
    let root = unescape_path(f.next()?);
    let mount_point = unescape_path(f.next()?);
    let options = f.next()?.to_string();
    let mut p = post.split(' ');
    let fstype = unescape_text(p.next()?);
    let source = unescape_text(p.next()?);
    let super_options = p.next().unwrap_or("").to_string();
    Some(MountEntry {
        mount_id,
        parent_id,
        device,
        root,
        mount_point,
        options,
        fstype,
        source,
        super_options,
    })
}

/// Reads and parses a mountinfo file (normally `/proc/self/mountinfo`).
/// One longer than [`MOUNTINFO_LIMIT`] is refused rather than shown in part.
pub fn read_mountinfo(path: &Path) -> Result<Vec<MountEntry>, ProcError> {
    let (buf, truncated) =
        read_bounded(path, MOUNTINFO_LIMIT).map_err(|source| ProcError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if truncated {
        return Err(ProcError::TooLong {
            path: path.to_path_buf(),
            limit: MOUNTINFO_LIMIT,
        });
    }
    Ok(parse_mountinfo(&String::from_utf8_lossy(&buf)))
}

/// The topmost mount whose mount point is exactly `path`, if any.
pub fn mount_at<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// The local IPv4 addresses in `/proc/PID/net/fib_trie` (the `/32 host
/// LOCAL` leaves), loopback excluded, in order of appearance, deduplicated.
pub fn parse_fib_trie_local(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last: Option<&str> = None;
    for line in s.lines() {
        let t = line.trim_start();
        if let Some(ip) = t.strip_prefix("|-- ").or_else(|| t.strip_prefix("+-- ")) {
            last = ip.split_ascii_whitespace().next();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(ip) = last {
                if !ip.starts_with("127.") && !out.iter().any(|x| x == ip) {
                    out.push(ip.to_string());
                }
            }
        }
    }
    out
}

/// The pids holding a lock on inode `ino`, from the text of `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 08:02:5678 0 EOF`). Waiters (`->`
/// lines) are skipped.
///
/// Not `procfs-core`'s `Locks`: it reads a waiter's line as if the waiter
/// held the lock, and fails the whole table on one line it cannot parse.
pub fn parse_lock_holders(text: &str, ino: u64) -> Vec<i32> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1) == Some(&"->") {
                return None;
            }
            let (pid, id) = (f.get(4)?, f.get(5)?);
            let i: u64 = id.rsplit(':').next()?.parse().ok()?;
            (i == ino).then(|| pid.parse().ok())?
        })
        .collect()
}

/// One proc root (`/proc` on the host, a fixture tree in tests) and the
/// files under it. `pid` is a number or `self`.
#[derive(Debug, Clone, Copy)]
pub struct Proc<'a> {
    root: &'a Path,
}

impl<'a> Proc<'a> {
    pub fn new(root: &'a Path) -> Proc<'a> {
        Proc { root }
    }

    /// The host's `/proc`.
    pub fn host() -> Proc<'static> {
        Proc::new(Path::new("/proc"))
    }

    pub fn root(&self) -> &'a Path {
        self.root
    }

    pub fn pid_path(&self, pid: impl Display, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    /// A file of `pid` that must be read whole to be parsed: `None` when
    /// it cannot be read or is longer than `limit`.
    fn whole(&self, pid: impl Display, file: &str, limit: usize) -> Option<Vec<u8>> {
        match read_bounded(&self.pid_path(pid, file), limit) {
            Ok((b, false)) => Some(b),
            _ => None,
        }
    }

    fn lines(&self, path: &Path) -> Option<String> {
        read_lines(path, SMALL_LIMIT).ok()
    }

    /// `None` when the process is gone or its stat cannot be parsed.
    pub fn stat(&self, pid: impl Display) -> Option<Stat> {
        parse_stat(&self.whole(pid, "stat", STAT_LIMIT)?)
    }

    /// `None` when the process is gone.
    pub fn status(&self, pid: impl Display) -> Option<Status> {
        let b = self.whole(pid, "status", STATUS_LIMIT)?;
        Some(parse_status(&String::from_utf8_lossy(&b)))
    }

    /// The command line, cut at [`CMDLINE_LIMIT`] bytes; `None` when the
    /// process is gone.
    pub fn cmdline(&self, pid: impl Display) -> Option<String> {
        let (b, _) = read_bounded(&self.pid_path(pid, "cmdline"), CMDLINE_LIMIT).ok()?;
        Some(parse_cmdline(&b))
    }

    /// The command name (`comm`), as the process set it.
    pub fn comm(&self, pid: impl Display) -> Option<String> {
        let (b, _) = read_bounded(&self.pid_path(pid, "comm"), 256).ok()?;
        let s = String::from_utf8_lossy(&b);
        Some(s.strip_suffix('\n').unwrap_or(&s).to_string())
    }

    /// The inode of namespace `kind` (`pid`, `mnt`, ...).
    pub fn ns(&self, pid: impl Display, kind: &str) -> Option<String> {
        let target = std::fs::read_link(self.pid_path(pid, "ns").join(kind)).ok()?;
        parse_ns_link(&target.to_string_lossy())
    }

    /// `uid_map` or `gid_map` (`file`) of `pid`.
    pub fn id_map(&self, pid: impl Display, file: &str) -> Result<Vec<IdMap>, ProcError> {
        let path = self.pid_path(pid, file);
        read_lines(&path, SMALL_LIMIT)
            .map(|s| parse_id_map(&s))
            .map_err(|source| ProcError::Read { path, source })
    }

    /// The mounts `pid` sees, paths as seen from its root.
    pub fn mountinfo(&self, pid: impl Display) -> Result<Vec<MountEntry>, ProcError> {
        read_mountinfo(&self.pid_path(pid, "mountinfo"))
    }

    /// The local IPv4 addresses of `pid`'s network namespace (see
    /// [`parse_fib_trie_local`]).
    pub fn local_addresses(&self, pid: impl Display) -> Vec<String> {
        self.lines(&self.pid_path(pid, "net/fib_trie"))
            .map(|s| parse_fib_trie_local(&s))
            .unwrap_or_default()
    }

    /// Boot time in UNIX seconds.
    pub fn btime(&self) -> Option<u64> {
        parse_btime(&self.lines(&self.root.join("stat"))?)
    }

    /// The boot id of the running kernel.
    pub fn boot_id(&self) -> Option<String> {
        let s = self.lines(&self.root.join("sys/kernel/random/boot_id"))?;
        Some(s.trim().to_string())
    }

    /// The pids holding a lock on inode `ino` (see [`parse_lock_holders`]).
    pub fn lock_holders(&self, ino: u64) -> Vec<i32> {
        self.lines(&self.root.join("locks"))
            .map(|s| parse_lock_holders(&s, ino))
            .unwrap_or_default()
    }
}

/// Clock ticks per second, for `/proc` times.
pub fn clk_tck() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(v)) if v > 0 => v as u64,
        _ => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line like the kernel's: 52 fields, `comm` as given.
    fn stat_line(comm: &str) -> String {
        let mut f: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        f[0] = "S".into();
        f[20 - 3] = "2".into();
        format!("11401 ({comm}) {}\n", f.join(" "))
    }

    #[test]
    fn stat_fields_by_number() {
        let st = parse_stat(stat_line("sleep").as_bytes()).expect("stat");
        assert_eq!(st.comm, "sleep");
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 4);
        assert_eq!((st.utime, st.stime), (14, 15));
        assert_eq!(st.num_threads, 2);
        assert_eq!(st.starttime, 22);
        assert_eq!(st.vsize, 23);
    }

    #[test]
    fn stat_comm_with_parentheses_spaces_and_newlines() {
        for comm in ["a) b (c", ") S 1 2 (", "x\ny) R", "é(", ")é", "  "] {
            let st = parse_stat(stat_line(comm).as_bytes()).expect(comm);
            assert_eq!(st.comm, comm);
            assert_eq!((st.state, st.starttime), ('S', 22), "{comm:?}");
        }
    }

    #[test]
    fn stat_garbage_is_none_not_a_panic() {
        let long = stat_line("x");
        for bad in [
            "",
            "12 (x) R",
            "(x) R 1 2 3",
            "1 )x( R 1",
            "1 (x)",
            "1 (x)é 1 2",
            "é(x) R 1",
            "1é(x) R 1",
            "no parentheses at all",
            &long[..long.len() / 2],
            "\u{0}\u{0}(\u{0})",
        ] {
            assert!(parse_stat(bad.as_bytes()).is_none(), "{bad:?}");
        }
        assert!(parse_stat(b"\xff\xfe (\xff) S").is_none());
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tsleep\nState:\tS (sleeping)\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t6\t7\t8\nNSpid:\t4242\t7\nVmSize:\t    3060 kB\nVmRSS:\t    1668 kB\nThreads:\t1\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
        let st = parse_status(s);
        assert_eq!(st.name.as_deref(), Some("sleep"));
        assert_eq!(st.state.as_deref(), Some("S (sleeping)"));
        assert_eq!(st.uid, Some([1000, 1001, 1002, 1003]));
        assert_eq!(st.gid, Some([5, 6, 7, 8]));
        assert_eq!(st.nspid, vec![4242, 7]);
        assert_eq!((st.vm_size_kb, st.vm_rss_kb), (Some(3060), Some(1668)));
        assert_eq!(st.cap_eff, Some(0xa80425fb));
        assert_eq!(st.cap_bnd, Some(0x1ff_ffff_ffff));
        assert_eq!((st.no_new_privs, st.seccomp), (Some(1), Some(2)));
        assert_eq!(parse_status("garbage").uid, None);
    }

    #[test]
    fn status_name_keeps_colons_and_spaces() {
        let st = parse_status("Name:\tUid: 0 (root) \nUid:\t1\t2\t3\t4\n");
        assert_eq!(st.name.as_deref(), Some("Uid: 0 (root) "));
        assert_eq!(st.uid, Some([1, 2, 3, 4]));
    }

    #[test]
    fn status_garbage_leaves_fields_unset() {
        let st = parse_status("Uid:\t1\t2\nGid:\tx y z w\nThreads:\t-\nCapEff:\tzz\n:\n\n::::\n");
        assert_eq!(st, Status::default());
    }

    #[test]
    fn small_files() {
        assert_eq!(parse_cmdline(b"/bin/sleep\x00100\x00"), "/bin/sleep 100");
        assert_eq!(parse_cmdline(b"a\x00\x00b\x00"), "a  b");
        assert_eq!(parse_cmdline(b"\xff\x00x"), "\u{fffd} x");
        assert_eq!(parse_cmdline(b""), "");
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1795576299\nprocesses 5\n"),
            Some(1795576299)
        );
        assert_eq!(parse_btime("btime x\n"), None);
        assert_eq!(
            parse_ns_link("pid:[4026531836]").as_deref(),
            Some("4026531836")
        );
        assert_eq!(parse_ns_link("garbage"), None);
        assert_eq!(parse_ns_link("]x:["), None);
        assert_eq!(
            parse_id_map("         0  268435456      65536\n  bad\n1 2\n"),
            vec![IdMap {
                inside: 0,
                outside: 268435456,
                count: 65536
            }]
        );
    }

    const FIXTURE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
35 22 0:33 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
80 22 7:3 / /var/lib/jailer rw,noatime shared:40 - btrfs /dev/loop3 rw,space_cache=v2,subvolid=5,subvol=/
81 22 7:4 /sub /srv/my\\040pool ro,noatime - btrfs /dev/loop4 ro,subvolid=256,subvol=/sub
82 22 0:5 / /proc rw,nosuid master:1 propagate_from:2 - proc proc ro
garbage line
";

    #[test]
    fn mountinfo_fields_and_escapes() {
        let m = parse_mountinfo(FIXTURE);
        assert_eq!(m.len(), 5);
        assert_eq!(m[2].mount_point, PathBuf::from("/var/lib/jailer"));
        assert_eq!(m[2].fstype, "btrfs");
        assert_eq!(m[2].source, "/dev/loop3");
        assert_eq!(m[2].device, "7:3");
        assert_eq!(m[2].options, "rw,noatime");
        assert_eq!(m[2].super_options, "rw,space_cache=v2,subvolid=5,subvol=/");
        assert!(!m[2].read_only());
        assert_eq!(m[3].mount_point, PathBuf::from("/srv/my pool"));
        assert_eq!(m[3].root, PathBuf::from("/sub"));
        assert!(m[3].read_only());
        // Read-only through its filesystem, not the mount.
        assert!(m[4].read_only());
        assert_eq!((m[0].mount_id, m[0].parent_id), (22, 1));
    }

    #[test]
    fn mount_at_finds_the_exact_point() {
        let m = parse_mountinfo(FIXTURE);
        assert_eq!(
            mount_at(&m, Path::new("/var/lib/jailer")).map(|e| e.source.as_str()),
            Some("/dev/loop3")
        );
        assert!(mount_at(&m, Path::new("/var/lib")).is_none());
    }

    #[test]
    fn mountinfo_hostile_paths_are_decoded_not_split() {
        // A jail's mount point with a space, a newline, a tab, a backslash
        // and a fake " - " field separator in it, as the kernel escapes it.
        let s = "40 1 0:50 /a\\134b /x\\040-\\040tmpfs\\012evil\\011t rw - tmpfs my\\040src rw\n";
        let m = parse_mountinfo(s);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].root, PathBuf::from("/a\\b"));
        assert_eq!(m[0].mount_point, PathBuf::from("/x - tmpfs\nevil\tt"));
        assert_eq!(m[0].source, "my src");
        assert_eq!(m[0].fstype, "tmpfs");
        // A non-UTF-8 path stays exact.
        let m = parse_mountinfo("40 1 0:50 / /\\377 rw - tmpfs t rw\n");
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(m[0].mount_point.as_os_str().as_bytes(), b"/\xff");
    }

    #[test]
    fn octal_escapes_only_when_complete_and_in_range() {
        assert_eq!(unescape_octal("a\\134b\\"), b"a\\b\\");
        assert_eq!(unescape_octal("\\040"), b" ");
        assert_eq!(unescape_octal("\\04"), b"\\04");
        assert_eq!(unescape_octal("\\400"), b"\\400");
        assert_eq!(unescape_octal("\\+12"), b"\\+12");
        assert_eq!(unescape_octal("\\089"), b"\\089");
        assert_eq!(unescape_octal("\\\\040"), b"\\ ");
        assert_eq!(unescape_octal("\\é"), "\\é".as_bytes());
    }

    #[test]
    fn mountinfo_truncated_and_garbage_lines_are_skipped() {
        let s = "\
1 2 3:4 / /ok rw - ext4 /dev/a rw
1 2 3:4 / /no-separator rw ext4 /dev/a rw
1 2 3:4 / /cut rw - ext4
x 2 3:4 / /bad-id rw - ext4 /dev/a rw
1 2 3:4 / - ext4 /dev/a rw
 - 
-
1 2 3:4 / /no-super rw - ext4 /dev/a
\u{0}\u{1}\u{2}
";
        let m = parse_mountinfo(s);
        let points: Vec<_> = m.iter().map(|e| e.mount_point.clone()).collect();
        assert_eq!(points, [PathBuf::from("/ok"), PathBuf::from("/no-super")]);
        assert_eq!(m[1].super_options, "");
    }

    #[test]
    fn over_long_mountinfo_is_refused_and_long_lines_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("mountinfo");
        // One line with a 64 KiB mount point parses whole.
        let long = format!("/{}", "a".repeat(64 << 10));
        std::fs::write(&p, format!("1 2 3:4 / {long} rw - ext4 /dev/a rw\n")).expect("write");
        let m = read_mountinfo(&p).expect("read");
        assert_eq!(m[0].mount_point, PathBuf::from(&long));
        // Past the limit: refused, not shown in part.
        let f = std::fs::File::create(&p).expect("create");
        f.set_len(MOUNTINFO_LIMIT as u64 + 1).expect("grow");
        let e = read_mountinfo(&p).expect_err("too long");
        assert!(matches!(e, ProcError::TooLong { limit, .. } if limit == MOUNTINFO_LIMIT));
        let e = read_mountinfo(&dir.path().join("nope")).expect_err("missing");
        assert!(
            matches!(&e, ProcError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn bounded_reads_cut_at_the_limit_and_drop_a_cut_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, "0 100 10\n1 200 20\n").expect("write");
        assert_eq!(
            read_bounded(&p, 100).expect("read"),
            (b"0 100 10\n1 200 20\n".to_vec(), false)
        );
        assert_eq!(read_bounded(&p, 4).expect("read"), (b"0 10".to_vec(), true));
        // The second line, cut to "1 2", is not parsed as a line.
        assert_eq!(read_lines(&p, 12).expect("read"), "0 100 10\n");
        assert_eq!(read_lines(&p, 3).expect("read"), "");
    }

    /// A fixture proc root with one process.
    fn fixture(pid: i32, comm: &str, cmdline: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join(pid.to_string());
        std::fs::create_dir_all(d.join("ns")).expect("mkdir");
        std::fs::write(d.join("stat"), stat_line(comm)).expect("write");
        std::fs::write(d.join("status"), format!("Name:\t{comm}\nThreads:\t2\n")).expect("write");
        std::fs::write(d.join("comm"), format!("{comm}\n")).expect("write");
        std::fs::write(d.join("cmdline"), cmdline).expect("write");
        std::os::unix::fs::symlink("pid:[4026531836]", d.join("ns/pid")).expect("symlink");
        std::fs::create_dir_all(dir.path().join("sys/kernel/random")).expect("mkdir");
        std::fs::write(dir.path().join("sys/kernel/random/boot_id"), "b-1\n").expect("write");
        std::fs::write(dir.path().join("stat"), "cpu 1\nbtime 17\n").expect("write");
        dir
    }

    #[test]
    fn readers_under_a_fixture_root() {
        let dir = fixture(7, "a b", b"/bin/a\x00b\x00");
        let p = Proc::new(dir.path());
        assert_eq!(p.stat(7).map(|s| s.comm), Some("a b".into()));
        assert_eq!(p.status(7).and_then(|s| s.threads), Some(2));
        assert_eq!(p.comm(7).as_deref(), Some("a b"));
        assert_eq!(p.cmdline(7).as_deref(), Some("/bin/a b"));
        assert_eq!(p.ns(7, "pid").as_deref(), Some("4026531836"));
        assert_eq!(p.ns(7, "net"), None);
        assert_eq!(p.boot_id().as_deref(), Some("b-1"));
        assert_eq!(p.btime(), Some(17));
        assert!(p.stat(8).is_none() && p.status(8).is_none() && p.cmdline(8).is_none());
        assert!(p.mountinfo(8).is_err());
        assert!(p.local_addresses(7).is_empty());
    }

    #[test]
    fn over_long_stat_is_none_and_cmdline_is_cut() {
        let huge = vec![b'x'; CMDLINE_LIMIT + 10];
        let dir = fixture(7, "a", &huge);
        let p = Proc::new(dir.path());
        assert_eq!(p.cmdline(7).map(|c| c.len()), Some(CMDLINE_LIMIT));
        let mut stat = stat_line("a");
        stat.push_str(&" 0".repeat(STAT_LIMIT));
        std::fs::write(p.pid_path(7, "stat"), stat).expect("write");
        assert!(p.stat(7).is_none());
    }

    #[test]
    fn real_self_stat_and_status() {
        let p = Proc::host();
        let st = p.stat("self").expect("own stat");
        assert!(st.num_threads >= 1);
        assert!(p.status("self").and_then(|s| s.uid).is_some());
        assert!(!p.mountinfo("self").expect("own mountinfo").is_empty());
    }

    #[test]
    fn lock_holders_skip_waiters() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 5151 00:2f:1234 0 EOF\n\
                    2: POSIX  ADVISORY  READ 99 fd:00:1234 0 EOF\n\
                    3: OFDLCK ADVISORY  READ  -1 00:06:1028 0 EOF\n\
                    garbage\n";
        assert_eq!(parse_lock_holders(text, 1234), vec![4242, 99]);
        assert!(parse_lock_holders(text, 1235).is_empty());
    }

    #[test]
    fn fib_trie_locals() {
        let s = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\n     |-- 192.0.2.10\n        /32 host LOCAL\nLocal:\n     |-- 192.0.2.10\n        /32 host LOCAL\n";
        assert_eq!(parse_fib_trie_local(s), vec!["192.0.2.10".to_string()]);
    }
}
