//! Privileged tests of `jailer::sys::btrfs` on the run's scratch btrfs.

use jailer::sys::btrfs::{self, BtrfsError};
use libtest_mimic::Trial;
use std::error::Error;
use std::path::{Path, PathBuf};

/// A test body: `Err` carries the failure message.
type Body = fn() -> Result<(), String>;

pub fn trials() -> Vec<Trial> {
    let tests: &[(&str, Body)] = &[
        (
            "btrfs::is_btrfs_true_on_scratch_false_on_plain_dir",
            is_btrfs_scratch_and_plain,
        ),
        (
            "btrfs::is_subvolume_only_for_subvolume_roots",
            is_subvolume_roots_only,
        ),
        (
            "btrfs::create_makes_an_empty_writable_subvolume",
            create_empty_writable,
        ),
        (
            "btrfs::readonly_snapshot_has_files_and_refuses_writes",
            readonly_snapshot,
        ),
        (
            "btrfs::writable_snapshot_leaves_source_unchanged",
            writable_snapshot,
        ),
        ("btrfs::set_readonly_toggles_writes", set_readonly_toggles),
        (
            "btrfs::subvolume_id_is_that_of_the_containing_subvolume",
            subvolume_id_containing,
        ),
        (
            "btrfs::nested_subvolumes_finds_two_levels_deepest_first",
            nested_two_levels,
        ),
        (
            "btrfs::nested_subvolumes_pages_past_255_children",
            nested_many_children,
        ),
        (
            "btrfs::delete_recursive_removes_nested_and_readonly",
            delete_recursive,
        ),
        (
            "btrfs::delete_recursive_stops_at_a_mount_and_restores_readonly",
            delete_stops_at_mount,
        ),
        (
            "btrfs::delete_recursive_refuses_a_mount_point",
            delete_mount_point,
        ),
        (
            "btrfs::snapshot_of_plain_dir_is_not_subvolume",
            snapshot_plain_dir,
        ),
        (
            "btrfs::create_over_existing_path_fails",
            create_over_existing,
        ),
        (
            "btrfs::delete_of_plain_dir_is_not_subvolume",
            delete_plain_dir,
        ),
        ("btrfs::operations_off_btrfs_report_not_btrfs", off_btrfs),
    ];
    tests
        .iter()
        .map(|&(name, body)| Trial::test(name, move || crate::check(body())))
        .collect()
}

/// The error and its causes on one line.
fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn ok<T>(r: Result<T, BtrfsError>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {}", chain(&e)))
}

fn io<T>(r: std::io::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

fn mentions(e: &BtrfsError, path: &Path) -> Result<(), String> {
    let text = e.to_string();
    ensure(text.contains(&path.display().to_string()), || {
        format!("error {text:?} does not name {}", path.display())
    })
}

fn names_in(dir: &Path) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = io(std::fs::read_dir(dir), "read_dir")?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
    names.sort();
    Ok(names)
}

fn expect_erofs(path: &Path) -> Result<(), String> {
    match std::fs::write(path, b"x") {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => Ok(()),
        Err(e) => Err(format!(
            "writing {} failed with {e}, not EROFS",
            path.display()
        )),
        Ok(()) => Err(format!(
            "writing {} succeeded in a read-only subvolume",
            path.display()
        )),
    }
}

/// A subvolume named `name` in a fresh scratch dir, with one file in it.
fn subvol_with_file(tag: &str) -> Result<(PathBuf, PathBuf), String> {
    let dir = crate::scratch().fresh_dir(tag);
    let sv = dir.join("src");
    ok(btrfs::create_subvolume(&sv), "create_subvolume")?;
    io(std::fs::write(sv.join("hello"), b"hello"), "write hello")?;
    Ok((dir, sv))
}

fn is_btrfs_scratch_and_plain() -> Result<(), String> {
    let on = crate::scratch().fresh_dir("isbtrfs");
    let off = crate::scratch().fresh_plain_dir("isbtrfs");
    ensure(ok(btrfs::is_btrfs(&on), "is_btrfs")?, || {
        "scratch dir not btrfs".into()
    })?;
    ensure(!ok(btrfs::is_btrfs(&off), "is_btrfs")?, || {
        "plain dir is btrfs".into()
    })?;
    let missing = on.join("missing");
    match btrfs::is_btrfs(&missing) {
        Err(e @ BtrfsError::Stat { .. }) => mentions(&e, &missing),
        other => Err(format!("is_btrfs on a missing path gave {other:?}")),
    }
}

fn is_subvolume_roots_only() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("issubvol");
    let sv = dir.join("sv");
    ok(btrfs::create_subvolume(&sv), "create_subvolume")?;
    io(std::fs::create_dir(sv.join("inner")), "mkdir inner")?;
    io(std::fs::write(sv.join("file"), b""), "write file")?;
    io(std::os::unix::fs::symlink(&sv, dir.join("link")), "symlink")?;
    ensure(ok(btrfs::is_subvolume(&sv), "is_subvolume sv")?, || {
        "sv is not a subvolume".into()
    })?;
    for not in [
        dir.clone(),
        sv.join("inner"),
        sv.join("file"),
        dir.join("link"),
    ] {
        ensure(!ok(btrfs::is_subvolume(&not), "is_subvolume")?, || {
            format!("{} reported as a subvolume", not.display())
        })?;
    }
    let plain = crate::scratch().fresh_plain_dir("issubvol");
    ensure(
        !ok(btrfs::is_subvolume(&plain), "is_subvolume plain")?,
        || "plain dir is a subvolume".into(),
    )
}

fn create_empty_writable() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("create");
    let sv = dir.join("sv");
    ok(btrfs::create_subvolume(&sv), "create_subvolume")?;
    ensure(ok(btrfs::is_subvolume(&sv), "is_subvolume")?, || {
        "not a subvolume".into()
    })?;
    ensure(names_in(&sv)?.is_empty(), || {
        "new subvolume not empty".into()
    })?;
    ensure(!ok(btrfs::is_readonly(&sv), "is_readonly")?, || {
        "new subvolume read-only".into()
    })?;
    io(
        std::fs::write(sv.join("f"), b"data"),
        "write into new subvolume",
    )?;
    let id = ok(btrfs::subvolume_id(&sv), "subvolume_id sv")?;
    let parent_id = ok(btrfs::subvolume_id(&dir), "subvolume_id dir")?;
    ensure(id >= 256 && id != parent_id, || {
        format!("ids: subvolume {id}, parent {parent_id}")
    })
}

fn readonly_snapshot() -> Result<(), String> {
    let (dir, sv) = subvol_with_file("rosnap")?;
    let snap = dir.join("snap");
    ok(btrfs::snapshot(&sv, &snap, true), "snapshot")?;
    ensure(ok(btrfs::is_subvolume(&snap), "is_subvolume")?, || {
        "snapshot not a subvolume".into()
    })?;
    ensure(ok(btrfs::is_readonly(&snap), "is_readonly")?, || {
        "snapshot not read-only".into()
    })?;
    ensure(!ok(btrfs::is_readonly(&sv), "is_readonly src")?, || {
        "source became read-only".into()
    })?;
    let got = io(std::fs::read(snap.join("hello")), "read snapshot file")?;
    ensure(got == b"hello", || format!("snapshot file holds {got:?}"))?;
    expect_erofs(&snap.join("new"))?;
    expect_erofs(&snap.join("hello"))?;
    let id = ok(btrfs::subvolume_id(&snap), "subvolume_id snap")?;
    let src_id = ok(btrfs::subvolume_id(&sv), "subvolume_id src")?;
    ensure(id != src_id, || "snapshot shares the source's id".into())
}

fn writable_snapshot() -> Result<(), String> {
    let (dir, sv) = subvol_with_file("rwsnap")?;
    let snap = dir.join("snap");
    ok(btrfs::snapshot(&sv, &snap, false), "snapshot")?;
    ensure(!ok(btrfs::is_readonly(&snap), "is_readonly")?, || {
        "snapshot read-only".into()
    })?;
    io(
        std::fs::write(snap.join("hello"), b"changed"),
        "overwrite in snapshot",
    )?;
    io(
        std::fs::write(snap.join("new"), b"new"),
        "create in snapshot",
    )?;
    let src = io(std::fs::read(sv.join("hello")), "read source")?;
    ensure(src == b"hello", || {
        format!("source file changed to {src:?}")
    })?;
    ensure(names_in(&sv)? == ["hello"], || {
        "a file appeared in the source".into()
    })
}

fn set_readonly_toggles() -> Result<(), String> {
    let (_, sv) = subvol_with_file("setro")?;
    ok(btrfs::set_readonly(&sv, true), "set_readonly true")?;
    ensure(ok(btrfs::is_readonly(&sv), "is_readonly")?, || {
        "flag not set".into()
    })?;
    expect_erofs(&sv.join("hello"))?;
    ok(btrfs::set_readonly(&sv, true), "set_readonly true twice")?;
    ok(btrfs::set_readonly(&sv, false), "set_readonly false")?;
    ensure(!ok(btrfs::is_readonly(&sv), "is_readonly")?, || {
        "flag not cleared".into()
    })?;
    io(
        std::fs::write(sv.join("hello"), b"again"),
        "write after clearing read-only",
    )?;
    let plain = sv.join("plain");
    io(std::fs::create_dir(&plain), "mkdir")?;
    match btrfs::set_readonly(&plain, true) {
        Err(e @ BtrfsError::NotSubvolume { .. }) => mentions(&e, &plain),
        other => Err(format!("set_readonly on a plain dir gave {other:?}")),
    }
}

fn subvolume_id_containing() -> Result<(), String> {
    let (_, sv) = subvol_with_file("subvolid")?;
    let inner = sv.join("a/b");
    io(std::fs::create_dir_all(&inner), "mkdir a/b")?;
    let id = ok(btrfs::subvolume_id(&sv), "subvolume_id sv")?;
    let inner_id = ok(btrfs::subvolume_id(&inner), "subvolume_id inner")?;
    ensure(id == inner_id, || format!("{id} != {inner_id}"))?;
    let top = ok(
        btrfs::subvolume_id(crate::scratch().mnt()),
        "subvolume_id top",
    )?;
    ensure(top == 5, || {
        format!("top-level subvolume id is {top}, not 5")
    })
}

fn nested_two_levels() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("nested");
    let top = dir.join("top");
    ok(btrfs::create_subvolume(&top), "create top")?;
    io(std::fs::create_dir_all(top.join("plain/deeper")), "mkdir")?;
    let a = top.join("a");
    let a_b = a.join("b");
    let c = top.join("plain/deeper/c");
    let c_d = c.join("x/d");
    ok(btrfs::create_subvolume(&a), "create a")?;
    ok(btrfs::create_subvolume(&a_b), "create a/b")?;
    ok(btrfs::create_subvolume(&c), "create c")?;
    io(std::fs::create_dir(c.join("x")), "mkdir c/x")?;
    ok(btrfs::create_subvolume(&c_d), "create c/x/d")?;
    ok(btrfs::set_readonly(&c, true), "set c read-only")?;
    for i in 0..50 {
        io(
            std::fs::write(top.join(format!("plain/f{i}")), b""),
            "write",
        )?;
    }

    let found = ok(btrfs::nested_subvolumes(&top), "nested_subvolumes")?;
    let mut sorted = found.clone();
    sorted.sort();
    let mut want = vec![a.clone(), a_b.clone(), c.clone(), c_d.clone()];
    want.sort();
    ensure(sorted == want, || format!("found {found:?}, want {want:?}"))?;
    let pos = |p: &Path| found.iter().position(|f| f == p);
    ensure(pos(&a_b) < pos(&a) && pos(&c_d) < pos(&c), || {
        format!("not deepest first: {found:?}")
    })?;
    ensure(pos(&a_b) < pos(&c) && pos(&c_d) < pos(&a), || {
        format!("not deepest first: {found:?}")
    })?;

    let below_c = ok(btrfs::nested_subvolumes(&c), "nested_subvolumes c")?;
    ensure(below_c == [c_d.clone()], || format!("below c: {below_c:?}"))?;
    let leaf = ok(btrfs::nested_subvolumes(&a_b), "nested_subvolumes a/b")?;
    ensure(leaf.is_empty(), || format!("below a leaf: {leaf:?}"))?;

    // A snapshot does not carry nested subvolumes along.
    let snap = dir.join("snap");
    ok(btrfs::snapshot(&top, &snap, false), "snapshot")?;
    let in_snap = ok(btrfs::nested_subvolumes(&snap), "nested_subvolumes snap")?;
    ensure(in_snap.is_empty(), || {
        format!("snapshot has nested {in_snap:?}")
    })?;
    ensure(
        !ok(btrfs::is_subvolume(&snap.join("a")), "is_subvolume")?,
        || "snap/a is a subvolume".into(),
    )?;

    let plain = top.join("plain");
    match btrfs::nested_subvolumes(&plain) {
        Err(e @ BtrfsError::NotSubvolume { .. }) => mentions(&e, &plain),
        other => Err(format!("nested_subvolumes on a plain dir gave {other:?}")),
    }
}

fn nested_many_children() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("many");
    let top = dir.join("top");
    ok(btrfs::create_subvolume(&top), "create top")?;
    let n = 300;
    for i in 0..n {
        ok(
            btrfs::create_subvolume(&top.join(format!("s{i:03}"))),
            "create child",
        )?;
    }
    let found = ok(btrfs::nested_subvolumes(&top), "nested_subvolumes")?;
    let mut names: Vec<String> = found
        .iter()
        .filter_map(|p| p.strip_prefix(&top).ok())
        .map(|p| p.display().to_string())
        .collect();
    names.sort();
    let want: Vec<String> = (0..n).map(|i| format!("s{i:03}")).collect();
    ensure(names == want, || {
        format!("found {} of {n} children", found.len())
    })?;
    ok(
        btrfs::delete_subvolume_recursive(&top),
        "delete_subvolume_recursive",
    )?;
    ensure(!top.exists(), || "top still exists".into())
}

fn delete_recursive() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("delete");
    let outer = dir.join("outer");
    ok(btrfs::create_subvolume(&outer), "create outer")?;
    let top = outer.join("top");
    ok(btrfs::create_subvolume(&top), "create top")?;
    io(std::fs::create_dir_all(top.join("plain/sub")), "mkdir")?;
    io(std::fs::write(top.join("plain/file"), b"data"), "write")?;
    let a = top.join("a");
    let a_b = a.join("b");
    let c = top.join("plain/sub/c");
    ok(btrfs::create_subvolume(&a), "create a")?;
    ok(btrfs::create_subvolume(&a_b), "create a/b")?;
    io(std::fs::write(a_b.join("file"), b"data"), "write")?;
    ok(
        btrfs::snapshot(&a_b, &top.join("plain/sub/c"), true),
        "snapshot c",
    )?;
    // Read-only at every level: the leaves, a parent with a child, the top.
    ok(btrfs::set_readonly(&a_b, true), "set a/b read-only")?;
    ok(btrfs::set_readonly(&a, true), "set a read-only")?;
    ok(btrfs::set_readonly(&top, true), "set top read-only")?;
    let ids: Vec<u64> = [&top, &a, &a_b, &c]
        .iter()
        .map(|p| ok(btrfs::subvolume_id(p), "subvolume_id"))
        .collect::<Result<_, _>>()?;

    ok(
        btrfs::delete_subvolume_recursive(&top),
        "delete_subvolume_recursive",
    )?;
    ensure(!top.exists(), || "top still exists".into())?;
    ensure(names_in(&outer)?.is_empty(), || {
        "something left in the parent".into()
    })?;
    let left = ok(btrfs::nested_subvolumes(&outer), "nested_subvolumes outer")?;
    ensure(left.is_empty(), || {
        format!("the kernel still links {left:?} (ids {ids:?})")
    })?;
    // The enclosing subvolume is untouched.
    ensure(
        !ok(btrfs::is_readonly(&outer), "is_readonly outer")?,
        || "outer became read-only".into(),
    )?;

    let missing = outer.join("top");
    match btrfs::delete_subvolume_recursive(&missing) {
        Err(e @ BtrfsError::Open { .. }) => mentions(&e, &missing),
        other => Err(format!("deleting a missing path gave {other:?}")),
    }
}

fn delete_stops_at_mount() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("delmount");
    let top = dir.join("top");
    ok(btrfs::create_subvolume(&top), "create top")?;
    let a = top.join("a");
    ok(btrfs::create_subvolume(&a), "create a")?;
    ok(btrfs::set_readonly(&top, true), "set top read-only")?;
    let other = crate::scratch().fresh_plain_dir("delmount");
    io(std::fs::write(other.join("host-file"), b"keep"), "write")?;
    let flags = nix::mount::MsFlags::MS_BIND;
    nix::mount::mount(Some(&other), &a, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("bind mount: {e}"))?;
    let result = delete_across_mount(&top, &a);
    let unmounted = nix::mount::umount(&a).map_err(|e| format!("umount {}: {e}", a.display()));
    result?;
    unmounted?;
    ensure(other.join("host-file").exists(), || {
        "the mounted dir was emptied".into()
    })?;
    ensure(ok(btrfs::is_subvolume(&a), "is_subvolume a")?, || {
        "a was deleted".into()
    })?;
    ok(
        btrfs::delete_subvolume_recursive(&top),
        "delete after unmounting",
    )
}

/// With a directory mounted over nested `a`, deleting `top` must fail,
/// leave both in place and give `top` its read-only flag back.
fn delete_across_mount(top: &Path, a: &Path) -> Result<(), String> {
    match btrfs::delete_subvolume_recursive(top) {
        Err(e @ BtrfsError::Open { .. }) => mentions(&e, a)?,
        other => return Err(format!("deleting across a mount gave {other:?}")),
    }
    ensure(ok(btrfs::is_subvolume(top), "is_subvolume top")?, || {
        "top was deleted".into()
    })?;
    ensure(ok(btrfs::is_readonly(top), "is_readonly top")?, || {
        "top was left writable".into()
    })
}

fn delete_mount_point() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("delmountpoint");
    let hidden = dir.join("m");
    let shown = dir.join("shown");
    ok(btrfs::create_subvolume(&hidden), "create m")?;
    ok(btrfs::create_subvolume(&shown), "create shown")?;
    let flags = nix::mount::MsFlags::MS_BIND;
    nix::mount::mount(Some(&shown), &hidden, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("bind mount: {e}"))?;
    let result = btrfs::delete_subvolume_recursive(&hidden);
    let unmounted =
        nix::mount::umount(&hidden).map_err(|e| format!("umount {}: {e}", hidden.display()));
    match result {
        Err(e @ BtrfsError::Delete { .. }) => mentions(&e, &hidden)?,
        other => return Err(format!("deleting a mount point gave {other:?}")),
    }
    unmounted?;
    ensure(ok(btrfs::is_subvolume(&hidden), "is_subvolume m")?, || {
        "the subvolume under the mount was deleted".into()
    })?;
    ensure(
        ok(btrfs::is_subvolume(&shown), "is_subvolume shown")?,
        || "the mounted subvolume was deleted".into(),
    )
}

fn snapshot_plain_dir() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("snapplain");
    let plain = dir.join("plain");
    io(std::fs::create_dir(&plain), "mkdir")?;
    let dst = dir.join("snap");
    match btrfs::snapshot(&plain, &dst, true) {
        Err(e @ BtrfsError::NotSubvolume { .. }) => mentions(&e, &plain)?,
        other => return Err(format!("snapshot of a plain dir gave {other:?}")),
    }
    ensure(!dst.exists(), || "a snapshot was made anyway".into())?;
    let sv = dir.join("sv");
    ok(btrfs::create_subvolume(&sv), "create")?;
    io(std::fs::create_dir(dir.join("taken")), "mkdir")?;
    let taken = dir.join("taken");
    match btrfs::snapshot(&sv, &taken, false) {
        Err(e @ BtrfsError::Snapshot { .. }) => {
            mentions(&e, &taken)?;
            mentions(&e, &sv)
        }
        other => Err(format!("snapshot over an existing dir gave {other:?}")),
    }
}

fn create_over_existing() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("exists");
    let sv = dir.join("sv");
    ok(btrfs::create_subvolume(&sv), "create")?;
    let plain = dir.join("plain");
    io(std::fs::create_dir(&plain), "mkdir")?;
    for path in [&sv, &plain] {
        match btrfs::create_subvolume(path) {
            Err(e @ BtrfsError::Create { .. }) => {
                mentions(&e, path)?;
                let kind = e
                    .source()
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .map(|s| s.kind());
                ensure(kind == Some(std::io::ErrorKind::AlreadyExists), || {
                    format!("source kind {kind:?}: {}", chain(&e))
                })?;
            }
            other => return Err(format!("create over {} gave {other:?}", path.display())),
        }
    }
    let missing_parent = dir.join("no/such");
    match btrfs::create_subvolume(&missing_parent) {
        Err(e @ BtrfsError::Open { .. }) => mentions(&e, &dir.join("no")),
        other => Err(format!("create under a missing parent gave {other:?}")),
    }
}

fn delete_plain_dir() -> Result<(), String> {
    let dir = crate::scratch().fresh_dir("delplain");
    let plain = dir.join("plain");
    io(std::fs::create_dir(&plain), "mkdir")?;
    io(std::fs::write(plain.join("f"), b"keep"), "write")?;
    match btrfs::delete_subvolume_recursive(&plain) {
        Err(e @ BtrfsError::NotSubvolume { .. }) => mentions(&e, &plain)?,
        other => return Err(format!("deleting a plain dir gave {other:?}")),
    }
    ensure(plain.join("f").exists(), || {
        "the plain dir was touched".into()
    })?;
    let sv = dir.join("sv");
    ok(btrfs::create_subvolume(&sv), "create")?;
    let link = dir.join("link");
    io(std::os::unix::fs::symlink(&sv, &link), "symlink")?;
    match btrfs::delete_subvolume_recursive(&link) {
        Err(e @ BtrfsError::NotSubvolume { .. }) => mentions(&e, &link)?,
        other => return Err(format!("deleting a symlink gave {other:?}")),
    }
    ensure(ok(btrfs::is_subvolume(&sv), "is_subvolume")?, || {
        "the link target was deleted".into()
    })
}

fn off_btrfs() -> Result<(), String> {
    let plain = crate::scratch().fresh_plain_dir("offbtrfs");
    let target = plain.join("sv");
    match btrfs::create_subvolume(&target) {
        Err(e @ BtrfsError::NotBtrfs { .. }) => mentions(&e, &plain)?,
        other => return Err(format!("create off btrfs gave {other:?}")),
    }
    match btrfs::nested_subvolumes(&plain) {
        Err(e @ BtrfsError::NotBtrfs { .. }) => mentions(&e, &plain)?,
        other => return Err(format!("nested_subvolumes off btrfs gave {other:?}")),
    }
    let (_, sv) = subvol_with_file("offbtrfs")?;
    match btrfs::snapshot(&sv, &target, false) {
        Err(e @ BtrfsError::NotBtrfs { .. }) => mentions(&e, &plain),
        other => Err(format!("snapshot to a plain fs gave {other:?}")),
    }
}
