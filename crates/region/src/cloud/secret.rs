//! Cloud credentials at rest: AES-256-GCM with a key the operator controls
//! (`[region] cloud_secret_key`, or a key file generated in the data dir on
//! first start). Stored as `v1:<base64(nonce ‖ ciphertext ‖ tag)>`; the
//! plaintext is never logged and never returned.

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

const PREFIX: &str = "v1:";

/// Why a secret could not be opened (no detail that could leak it).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the stored secret is not in a known format")]
    Format,
    #[error("the stored secret cannot be decrypted with this cloud_secret_key")]
    WrongKey,
    #[error("encryption failed")]
    Seal,
}

#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// From the operator's setting: 64 hex digits are the key itself, any
    /// other text is a passphrase hashed to one.
    pub fn from_setting(text: &str) -> SecretKey {
        let t = text.trim();
        if t.len() == 64
            && let Ok(b) = hex::decode(t)
            && let Ok(k) = <[u8; 32]>::try_from(b.as_slice())
        {
            return SecretKey(k);
        }
        SecretKey(Sha256::digest(t.as_bytes()).into())
    }

    pub fn generate() -> SecretKey {
        SecretKey(rand::random())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn key(&self) -> Result<LessSafeKey, SecretError> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| SecretError::Seal)
    }

    pub fn encrypt(&self, plain: &str) -> Result<String, SecretError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut buf = plain.as_bytes().to_vec();
        self.key()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(PREFIX.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Seal)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, SecretError> {
        let b64 = stored.strip_prefix(PREFIX).ok_or(SecretError::Format)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| SecretError::Format)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(SecretError::Format);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| SecretError::Format)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(PREFIX.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Format)
    }
}

/// The key from the setting, or from `<data_dir>/cloud-secret.key`
/// (created with a random key on first start, mode 0600).
pub fn load_key(setting: &str, data_dir: &std::path::Path) -> std::io::Result<SecretKey> {
    if !setting.trim().is_empty() {
        return Ok(SecretKey::from_setting(setting));
    }
    let path = data_dir.join("cloud-secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(SecretKey::from_setting(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key = SecretKey::generate();
            let tmp = data_dir.join("cloud-secret.key.tmp");
            std::fs::write(&tmp, key.to_hex())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            std::fs::rename(&tmp, &path)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let k = SecretKey::from_setting("operator passphrase");
        let sealed = k.encrypt("wJalrXUtnFEMI/K7MDENG").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("wJalr"));
        assert_eq!(k.decrypt(&sealed).unwrap(), "wJalrXUtnFEMI/K7MDENG");
        // A fresh nonce every time.
        assert_ne!(sealed, k.encrypt("wJalrXUtnFEMI/K7MDENG").unwrap());
        let other = SecretKey::from_setting("another");
        assert!(matches!(other.decrypt(&sealed), Err(SecretError::WrongKey)));
        assert!(matches!(k.decrypt("plain"), Err(SecretError::Format)));
        assert!(!format!("{k:?}").contains(&k.to_hex()));
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_key("", dir.path()).unwrap();
        let b = load_key("", dir.path()).unwrap();
        assert_eq!(a.to_hex(), b.to_hex());
        let hexkey = "00".repeat(32);
        assert_eq!(load_key(&hexkey, dir.path()).unwrap().to_hex(), hexkey);
    }
}
