//! Allocation of the host uid/gid ranges that jails' ids map onto.
//!
//! Every jail gets 65,536 ids (a full 16-bit range, so every id a Debian
//! package may use exists inside). Ranges start at [`FIRST_BASE`], far above
//! the ids distributions hand out to users and to `/etc/subuid`, and are
//! checked against the host's passwd, group, subuid and subgid files anyway.

use crate::record::IdRange;
use std::path::Path;

/// Ids per jail.
pub const IDS_PER_JAIL: u32 = 65_536;
/// The first host id handed to a jail (2^28).
pub const FIRST_BASE: u32 = 1 << 28;

/// Ranges `[start, start+len)` of ids that the host uses, from the files in
/// `etc` (normally `/etc`): users and groups, and sub-id delegations.
pub fn host_ranges(etc: &Path) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for f in ["passwd", "group"] {
        if let Ok(text) = std::fs::read_to_string(etc.join(f)) {
            for line in text.lines() {
                if let Some(id) = line.split(':').nth(2).and_then(|s| s.parse::<u64>().ok()) {
                    out.push((id, 1));
                }
            }
        }
    }
    for f in ["subuid", "subgid"] {
        if let Ok(text) = std::fs::read_to_string(etc.join(f)) {
            for line in text.lines() {
                let mut p = line.split(':').skip(1);
                let start = p.next().and_then(|s| s.parse::<u64>().ok());
                let len = p.next().and_then(|s| s.parse::<u64>().ok());
                if let (Some(s), Some(l)) = (start, len) {
                    out.push((s, l));
                }
            }
        }
    }
    out
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

/// The lowest free range that overlaps neither `taken` (other jails) nor
/// `host` ranges, or `None` when the id space is exhausted.
pub fn allocate(taken: &[IdRange], host: &[(u64, u64)]) -> Option<IdRange> {
    let len = u64::from(IDS_PER_JAIL);
    let mut used: Vec<(u64, u64)> = host.to_vec();
    for t in taken {
        used.push((u64::from(t.uid_base), u64::from(t.count)));
        used.push((u64::from(t.gid_base), u64::from(t.count)));
    }
    // uid 2^32-1 is "no id": stop before it.
    let mut base = u64::from(FIRST_BASE);
    while base + len < u64::from(u32::MAX) {
        let cand = (base, len);
        if !used.iter().any(|u| overlaps(cand, *u)) {
            let b = u32::try_from(base).ok()?;
            return Some(IdRange {
                uid_base: b,
                gid_base: b,
                count: IDS_PER_JAIL,
            });
        }
        base += len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reads_host_ids_from_etc_fixture() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("passwd"),
            "root:x:0:0::/root:/bin/sh\nweird\n",
        )
        .expect("w");
        std::fs::write(dir.path().join("group"), "root:x:0:\n").expect("w");
        std::fs::write(dir.path().join("subuid"), "alice:268435456:65536\n").expect("w");
        let r = host_ranges(dir.path());
        assert!(r.contains(&(0, 1)));
        assert!(r.contains(&(268_435_456, 65_536)));
        let a = allocate(&[], &r).expect("free");
        assert_eq!(a.uid_base, FIRST_BASE + 65_536);
    }
}
