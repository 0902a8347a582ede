//! Names of jails and templates.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A validated jail or template name: `[a-z0-9][a-z0-9_.-]{0,62}`.
///
/// The first character excludes `.` and `-`, and `/` is never allowed, so a
/// name can be joined to a directory without leaving it (`..` cannot match).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {name:?}: {why}; names are 1 to 63 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit")]
pub struct NameError {
    pub name: String,
    pub why: &'static str,
}

impl Name {
    /// Validates `s` as a name.
    pub fn new(s: &str) -> Result<Name, NameError> {
        let bad = |why| NameError {
            name: s.to_string(),
            why,
        };
        let mut chars = s.chars();
        let Some(first) = chars.next() else {
            return Err(bad("it is empty"));
        };
        if s.len() > 63 {
            return Err(bad("it is longer than 63 characters"));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(bad("it must start with a-z or 0-9"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)) {
            return Err(bad(
                "it contains a character other than a-z, 0-9, '_', '.', '-'",
            ));
        }
        Ok(Name(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Name::new(&s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

impl AsRef<std::path::Path> for Name {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for n in ["a", "web-1", "db_2.prod", "0abc", &"x".repeat(63)] {
            assert_eq!(Name::new(n).expect(n).as_str(), n);
        }
    }

    #[test]
    fn refuses_names_that_could_leave_the_root_or_are_malformed() {
        for n in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "/abs",
            "-x",
            ".hidden",
            "_x",
            "Web",
            "a b",
            "a\0b",
            "é",
            &"x".repeat(64),
        ] {
            let e = Name::new(n).expect_err(n);
            assert!(e.to_string().contains("invalid name"), "{e}");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<Name>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<Name>("\"../x\"").is_err());
    }
}
