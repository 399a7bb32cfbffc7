//! API keys. New keys are `ci_` + 34 base62 characters of randomness (≈202 bits) + a
//! 6-character checksum: 40 characters after `ci_`, the length the Python prototype's keys had,
//! so that scripts matching `ci_[A-Za-z0-9_-]{40,}` find them. Three shapes are accepted:
//!
//! - [`KeyShape::Current`]: `ci_` + 34 + 6 (issued now), checksum verified;
//! - [`KeyShape::Short`]: `ci_` + 22 + 6 (issued by earlier versions), checksum verified;
//! - [`KeyShape::Prototype`]: `ci_` + exactly 40 characters of `[A-Za-z0-9_-]` that fail the
//!   checksum: a key of the Python prototype (URL-safe base64, no checksum), which only a key
//!   imported with `ci-admin import-legacy` can match.
//!
//! The checksum rejects a typo in a checked key before the database is asked. Only the SHA-256
//! of the whole key is stored, plus its last four characters as a hint for listings.

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "ci_";
const BODY_LEN: usize = 34;
const SHORT_BODY_LEN: usize = 22;
const CHECKSUM_LEN: usize = 6;
/// Length of a key issued now (and of a prototype key): `ci_` + 40.
pub const KEY_LEN: usize = KEY_PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
/// Length of a key issued by earlier versions: `ci_` + 28.
pub const SHORT_KEY_LEN: usize = KEY_PREFIX.len() + SHORT_BODY_LEN + CHECKSUM_LEN;
/// Characters of the key shown as a hint in listings (its end: never part of the prefix).
const HINT_LEN: usize = 4;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Which of the accepted shapes a key has (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyShape {
    Current,
    Short,
    Prototype,
}

/// A full API key. Shown to its owner exactly once; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    text: String,
    shape: KeyShape,
}

impl SecretKey {
    /// A fresh random key of the current shape.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let body: String = (0..BODY_LEN)
            .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
            .collect();
        let checksum = checksum(&body);
        Self {
            text: format!("{KEY_PREFIX}{body}{checksum}"),
            shape: KeyShape::Current,
        }
    }

    /// Checks the shape (and, for our own keys, the checksum) of a key a user presented.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let rest = text.strip_prefix(KEY_PREFIX).ok_or(KeyError::Prefix)?;
        let checked = |body_len: usize, shape: KeyShape| {
            let (body, sum) = rest.split_at(body_len);
            (checksum(body) == sum).then(|| Self {
                text: text.to_owned(),
                shape,
            })
        };
        let alphanumeric = rest.bytes().all(|b| b.is_ascii_alphanumeric());
        match text.len() {
            SHORT_KEY_LEN if !alphanumeric => Err(KeyError::Characters),
            SHORT_KEY_LEN => checked(SHORT_BODY_LEN, KeyShape::Short).ok_or(KeyError::Checksum),
            KEY_LEN => {
                let url_safe = rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !url_safe {
                    return Err(KeyError::Characters);
                }
                let current = alphanumeric.then(|| checked(BODY_LEN, KeyShape::Current));
                Ok(current.flatten().unwrap_or_else(|| Self {
                    text: text.to_owned(),
                    shape: KeyShape::Prototype,
                }))
            }
            _ => Err(KeyError::Length),
        }
    }

    /// The secret itself, for the one time it is shown or sent.
    pub fn expose(&self) -> &str {
        &self.text
    }

    pub fn shape(&self) -> KeyShape {
        self.shape
    }

    /// What the database stores: hex SHA-256 of the whole key (as the prototype stored it).
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.text.as_bytes()))
    }

    /// The last characters of the key, the only part ever shown again (`…3fQz`).
    pub fn hint(&self) -> String {
        format!("…{}", &self.text[self.text.len() - HINT_LEN..])
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({:?}, {})", self.shape, self.hint())
    }
}

/// Why a presented key is not a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("API keys start with `ci_`")]
    Prefix,
    #[error("API keys are {KEY_LEN} characters long ({SHORT_KEY_LEN} for keys issued before)")]
    Length,
    #[error("API keys contain only letters, digits, `_` and `-` after `ci_`")]
    Characters,
    #[error("the API key's checksum does not match (is it mistyped or cut short?)")]
    Checksum,
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest([b"ci-key-checksum:", body.as_bytes()].concat());
    let mut value = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
}

/// Bytes as lower-case hex digits, two per byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of hex digits (either case); `None` for an odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Hex SHA-256 of arbitrary bytes (used for uploads as well).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_are_unique_and_match_the_prototypes_pattern() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), KEY_LEN);
        assert_eq!(a.expose().len() - KEY_PREFIX.len(), 40);
        assert!(a.expose().starts_with("ci_"));
        assert_eq!(SecretKey::parse(a.expose()).unwrap(), a);
        assert_eq!(a.shape(), KeyShape::Current);
        // `ci_[A-Za-z0-9_-]{40,}`, the prototype users' pattern.
        let rest = &a.expose()[3..];
        assert!(
            rest.len() >= 40
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
    }

    fn with_changed_char(text: &str, i: usize) -> String {
        let c = text.as_bytes()[i];
        let replacement = if c == b'a' { 'b' } else { 'a' };
        format!("{}{}{}", &text[..i], replacement, &text[i + 1..])
    }

    #[test]
    fn short_keys_of_earlier_versions_are_checked() {
        let body = "Ab3dE5fGh7Jk9Lm1Np3Qr5";
        let short = format!("ci_{body}{}", checksum(body));
        assert_eq!(short.len(), SHORT_KEY_LEN);
        let key = SecretKey::parse(&short).unwrap();
        assert_eq!(key.shape(), KeyShape::Short);
        assert_eq!(
            SecretKey::parse(&with_changed_char(&short, 8)),
            Err(KeyError::Checksum)
        );
    }

    #[test]
    fn forty_url_safe_characters_without_our_checksum_are_a_prototype_key() {
        let prototype = "ci_Zk3-xQ9_aB7cD2eF4gH6iJ8kL0mN1oP3qR5sT7uV";
        assert_eq!(prototype.len(), KEY_LEN);
        let key = SecretKey::parse(prototype).unwrap();
        assert_eq!(key.shape(), KeyShape::Prototype);
        // `printf %s ci_Zk3-... | sha256sum`: what the prototype stored for this key.
        assert_eq!(
            key.hash(),
            "d0081b67d135c8d04bb62bca6ab8a12fb6808ed0e8cd7897286a9cc945ffb573"
        );
        // A typo in a key of ours of this length cannot be told from a prototype key: it is
        // looked up by hash, which only an imported key can match.
        let ours = SecretKey::generate();
        let typo = with_changed_char(ours.expose(), 10);
        assert_eq!(
            SecretKey::parse(&typo).unwrap().shape(),
            KeyShape::Prototype
        );
    }

    #[test]
    fn malformed_keys_are_rejected_with_their_reason() {
        let key = SecretKey::generate();
        assert_eq!(SecretKey::parse("sk_live_123"), Err(KeyError::Prefix));
        assert_eq!(SecretKey::parse(&key.expose()[..20]), Err(KeyError::Length));
        assert_eq!(
            SecretKey::parse(&key.expose()[..KEY_LEN - 1]),
            Err(KeyError::Length)
        );
        let bad = format!("ci_{}", "!".repeat(KEY_LEN - 3));
        assert_eq!(SecretKey::parse(&bad), Err(KeyError::Characters));
        let bad = format!("ci_{}", "_".repeat(SHORT_KEY_LEN - 3));
        assert_eq!(SecretKey::parse(&bad), Err(KeyError::Characters));
    }

    #[test]
    fn sha256_hex_matches_the_standard_test_vectors() {
        // FIPS 180-2's examples, also `printf %s TEXT | sha256sum`.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hash_is_lowercase_hex_and_nothing_but_the_hint_is_shown() {
        let key = SecretKey::generate();
        assert_eq!(key.hash().len(), 64);
        assert!(key
            .hash()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let debug = format!("{key:?}");
        assert!(!debug.contains(key.expose()));
        assert!(
            !debug.contains(&key.expose()[..8]),
            "no part of the start: {debug}"
        );
        let hint = key.hint();
        assert_eq!(hint.chars().count(), 5);
        assert!(key.expose().ends_with(hint.trim_start_matches('…')));
        assert!(debug.contains(&hint));
    }
}
