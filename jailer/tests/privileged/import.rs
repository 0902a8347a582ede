//! Importing templates: `copy::copy_tree` and `archive::unpack` keep every
//! piece of a root filesystem's metadata (types, numeric owners, full modes,
//! nanosecond times, hard links, xattrs, file capabilities) and never write
//! outside their destination.
//!
//! The fixture is checked twice: entry by entry against a snapshot of the
//! source, and property by property against what it was built to hold, so a
//! fixture step that silently did nothing cannot make a test pass.

use jailer::archive::{self, ArchiveError, Compression};
use jailer::copy::{self, TreeStats};
use libtest_mimic::Trial;
use nix::sys::stat::{major, makedev, minor, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{lchown, symlink, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn trials() -> Vec<Trial> {
    vec![
        trial("copy_plain_to_btrfs", copy_plain_to_btrfs),
        trial("copy_btrfs_to_btrfs_reflinks", copy_btrfs_to_btrfs_reflinks),
        trial("copy_refuses_destination_inside_source", copy_into_itself),
        trial("tar_roundtrip_plain", || {
            tar_roundtrip(None, "t.tar", Compression::None)
        }),
        trial("tar_roundtrip_gzip_sniffed_without_extension", || {
            tar_roundtrip(Some("-z"), "template.img", Compression::Gzip)
        }),
        trial("tar_roundtrip_zstd", || {
            tar_roundtrip(Some("--zstd"), "t.tar.zst", Compression::Zstd)
        }),
        trial("archive_dotdot_entry_refused", dotdot_refused),
        trial("archive_absolute_entry_refused", absolute_refused),
        trial(
            "archive_entry_through_symlink_refused",
            through_symlink_refused,
        ),
        trial(
            "archive_hard_link_outside_refused",
            hard_link_outside_refused,
        ),
        trial("not_an_archive_is_unknown_format", not_an_archive),
        trial("tree_stats_counts_hard_links_once", tree_stats_counts),
    ]
}

fn trial(name: &str, body: fn() -> Result<(), String>) -> Trial {
    Trial::test(format!("import::{name}"), move || crate::check(body()))
}

// ---------------------------------------------------------------------------
// The fixture

const OWNER: (u32, u32) = (1234, 5678);
const MTIME: (i64, i64) = (1_234_567_890, 123_456_789);
const ATIME: (i64, i64) = (1_111_111_111, 987_654_321);
const OUTSIDE_TARGET: &str = "/etc/passwd";
/// `security.capability`, VFS v2, effective, permitted = CAP_NET_RAW (13).
const CAP_NET_RAW_EP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];
const BIG: usize = 1 << 20;

fn e<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

/// The error and its causes, as the CLI prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn big_data() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..BIG)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

fn write(path: &Path, data: &[u8]) -> Result<(), String> {
    fs::write(path, data).map_err(e(&format!("write {}", path.display())))
}

fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(e(&format!("chmod {}", path.display())))
}

fn chown(path: &Path, (uid, gid): (u32, u32)) -> Result<(), String> {
    lchown(path, Some(uid), Some(gid)).map_err(e(&format!("chown {}", path.display())))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), String> {
    xattr::set(path, name, value).map_err(e(&format!("set {name} on {}", path.display())))
}

/// Builds the template tree the brief asks for in `root`.
pub(crate) fn fixture(root: &Path) -> Result<(), String> {
    let p = |rel: &str| root.join(rel);
    fs::create_dir_all(p("a/b/c")).map_err(e("mkdir a/b/c"))?;
    write(&p("a/b/c/deep.txt"), b"deep\n")?;
    set_xattr(&p("a/b/c/deep.txt"), "user.prodng", b"hello")?;
    set_xattr(&p("a"), "user.dir", b"d")?;
    chown(&p("a/b"), OWNER)?;
    chmod(&p("a/b"), 0o2750)?;

    fs::create_dir(p("bin")).map_err(e("mkdir bin"))?;
    write(&p("bin/suid"), b"#!/bin/sh\nexit 0\n")?;
    chown(&p("bin/suid"), OWNER)?;
    chmod(&p("bin/suid"), 0o4755)?;
    write(&p("bin/ping"), b"ping\n")?;
    chmod(&p("bin/ping"), 0o755)?;
    set_xattr(&p("bin/ping"), "security.capability", &CAP_NET_RAW_EP)?;
    set_xattr(&p("bin/ping"), "trusted.prodng", b"t")?;

    fs::create_dir(p("tmp")).map_err(e("mkdir tmp"))?;
    chmod(&p("tmp"), 0o1777)?;

    symlink(OUTSIDE_TARGET, p("abs-link")).map_err(e("symlink abs-link"))?;
    symlink("a/b/c/deep.txt", p("rel-link")).map_err(e("symlink rel-link"))?;
    chown(&p("rel-link"), (42, 43))?;

    write(&p("hard1"), b"linked\n")?;
    fs::hard_link(p("hard1"), p("a/hard2")).map_err(e("hard link"))?;

    nix::unistd::mkfifo(&p("fifo"), Mode::from_bits_truncate(0o640)).map_err(e("mkfifo"))?;
    chmod(&p("fifo"), 0o640)?;
    mknod(
        &p("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .map_err(e("mknod null"))?;
    chmod(&p("null"), 0o666)?;

    write(&p("empty"), b"")?;
    write(&p("big"), &big_data())?;
    write(&p("old"), b"old\n")?;
    utimensat(
        None,
        &p("old"),
        &TimeSpec::new(ATIME.0, ATIME.1),
        &TimeSpec::new(MTIME.0, MTIME.1),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(e("utimensat old"))?;

    set_xattr(root, "user.root", b"r")?;
    chmod(root, 0o751)?;
    Ok(())
}

/// A unix socket in `root` (for copies only: tar does not archive sockets).
fn add_socket(root: &Path) -> Result<(), String> {
    let l = std::os::unix::net::UnixListener::bind(root.join("sock")).map_err(e("bind sock"))?;
    drop(l);
    Ok(())
}

fn meta(path: &Path) -> Result<fs::Metadata, String> {
    fs::symlink_metadata(path).map_err(e(&format!("lstat {}", path.display())))
}

fn expect(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// Checks, in a copy or an unpacked archive, every property the fixture was built with.
pub(crate) fn check_fixture(root: &Path) -> Result<(), String> {
    let p = |rel: &str| root.join(rel);
    let m = meta(&p("bin/suid"))?;
    expect(m.is_file() && (m.uid(), m.gid()) == OWNER, || {
        format!("bin/suid: owner {}:{}", m.uid(), m.gid())
    })?;
    expect(m.mode() & 0o7777 == 0o4755, || {
        format!("bin/suid: mode {:o}", m.mode())
    })?;
    let m = meta(&p("a/b"))?;
    expect(
        m.mode() & 0o7777 == 0o2750 && (m.uid(), m.gid()) == OWNER,
        || format!("a/b: mode {:o} owner {}:{}", m.mode(), m.uid(), m.gid()),
    )?;
    let m = meta(&p("tmp"))?;
    expect(m.is_dir() && m.mode() & 0o7777 == 0o1777, || {
        format!("tmp: mode {:o}", m.mode())
    })?;
    let m = meta(root)?;
    expect(m.mode() & 0o7777 == 0o751, || {
        format!("root: mode {:o}", m.mode())
    })?;

    let m = meta(&p("abs-link"))?;
    let t = fs::read_link(p("abs-link")).map_err(e("readlink abs-link"))?;
    expect(
        m.file_type().is_symlink() && t == Path::new(OUTSIDE_TARGET),
        || {
            format!(
                "abs-link: symlink {} -> {}",
                m.file_type().is_symlink(),
                t.display()
            )
        },
    )?;
    let m = meta(&p("rel-link"))?;
    let t = fs::read_link(p("rel-link")).map_err(e("readlink rel-link"))?;
    expect(
        m.file_type().is_symlink() && t == Path::new("a/b/c/deep.txt") && m.uid() == 42,
        || format!("rel-link: -> {} owner {}:{}", t.display(), m.uid(), m.gid()),
    )?;

    let (h1, h2) = (meta(&p("hard1"))?, meta(&p("a/hard2"))?);
    expect(h1.ino() == h2.ino() && h1.nlink() == 2, || {
        format!(
            "hard links: inodes {} {}, nlink {}",
            h1.ino(),
            h2.ino(),
            h1.nlink()
        )
    })?;

    let m = meta(&p("fifo"))?;
    expect(
        m.file_type().is_fifo() && m.mode() & 0o7777 == 0o640,
        || format!("fifo: {:?} mode {:o}", m.file_type(), m.mode()),
    )?;
    let m = meta(&p("null"))?;
    expect(
        m.file_type().is_char_device() && (major(m.rdev()), minor(m.rdev())) == (1, 3),
        || format!("null: {:?} rdev {:x}", m.file_type(), m.rdev()),
    )?;

    let xa = |rel: &str, name: &str| -> Result<Option<Vec<u8>>, String> {
        xattr::get(p(rel), name).map_err(e(&format!("get {name} of {rel}")))
    };
    expect(
        xa("a/b/c/deep.txt", "user.prodng")? == Some(b"hello".to_vec()),
        || "a/b/c/deep.txt: user.prodng lost".into(),
    )?;
    expect(xa("a", "user.dir")? == Some(b"d".to_vec()), || {
        "a: user.dir lost".into()
    })?;
    expect(
        xattr::get(root, "user.root").ok().flatten() == Some(b"r".to_vec()),
        || "root: user.root lost".into(),
    )?;
    expect(
        xa("bin/ping", "trusted.prodng")? == Some(b"t".to_vec()),
        || "bin/ping: trusted.prodng lost".into(),
    )?;
    let cap = xa("bin/ping", "security.capability")?;
    expect(cap.as_deref() == Some(CAP_NET_RAW_EP.as_slice()), || {
        format!("bin/ping: security.capability is {cap:?}")
    })?;
    let out = Command::new("getcap")
        .arg(p("bin/ping"))
        .output()
        .map_err(e("run getcap"))?;
    let out = String::from_utf8_lossy(&out.stdout);
    expect(out.contains("cap_net_raw=ep"), || {
        format!("getcap bin/ping: {out:?}")
    })?;

    let m = meta(&p("old"))?;
    expect(
        (m.mtime(), m.mtime_nsec()) == MTIME && (m.atime(), m.atime_nsec()) == ATIME,
        || {
            format!(
                "old: mtime {}.{:09} atime {}.{:09}",
                m.mtime(),
                m.mtime_nsec(),
                m.atime(),
                m.atime_nsec()
            )
        },
    )?;
    let big = fs::read(p("big")).map_err(e("read big"))?;
    expect(big == big_data(), || "big: data differs".into())
}

// ---------------------------------------------------------------------------
// Snapshots: everything about a tree that an import must keep

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: char,
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: (i64, i64),
    /// Regular files only: reading a directory or a symlink updates its atime.
    atime: Option<(i64, i64)>,
    /// Not for directories, whose size depends on the filesystem.
    size: Option<u64>,
    rdev: u64,
    target: Option<PathBuf>,
    content: Option<u64>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// Non-directories: the link count and the first path of the inode.
    nlink: Option<u64>,
    first_link: Option<String>,
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn snapshot(root: &Path) -> Result<BTreeMap<String, Entry>, String> {
    let mut out = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes)?;
    Ok(out)
}

fn walk(
    root: &Path,
    path: &Path,
    out: &mut BTreeMap<String, Entry>,
    inodes: &mut BTreeMap<u64, String>,
) -> Result<(), String> {
    let m = meta(path)?;
    let rel = match path.strip_prefix(root).map_err(e("strip prefix"))? {
        r if r.as_os_str().is_empty() => ".".to_string(),
        r => r.to_string_lossy().into_owned(),
    };
    let ft = m.file_type();
    let kind = match () {
        _ if ft.is_dir() => 'd',
        _ if ft.is_file() => 'f',
        _ if ft.is_symlink() => 'l',
        _ if ft.is_fifo() => 'p',
        _ if ft.is_char_device() => 'c',
        _ if ft.is_block_device() => 'b',
        _ if ft.is_socket() => 's',
        _ => '?',
    };
    let mut xattrs = BTreeMap::new();
    for name in xattr::list(path).map_err(e(&format!("list xattrs of {rel}")))? {
        if let Some(v) = xattr::get(path, &name).map_err(e(&format!("get xattr of {rel}")))? {
            xattrs.insert(name.to_string_lossy().into_owned(), v);
        }
    }
    let content = if kind == 'f' {
        // O_NOATIME: reading must not change the atimes being compared.
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(path)
            .map_err(e(&format!("open {rel}")))?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)
            .map_err(e(&format!("read {rel}")))?;
        Some(fnv1a(&data))
    } else {
        None
    };
    let first_link = (kind != 'd' && m.nlink() > 1)
        .then(|| inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone());
    let entry = Entry {
        kind,
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
        mtime: (m.mtime(), m.mtime_nsec()),
        atime: (kind == 'f').then(|| (m.atime(), m.atime_nsec())),
        size: (kind != 'd').then(|| m.size()),
        rdev: m.rdev(),
        target: if kind == 'l' {
            Some(fs::read_link(path).map_err(e(&format!("readlink {rel}")))?)
        } else {
            None
        },
        content,
        xattrs,
        nlink: (kind != 'd').then(|| m.nlink()),
        first_link,
    };
    out.insert(rel, entry);
    if kind == 'd' {
        let mut names = Vec::new();
        for d in fs::read_dir(path).map_err(e(&format!("read_dir {}", path.display())))? {
            names.push(d.map_err(e("read_dir entry"))?.file_name());
        }
        names.sort();
        for n in names {
            walk(root, &path.join(n), out, inodes)?;
        }
    }
    Ok(())
}

/// Compares two snapshots and lists every difference.
fn same(want: &BTreeMap<String, Entry>, got: &BTreeMap<String, Entry>) -> Result<(), String> {
    let mut diffs = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            None => diffs.push(format!("{k}: missing")),
            Some(g) if g != w => diffs.push(format!("{k}:\n  want {w:?}\n  got  {g:?}")),
            Some(_) => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("{k}: unexpected"));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

fn sh(script: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .map_err(e("run sh"))?;
    if !out.status.success() {
        return Err(format!(
            "`{script}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `stats` must match what `find` sees below `root`, hard-linked inodes once.
fn check_stats(root: &Path, stats: TreeStats) -> Result<(), String> {
    let r = root.display();
    let files = sh(&format!(
        "find '{r}' -mindepth 1 -printf '%i\\n' | sort -u | wc -l"
    ))?;
    let bytes = sh(&format!(
        "find '{r}' -mindepth 1 -type f -printf '%i %s\\n' | sort -u \
         | awk '{{s += $2}} END {{print s + 0}}'"
    ))?;
    let want = TreeStats {
        files: files.parse().map_err(e("parse find count"))?,
        bytes: bytes.parse().map_err(e("parse find bytes"))?,
    };
    expect(stats == want, || {
        format!("stats {stats:?}, find says {want:?}")
    })?;
    let walked = copy::tree_stats(root).map_err(|err| chain(&err))?;
    expect(walked == want, || {
        format!("tree_stats {walked:?}, find says {want:?}")
    })
}

fn on_btrfs(path: &Path) -> Result<bool, String> {
    let fs = nix::sys::statfs::statfs(path).map_err(e("statfs"))?;
    Ok(fs.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
}

// ---------------------------------------------------------------------------
// copy_tree

fn copy_and_check(src: &Path, dst: &Path) -> Result<(), String> {
    fixture(src)?;
    add_socket(src)?;
    let want = snapshot(src)?;
    let stats = copy::copy_tree(src, dst).map_err(|err| chain(&err))?;
    same(&want, &snapshot(dst)?)?;
    check_fixture(dst)?;
    expect(meta(&dst.join("sock"))?.file_type().is_socket(), || {
        "sock: not a socket".into()
    })?;
    check_stats(dst, stats)?;
    // The source is left as it was, atimes included.
    same(&want, &snapshot(src)?)
}

fn copy_plain_to_btrfs() -> Result<(), String> {
    let src = crate::scratch().fresh_plain_dir("copy-src");
    let dst = crate::scratch().fresh_dir("copy-dst");
    copy_and_check(&src, &dst)
}

fn copy_btrfs_to_btrfs_reflinks() -> Result<(), String> {
    let src = crate::scratch().fresh_dir("copy-src");
    let dst = crate::scratch().fresh_dir("copy-dst");
    copy_and_check(&src, &dst)?;
    if on_btrfs(&dst)? {
        // A reflinked copy shares every extent with its source: nothing exclusive.
        let out = sh(&format!(
            "btrfs filesystem du --raw '{}'",
            dst.join("big").display()
        ))?;
        // "Total Exclusive Set-shared Filename", then one line for the file.
        let exclusive = out
            .lines()
            .find(|l| l.trim_end().ends_with("big"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?");
        expect(exclusive == "0", || {
            format!("big was not reflinked: btrfs filesystem du says\n{out}")
        })?;
    }
    Ok(())
}

fn copy_into_itself() -> Result<(), String> {
    let src = crate::scratch().fresh_dir("copy-self");
    fixture(&src)?;
    let dst = src.join("a/inner");
    fs::create_dir(&dst).map_err(e("mkdir inner"))?;
    match copy::copy_tree(&src, &dst) {
        Err(copy::CopyError::DestinationInsideSource { .. }) => Ok(()),
        other => Err(format!("copy into itself gave {other:?}")),
    }
}

// ---------------------------------------------------------------------------
// Archives made by GNU tar

fn tar_roundtrip(flag: Option<&str>, name: &str, want: Compression) -> Result<(), String> {
    let src = crate::scratch().fresh_plain_dir("tar-src");
    fixture(&src)?;
    let snap = snapshot(&src)?;
    let archive = crate::scratch().fresh_plain_dir("tar-archive").join(name);
    let mut tar = Command::new("tar");
    tar.args(["--xattrs", "--xattrs-include=*", "--numeric-owner"]);
    tar.args(flag);
    tar.arg("-cpf").arg(&archive).arg("-C").arg(&src).arg(".");
    let out = tar.output().map_err(e("run tar"))?;
    expect(out.status.success(), || {
        format!("tar failed: {}", String::from_utf8_lossy(&out.stderr))
    })?;

    let got = archive::detect(&archive).map_err(|err| chain(&err))?;
    expect(got == want, || format!("detect: {got:?}, want {want:?}"))?;
    let dst = crate::scratch().fresh_dir("tar-dst");
    let stats = archive::unpack(&archive, &dst).map_err(|err| chain(&err))?;
    same(&snap, &snapshot(&dst)?)?;
    check_fixture(&dst)?;
    check_stats(&dst, stats)
}

// ---------------------------------------------------------------------------
// Hostile archives, made with the tar crate's raw headers (its safe setters
// refuse such paths)

struct Raw<'a> {
    name: &'a str,
    kind: tar::EntryType,
    data: &'a [u8],
    link: Option<&'a str>,
}

fn file(name: &str) -> Raw<'_> {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        data: b"evil\n",
        link: None,
    }
}

fn raw_tar(path: &Path, entries: &[Raw<'_>]) -> Result<(), String> {
    let f = fs::File::create(path).map_err(e("create archive"))?;
    let mut b = tar::Builder::new(f);
    for r in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(r.kind);
        h.set_mode(if r.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(r.data.len() as u64);
        let old = h.as_old_mut();
        expect(r.name.len() < old.name.len(), || {
            format!("{} too long", r.name)
        })?;
        old.name[..r.name.len()].copy_from_slice(r.name.as_bytes());
        if let Some(l) = r.link {
            expect(l.len() < old.linkname.len(), || format!("{l} too long"))?;
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, r.data).map_err(e("append"))?;
    }
    let mut f = b.into_inner().map_err(e("finish archive"))?;
    f.flush().map_err(e("flush archive"))
}

/// Unpacks `entries` into `<fresh>/dst`; the archive must be refused as an escape
/// and `<fresh>` must hold nothing but `dst` and `keep` afterwards.
fn refused(tag: &str, entries: impl Fn(&Path) -> Vec<Raw<'static>>) -> Result<(), String> {
    let outer = crate::scratch().fresh_dir(tag);
    let dst = outer.join("dst");
    fs::create_dir(&dst).map_err(e("mkdir dst"))?;
    write(&outer.join("keep"), b"keep\n")?;
    let archive = crate::scratch().fresh_plain_dir(tag).join("hostile.tar");
    raw_tar(&archive, &entries(&outer))?;
    match archive::unpack(&archive, &dst) {
        Err(ArchiveError::Escape { .. }) => {}
        other => return Err(format!("hostile archive gave {other:?}")),
    }
    let mut names: Vec<String> = fs::read_dir(&outer)
        .map_err(e("read outer"))?
        .map(|d| d.map(|d| d.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(e("read outer entry"))?;
    names.sort();
    expect(names == ["dst", "keep"], || {
        format!("written outside dst: {names:?}")
    })?;
    let keep = fs::read(outer.join("keep")).map_err(e("read keep"))?;
    expect(keep == b"keep\n", || "keep was changed".into())
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn dotdot_refused() -> Result<(), String> {
    refused("dotdot", |_| {
        vec![file("ok.txt"), file("../evil"), file("sub/../../evil2")]
    })
}

fn absolute_refused() -> Result<(), String> {
    refused("absolute", |outer| {
        vec![file(leak(format!("{}/evil", outer.display())))]
    })
}

fn through_symlink_refused() -> Result<(), String> {
    refused("symlink-abs", |outer| {
        let target = leak(outer.display().to_string());
        vec![
            Raw {
                name: "link",
                kind: tar::EntryType::Symlink,
                data: b"",
                link: Some(target),
            },
            file("link/evil"),
        ]
    })?;
    refused("symlink-rel", |_| {
        vec![
            Raw {
                name: "up",
                kind: tar::EntryType::Symlink,
                data: b"",
                link: Some(".."),
            },
            file("up/keep"),
        ]
    })
}

fn hard_link_outside_refused() -> Result<(), String> {
    refused("hardlink", |_| {
        vec![Raw {
            name: "h",
            kind: tar::EntryType::Link,
            data: b"",
            link: Some("../keep"),
        }]
    })
}

fn not_an_archive() -> Result<(), String> {
    let dir = crate::scratch().fresh_plain_dir("not-archive");
    let dst = crate::scratch().fresh_dir("not-archive-dst");
    let cases: [(&str, &[u8]); 3] = [
        ("notes.txt", b"hello, world\n"),
        ("fake.tar", &[b'x'; 1024]),
        ("empty.tar.gz", b""),
    ];
    for (name, data) in cases {
        let path = dir.join(name);
        write(&path, data)?;
        match archive::detect(&path) {
            Err(ArchiveError::UnknownFormat { .. }) => {}
            other => return Err(format!("detect {name}: {other:?}")),
        }
        match archive::unpack(&path, &dst) {
            Err(ArchiveError::UnknownFormat { .. }) => {}
            other => return Err(format!("unpack {name}: {other:?}")),
        }
    }
    let left = fs::read_dir(&dst).map_err(e("read dst"))?.count();
    expect(left == 0, || format!("{left} entries written to dst"))
}

fn tree_stats_counts() -> Result<(), String> {
    let root = crate::scratch().fresh_dir("stats");
    fixture(&root)?;
    let stats = copy::tree_stats(&root).map_err(|err| chain(&err))?;
    check_stats(&root, stats)?;
    // 16 entries: a a/b a/b/c a/b/c/deep.txt a/hard2(=hard1) bin bin/suid bin/ping tmp
    // abs-link rel-link fifo null empty big old.
    let want = TreeStats {
        files: 16,
        bytes: (5 + 17 + 5 + 7 + BIG + 4) as u64,
    };
    expect(stats == want, || format!("stats {stats:?}, want {want:?}"))
}
