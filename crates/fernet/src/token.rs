//! Fernet keys and the token format itself.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aes::Aes128;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE};
use base64::engine::{DecodePaddingMode, general_purpose::URL_SAFE_NO_PAD};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Longest token string (in characters) that [`decrypt`] will even try to decode. Keystone
/// tokens are a few hundred characters; the cap stops a hostile header from costing a large
/// allocation and an HMAC over megabytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Seconds a token's timestamp may lie ahead of `now` (clock skew between nodes) before it
/// is rejected as [`FernetError::FromFuture`]; the value other Fernet implementations use.
pub const MAX_CLOCK_SKEW: u64 = 60;

const VERSION: u8 = 0x80;
const HEADER_LEN: usize = 1 + 8 + 16;
const BLOCK_LEN: usize = 16;
const HMAC_LEN: usize = 32;
/// PKCS#7 always adds at least one byte, so even an empty message has one cipher block.
const MIN_TOKEN_BYTES: usize = HEADER_LEN + BLOCK_LEN + HMAC_LEN;

/// URL-safe base64 that accepts input with or without `=` padding (Keystone strips it).
/// Non-canonical trailing bits are still rejected, so every token has exactly one encoding.
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a token (or key) was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FernetError {
    /// The token string is longer than [`MAX_TOKEN_LEN`] characters.
    #[error("fernet token is too long")]
    TooLong,
    /// The token is not valid URL-safe base64.
    #[error("fernet token is not valid URL-safe base64")]
    MalformedBase64,
    /// The version byte is not `0x80`.
    #[error("unsupported fernet token version {0:#04x}")]
    WrongVersion(u8),
    /// The decoded token cannot hold the header, one cipher block and the HMAC.
    #[error("fernet token is too short")]
    TooShort,
    /// No key produced a matching HMAC: forged, corrupted, or signed with an unknown key.
    #[error("fernet token signature does not match any key")]
    BadSignature,
    /// The authenticated ciphertext is not whole blocks or its PKCS#7 padding is invalid.
    #[error("fernet token has invalid ciphertext padding")]
    BadPadding,
    /// The token is older than the requested time-to-live.
    #[error("fernet token has expired")]
    Expired,
    /// The timestamp is more than [`MAX_CLOCK_SKEW`] seconds after `now`.
    #[error("fernet token timestamp is in the future")]
    FromFuture,
    /// A key is not 32 bytes of URL-safe base64.
    #[error("invalid fernet key")]
    InvalidKey,
}

/// A 256-bit Fernet key: 128-bit HMAC-SHA256 signing key ‖ 128-bit AES encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct FernetKey {
    signing: [u8; 16],
    encryption: [u8; 16],
}

impl fmt::Debug for FernetKey {
    // Keys end up inside structs that get logged; never let `{:?}` leak them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FernetKey(<redacted>)")
    }
}

impl FernetKey {
    /// A fresh random key from the thread-local CSPRNG (seeded from the OS).
    pub fn generate() -> Self {
        Self::from_bytes(rand::random::<[u8; 32]>())
    }

    /// Builds a key from its 32 raw bytes (signing key first).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut signing = [0u8; 16];
        let mut encryption = [0u8; 16];
        signing.copy_from_slice(&bytes[..16]);
        encryption.copy_from_slice(&bytes[16..]);
        Self {
            signing,
            encryption,
        }
    }

    /// Parses the URL-safe base64 form (padding optional, surrounding whitespace ignored, so a
    /// Keystone key file with a trailing newline loads).
    pub fn from_base64(s: &str) -> Result<Self, FernetError> {
        let bytes = URL_SAFE_ANY_PAD
            .decode(s.trim())
            .map_err(|_| FernetError::InvalidKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| FernetError::InvalidKey)?;
        Ok(Self::from_bytes(bytes))
    }

    /// The canonical 44-character padded URL-safe base64 form (as Keystone writes key files).
    pub fn to_base64(&self) -> String {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(&self.signing);
        bytes[16..].copy_from_slice(&self.encryption);
        URL_SAFE.encode(bytes)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC zero-pads keys shorter than the hash block (RFC 2104 §2), so padding the 16-byte
        // key to SHA-256's 64-byte block ourselves gives the identical MAC while letting us use
        // the infallible fixed-size constructor instead of `new_from_slice(..).unwrap()`.
        let mut block = [0u8; 64];
        block[..16].copy_from_slice(&self.signing);
        <Hmac<Sha256> as KeyInit>::new(&block.into())
    }
}

/// Encrypts `plaintext` into an (unpadded) token stamped with the current time and a random IV.
pub fn encrypt(key: &FernetKey, plaintext: &[u8]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    encrypt_at(key, plaintext, now, rand::random())
}

/// Deterministic [`encrypt`]: caller supplies the timestamp and IV. Only for tests and
/// vectors — reusing an IV with the same key leaks plaintext relationships.
pub fn encrypt_at(key: &FernetKey, plaintext: &[u8], timestamp: u64, iv: [u8; 16]) -> String {
    let ciphertext = cbc::Encryptor::<Aes128>::new(&key.encryption.into(), &iv.into())
        .encrypt_padded_vec::<Pkcs7>(plaintext);
    let mut token = Vec::with_capacity(HEADER_LEN + ciphertext.len() + HMAC_LEN);
    token.push(VERSION);
    token.extend_from_slice(&timestamp.to_be_bytes());
    token.extend_from_slice(&iv);
    token.extend_from_slice(&ciphertext);
    let tag = key.mac().chain_update(&token).finalize().into_bytes();
    token.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(token)
}

/// Verifies and decrypts `token` with the first of `keys` whose HMAC matches.
///
/// `ttl` (seconds) rejects tokens older than `now - ttl`; `None` leaves expiry to the caller
/// (Keystone keeps the expiry inside the payload). Tokens stamped more than
/// [`MAX_CLOCK_SKEW`] seconds after `now` are always rejected. `keys` may be anything
/// iterable over keys or key references, e.g. `&[&key]` or
/// [`KeyRepository::decryption_keys`](crate::KeyRepository::decryption_keys).
pub fn decrypt<I>(keys: I, token: &str, ttl: Option<u64>, now: u64) -> Result<Vec<u8>, FernetError>
where
    I: IntoIterator,
    I::Item: AsRef<FernetKey>,
{
    let raw = decode(token)?;
    let (signed, tag) = raw.split_at(raw.len() - HMAC_LEN);
    // Authenticate before anything else looks at attacker-controlled bytes; `verify_slice`
    // compares in constant time.
    let key = keys
        .into_iter()
        .find(|k| {
            k.as_ref()
                .mac()
                .chain_update(signed)
                .verify_slice(tag)
                .is_ok()
        })
        .ok_or(FernetError::BadSignature)?;
    let key = key.as_ref();

    let timestamp = timestamp_of(&raw);
    if timestamp > now.saturating_add(MAX_CLOCK_SKEW) {
        return Err(FernetError::FromFuture);
    }
    if let Some(ttl) = ttl
        && timestamp.saturating_add(ttl) < now
    {
        return Err(FernetError::Expired);
    }

    let mut iv = [0u8; 16];
    iv.copy_from_slice(&raw[9..HEADER_LEN]);
    let ciphertext = &signed[HEADER_LEN..];
    cbc::Decryptor::<Aes128>::new(&key.encryption.into(), &iv.into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| FernetError::BadPadding)
}

/// The creation timestamp of `token`. **Unauthenticated** — only for diagnostics or for
/// choosing between keys/paths before [`decrypt`] does the real check.
pub fn token_timestamp(token: &str) -> Result<u64, FernetError> {
    decode(token).map(|raw| timestamp_of(&raw))
}

/// Base64-decodes and structurally validates a token (length and version, no crypto).
fn decode(token: &str) -> Result<Vec<u8>, FernetError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(FernetError::TooLong);
    }
    let raw = URL_SAFE_ANY_PAD
        .decode(token)
        .map_err(|_| FernetError::MalformedBase64)?;
    match raw.first() {
        Some(&VERSION) => {}
        Some(&v) => return Err(FernetError::WrongVersion(v)),
        None => return Err(FernetError::TooShort),
    }
    if raw.len() < MIN_TOKEN_BYTES {
        return Err(FernetError::TooShort);
    }
    Ok(raw)
}

/// Callers guarantee `raw.len() >= MIN_TOKEN_BYTES`.
fn timestamp_of(raw: &[u8]) -> u64 {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&raw[1..9]);
    u64::from_be_bytes(ts)
}

// `AsRef<FernetKey>` for the key itself lets `decrypt` accept `&[FernetKey]`, `&[&FernetKey]`,
// `Vec<&FernetKey>`, ... through std's blanket `AsRef` impl for references.
impl AsRef<FernetKey> for FernetKey {
    fn as_ref(&self) -> &FernetKey {
        self
    }
}
