//! Token round trips, time checks, tampering and padding handling.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use cloudpods_fernet::{
    FernetError, FernetKey, MAX_CLOCK_SKEW, MAX_TOKEN_LEN, decrypt, encrypt, encrypt_at,
    token_timestamp,
};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000;
const IV: [u8; 16] = [7; 16];

#[test]
fn key_base64_round_trip_and_redacted_debug() {
    let key = FernetKey::generate();
    let b64 = key.to_base64();
    assert_eq!(b64.len(), 44);
    assert!(b64.ends_with('='));
    assert_eq!(FernetKey::from_base64(&b64).unwrap(), key);
    // Keystone key files may end in a newline; unpadded keys are accepted too.
    assert_eq!(FernetKey::from_base64(&format!("{b64}\n")).unwrap(), key);
    assert_eq!(
        FernetKey::from_base64(b64.trim_end_matches('=')).unwrap(),
        key
    );
    assert!(!format!("{key:?}").contains(b64.trim_end_matches('=')));
    assert_eq!(format!("{key:?}"), "FernetKey(<redacted>)");

    for bad in [
        "",
        "short",
        &URL_SAFE.encode([0u8; 31]),
        &URL_SAFE.encode([0u8; 33]),
    ] {
        assert_eq!(FernetKey::from_base64(bad), Err(FernetError::InvalidKey));
    }
    assert_ne!(FernetKey::generate(), FernetKey::generate());
}

#[test]
fn round_trip_with_current_time() {
    let key = FernetKey::generate();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for msg in [
        &b""[..],
        b"x",
        &[0u8; 15],
        &[1u8; 16],
        &[2u8; 17],
        &[3u8; 1000],
    ] {
        let token = encrypt(&key, msg);
        assert!(!token.contains('='), "tokens are emitted unpadded");
        assert_eq!(decrypt([&key], &token, Some(60), now).unwrap(), msg);
        assert!(token_timestamp(&token).unwrap().abs_diff(now) <= 2);
    }
    // A random IV makes every token distinct.
    assert_ne!(encrypt(&key, b"m"), encrypt(&key, b"m"));
}

#[test]
fn ttl_and_clock_skew() {
    let key = FernetKey::generate();
    let token = encrypt_at(&key, b"m", T0, IV);
    let ok = |ttl, now| decrypt([&key], &token, ttl, now);

    assert!(ok(Some(60), T0).is_ok());
    assert!(
        ok(Some(60), T0 + 60).is_ok(),
        "expiry boundary is inclusive"
    );
    assert_eq!(ok(Some(60), T0 + 61), Err(FernetError::Expired));
    assert!(ok(None, T0 + 10_000_000).is_ok(), "no ttl, no expiry");
    assert!(ok(Some(u64::MAX), u64::MAX).is_ok(), "no overflow");

    assert!(ok(Some(60), T0 - MAX_CLOCK_SKEW).is_ok(), "skew allowance");
    assert_eq!(
        ok(Some(60), T0 - MAX_CLOCK_SKEW - 1),
        Err(FernetError::FromFuture)
    );
    assert_eq!(ok(None, 0), Err(FernetError::FromFuture));
}

#[test]
fn wrong_key_is_bad_signature_and_keys_are_tried_in_turn() {
    let (a, b) = (FernetKey::generate(), FernetKey::generate());
    let token = encrypt_at(&b, b"m", T0, IV);
    assert_eq!(
        decrypt([&a], &token, None, T0),
        Err(FernetError::BadSignature)
    );
    assert_eq!(
        decrypt(Vec::<&FernetKey>::new(), &token, None, T0),
        Err(FernetError::BadSignature)
    );
    assert_eq!(decrypt([&a, &b], &token, None, T0).unwrap(), b"m");
    // Owned keys and slices of references work as well.
    assert_eq!(
        decrypt(&[a.clone(), b.clone()], &token, None, T0).unwrap(),
        b"m"
    );
    let refs: &[&FernetKey] = &[&a, &b];
    assert_eq!(decrypt(refs, &token, None, T0).unwrap(), b"m");
}

#[test]
fn padded_and_unpadded_tokens_are_accepted() {
    let key = FernetKey::generate();
    for len in 0..40 {
        let msg = vec![0xa5; len];
        let token = encrypt_at(&key, &msg, T0, IV);
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let padded = URL_SAFE.encode(&raw);
        assert_eq!(padded.trim_end_matches('='), token);
        assert_eq!(decrypt([&key], &token, None, T0).unwrap(), msg);
        assert_eq!(decrypt([&key], &padded, None, T0).unwrap(), msg);
        assert_eq!(token_timestamp(&padded).unwrap(), T0);
    }
}

#[test]
fn every_bit_flip_is_rejected() {
    let key = FernetKey::generate();
    let token = encrypt_at(&key, b"a keystone payload of moderate size", T0, IV);
    let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    for pos in 0..raw.len() {
        for bit in 0..8 {
            let mut bad = raw.clone();
            bad[pos] ^= 1 << bit;
            let err = decrypt([&key], &URL_SAFE_NO_PAD.encode(&bad), Some(60), T0).unwrap_err();
            if pos == 0 {
                assert_eq!(err, FernetError::WrongVersion(raw[0] ^ (1 << bit)));
            } else {
                assert_eq!(err, FernetError::BadSignature, "byte {pos} bit {bit}");
            }
        }
    }
}

#[test]
fn every_character_substitution_and_truncation_is_rejected() {
    let key = FernetKey::generate();
    let token = encrypt_at(&key, b"payload", T0, IV);
    let bytes = token.as_bytes();
    for pos in 0..bytes.len() {
        for replacement in [b'A', b'z', b'-', b'_', b'=', b'+', b'/', b'.'] {
            if bytes[pos] == replacement {
                continue;
            }
            let mut bad = bytes.to_vec();
            bad[pos] = replacement;
            let bad = String::from_utf8(bad).unwrap();
            assert!(decrypt([&key], &bad, Some(60), T0).is_err(), "{bad}");
        }
        assert!(decrypt([&key], &token[..pos], Some(60), T0).is_err());
    }
    assert!(decrypt([&key], &format!("{token}A"), Some(60), T0).is_err());
    assert!(decrypt([&key], &format!(" {token}"), Some(60), T0).is_err());
}

#[test]
fn structural_errors() {
    let key = FernetKey::generate();
    let dec = |t: &str| decrypt([&key], t, None, T0);
    assert_eq!(dec(""), Err(FernetError::TooShort));
    assert_eq!(
        dec(&URL_SAFE_NO_PAD.encode([0x80; 72])),
        Err(FernetError::TooShort)
    );
    assert_eq!(
        dec(&URL_SAFE_NO_PAD.encode([0x81; 200])),
        Err(FernetError::WrongVersion(0x81))
    );
    assert_eq!(
        dec(&"A".repeat(MAX_TOKEN_LEN + 1)),
        Err(FernetError::TooLong)
    );
    assert_eq!(
        token_timestamp(&"A".repeat(MAX_TOKEN_LEN + 1)),
        Err(FernetError::TooLong)
    );
    assert_eq!(token_timestamp("!!"), Err(FernetError::MalformedBase64));
    // Longest accepted input still gets through to the signature check.
    let long = URL_SAFE_NO_PAD.encode([0x80; MAX_TOKEN_LEN / 4 * 3]);
    assert_eq!(long.len(), MAX_TOKEN_LEN);
    assert_eq!(dec(&long), Err(FernetError::BadSignature));
}

proptest! {
    #[test]
    fn prop_round_trip(msg in proptest::collection::vec(any::<u8>(), 0..2048),
                       ts in 0u64..=u64::MAX - MAX_CLOCK_SKEW,
                       iv in any::<[u8; 16]>()) {
        let key = FernetKey::generate();
        let token = encrypt_at(&key, &msg, ts, iv);
        prop_assert_eq!(decrypt([&key], &token, Some(0), ts).unwrap(), msg.clone());
        prop_assert_eq!(token_timestamp(&token).unwrap(), ts);
        prop_assert_eq!(decrypt([&key], &encrypt(&key, &msg), None, u64::MAX).unwrap(), msg);
    }

    #[test]
    fn prop_decrypt_never_panics_on_strings(s in any::<String>()) {
        let key = FernetKey::generate();
        prop_assert!(decrypt([&key], &s, Some(60), T0).is_err());
        let _ = token_timestamp(&s);
    }

    #[test]
    fn prop_decrypt_never_panics_on_base64ish(s in "[A-Za-z0-9_=-]{0,300}") {
        let key = FernetKey::generate();
        prop_assert!(decrypt([&key], &s, Some(60), T0).is_err());
        let _ = token_timestamp(&s);
    }

    #[test]
    fn prop_decrypt_never_panics_on_versioned_bytes(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        // A valid version byte gets random input past the cheap checks into the MAC check.
        let mut raw = vec![0x80];
        raw.extend(body);
        let key = FernetKey::generate();
        prop_assert!(decrypt([&key], &URL_SAFE_NO_PAD.encode(&raw), None, T0).is_err());
    }
}
