//! Key repository: Keystone rotation semantics, entries and on-disk layout.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use cloudpods_fernet::{FernetError, FernetKey, KeyRepository, KeyRepositoryError, encrypt_at};

const NOW: u64 = 1_700_000_000;

fn indexes(repo: &KeyRepository) -> Vec<u32> {
    repo.entries().into_iter().map(|(i, _)| i).collect()
}

fn token(key: &FernetKey) -> String {
    encrypt_at(key, b"payload", NOW, [3; 16])
}

#[test]
fn initialize_has_staged_and_primary() {
    let repo = KeyRepository::initialize();
    assert_eq!(indexes(&repo), [0, 1]);
    assert_eq!(repo.primary_index(), 1);
    assert_ne!(repo.primary(), repo.staged());
    let keys = repo.decryption_keys();
    assert_eq!(keys, [repo.primary(), repo.staged()]);
    assert!(!format!("{repo:?}").contains(&repo.primary().to_base64()));
}

#[test]
fn rotation_matches_keystone_numbering() {
    let mut repo = KeyRepository::initialize();
    let staged = repo.staged().clone();
    repo.rotate(3);
    assert_eq!(indexes(&repo), [0, 1, 2]);
    assert_eq!(repo.primary(), &staged, "staged key is promoted");
    assert_ne!(repo.staged(), &staged, "a fresh key is staged");
    repo.rotate(3);
    assert_eq!(indexes(&repo), [0, 2, 3]);

    let mut repo = KeyRepository::initialize();
    for _ in 0..6 {
        repo.rotate(5);
    }
    assert_eq!(indexes(&repo), [0, 4, 5, 6, 7]);
    // Keystone's decryption order: primary, newest to oldest secondary, staged last.
    let entries = repo.entries();
    let by_index =
        |i: u32| FernetKey::from_base64(&entries.iter().find(|e| e.0 == i).unwrap().1).unwrap();
    let expected: Vec<FernetKey> = [7, 6, 5, 4, 0].into_iter().map(by_index).collect();
    let got: Vec<FernetKey> = repo.decryption_keys().into_iter().cloned().collect();
    assert_eq!(got, expected);
}

#[test]
fn max_active_keys_below_three_is_three() {
    for max in [0, 1, 2] {
        let mut repo = KeyRepository::initialize();
        for _ in 0..4 {
            repo.rotate(max);
        }
        assert_eq!(indexes(&repo), [0, 4, 5]);
    }
}

#[test]
fn token_survives_max_active_minus_two_rotations() {
    for max in [3, 4, 5, 7] {
        let mut repo = KeyRepository::initialize();
        let t = token(repo.primary());
        assert_eq!(repo.decrypt(&t, None, NOW).unwrap(), b"payload");
        // The rotation that retires its key, then max - 3 more: max - 2 in total.
        for _ in 0..max - 2 {
            repo.rotate(max);
            assert_eq!(
                repo.decrypt(&t, None, NOW).unwrap(),
                b"payload",
                "max {max}"
            );
        }
        repo.rotate(max);
        assert_eq!(
            repo.decrypt(&t, None, NOW),
            Err(FernetError::BadSignature),
            "max {max}"
        );
    }
}

#[test]
fn token_from_a_node_that_already_rotated_decrypts() {
    let mut ours = KeyRepository::initialize();
    let mut theirs = KeyRepository::from_entries(ours.entries()).unwrap();
    theirs.rotate(3);
    // The other node now encrypts with what is still our staged key.
    let t = token(theirs.primary());
    assert_eq!(theirs.primary(), ours.staged());
    assert_eq!(ours.decrypt(&t, None, NOW).unwrap(), b"payload");
    ours.rotate(3);
    assert_eq!(ours.decrypt(&t, None, NOW).unwrap(), b"payload");
}

#[test]
fn entries_round_trip_and_validation() {
    let mut repo = KeyRepository::initialize();
    repo.rotate(4);
    repo.rotate(4);
    let entries = repo.entries();
    assert_eq!(
        entries.iter().map(|e| e.0).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let mut shuffled = entries.clone();
    shuffled.reverse();
    let back = KeyRepository::from_entries(shuffled).unwrap();
    assert_eq!(back.entries(), entries);
    assert_eq!(back.primary(), repo.primary());

    let key = || FernetKey::generate().to_base64();
    let err = |e: Vec<(u32, String)>| KeyRepository::from_entries(e).unwrap_err();
    assert!(matches!(err(vec![]), KeyRepositoryError::Empty));
    assert!(matches!(
        err(vec![(0, key())]),
        KeyRepositoryError::MissingPrimary
    ));
    assert!(matches!(
        err(vec![(1, key()), (2, key())]),
        KeyRepositoryError::MissingStaged
    ));
    assert!(matches!(
        err(vec![(0, key()), (1, key()), (1, key())]),
        KeyRepositoryError::DuplicateIndex(1)
    ));
    assert!(matches!(
        err(vec![(0, key()), (1, "not a key".into())]),
        KeyRepositoryError::InvalidKey(1)
    ));
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn dir_round_trip_permissions_and_stale_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fernet-keys");
    let mut repo = KeyRepository::initialize();
    repo.save_dir(&dir).unwrap();
    assert_eq!(files(&dir), ["0", "1"]);
    assert_eq!(mode(&dir), 0o700);
    for name in ["0", "1"] {
        assert_eq!(mode(&dir.join(name)), 0o600);
        // Keystone format: the bare padded base64 key.
        assert_eq!(fs::read_to_string(dir.join(name)).unwrap().len(), 44);
    }
    let loaded = KeyRepository::load_dir(&dir).unwrap();
    assert_eq!(loaded.entries(), repo.entries());

    // Rotate past pruning: stale index files disappear, unrelated files are left alone.
    fs::write(dir.join("README"), "not a key").unwrap();
    for _ in 0..3 {
        repo.rotate(3);
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    repo.save_dir(&dir).unwrap();
    assert_eq!(files(&dir), ["0", "3", "4", "README"]);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(
        KeyRepository::load_dir(&dir).unwrap().entries(),
        repo.entries()
    );
}

#[test]
fn load_keystone_written_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (k0, k1, k2) = (
        FernetKey::generate(),
        FernetKey::generate(),
        FernetKey::generate(),
    );
    fs::write(tmp.path().join("0"), format!("{}\n", k0.to_base64())).unwrap();
    fs::write(tmp.path().join("1"), k1.to_base64()).unwrap();
    fs::write(tmp.path().join("2"), k2.to_base64()).unwrap();
    fs::write(tmp.path().join(".2.tmp"), "garbage").unwrap();
    fs::write(tmp.path().join("+3"), "garbage").unwrap();
    fs::create_dir(tmp.path().join("5")).unwrap();
    let repo = KeyRepository::load_dir(tmp.path()).unwrap();
    assert_eq!(repo.primary(), &k2);
    assert_eq!(repo.staged(), &k0);
    assert_eq!(repo.decryption_keys(), [&k2, &k1, &k0]);

    // `01` aliases `1`.
    fs::write(tmp.path().join("01"), k1.to_base64()).unwrap();
    assert!(matches!(
        KeyRepository::load_dir(tmp.path()),
        Err(KeyRepositoryError::DuplicateIndex(1))
    ));
    // Saving over it removes the alias.
    repo.save_dir(tmp.path()).unwrap();
    assert!(!tmp.path().join("01").exists());
    KeyRepository::load_dir(tmp.path()).unwrap();

    fs::write(tmp.path().join("1"), "bad").unwrap();
    assert!(matches!(
        KeyRepository::load_dir(tmp.path()),
        Err(KeyRepositoryError::InvalidKey(1))
    ));
    assert!(matches!(
        KeyRepository::load_dir(tmp.path().join("missing")),
        Err(KeyRepositoryError::Io { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        KeyRepository::load_dir(empty.path()),
        Err(KeyRepositoryError::Empty)
    ));
}
