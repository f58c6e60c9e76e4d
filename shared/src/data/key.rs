//! Object keys: any UTF-8 text of 1 byte to 1 KiB without control
//! characters (they would garble listings and logs). Keys are compared and
//! hashed as bytes; the ring places them by [`crate::ring::stable_hash`].

use serde::{Deserialize, Deserializer, Serialize};

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Why a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty.
    #[error("a key cannot be empty")]
    Empty,
    /// Longer than [`MAX_KEY_LEN`].
    #[error("a key is at most {MAX_KEY_LEN} bytes, this one has {0}")]
    TooLong(usize),
    /// Holds a control character.
    #[error("a key cannot hold control characters (found U+{0:04X})")]
    Control(u32),
}

/// A valid key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks `text`.
    ///
    /// # Errors
    /// [`KeyError`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        if text.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(text.len()));
        }
        if let Some(control) = text.chars().find(|c| c.is_control()) {
            return Err(KeyError::Control(u32::from(control)));
        }
        Ok(Self(text.to_string()))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its position on the ring.
    pub fn hash(&self) -> u64 {
        crate::ring::stable_hash(self.0.as_bytes())
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_non_empty_bounded_and_printable() {
        assert_eq!(ObjectKey::parse(""), Err(KeyError::Empty));
        assert!(ObjectKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert_eq!(ObjectKey::parse(&"k".repeat(MAX_KEY_LEN + 1)), Err(KeyError::TooLong(MAX_KEY_LEN + 1)));
        assert_eq!(ObjectKey::parse("a\nb"), Err(KeyError::Control(10)));
        assert!(ObjectKey::parse("photos/2026/été 1.jpg").is_ok());
    }

    #[test]
    fn a_key_that_is_not_valid_does_not_decode() {
        assert!(serde_json::from_str::<ObjectKey>("\"\"").is_err());
        assert_eq!(serde_json::from_str::<ObjectKey>("\"a/b\"").unwrap().as_str(), "a/b");
    }
}
