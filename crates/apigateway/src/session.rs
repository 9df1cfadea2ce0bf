//! The session a browser carries: an encrypted, authenticated keystone
//! token in a cookie, so any gateway holding the deployment's key can serve
//! any request and none keeps state.
//!
//! `yunionauth` (Cloudpods' cookie name) is base64url of the JSON Cloudpods
//! puts there (`exp`, `user`, `user_id`, the TOTP flags) with `session`
//! being ours: ChaCha20-Poly1305 over the token and its expiry, under the
//! gateway key, with a random nonce. The cookie is HttpOnly and
//! SameSite=Strict: the console never reads it, it asks `/auth/user`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{GatewayError, Result};

/// Name of the session cookie (Cloudpods').
pub const COOKIE: &str = "yunionauth";
const AAD: &[u8] = b"cloudpods-apigateway-session-v1";

/// What the sealed part of the cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionData {
    /// The keystone token.
    #[serde(rename = "t")]
    pub token: String,
    /// Expiry, seconds since the epoch (the token's).
    #[serde(rename = "e")]
    pub expires: i64,
    #[serde(rename = "u")]
    pub user_id: String,
}

/// Seals and opens sessions with the deployment's 32-byte key.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Result<Sealer> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key)
            .map_err(|_| GatewayError::Internal("the session key is not usable".into()))?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn seal(&self, data: &SessionData) -> Result<String> {
        self.seal_as(AAD, data)
    }

    /// Open a sealed session; any tampering, another key or a past expiry
    /// is [`GatewayError::BadSession`].
    pub fn open(&self, sealed: &str, now: i64) -> Result<SessionData> {
        let data: SessionData = self.open_as(AAD, sealed)?;
        if data.expires <= now {
            return Err(GatewayError::BadSession);
        }
        Ok(data)
    }

    /// Seal `data` for the purpose `aad` names (a sealed value of one
    /// purpose does not open as another's).
    pub fn seal_as<T: Serialize>(&self, aad: &'static [u8], data: &T) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| GatewayError::Internal("no randomness for a nonce".into()))?;
        let mut buf =
            serde_json::to_vec(data).map_err(|e| GatewayError::Internal(e.to_string()))?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| GatewayError::Internal("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Open what [`Sealer::seal_as`] sealed for `aad`.
    pub fn open_as<T: DeserializeOwned>(&self, aad: &'static [u8], sealed: &str) -> Result<T> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed.trim())
            .map_err(|_| GatewayError::BadSession)?;
        if raw.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(GatewayError::BadSession);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| GatewayError::BadSession)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| GatewayError::BadSession)?;
        serde_json::from_slice(plain).map_err(|_| GatewayError::BadSession)
    }
}

/// The `yunionauth` cookie value for a sealed session.
pub fn cookie_value(sealed: &str, data: &SessionData, user: &str) -> String {
    let exp = chrono::DateTime::from_timestamp(data.expires, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let v = json!({
        "exp": exp, "session": sealed, "totp_verified": false, "totp_init": false,
        "totp_on": false, "is_sso": false, "system_totp_on": false,
        "user_id": data.user_id, "user": user,
    });
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// The sealed session inside a `yunionauth` cookie value (or the value
/// itself when it is a bare sealed session, as `Authorization: Bearer`).
pub fn sealed_of_cookie(value: &str) -> Option<String> {
    let raw = URL_SAFE_NO_PAD.decode(value.trim()).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v["session"].as_str().map(str::to_string)
}

/// `Set-Cookie` for the session (and the expired one on logout).
pub fn set_cookie(
    name: &str,
    value: &str,
    expires: Option<i64>,
    secure: bool,
    http_only: bool,
) -> String {
    let mut c = format!("{name}={value}; Path=/; SameSite=Strict");
    match expires {
        Some(t) => {
            if let Some(d) = chrono::DateTime::from_timestamp(t, 0) {
                c.push_str(&d.format("; Expires=%a, %d %b %Y %H:%M:%S GMT").to_string());
            }
        }
        None => c.push_str("; Max-Age=0"),
    }
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// The password as the user typed it. Cloudpods' login page may send it
/// encoded: base64 of a 16-byte IV and AES-256-CBC (PKCS#7) under the key
/// "cloudpods" padded with '0' to 32 bytes. That is obfuscation, not
/// secrecy (the key is public): TLS is what protects a password. A value
/// that does not decode that way is the password itself.
pub fn decode_password(given: &str) -> String {
    decode_aes(given).unwrap_or_else(|| given.to_string())
}

fn decode_aes(given: &str) -> Option<String> {
    use cbc::cipher::block_padding::Pkcs7;
    use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
    let raw = STANDARD.decode(given.trim()).ok()?;
    if raw.len() < 32 || raw.len() % 16 != 0 {
        return None;
    }
    let mut key = [b'0'; 32];
    key[..9].copy_from_slice(b"cloudpods");
    let (iv, ct) = raw.split_at(16);
    let iv: [u8; 16] = iv.try_into().ok()?;
    let plain = cbc::Decryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .decrypt_padded_vec::<Pkcs7>(ct)
        .ok()?;
    String::from_utf8(plain).ok().filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(exp: i64) -> SessionData {
        SessionData {
            token: "gAAAA-token".into(),
            expires: exp,
            user_id: "u1".into(),
        }
    }

    #[test]
    fn a_sealed_session_opens_only_with_its_key_untouched_and_unexpired() {
        let s = Sealer::new(&[7u8; 32]).unwrap();
        let sealed = s.seal(&data(2_000)).unwrap();
        assert_eq!(s.open(&sealed, 1_000).unwrap().token, "gAAAA-token");
        // Expired.
        assert!(s.open(&sealed, 2_000).is_err());
        // Another key.
        assert!(
            Sealer::new(&[8u8; 32])
                .unwrap()
                .open(&sealed, 1_000)
                .is_err()
        );
        // One flipped bit.
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(s.open(&URL_SAFE_NO_PAD.encode(raw), 1_000).is_err());
        assert!(s.open("not base64 !", 1_000).is_err());
        // Two seals of the same data differ (random nonce).
        assert_ne!(sealed, s.seal(&data(2_000)).unwrap());
    }

    #[test]
    fn the_cookie_carries_cloudpods_fields_and_the_sealed_session() {
        let v = cookie_value("SEALED", &data(1_800_000_000), "admin");
        let raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        let j: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(j["user"], "admin");
        assert_eq!(j["exp"], "2027-01-15T08:00:00Z");
        assert_eq!(sealed_of_cookie(&v).as_deref(), Some("SEALED"));
        let c = set_cookie(COOKIE, &v, Some(1_800_000_000), true, true);
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"),
            "{c}"
        );
        assert!(c.contains("Expires=Fri, 15 Jan 2027 08:00:00 GMT"), "{c}");
    }

    #[test]
    fn cloudpods_encoded_passwords_decode_and_plain_ones_pass() {
        use cbc::cipher::block_padding::Pkcs7;
        use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
        let mut key = [b'0'; 32];
        key[..9].copy_from_slice(b"cloudpods");
        let iv = [3u8; 16];
        let ct = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
            .encrypt_padded_vec::<Pkcs7>(b"S3cret-pw!");
        let mut blob = iv.to_vec();
        blob.extend(ct);
        assert_eq!(decode_password(&STANDARD.encode(blob)), "S3cret-pw!");
        assert_eq!(decode_password("plain password"), "plain password");
        assert_eq!(decode_password("c2hvcnQ="), "c2hvcnQ=");
    }
}
