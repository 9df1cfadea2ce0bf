//! Fernet tokens and a Keystone-compatible rotating key repository.
//!
//! # Token format
//!
//! A Fernet token (<https://github.com/fernet/spec/blob/master/Spec.md>, version `0x80`) is the
//! URL-safe base64 encoding of
//!
//! ```text
//! Version (1 byte, 0x80) ‖ Timestamp (8 bytes, big-endian Unix seconds) ‖ IV (16 bytes)
//!   ‖ Ciphertext (AES-128-CBC, PKCS#7 padded, ≥ 16 bytes) ‖ HMAC-SHA256 (32 bytes)
//! ```
//!
//! where the HMAC covers every byte before it. A [`FernetKey`] is 32 bytes — the first 16 are
//! the HMAC signing key, the last 16 the AES encryption key — written as 44 characters of
//! padded URL-safe base64.
//!
//! Like OpenStack Keystone, [`encrypt`] emits tokens *without* the trailing `=` padding (they
//! travel in HTTP headers and URLs), and [`decrypt`] accepts them with or without it.
//! [`decrypt`] always verifies the HMAC (in constant time) before touching the ciphertext, so
//! the padding check can never act as a padding oracle.
//!
//! # Key rotation
//!
//! [`KeyRepository`] follows Keystone's `keystone-manage fernet_rotate` model. Keys are
//! numbered:
//!
//! * index `0` is the **staged** key: the next primary. It is already accepted for decryption,
//!   so once every node has it, any node may rotate and start issuing tokens with it without
//!   the others rejecting them.
//! * the highest index is the **primary** key: it encrypts every new token.
//! * every other index is a **secondary** key: kept only to decrypt tokens issued before
//!   recent rotations.
//!
//! [`KeyRepository::rotate`] promotes the staged key to primary (index `max + 1`), stages a
//! fresh key at `0`, and drops the oldest secondaries so that at most `max_active_keys` keys
//! remain. A token therefore stays decryptable for `max_active_keys - 2` rotations after the
//! one that retired its key, which is how operators size `max_active_keys` against the token
//! lifetime and rotation period.
//!
//! ```
//! use cloudpods_fernet::{KeyRepository, decrypt, encrypt};
//!
//! let mut repo = KeyRepository::initialize();
//! let token = encrypt(repo.primary(), b"payload");
//! repo.rotate(3); // the token's key is now a secondary...
//! # let now = u64::MAX / 2;
//! assert_eq!(decrypt(repo.decryption_keys(), &token, None, now)?, b"payload");
//! repo.rotate(3); // ...and now it has been pruned.
//! assert!(repo.decrypt(&token, None, now).is_err());
//! # Ok::<(), cloudpods_fernet::FernetError>(())
//! ```

mod repository;
mod token;

pub use repository::{KeyRepository, KeyRepositoryError, MIN_ACTIVE_KEYS};
pub use token::{
    FernetError, FernetKey, MAX_CLOCK_SKEW, MAX_TOKEN_LEN, decrypt, encrypt, encrypt_at,
    token_timestamp,
};
