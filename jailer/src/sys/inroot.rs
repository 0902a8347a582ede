//! Opening a file of a jail's tree from the host side, resolved as if the
//! tree were `/`: the jail's root controls every component of the path, so
//! a symlink it planted (absolute or with `..`) stays inside its tree, and a
//! FIFO or device it put there is refused before anything reads it.

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Opens the regular file `rel` of the tree at `root` for reading, every
/// component resolved inside `root` (`RESOLVE_IN_ROOT`; no magic links such
/// as `/proc/self/root`). Not a regular file: `InvalidInput`, unread.
pub fn open_file_in_root(root: &Path, rel: &Path) -> io::Result<File> {
    // `root` itself is the host's path (the pool's), not the jail's.
    let dir = File::open(root)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(dir.as_raw_fd(), rel, how)?;
    // SAFETY: `openat2` just returned `fd` as a new descriptor that nothing
    // else owns, so handing its ownership to an `OwnedFd` is sound.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", rel.display()),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root_and_fifos_are_refused() {
        let t = std::env::temp_dir().join(format!("inroot-{}", std::process::id()));
        let root = t.join("root");
        std::fs::create_dir_all(root.join("etc")).expect("test setup");
        std::fs::write(t.join("outside"), "host").expect("test setup");
        std::fs::write(root.join("etc/file"), "jail").expect("test setup");
        // An absolute link and a `..` link both name the jail's own file.
        std::os::unix::fs::symlink("/etc/file", root.join("abs")).expect("test setup");
        std::os::unix::fs::symlink("../../outside", root.join("etc/up")).expect("test setup");
        let read = |p: &str| {
            open_file_in_root(&root, Path::new(p))
                .map(|f| std::io::read_to_string(f).expect("read"))
                .map_err(|e| e.kind())
        };
        assert_eq!(read("abs"), Ok("jail".to_string()));
        // `../../outside` from /etc is /outside of the root: not there.
        assert_eq!(read("etc/up"), Err(io::ErrorKind::NotFound));
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("test setup");
        assert_eq!(read("fifo"), Err(io::ErrorKind::InvalidInput));
        std::fs::remove_dir_all(&t).expect("test setup");
    }
}
