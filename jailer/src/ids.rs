//! Allocation of the host uid/gid ranges that jails' ids map onto.
//!
//! Every jail gets 65,536 ids (a full 16-bit range, so every id a Debian
//! package may use exists inside). Ranges start at [`FIRST_BASE`], far above
//! the ids distributions hand out to users and to `/etc/subuid`, and are
//! checked against the host's passwd, group, subuid and subgid files anyway.

use crate::fsutil::{FsError, Lock};
use crate::record::IdRange;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Ids per jail.
pub const IDS_PER_JAIL: u32 = 65_536;
/// The first host id handed to a jail (2^28).
pub const FIRST_BASE: u32 = 1 << 28;

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

/// The lowest free range that overlaps neither `taken` (other jails) nor
/// `host` ranges, or `None` when the id space is exhausted. One sort and
/// one sweep: its cost grows as n log n with the ranges in use, not n².
pub fn allocate(taken: &[IdRange], host: &[(u64, u64)]) -> Option<IdRange> {
    let len = u64::from(IDS_PER_JAIL);
    let mut used: Vec<(u64, u64)> = host.to_vec();
    for t in taken {
        used.push((u64::from(t.uid_base), u64::from(t.count)));
        used.push((u64::from(t.gid_base), u64::from(t.count)));
    }
    used.sort_unstable();
    // Candidates are the multiples of `len` from FIRST_BASE up; every range
    // in use that overlaps the candidate moves it past that range's end.
    let mut base = u64::from(FIRST_BASE);
    for u in used {
        if u.0 >= base + len {
            break;
        }
        if overlaps((base, len), u) {
            base = (u.0 + u.1).max(base + 1).div_ceil(len) * len;
        }
    }
    // uid 2^32-1 is "no id": stop before it.
    if base + len >= u64::from(u32::MAX) {
        return None;
    }
    let b = u32::try_from(base).ok()?;
    Some(IdRange {
        uid_base: b,
        gid_base: b,
        count: IDS_PER_JAIL,
    })
}

/// Where the host-wide registry lives unless `JAILER_ID_REGISTRY` says.
pub const DEFAULT_REGISTRY: &str = "/var/lib/jailer-ids";

/// What went wrong with the host-wide id registry.
#[derive(Debug, thiserror::Error)]
pub enum IdsError {
    #[error("no free host id range left for jail {name}: remove unused jails")]
    Exhausted { name: String },
    #[error("jail {name}'s record says host ids {recorded}, but the range allocated to it is {allocated}: its jail.json was changed; recreate the jail")]
    Mismatch {
        name: String,
        recorded: String,
        allocated: String,
    },
    #[error("jail {name}'s record says host ids {recorded}, which is not a range jailer allocates (65,536 ids from 2^28 up); its jail.json was changed; recreate the jail")]
    NotJailRange { name: String, recorded: String },
    #[error("jail {name}'s host ids {recorded} overlap {other}; recreate the jail")]
    Taken {
        name: String,
        recorded: String,
        other: String,
    },
    #[error("cannot update the id registry {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the id registry {} is corrupt ({why}); move it away and run `jailer init` on every pool to rebuild it", path.display())]
    Corrupt { path: PathBuf, why: String },
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// One allocated range: whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub ids: IdRange,
    /// The pool's root (canonical).
    pub pool: PathBuf,
    pub jail: String,
    /// The jail's random id (a re-created jail of the same name is another).
    pub id: String,
}

impl Entry {
    fn owner(&self) -> String {
        format!("jail {} of pool {}", self.jail, self.pool.display())
    }
}

fn show(r: &IdRange) -> String {
    format!(
        "{}-{}",
        r.uid_base,
        u64::from(r.uid_base) + u64::from(r.count) - 1
    )
}

/// The host-wide registry of jails' id ranges, shared by every pool on the
/// host: `ranges.json` in a root-only directory, changed under the
/// directory's `lock`. Each range is also written to `/etc/subuid` and
/// `/etc/subgid` as `root:BASE:COUNT`, so that `useradd` and every tool
/// that hands out subordinate ids skips it (the owner is root, which may
/// map any id anyway, so the line grants nobody anything).
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
    etc: PathBuf,
}

impl Registry {
    /// The host's registry (`JAILER_ID_REGISTRY` or [`DEFAULT_REGISTRY`],
    /// with `/etc`).
    pub fn host() -> Registry {
        let dir = std::env::var_os("JAILER_ID_REGISTRY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_REGISTRY));
        Registry::new(dir, "/etc")
    }

    /// A registry in `dir`, reading and keeping in step `etc`'s passwd,
    /// group, subuid and subgid.
    pub fn new(dir: impl Into<PathBuf>, etc: impl Into<PathBuf>) -> Registry {
        Registry {
            dir: dir.into(),
            etc: etc.into(),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("ranges.json")
    }

    fn lock(&self) -> Result<Lock, IdsError> {
        crate::fsutil::private_dir(&self.dir)?;
        Ok(Lock::acquire(&self.dir.join("lock"), true)?)
    }

    /// Every entry (for inspection and tests).
    pub fn entries(&self) -> Result<Vec<Entry>, IdsError> {
        read_list(self.file())
    }

    fn save(&self, old: &[Entry], new: &[Entry]) -> Result<(), IdsError> {
        let json = serde_json::to_vec_pretty(new).unwrap_or_default();
        crate::fsutil::atomic_write(&self.file(), &json)?;
        let line = |e: &Entry, gid: bool| {
            let base = if gid { e.ids.gid_base } else { e.ids.uid_base };
            format!("root:{base}:{}", e.ids.count)
        };
        let (old_set, new_set): (HashSet<&Entry>, HashSet<&Entry>) =
            (old.iter().collect(), new.iter().collect());
        for (file, gid) in [("subuid", false), ("subgid", true)] {
            let gone: Vec<String> = old
                .iter()
                .filter(|e| !new_set.contains(e))
                .map(|e| line(e, gid))
                .collect();
            let added: Vec<String> = new
                .iter()
                .filter(|e| !old_set.contains(e))
                .map(|e| line(e, gid))
                .collect();
            sync_subids(&self.etc.join(file), &gone, &added)?;
        }
        Ok(())
    }

    /// Drops the entries of pools whose root is gone: one probe per pool,
    /// never per entry, so that an allocation costs the same however many
    /// jails the host has. Entries of other pools are not probed further
    /// (an unmounted image pool keeps its ranges); those of a jail removed
    /// without `jailer rm` go at its pool's next `jailer init`
    /// ([`Registry::register_pool`]).
    fn prune_gone_pools(entries: &mut Vec<Entry>) {
        let mut roots: Vec<(PathBuf, bool)> = Vec::new();
        entries.retain(|e| {
            if let Some((_, exists)) = roots.iter().find(|(r, _)| *r == e.pool) {
                return *exists;
            }
            let exists = e.pool.exists();
            roots.push((e.pool.clone(), exists));
            exists
        });
    }

    /// Drops the entries of `pool`'s jails that no longer exist: the pool is
    /// mounted and laid out, the jail's directory is gone and nobody holds
    /// its lock (a create in progress does). Probes each of the pool's
    /// entries: run at registration and adoption, never on every create.
    fn prune_pool(entries: &mut Vec<Entry>, pool: &Path) {
        let p = crate::pool::Pool::new(pool);
        if p.ensure_ready().is_err() {
            return;
        }
        entries.retain(|e| {
            if e.pool != pool {
                return true;
            }
            let Ok(name) = crate::name::Name::new(&e.jail) else {
                return false;
            };
            p.jail_dir(&name).exists() || p.is_locked("jail", &name)
        });
    }

    fn pools_file(&self) -> PathBuf {
        self.dir.join("pools.json")
    }

    /// The pools whose every jail's range is in the registry.
    fn registered_pools(&self) -> Result<Vec<PathBuf>, IdsError> {
        read_list(self.pools_file())
    }

    /// Whether the pool at `pool` is registered: every jail it holds has its
    /// range here, so allocating in it never needs to read its records.
    pub fn is_registered(&self, pool: &Path) -> Result<bool, IdsError> {
        let pool = canonical(pool);
        Ok(self.registered_pools()?.contains(&pool))
    }

    /// Registers the ranges of the pool's jails made before the registry
    /// existed, once: `scan` lists every jail record of the pool (name,
    /// random id, range) and runs only when the pool is not registered yet,
    /// or always with `force` (`jailer init`, which also drops entries of
    /// the pool's jails that are gone). A range that is not a jailer range,
    /// or that another entry or the host holds, is not adopted (the jail's
    /// start refuses it; [`Registry::verify`] says why). Then the pool is
    /// marked registered, and creates in it never scan again. Returns how
    /// many ranges were adopted.
    pub fn register_pool(
        &self,
        pool: &Path,
        force: bool,
        scan: impl FnOnce() -> Vec<(String, String, IdRange)>,
    ) -> Result<usize, IdsError> {
        let pool = canonical(pool);
        let _lock = self.lock()?;
        let mut pools = self.registered_pools()?;
        if !force && pools.contains(&pool) {
            return Ok(0);
        }
        let old = self.entries()?;
        let mut entries = old.clone();
        Self::prune_gone_pools(&mut entries);
        Self::prune_pool(&mut entries, &pool);
        let scanned = scan();
        // A jail's own `root:BASE:COUNT` sub-id line (left by a registry
        // that was moved away) does not keep it from its range.
        let mut ours = old.clone();
        ours.extend(scanned.iter().map(|(name, id, ids)| Entry {
            ids: *ids,
            pool: pool.clone(),
            jail: name.clone(),
            id: id.clone(),
        }));
        let host = self.host_ranges(&ours);
        let mut adopted = 0;
        for (name, id, ids) in scanned {
            if let Some(e) = entries.iter().find(|e| e.pool == pool && e.jail == name) {
                if e.id != id || e.ids != ids {
                    tracing::warn!(jail = %name, recorded = %show(&ids), allocated = %show(&e.ids), "jail's record and registry entry differ; not adopted");
                }
                continue;
            }
            if let Err(why) = adoptable(&entries, &host, ids) {
                tracing::warn!(jail = %name, recorded = %show(&ids), why, "legacy jail's range not adopted");
                continue;
            }
            entries.push(Entry {
                ids,
                pool: pool.clone(),
                jail: name,
                id,
            });
            adopted += 1;
        }
        if entries != old {
            self.save(&old, &entries)?;
        }
        // After the ranges: a crash between the two writes only scans again.
        if !pools.contains(&pool) {
            pools.retain(|p| p.exists());
            pools.push(pool);
            let json = serde_json::to_vec_pretty(&pools).unwrap_or_default();
            crate::fsutil::atomic_write(&self.pools_file(), &json)?;
        }
        Ok(adopted)
    }

    /// Allocates a range for jail `name` (random id `id`) of the pool at
    /// `pool`, replacing any range recorded for that name there. The pool
    /// must be registered ([`Registry::register_pool`]) for the ranges of
    /// jails made before the registry to be skipped. Reads and writes the
    /// registry file once and probes each pool's root once: it never opens
    /// a jail's files.
    pub fn allocate(&self, pool: &Path, name: &str, id: &str) -> Result<IdRange, IdsError> {
        let pool = canonical(pool);
        let _lock = self.lock()?;
        let old = self.entries()?;
        let mut entries = old.clone();
        entries.retain(|e| !(e.pool == pool && e.jail == name));
        Self::prune_gone_pools(&mut entries);
        let taken: Vec<IdRange> = entries.iter().map(|e| e.ids).collect();
        let host = self.host_ranges(&old);
        let ids = allocate(&taken, &host).ok_or_else(|| IdsError::Exhausted {
            name: name.to_string(),
        })?;
        entries.push(Entry {
            ids,
            pool,
            jail: name.to_string(),
            id: id.to_string(),
        });
        self.save(&old, &entries)?;
        Ok(ids)
    }

    /// Forgets the range of jail `name` of the pool at `pool`.
    pub fn release(&self, pool: &Path, name: &str) -> Result<(), IdsError> {
        let pool = canonical(pool);
        let _lock = self.lock()?;
        let old = self.entries()?;
        let mut entries = old.clone();
        entries.retain(|e| !(e.pool == pool && e.jail == name));
        if entries.len() != old.len() {
            self.save(&old, &entries)?;
        }
        Ok(())
    }

    /// Checks, before a start, that `ids` is the range allocated to this
    /// jail. A jail made before the registry existed is registered now if
    /// its range is a jailer range that nothing else holds.
    pub fn verify(&self, pool: &Path, name: &str, id: &str, ids: IdRange) -> Result<(), IdsError> {
        let pool = canonical(pool);
        let recorded = show(&ids);
        let is_jail_range = ids.count == IDS_PER_JAIL
            && ids.uid_base >= FIRST_BASE
            && ids.gid_base >= FIRST_BASE
            && ids.uid_base.checked_add(IDS_PER_JAIL).is_some()
            && ids.gid_base.checked_add(IDS_PER_JAIL).is_some();
        if !is_jail_range {
            return Err(IdsError::NotJailRange {
                name: name.to_string(),
                recorded,
            });
        }
        let _lock = self.lock()?;
        let old = self.entries()?;
        if let Some(e) = old.iter().find(|e| e.pool == pool && e.jail == name) {
            if e.id == id && e.ids == ids {
                return Ok(());
            }
            return Err(IdsError::Mismatch {
                name: name.to_string(),
                recorded,
                allocated: if e.id == id {
                    show(&e.ids)
                } else {
                    "that of another jail of the same name".to_string()
                },
            });
        }
        // Not registered: adopt it if nothing else holds any of it.
        let mut entries = old.clone();
        Self::prune_gone_pools(&mut entries);
        Self::prune_pool(&mut entries, &pool);
        let me = Entry {
            ids,
            pool: pool.clone(),
            jail: name.to_string(),
            id: id.to_string(),
        };
        let host = self.host_ranges(&[old.as_slice(), std::slice::from_ref(&me)].concat());
        adoptable(&entries, &host, ids).map_err(|other| IdsError::Taken {
            name: name.to_string(),
            recorded: recorded.clone(),
            other: if other == HOST {
                format!(
                    "host users, groups or sub-id delegations in {}",
                    self.etc.display()
                )
            } else {
                other
            },
        })?;
        entries.push(me);
        self.save(&old, &entries)
    }

    /// The host's ranges, less the `root:BASE:COUNT` sub-id lines this
    /// registry wrote for `ours`.
    fn host_ranges(&self, ours: &[Entry]) -> Vec<(u64, u64)> {
        let mine: Vec<(u64, u64)> = ours
            .iter()
            .flat_map(|e| {
                [
                    (u64::from(e.ids.uid_base), u64::from(e.ids.count)),
                    (u64::from(e.ids.gid_base), u64::from(e.ids.count)),
                ]
            })
            .collect();
        let mine: HashSet<(u64, u64)> = mine.into_iter().collect();
        let mut out = Vec::new();
        for f in ["passwd", "group"] {
            out.extend(ids_of(&self.etc.join(f)));
        }
        for f in ["subuid", "subgid"] {
            for (owner, r) in subids_of(&self.etc.join(f)) {
                if !(owner == "root" && mine.contains(&r)) {
                    out.push(r);
                }
            }
        }
        out
    }
}

/// What [`adoptable`] says when host ids hold a range.
const HOST: &str = "host ids";

/// Whether `ids` (a jailer range) may be adopted: no entry and no host
/// range overlaps it. Else whose it is.
fn adoptable(entries: &[Entry], host: &[(u64, u64)], ids: IdRange) -> Result<(), String> {
    let is_jail_range = ids.count == IDS_PER_JAIL
        && ids.uid_base >= FIRST_BASE
        && ids.gid_base >= FIRST_BASE
        && ids.uid_base.checked_add(IDS_PER_JAIL).is_some()
        && ids.gid_base.checked_add(IDS_PER_JAIL).is_some();
    if !is_jail_range {
        return Err("not a jailer range".to_string());
    }
    let cand = |b: u32| (u64::from(b), u64::from(ids.count));
    let clash = entries.iter().find(|e| {
        let o = |b: u32| (u64::from(b), u64::from(e.ids.count));
        [ids.uid_base, ids.gid_base].iter().any(|b| {
            [e.ids.uid_base, e.ids.gid_base]
                .iter()
                .any(|x| overlaps(cand(*b), o(*x)))
        })
    });
    if let Some(e) = clash {
        return Err(format!("the range of {}", e.owner()));
    }
    if host
        .iter()
        .any(|h| overlaps(cand(ids.uid_base), *h) || overlaps(cand(ids.gid_base), *h))
    {
        return Err(HOST.to_string());
    }
    Ok(())
}

/// A JSON list of the registry: missing or empty is an empty list.
fn read_list<T: serde::de::DeserializeOwned>(path: PathBuf) -> Result<Vec<T>, IdsError> {
    match std::fs::read(&path) {
        Ok(b) if b.is_empty() => Ok(Vec::new()),
        Ok(b) => serde_json::from_slice(&b).map_err(|e| IdsError::Corrupt {
            path,
            why: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(IdsError::Io { path, source }),
    }
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

fn ids_of(file: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(':').nth(2)?.parse::<u64>().ok())
        .map(|id| (id, 1))
        .collect()
}

fn subids_of(file: &Path) -> Vec<(String, (u64, u64))> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut p = l.split(':');
            let owner = p.next()?.to_string();
            let start = p.next()?.parse().ok()?;
            let len = p.next()?.parse().ok()?;
            Some((owner, (start, len)))
        })
        .collect()
}

/// Rewrites a sub-id file without the lines `gone` and with the lines
/// `added` appended (each once), keeping every other line as it was;
/// atomically (temp file, rename), mode 0644 as shadow keeps it.
fn sync_subids(path: &Path, gone: &[String], added: &[String]) -> Result<(), IdsError> {
    if gone.is_empty() && added.is_empty() {
        return Ok(());
    }
    let io = |source| IdsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !gone.iter().any(|g| g == l))
        .collect();
    for a in added {
        if !lines.contains(&a.as_str()) {
            lines.push(a);
        }
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    crate::fsutil::atomic_write(path, out.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).expect("mkdir");
        std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\n").expect("w");
        std::fs::write(etc.join("subuid"), "alice:268435456:65536\n").expect("w");
        let reg = Registry::new(dir.path().join("reg"), etc);
        (dir, reg)
    }

    #[test]
    fn two_pools_never_share_a_range_and_subids_follow() {
        let (dir, reg) = registry();
        let (a, b) = (dir.path().join("pool-a"), dir.path().join("pool-b"));
        for p in [&a, &b] {
            std::fs::create_dir(p).expect("mkdir");
        }
        let ra = reg.allocate(&a, "web", "id-a").expect("a");
        let rb = reg.allocate(&b, "web", "id-b").expect("b");
        assert_ne!(ra.uid_base, rb.uid_base, "two pools got one range");
        // alice's delegation is skipped.
        assert_eq!(ra.uid_base, FIRST_BASE + IDS_PER_JAIL);
        let subuid = std::fs::read_to_string(dir.path().join("etc/subuid")).expect("r");
        assert!(subuid.starts_with("alice:268435456:65536\n"), "{subuid}");
        assert!(
            subuid.contains(&format!("root:{}:65536", ra.uid_base)),
            "{subuid}"
        );
        assert!(
            subuid.contains(&format!("root:{}:65536", rb.uid_base)),
            "{subuid}"
        );
        let subgid = std::fs::read_to_string(dir.path().join("etc/subgid")).expect("r");
        assert!(
            subgid.contains(&format!("root:{}:65536", rb.gid_base)),
            "{subgid}"
        );
        reg.verify(&a, "web", "id-a", ra).expect("verified");
        reg.release(&a, "web").expect("release");
        let subuid = std::fs::read_to_string(dir.path().join("etc/subuid")).expect("r");
        assert!(
            !subuid.contains(&format!("root:{}:", ra.uid_base)),
            "{subuid}"
        );
        assert_eq!(reg.entries().expect("entries").len(), 1);
    }

    #[test]
    fn start_refuses_a_record_whose_ids_were_edited() {
        let (dir, reg) = registry();
        let a = dir.path().join("pool-a");
        std::fs::create_dir(&a).expect("mkdir");
        let ra = reg.allocate(&a, "web", "id-a").expect("a");
        let rb = reg.allocate(&a, "db", "id-b").expect("b");
        let host_root = IdRange {
            uid_base: 0,
            gid_base: 0,
            count: IDS_PER_JAIL,
        };
        assert!(matches!(
            reg.verify(&a, "web", "id-a", host_root),
            Err(IdsError::NotJailRange { .. })
        ));
        assert!(matches!(
            reg.verify(&a, "web", "id-a", rb),
            Err(IdsError::Mismatch { .. })
        ));
        // An unregistered (older) jail claiming another's range is refused.
        assert!(matches!(
            reg.verify(&a, "old", "id-c", ra),
            Err(IdsError::Taken { .. })
        ));
        let free = IdRange {
            uid_base: FIRST_BASE + 10 * IDS_PER_JAIL,
            gid_base: FIRST_BASE + 10 * IDS_PER_JAIL,
            count: IDS_PER_JAIL,
        };
        reg.verify(&a, "old", "id-c", free).expect("adopted");
        reg.verify(&a, "old", "id-c", free)
            .expect("then registered");
    }

    #[test]
    fn ranges_of_a_pool_that_is_gone_are_freed_and_of_an_unmounted_one_kept() {
        let (dir, reg) = registry();
        let gone = dir.path().join("gone");
        let unmounted = dir.path().join("unmounted");
        std::fs::create_dir(&unmounted).expect("mkdir");
        let rg = reg.allocate(&gone, "a", "id-a").expect("a");
        let ru = reg.allocate(&unmounted, "b", "id-b").expect("b");
        assert_eq!(ru.uid_base, rg.uid_base, "a gone pool's range is reused");
        let rn = reg.allocate(&unmounted, "c", "id-c").expect("c");
        assert_ne!(
            rn.uid_base, ru.uid_base,
            "an unmounted pool's range is kept"
        );
        let subuid = std::fs::read_to_string(dir.path().join("etc/subuid")).expect("r");
        let line = format!("root:{}:", rg.uid_base);
        assert_eq!(subuid.matches(&line).count(), 1, "{subuid}");
    }

    #[test]
    fn allocates_lowest_free_range_skipping_jails_and_host() {
        let first = allocate(&[], &[]).expect("free");
        assert_eq!(first.uid_base, FIRST_BASE);
        assert_eq!(first.gid_base, FIRST_BASE);
        assert_eq!(first.count, 65_536);
        let second = allocate(&[first], &[]).expect("free");
        assert_eq!(second.uid_base, FIRST_BASE + 65_536);
        // A host subuid delegation right at the next range pushes it further.
        let host = vec![(u64::from(FIRST_BASE) + 2 * 65_536 + 5, 10)];
        let third = allocate(&[first, second], &host).expect("free");
        assert_eq!(third.uid_base, FIRST_BASE + 3 * 65_536);
        // A freed range is reused.
        assert_eq!(allocate(&[second], &[]).expect("free").uid_base, FIRST_BASE);
    }

    #[test]
    fn legacy_ranges_are_registered_once_and_then_never_reused() {
        let (dir, reg) = registry();
        let a = dir.path().join("pool-a");
        std::fs::create_dir(&a).expect("mkdir");
        let legacy = IdRange {
            uid_base: FIRST_BASE + 3 * IDS_PER_JAIL,
            gid_base: FIRST_BASE + 3 * IDS_PER_JAIL,
            count: IDS_PER_JAIL,
        };
        let scan = || vec![("old".to_string(), "id-old".to_string(), legacy)];
        assert!(!reg.is_registered(&a).expect("registered?"));
        assert_eq!(reg.register_pool(&a, false, scan).expect("register"), 1);
        assert!(reg.is_registered(&a).expect("registered?"));
        // Registered: the scan never runs again unless forced.
        let never = || -> Vec<(String, String, IdRange)> { panic!("scanned a registered pool") };
        assert_eq!(reg.register_pool(&a, false, never).expect("again"), 0);
        let mut got = Vec::new();
        for n in 0..5 {
            got.push(
                reg.allocate(&a, &format!("j{n}"), &format!("id-{n}"))
                    .expect("a"),
            );
        }
        assert!(!got.contains(&legacy), "a legacy range was reused: {got:?}");
        reg.verify(&a, "old", "id-old", legacy)
            .expect("legacy verified");
    }

    #[test]
    fn sweep_allocation_matches_the_first_fit_scan() {
        let len = u64::from(IDS_PER_JAIL);
        let naive = |used: &[(u64, u64)]| {
            let mut base = u64::from(FIRST_BASE);
            while used.iter().any(|u| overlaps((base, len), *u)) {
                base += len;
            }
            base
        };
        let cases: Vec<Vec<(u64, u64)>> = vec![
            vec![],
            vec![
                (u64::from(FIRST_BASE), len),
                (u64::from(FIRST_BASE) + 2 * len, 1),
            ],
            vec![
                (u64::from(FIRST_BASE) + 5, 0),
                (u64::from(FIRST_BASE) + len - 1, 3 * len),
            ],
            vec![
                (0, u64::from(FIRST_BASE) + 10 * len + 7),
                (u64::from(FIRST_BASE) + 11 * len, 2),
            ],
            (0..50)
                .map(|i| (u64::from(FIRST_BASE) + i * len, len))
                .collect(),
        ];
        for used in cases {
            let got = allocate(&[], &used).expect("free");
            assert_eq!(u64::from(got.uid_base), naive(&used), "{used:?}");
        }
    }

    #[test]
    fn reads_host_ids_from_etc_fixture() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("passwd"),
            "root:x:0:0::/root:/bin/sh\nweird\n",
        )
        .expect("w");
        std::fs::write(dir.path().join("group"), "root:x:0:\n").expect("w");
        std::fs::write(dir.path().join("subuid"), "alice:268435456:65536\n").expect("w");
        let r = Registry::new(dir.path().join("reg"), dir.path()).host_ranges(&[]);
        assert!(r.contains(&(0, 1)));
        assert!(r.contains(&(268_435_456, 65_536)));
        let a = allocate(&[], &r).expect("free");
        assert_eq!(a.uid_base, FIRST_BASE + 65_536);
    }
}
