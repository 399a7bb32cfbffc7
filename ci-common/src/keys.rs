//! API keys: `ci_` + 22 base62 characters of randomness (≈131 bits) + a 6-character checksum.
//! The checksum lets a typo be rejected before the database is asked; only the SHA-256 of the
//! whole key is stored, plus a short prefix that is safe to show in listings.

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "ci_";
const BODY_LEN: usize = 22;
const CHECKSUM_LEN: usize = 6;
/// Characters of the body kept (after `ci_`) in the display prefix.
const DISPLAY_LEN: usize = 8;
pub const KEY_LEN: usize = KEY_PREFIX.len() + BODY_LEN + CHECKSUM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A full API key. Shown to its owner exactly once; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let body: String = (0..BODY_LEN)
            .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
            .collect();
        let checksum = checksum(&body);
        Self(format!("{KEY_PREFIX}{body}{checksum}"))
    }

    /// Checks the shape and checksum of a key a user presented.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let body_and_sum = text.strip_prefix(KEY_PREFIX).ok_or(KeyError::Prefix)?;
        if text.len() != KEY_LEN {
            return Err(KeyError::Length);
        }
        if !body_and_sum.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyError::Characters);
        }
        let (body, sum) = body_and_sum.split_at(BODY_LEN);
        if checksum(body) != sum {
            return Err(KeyError::Checksum);
        }
        Ok(Self(text.to_owned()))
    }

    /// The secret itself, for the one time it is shown or sent.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database stores: hex SHA-256 of the whole key.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// A non-secret prefix for listings, e.g. `ci_Ab3dE5fG`.
    pub fn display_prefix(&self) -> String {
        self.0[..KEY_PREFIX.len() + DISPLAY_LEN].to_owned()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}…)", self.display_prefix())
    }
}

/// Why a presented key is not a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("API keys start with `ci_`")]
    Prefix,
    #[error("API keys are {KEY_LEN} characters long")]
    Length,
    #[error("API keys contain only letters and digits after `ci_`")]
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of arbitrary bytes (used for uploads as well).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_are_unique() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), KEY_LEN);
        assert!(a.expose().starts_with("ci_"));
        assert_eq!(SecretKey::parse(a.expose()).unwrap(), a);
    }

    #[test]
    fn a_typo_fails_the_checksum() {
        let key = SecretKey::generate();
        let text = key.expose();
        // Change one body character to a different base62 character.
        let i = KEY_PREFIX.len() + 5;
        let c = text.as_bytes()[i];
        let replacement = if c == b'a' { 'b' } else { 'a' };
        let typo = format!("{}{}{}", &text[..i], replacement, &text[i + 1..]);
        assert_eq!(SecretKey::parse(&typo), Err(KeyError::Checksum));
    }

    #[test]
    fn malformed_keys_are_rejected_with_their_reason() {
        let key = SecretKey::generate();
        assert_eq!(SecretKey::parse("sk_live_123"), Err(KeyError::Prefix));
        assert_eq!(SecretKey::parse(&key.expose()[..20]), Err(KeyError::Length));
        let bad = format!("ci_{}", "!".repeat(KEY_LEN - 3));
        assert_eq!(SecretKey::parse(&bad), Err(KeyError::Characters));
    }

    #[test]
    fn hash_is_sha256_and_debug_hides_the_secret() {
        let key = SecretKey::generate();
        assert_eq!(key.hash().len(), 64);
        assert_eq!(key.hash(), sha256_hex(key.expose().as_bytes()));
        let debug = format!("{key:?}");
        assert!(!debug.contains(key.expose()));
        assert!(debug.contains(&key.display_prefix()));
        assert_eq!(key.display_prefix().len(), 11);
    }
}
