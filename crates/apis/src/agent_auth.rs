//! Signatures on region → host agent requests (docs/AGENT_PROTOCOL.md,
//! "Authentication").
//!
//! Every request the region sends to an agent carries
//! `X-Cloudpods-Timestamp` (Unix seconds) and `X-Cloudpods-Signature`
//! (lowercase hex HMAC-SHA256, keyed with the host's 32-byte agent secret,
//! over [`string_to_sign`]). The agent recomputes it and compares in
//! constant time; timestamps more than [`MAX_SKEW_SECS`] away are refused.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const TIMESTAMP_HEADER: &str = "X-Cloudpods-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Cloudpods-Signature";
/// How far a request's timestamp may be from the agent's clock.
pub const MAX_SKEW_SECS: i64 = 300;
/// Length of an agent secret in bytes (hex-encoded: twice as many chars).
pub const SECRET_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// What a signature covers. Absent headers are empty strings.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// Upper-case HTTP method.
    pub method: &'a str,
    /// Path and query exactly as sent (`/servers/x/start?a=b`).
    pub path_and_query: &'a str,
    pub timestamp: i64,
    pub task_id: &'a str,
    pub notify_url: &'a str,
    pub body: &'a [u8],
}

/// The exact bytes signed: seven lines joined by `\n`:
/// `cloudpods-agent-v1`, method, path+query, timestamp, X-Task-Id,
/// X-Task-Notify-Url, hex sha256 of the body.
pub fn string_to_sign(s: &Signed<'_>) -> String {
    format!(
        "cloudpods-agent-v1\n{}\n{}\n{}\n{}\n{}\n{}",
        s.method.to_ascii_uppercase(),
        s.path_and_query,
        s.timestamp,
        s.task_id,
        s.notify_url,
        hex::encode(Sha256::digest(s.body)),
    )
}

/// A fresh random secret, hex-encoded.
pub fn generate_secret() -> String {
    let b: [u8; SECRET_LEN] = rand::random();
    hex::encode(b)
}

/// The key bytes of a hex-encoded secret; `None` unless it is exactly
/// [`SECRET_LEN`] bytes of hex.
pub fn parse_secret(hex_secret: &str) -> Option<Vec<u8>> {
    let k = hex::decode(hex_secret.trim()).ok()?;
    (k.len() == SECRET_LEN).then_some(k)
}

fn mac(key: &[u8], s: &Signed<'_>) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail.
    let mut m = match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("hmac takes any key length"),
    };
    m.update(string_to_sign(s).as_bytes());
    m
}

/// A key for one purpose derived from an agent secret (HMAC-SHA256 of
/// `label`, hex): the pre-shared key of one live migration, recomputed on
/// every retry and never stored.
pub fn derive_key(key: &[u8], label: &str) -> String {
    let mut m = match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("hmac takes any key length"),
    };
    m.update(b"cloudpods-derived-key-v1\n");
    m.update(label.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The hex signature of a request.
pub fn sign(key: &[u8], s: &Signed<'_>) -> String {
    hex::encode(mac(key, s).finalize().into_bytes())
}

/// Why a request was refused (answered 401 with [`AuthError::message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    BadTimestamp,
    /// Seconds between the agent's clock and the request's timestamp.
    Skew(i64),
    BadSignature,
}

impl AuthError {
    pub fn message(&self) -> String {
        match self {
            AuthError::Missing => format!(
                "the request is not signed ({TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required)"
            ),
            AuthError::BadTimestamp => "the request timestamp is not an integer".into(),
            AuthError::Skew(s) => format!(
                "the request timestamp is {s} s away from this agent's clock (at most {MAX_SKEW_SECS} s allowed)"
            ),
            AuthError::BadSignature => "the request signature is invalid".into(),
        }
    }
}

/// Check a request's signature (constant-time) and timestamp against `now`.
pub fn verify(key: &[u8], s: &Signed<'_>, signature_hex: &str, now: i64) -> Result<(), AuthError> {
    let skew = now.saturating_sub(s.timestamp);
    if skew.abs() > MAX_SKEW_SECS {
        return Err(AuthError::Skew(skew));
    }
    let tag = hex::decode(signature_hex.trim()).map_err(|_| AuthError::BadSignature)?;
    mac(key, s)
        .verify_slice(&tag)
        .map_err(|_| AuthError::BadSignature)
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ts: i64) -> Signed<'static> {
        Signed {
            method: "POST",
            path_and_query: "/servers/a/start",
            timestamp: ts,
            task_id: "t1",
            notify_url: "http://r:1/tasks/t1?stage=s&key=k",
            body: b"{}",
        }
    }

    #[test]
    fn sign_and_verify() {
        let key = parse_secret(&generate_secret()).unwrap();
        let sig = sign(&key, &req(1000));
        assert_eq!(verify(&key, &req(1000), &sig, 1100), Ok(()));
        assert_eq!(
            verify(&key, &req(1000), &sig, 1400),
            Err(AuthError::Skew(400))
        );
        let mut other = req(1000);
        other.body = b"{\"x\":1}";
        assert_eq!(
            verify(&key, &other, &sig, 1000),
            Err(AuthError::BadSignature)
        );
        let wrong = parse_secret(&generate_secret()).unwrap();
        assert_eq!(
            verify(&wrong, &req(1000), &sig, 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(&key, &req(1000), "zz", 1000),
            Err(AuthError::BadSignature)
        );
        assert!(
            string_to_sign(&req(5))
                .starts_with("cloudpods-agent-v1\nPOST\n/servers/a/start\n5\nt1\n")
        );
        assert!(parse_secret("abcd").is_none());
    }
}
