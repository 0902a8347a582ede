//! Capability numbers and their lowercase names (`cap_chown` is bit 0).

use std::sync::OnceLock;

fn table() -> &'static [Option<String>; 64] {
    static T: OnceLock<[Option<String>; 64]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t: [Option<String>; 64] = std::array::from_fn(|_| None);
        for c in caps::all() {
            if let Some(slot) = t.get_mut(usize::from(c.index())) {
                *slot = Some(c.to_string().to_ascii_lowercase());
            }
        }
        t
    })
}

/// The name of capability `bit`; a bit newer than the names known here is
/// `cap_N`.
pub fn name(bit: u8) -> String {
    table()
        .get(usize::from(bit))
        .and_then(|n| n.clone())
        .unwrap_or_else(|| format!("cap_{bit}"))
}

/// The bit of a lowercase capability name (`cap_N` too).
pub fn bit(name: &str) -> Option<u8> {
    if let Some(i) = table().iter().position(|n| n.as_deref() == Some(name)) {
        return u8::try_from(i).ok();
    }
    name.strip_prefix("cap_")
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|b| *b < 64)
}

/// The bits set in a capability mask.
pub fn bits(mask: u64) -> impl Iterator<Item = u8> {
    (0u8..64).filter(move |b| mask & (1u64 << b) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bits() {
        assert_eq!(name(0), "cap_chown");
        assert_eq!(name(13), "cap_net_raw");
        assert_eq!(name(21), "cap_sys_admin");
        assert_eq!(name(40), "cap_checkpoint_restore");
        assert_eq!(name(63), "cap_63");
        assert_eq!(bit("cap_net_raw"), Some(13));
        assert_eq!(bit("cap_63"), Some(63));
        assert_eq!(bit("cap_fly"), None);
        assert_eq!(bits(0b1010_0001).collect::<Vec<_>>(), vec![0, 5, 7]);
    }
}
