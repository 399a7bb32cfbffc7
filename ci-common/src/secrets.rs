//! Values stored encrypted at rest (users' git credentials): ChaCha20-Poly1305 with a key the
//! operator gives every server replica and the controller (`--secrets-key-file`: 32 random
//! bytes as 64 hex digits, e.g. from `openssl rand -hex 32`). Each value is sealed with a fresh
//! random nonce and bound to what it belongs to (the associated data, such as the user and the
//! host), so a sealed value copied to another row does not open.
//!
//! A sealed value is `v1:` followed by the nonce and the ciphertext (with its tag) in hex.

use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// The operator's key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretsKey(Key);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

/// Why a key or a sealed value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the secrets key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the secrets key file {0} does not hold 64 hex digits (32 bytes): make one with \
         `openssl rand -hex 32 > FILE`"
    )]
    Malformed(String),
    #[error(
        "a stored secret cannot be opened: it was sealed with another key, or for another owner \
         (set it again)"
    )]
    Open,
}

use crate::keys::{hex, unhex};

impl SecretsKey {
    /// Reads the key from `path` (64 hex digits, surrounding whitespace ignored).
    ///
    /// # Errors
    ///
    /// [`SecretsError::Read`] or [`SecretsError::Malformed`].
    pub fn from_file(path: &Path) -> Result<Self, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_hex(text.trim())
            .ok_or_else(|| SecretsError::Malformed(path.display().to_string()))
    }

    /// The key of 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = unhex(text).filter(|b| b.len() == 32)?;
        Some(Self(*Key::from_slice(&bytes)))
    }

    /// Seals `plain` for `owner` (the associated data).
    pub fn seal(&self, plain: &str, owner: &str) -> String {
        let cipher = ChaCha20Poly1305::new(&self.0);
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: owner.as_bytes(),
                },
            )
            .expect("encryption of a short value does not fail");
        format!("{PREFIX}{}{}", hex(&nonce), hex(&sealed))
    }

    /// Opens what [`Self::seal`] sealed for `owner`.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Open`]: another key, another owner, or a damaged value.
    pub fn open(&self, sealed: &str, owner: &str) -> Result<String, SecretsError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(unhex)
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(SecretsError::Open)?;
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let plain = ChaCha20Poly1305::new(&self.0)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Open)?;
        String::from_utf8(plain).map_err(|_| SecretsError::Open)
    }
}

// Secret variables (`ci secrets`, `secrets = [...]` of a task): what their names and values
// may be; the values are sealed with [`SecretsKey`] (see `db::secret_variables`).

/// The longest name of a secret variable (`ci secrets set NAME`), in bytes.
pub const NAME_MAX_LEN: usize = 64;
/// The shortest value, in bytes: shorter values would be masked in the log where they are
/// merely part of other words.
pub const VALUE_MIN_LEN: usize = 8;
/// The longest value, in bytes.
pub const VALUE_MAX_LEN: usize = 4096;

/// Checks a secret's name: an environment variable's name (`A-Z`, `a-z`, digits and `_`, not
/// starting with a digit), at most 64 bytes, not starting with `CI_` (the service's own).
pub fn check_variable_name(name: &str) -> Result<(), String> {
    let shaped = !name.is_empty()
        && name.len() <= NAME_MAX_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !shaped {
        return Err(format!(
            "invalid secret name {name:?}: use an environment variable's name of up to \
             {NAME_MAX_LEN} letters, digits and '_', not starting with a digit (e.g. PYPI_TOKEN)"
        ));
    }
    if name.to_ascii_uppercase().starts_with("CI_") {
        return Err(format!(
            "invalid secret name {name:?}: names starting with CI_ are the service's own"
        ));
    }
    Ok(())
}

/// Checks a secret's value: one line of 8 to 4096 bytes (so that masking it in the log is
/// reliable), without NUL.
pub fn check_variable_value(value: &str) -> Result<(), String> {
    if value.len() < VALUE_MIN_LEN || value.len() > VALUE_MAX_LEN {
        return Err(format!(
            "a secret's value must be {VALUE_MIN_LEN} to {VALUE_MAX_LEN} bytes long (shorter \
             values cannot be masked in the log reliably)"
        ));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(
            "a secret's value must be one line (no line breaks or NUL), so that it can be \
             masked in the log; encode a multi-line value (e.g. base64) and decode it in the task"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_owner() {
        let key = SecretsKey::from_hex(&"ab".repeat(32)).unwrap();
        let other = SecretsKey::from_hex(&"cd".repeat(32)).unwrap();
        let sealed = key.seal("ghp_token ü", "user-1 github.com");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("ghp_token"));
        assert_ne!(
            sealed,
            key.seal("ghp_token ü", "user-1 github.com"),
            "fresh nonces"
        );
        assert_eq!(
            key.open(&sealed, "user-1 github.com").unwrap(),
            "ghp_token ü"
        );
        assert!(key.open(&sealed, "user-2 github.com").is_err());
        assert!(other.open(&sealed, "user-1 github.com").is_err());
        assert!(key.open("v1:00", "user-1 github.com").is_err());
        assert!(SecretsKey::from_hex("abc").is_none());
        assert!(format!("{key:?}").contains(".."));
    }

    #[test]
    fn a_key_file_must_hold_64_hex_digits() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{}\n", "0f".repeat(32))).unwrap();
        assert!(SecretsKey::from_file(&good).is_ok());
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "short").unwrap();
        let err = SecretsKey::from_file(&bad).unwrap_err();
        assert!(err.to_string().contains("openssl rand -hex 32"), "{err}");
        assert!(SecretsKey::from_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn variable_names_and_values() {
        for good in ["PYPI_TOKEN", "a", "_X1"] {
            assert!(check_variable_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1X", "A-B", "CI_TOKEN", "ci_x", &"A".repeat(65)] {
            assert!(check_variable_name(bad).is_err(), "{bad}");
        }
        assert!(check_variable_value("12345678").is_ok());
        for bad in ["short", "two\nlines", &"x".repeat(4097)] {
            assert!(check_variable_value(bad).is_err(), "{bad:?}");
        }
    }
}
