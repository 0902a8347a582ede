//! The console log: what the jail writes to its stdout and stderr, kept on
//! the host in `jails/NAME/console.log`, with the monitor's own lines.
//!
//! The jail never holds the file. Its stdout and stderr are one pipe (so the
//! two stay interleaved as written) whose read end only the monitor has; the
//! monitor copies what comes through into the file with [`LogWriter`], which
//! keeps it below a cap: when `console.log` is full it is renamed to
//! `console.log.1` (replacing the one before) and a new `console.log` is
//! begun, so at most about twice the cap is on disk and the newest output is
//! kept. Both files are mode 0600.
//!
//! Readers ([`Follower`]) follow a file by inode and, when it is rotated,
//! finish it and go on to the one after it, so `logs --follow`, `start
//! --wait` and `run --rm` neither lose nor repeat output across a rotation
//! (unless they fall more than a whole file behind, which drops the part
//! rotated away).
//!
//! Beside each file the monitor keeps a time index (`console.log.idx`,
//! `console.log.1.idx`): the file's inode, then one entry per second in
//! which output came, the second and the offset where that second's output
//! begins. `logs --since` starts there, exact to the second; a file's index
//! holds at most [`INDEX_ENTRIES`] entries, after which its later output is
//! counted as of the last one (shown, never lost). A file without an index
//! (an older jailer's) falls back on its modification time.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file being written.
pub const CURRENT: &str = "console.log";
/// The one before it.
pub const ROTATED: &str = "console.log.1";
/// The default cap of each file (`--log-size`).
pub const DEFAULT_CAP: u64 = 8 << 20;
/// The smallest cap `--log-size` takes.
pub const MIN_CAP: u64 = 4 << 10;
/// The time index of [`CURRENT`] and of [`ROTATED`].
pub const CURRENT_INDEX: &str = "console.log.idx";
pub const ROTATED_INDEX: &str = "console.log.1.idx";
/// The most entries one file's index holds (16 bytes each).
pub const INDEX_ENTRIES: u64 = 4096;
const INDEX_MAGIC: &[u8; 8] = b"JLIDX001";

/// How far past its cap a file may be: the monitor writes its own lines
/// whole. A file larger than cap + slack was not made by this writer (an
/// older jailer let the jail itself extend its log): the monitor empties it,
/// readers read only its last cap bytes.
const SLACK: u64 = 1 << 20;

/// Opens `path` for appending, creating it mode 0600 (and making an older
/// file 0600); never through a symlink.
pub fn open_append(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// The monitor's writer. The monitor's stderr (fd 2) is the current file,
/// opened for appending: its own messages (and tracing) go there directly, in
/// the order it writes them; [`LogWriter::write`] adds the jail's output,
/// rotating first when the file is full, and then points fd 2 at the new
/// file too.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    cap: u64,
    /// The current file.
    file: File,
    /// Whether fd 2 follows the current file (the monitor; not unit tests).
    stderr: bool,
    /// The current file's time index, its last second and entry count.
    index: Option<TimeIndex>,
}

/// The writer's side of a file's time index.
#[derive(Debug)]
struct TimeIndex {
    file: File,
    last: Option<u64>,
    entries: u64,
}

impl TimeIndex {
    /// The index of the log file with inode `ino` at `path`: continued if
    /// it is that file's, else begun anew.
    fn open(path: &Path, ino: u64) -> Option<TimeIndex> {
        if let Some(entries) = read_index(path, ino) {
            let f = open_append(path).ok()?;
            return Some(TimeIndex {
                file: f,
                last: entries.last().map(|e| e.0),
                entries: entries.len() as u64,
            });
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .ok()?;
        f.write_all(INDEX_MAGIC).ok()?;
        f.write_all(&ino.to_le_bytes()).ok()?;
        Some(TimeIndex {
            file: f,
            last: None,
            entries: 0,
        })
    }

    /// Notes that output written now begins at `offset`.
    fn mark(&mut self, offset: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last == Some(now) || self.entries >= INDEX_ENTRIES {
            return;
        }
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&now.to_le_bytes());
        e[8..].copy_from_slice(&offset.to_le_bytes());
        if self.file.write_all(&e).is_ok() {
            self.last = Some(now);
            self.entries += 1;
        }
    }
}

/// The entries (second, offset) of the index at `path` if it is the index
/// of the file with inode `ino` (a torn last entry is left out).
fn read_index(path: &Path, ino: u64) -> Option<Vec<(u64, u64)>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut b = Vec::new();
    f.take(16 + 16 * INDEX_ENTRIES).read_to_end(&mut b).ok()?;
    if b.len() < 16 || &b[..8] != INDEX_MAGIC || b[8..16] != ino.to_le_bytes() {
        return None;
    }
    let num = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    Some(
        b[16..]
            .chunks_exact(16)
            .map(|c| (num(&c[..8]), num(&c[8..])))
            .collect(),
    )
}

impl LogWriter {
    /// The writer for the log in `dir`, capped at `cap` bytes a file;
    /// `file` is `dir/console.log` opened with [`open_append`] (in the
    /// monitor, a duplicate of its fd 2, and `stderr` true). A file far over
    /// the cap (see `SLACK`) is emptied.
    pub fn new(dir: PathBuf, cap: u64, file: File, stderr: bool) -> LogWriter {
        let index = file
            .metadata()
            .ok()
            .and_then(|m| TimeIndex::open(&dir.join(CURRENT_INDEX), m.ino()));
        let mut w = LogWriter {
            dir,
            cap: cap.max(MIN_CAP),
            file,
            stderr,
            index,
        };
        let size = w.size();
        if size > w.cap + SLACK {
            let _ = w.file.set_len(0);
            let ino = w.file.metadata().map_or(0, |m| m.ino());
            let _ = std::fs::remove_file(w.dir.join(CURRENT_INDEX));
            w.index = TimeIndex::open(&w.dir.join(CURRENT_INDEX), ino);
            w.note(&format!(
                "jailer-monitor: console.log was {size} bytes, over its cap of {}: emptied",
                w.cap
            ));
        }
        w
    }

    fn size(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    /// Writes one line of the monitor's own, under the cap like the jail's
    /// output. The caller escapes what the jail controls in it.
    pub fn note(&mut self, line: &str) {
        let mut l = String::with_capacity(line.len() + 1);
        l.push_str(line);
        l.push('\n');
        self.write(l.as_bytes());
    }

    /// Appends `data`, rotating whenever the current file would pass the
    /// cap: at the last line break that fits, or at the cap for a line
    /// longer than a whole file. Errors lose output, never block: the jail
    /// must not wait on a full disk.
    pub fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let size = self.size();
            let room = self.cap.saturating_sub(size);
            let n = match usize::try_from(room) {
                Ok(room) if room < data.len() => {
                    match data[..room].iter().rposition(|b| *b == b'\n') {
                        Some(p) => p + 1,
                        None if size == 0 => room,
                        None => 0,
                    }
                }
                _ => data.len(),
            };
            if n == 0 {
                if !self.rotate() {
                    return;
                }
                continue;
            }
            if let Some(ix) = &mut self.index {
                ix.mark(size);
            }
            let _ = self.file.write_all(&data[..n]);
            data = &data[n..];
        }
    }

    /// `console.log` becomes `console.log.1` and a new `console.log` the
    /// current file. Where that fails, the current file is emptied instead
    /// (the cap holds whatever happens); false if even that failed.
    fn rotate(&mut self) -> bool {
        let cur = self.dir.join(CURRENT);
        let old = self.dir.join(ROTATED);
        if std::fs::rename(&cur, &old).is_ok() {
            let new = open_append(&cur).and_then(|f| {
                if self.stderr {
                    nix::unistd::dup2(f.as_raw_fd(), 2)?;
                }
                Ok(f)
            });
            match new {
                Ok(f) => {
                    // The index goes with its file (it names the inode).
                    let _ =
                        std::fs::rename(self.dir.join(CURRENT_INDEX), self.dir.join(ROTATED_INDEX));
                    self.index = f
                        .metadata()
                        .ok()
                        .and_then(|m| TimeIndex::open(&self.dir.join(CURRENT_INDEX), m.ino()));
                    self.file = f;
                    return true;
                }
                // The current file is still the one now named
                // console.log.1: put it back under its name.
                Err(_) => {
                    let _ = std::fs::remove_file(&cur);
                    let _ = std::fs::rename(&old, &cur);
                }
            }
        }
        let emptied = self.file.set_len(0).is_ok() && self.size() == 0;
        if emptied {
            // Its offsets are gone with its bytes.
            let ino = self.file.metadata().map_or(0, |m| m.ino());
            let _ = std::fs::remove_file(self.dir.join(CURRENT_INDEX));
            self.index = TimeIndex::open(&self.dir.join(CURRENT_INDEX), ino);
        }
        emptied
    }
}

/// A place in the log: a file (by inode) and an offset in it. Taken before a
/// start, it marks where that start's output begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    ino: u64,
    offset: u64,
}

/// The end of the log in `dir` now; `None` if there is no log yet.
pub fn position(dir: &Path) -> Option<Position> {
    let m = std::fs::symlink_metadata(dir.join(CURRENT)).ok()?;
    m.is_file().then_some(Position {
        ino: m.ino(),
        offset: m.len(),
    })
}

/// Where output written at or after `since` begins: from the files' time
/// indexes, exact to the second (see the module's notes); a file without
/// one counts whole if the monitor last wrote it at or after `since` (its
/// modification time), else not at all. Only the monitor writes these
/// files; the jail cannot set their times. `None`: from the oldest output
/// kept.
pub fn since(dir: &Path, since: std::time::SystemTime) -> Option<Position> {
    let t = since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut oldest = true;
    for (name, index) in [(ROTATED, ROTATED_INDEX), (CURRENT, CURRENT_INDEX)] {
        let Some(m) = std::fs::symlink_metadata(dir.join(name))
            .ok()
            .filter(|m| m.is_file())
        else {
            continue;
        };
        let at = |offset| {
            Some(Position {
                ino: m.ino(),
                offset,
            })
        };
        match read_index(&dir.join(index), m.ino()) {
            Some(entries) => {
                if let Some(e) = entries.iter().find(|e| e.0 >= t) {
                    return if oldest && e.1 == 0 { None } else { at(e.1) };
                }
                // A full index: its file's later output is unindexed.
                if entries.len() as u64 >= INDEX_ENTRIES {
                    return at(entries.last().map_or(0, |e| e.1));
                }
            }
            None => {
                if m.modified().map_or(true, |mt| mt >= since) {
                    return if oldest { None } else { at(0) };
                }
            }
        }
        oldest = false;
        if name == CURRENT {
            // Nothing since: the end.
            return at(m.len());
        }
    }
    None
}

fn open_read(path: &Path) -> io::Result<Option<(File, u64)>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    match f {
        Ok(f) => {
            let ino = f.metadata()?.ino();
            Ok(Some((f, ino)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn ino_of(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

enum State {
    /// No file opened yet: start at this position, or at the oldest output.
    Start(Option<Position>),
    /// Reading this file (its inode).
    At(File, u64),
}

/// Reads the log in order across rotations.
pub struct Follower {
    dir: PathBuf,
    cap: u64,
    state: State,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// A reader of the log in `dir` (files capped at `cap`), from `from`,
    /// or from the oldest output kept.
    pub fn new(dir: PathBuf, cap: u64, from: Option<Position>) -> Follower {
        Follower {
            dir,
            cap: cap.max(MIN_CAP),
            state: State::Start(from),
        }
    }

    /// The inode of the file being written now.
    pub fn current_ino(&self) -> Option<u64> {
        ino_of(&self.dir.join(CURRENT))
    }

    /// Copies everything written since the last call to `out`, following
    /// rotations, and stops at the end of the current file; with `stop_at`
    /// (an inode from [`Follower::current_ino`]), at the end of that file
    /// even if newer ones exist, and after two files' worth at most (so that
    /// `jailer logs` of a chatty jail ends).
    pub fn copy_new(
        &mut self,
        buf: &mut [u8],
        out: &mut dyn Write,
        stop_at: Option<u64>,
    ) -> io::Result<()> {
        let mut budget = match stop_at {
            Some(_) => 2 * (self.cap + SLACK),
            None => u64::MAX,
        };
        let budget = &mut budget;
        loop {
            if let State::Start(from) = self.state {
                match self.open_start(from)? {
                    Some((f, ino)) => self.state = State::At(f, ino),
                    None => return Ok(()),
                }
            }
            let State::At(file, ino) = &mut self.state else {
                return Ok(());
            };
            let ino = *ino;
            copy_to_eof(file, buf, out, budget)?;
            if *budget == 0 {
                return Ok(());
            }
            match ino_of(&self.dir.join(CURRENT)) {
                // Up to date; or mid-rotation (renamed, the next not yet
                // made): look again next time.
                Some(cur) if cur == ino => return Ok(()),
                None => return Ok(()),
                Some(_) => {}
            }
            // Rotated: the file is final. Its last bytes, then the next.
            copy_to_eof(file, buf, out, budget)?;
            if stop_at == Some(ino) {
                return Ok(());
            }
            match self.successor(ino)? {
                Some((f, i)) => self.state = State::At(f, i),
                None => return Ok(()),
            }
        }
    }

    fn open_start(&self, from: Option<Position>) -> io::Result<Option<(File, u64)>> {
        if let Some(p) = from {
            for name in [CURRENT, ROTATED] {
                if let Some((mut f, ino)) = open_read(&self.dir.join(name))? {
                    if ino == p.ino {
                        f.seek(SeekFrom::Start(p.offset))?;
                        return Ok(Some((f, ino)));
                    }
                }
            }
            // Rotated away entirely since (or there was no log): all that
            // is kept came later.
        }
        self.oldest()
    }

    /// The oldest file kept: `console.log.1` if there is one.
    fn oldest(&self) -> io::Result<Option<(File, u64)>> {
        let (cur, rot) = (self.dir.join(CURRENT), self.dir.join(ROTATED));
        for _ in 0..8 {
            if let Some(r) = open_read(&rot)? {
                return self.read_whole(r).map(Some);
            }
            let c = open_read(&cur)?;
            // No rotation made a console.log.1 meanwhile: `c` is the oldest.
            if ino_of(&rot).is_none() {
                return c.map(|c| self.read_whole(c)).transpose();
            }
        }
        open_read(&cur)?.map(|c| self.read_whole(c)).transpose()
    }

    /// The file after `ino`, which has been rotated: `console.log.1` if that
    /// is a newer one (more than one rotation since), else `console.log`.
    fn successor(&self, ino: u64) -> io::Result<Option<(File, u64)>> {
        let (cur, rot) = (self.dir.join(CURRENT), self.dir.join(ROTATED));
        for _ in 0..8 {
            let r = open_read(&rot)?;
            let r_ino = r.as_ref().map(|r| r.1);
            if let Some(r) = r {
                if r.1 != ino {
                    return self.read_whole(r).map(Some);
                }
            }
            let Some(c) = open_read(&cur)? else {
                return Ok(None);
            };
            // Unless a rotation came between the two opens, `c` follows.
            if ino_of(&rot) == r_ino {
                return self.read_whole(c).map(Some);
            }
        }
        Ok(None)
    }

    /// A file read from its start, or its last cap bytes if it is far over
    /// the cap (an older jailer's log that the jail extended).
    fn read_whole(&self, (mut f, ino): (File, u64)) -> io::Result<(File, u64)> {
        let len = f.metadata()?.len();
        if len > self.cap + SLACK {
            f.seek(SeekFrom::Start(len - self.cap))?;
        }
        Ok((f, ino))
    }
}

/// Copies what `f` holds past its offset to `out` (from its start again if
/// it was emptied under us), `budget` bytes at most.
fn copy_to_eof(
    f: &mut File,
    buf: &mut [u8],
    out: &mut dyn Write,
    budget: &mut u64,
) -> io::Result<()> {
    if f.metadata()?.len() < f.stream_position()? {
        f.seek(SeekFrom::Start(0))?;
    }
    while *budget > 0 {
        let want = usize::try_from(*budget).map_or(buf.len(), |b| b.min(buf.len()));
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        *budget -= n as u64;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, cap: u64) -> LogWriter {
        let f = open_append(&dir.join(CURRENT)).expect("open");
        LogWriter::new(dir.to_path_buf(), cap, f, false)
    }

    fn lines(from: u32, to: u32) -> String {
        (from..to).map(|i| format!("line {i:06}\n")).collect()
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap_or_default()
    }

    fn follow(f: &mut Follower, out: &mut Vec<u8>) {
        let mut buf = vec![0u8; 4096];
        f.copy_new(&mut buf, out, None).expect("copy");
    }

    /// Writes an index of `entries` for the file `name` in `dir`.
    fn index(dir: &Path, name: &str, idx: &str, entries: &[(u64, u64)]) {
        let ino = std::fs::metadata(dir.join(name)).expect("stat").ino();
        let mut b = INDEX_MAGIC.to_vec();
        b.extend_from_slice(&ino.to_le_bytes());
        for (t, o) in entries {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&o.to_le_bytes());
        }
        std::fs::write(dir.join(idx), b).expect("write index");
    }

    fn at(secs: u64) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    fn from_since(dir: &Path, secs: u64) -> String {
        let mut f = Follower::new(dir.to_path_buf(), MIN_CAP, since(dir, at(secs)));
        let mut out = Vec::new();
        follow(&mut f, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn since_starts_at_the_first_second_at_or_after_it_across_the_rotation() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join(ROTATED), "r100\nr105\n").expect("write");
        std::fs::write(d.path().join(CURRENT), "c110\nc120\n").expect("write");
        index(d.path(), ROTATED, ROTATED_INDEX, &[(100, 0), (105, 5)]);
        index(d.path(), CURRENT, CURRENT_INDEX, &[(110, 0), (120, 5)]);
        assert_eq!(from_since(d.path(), 50), "r100\nr105\nc110\nc120\n");
        assert_eq!(from_since(d.path(), 101), "r105\nc110\nc120\n");
        assert_eq!(from_since(d.path(), 105), "r105\nc110\nc120\n");
        assert_eq!(from_since(d.path(), 106), "c110\nc120\n");
        assert_eq!(from_since(d.path(), 120), "c120\n");
        assert_eq!(from_since(d.path(), 121), "");
        // An index that names another file (a rotation between reads, or
        // an older jailer's log) is not believed: the mtime decides.
        index(d.path(), ROTATED, CURRENT_INDEX, &[(110, 0), (120, 5)]);
        assert_eq!(from_since(d.path(), 121), "c110\nc120\n", "fresh by mtime");
    }

    #[test]
    fn the_writer_indexes_each_second_and_the_index_follows_its_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = writer(d.path(), MIN_CAP);
        w.write(b"first\n");
        w.write(b"same second, probably\n");
        let ino = std::fs::metadata(d.path().join(CURRENT))
            .expect("stat")
            .ino();
        let e = read_index(&d.path().join(CURRENT_INDEX), ino).expect("index");
        assert!(!e.is_empty() && e.len() <= 2 && e[0].1 == 0, "{e:?}");
        // Past the cap: the index moves with console.log to .1.
        w.write(lines(0, (2 * MIN_CAP / 12) as u32).as_bytes());
        let rot = std::fs::metadata(d.path().join(ROTATED))
            .expect("stat")
            .ino();
        assert!(read_index(&d.path().join(ROTATED_INDEX), rot).is_some());
        let cur = std::fs::metadata(d.path().join(CURRENT))
            .expect("stat")
            .ino();
        let e = read_index(&d.path().join(CURRENT_INDEX), cur).expect("index");
        assert_eq!(e.first().map(|e| e.1), Some(0), "{e:?}");
        // Everything since the epoch is everything kept.
        assert_eq!(
            from_since(d.path(), 0),
            read(d.path(), ROTATED) + &read(d.path(), CURRENT)
        );
    }

    #[test]
    fn the_cap_holds_and_the_newest_output_is_kept() {
        let d = tempfile::tempdir().expect("tempdir");
        let cap = MIN_CAP;
        let mut w = writer(d.path(), cap);
        // 12 bytes a line, 100 times the cap, in uneven chunks.
        let all = lines(0, (100 * cap / 12) as u32);
        for chunk in all.as_bytes().chunks(1000) {
            w.write(chunk);
        }
        let (cur, rot) = (read(d.path(), CURRENT), read(d.path(), ROTATED));
        assert!(cur.len() as u64 <= cap && rot.len() as u64 <= cap);
        // The rotated file then the current one are the tail of what was
        // written.
        let kept = format!("{rot}{cur}");
        assert!(all.ends_with(&kept), "{kept}");
        assert!(kept.len() as u64 > cap);
        for name in [CURRENT, ROTATED] {
            let mode = std::fs::metadata(d.path().join(name)).expect("meta").mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn files_are_cut_at_line_breaks() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = writer(d.path(), MIN_CAP);
        for i in 0..100 {
            w.write(lines(i * 7, i * 7 + 7).as_bytes());
        }
        for name in [CURRENT, ROTATED] {
            let s = read(d.path(), name);
            assert!(s.starts_with("line ") && s.ends_with('\n'), "{name}: {s}");
        }
    }

    #[test]
    fn a_line_longer_than_the_cap_is_cut_at_the_cap() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = writer(d.path(), MIN_CAP);
        let long = vec![b'x'; (3 * MIN_CAP) as usize];
        w.write(&long);
        assert_eq!(read(d.path(), ROTATED).len() as u64, MIN_CAP);
        assert_eq!(read(d.path(), CURRENT).len() as u64, MIN_CAP);
    }

    #[test]
    fn a_file_far_over_the_cap_is_emptied_by_the_writer_and_tailed_by_readers() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = open_append(&d.path().join(CURRENT)).expect("open");
        // Sparse, as a jail made it with an older jailer.
        f.set_len(1 << 40).expect("extend");
        let mut out = Vec::new();
        follow(&mut Follower::new(d.path().into(), MIN_CAP, None), &mut out);
        assert_eq!(out.len() as u64, MIN_CAP);
        let mut w = writer(d.path(), MIN_CAP);
        w.write(b"fresh\n");
        let cur = read(d.path(), CURRENT);
        assert!(cur.contains("emptied") && cur.ends_with("fresh\n"), "{cur}");
    }

    #[test]
    fn a_follower_that_keeps_up_sees_everything_once_in_order() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = writer(d.path(), MIN_CAP);
        w.write(b"before\n");
        let mut f = Follower::new(d.path().into(), MIN_CAP, None);
        let mut out = Vec::new();
        let mut want = String::from("before\n");
        for i in 0..200u32 {
            // Up to three quarters of a file between looks.
            let part = lines(i * 250, i * 250 + (i % 4) * 80 + 1);
            w.write(part.as_bytes());
            want.push_str(&part);
            follow(&mut f, &mut out);
        }
        assert_eq!(String::from_utf8(out).expect("utf8"), want);
    }

    #[test]
    fn a_follower_one_rotation_behind_loses_nothing() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = writer(d.path(), MIN_CAP);
        let mut f = Follower::new(d.path().into(), MIN_CAP, None);
        let mut out = Vec::new();
        follow(&mut f, &mut out);
        let first = lines(0, 300);
        w.write(first.as_bytes());
        follow(&mut f, &mut out);
        // Nearly two files' worth between looks: two rotations.
        let second = lines(300, 300 + (2 * MIN_CAP / 12) as u32 - 20);
        w.write(second.as_bytes());
        follow(&mut f, &mut out);
        assert_eq!(String::from_utf8(out).expect("utf8"), first + &second);
    }

    #[test]
    fn a_position_marks_where_new_output_begins_across_a_rotation() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = writer(d.path(), MIN_CAP);
        w.write(lines(0, 300).as_bytes());
        let p = position(d.path()).expect("position");
        let after = lines(300, 500);
        w.write(after.as_bytes());
        assert!(!read(d.path(), CURRENT).contains("line 000299"));
        let mut out = Vec::new();
        follow(
            &mut Follower::new(d.path().into(), MIN_CAP, Some(p)),
            &mut out,
        );
        assert_eq!(String::from_utf8(out).expect("utf8"), after);
    }

    #[test]
    fn stop_at_ends_a_read_at_the_file_current_when_it_began() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = writer(d.path(), MIN_CAP);
        w.write(lines(0, 500).as_bytes());
        let mut f = Follower::new(d.path().into(), MIN_CAP, None);
        let stop = f.current_ino();
        let mut buf = vec![0u8; 100];
        struct Chatty<'a>(&'a mut LogWriter, Vec<u8>);
        impl Write for Chatty<'_> {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                // The jail writes a file's worth for every read.
                self.0.write(lines(0, 400).as_bytes());
                self.1.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Chatty(&mut w, Vec::new());
        f.copy_new(&mut buf, &mut out, stop).expect("copy");
        assert!(
            out.1.len() as u64 <= 2 * (MIN_CAP + SLACK),
            "{}",
            out.1.len()
        );
    }
}
