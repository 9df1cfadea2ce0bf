//! Keystone-style rotating key repository (see the crate docs for the model).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::token::{FernetError, FernetKey, decrypt, encrypt};

/// Floor for `max_active_keys`: staged + primary + one secondary. With fewer, a rotation would
/// immediately drop the key that signed every live token.
pub const MIN_ACTIVE_KEYS: usize = 3;

/// Why a key repository could not be built, loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum KeyRepositoryError {
    /// Reading or writing the key directory failed.
    #[error("fernet key repository I/O error at {}: {source}", path.display())]
    Io {
        /// File or directory the operation was on.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A stored key is not valid URL-safe base64 of 32 bytes.
    #[error("fernet key {0} is malformed")]
    InvalidKey(u32),
    /// Two entries (or files such as `1` and `01`) share one index.
    #[error("fernet key index {0} appears more than once")]
    DuplicateIndex(u32),
    /// The repository holds no keys at all.
    #[error("fernet key repository is empty")]
    Empty,
    /// There is no staged key (index 0).
    #[error("fernet key repository has no staged key (index 0)")]
    MissingStaged,
    /// There is no primary key (any index above 0).
    #[error("fernet key repository has no primary key (index > 0)")]
    MissingPrimary,
}

/// Numbered Fernet keys with Keystone's staged / primary / secondary rotation semantics.
///
/// The fields encode the invariants (exactly one staged key, exactly one primary whose index
/// is above every secondary's), so no accessor can fail.
#[derive(Clone)]
pub struct KeyRepository {
    staged: FernetKey,
    primary: (u32, FernetKey),
    /// Indexes `1..primary.0`, oldest first.
    secondaries: BTreeMap<u32, FernetKey>,
}

impl fmt::Debug for KeyRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRepository")
            .field("primary", &self.primary.0)
            .field("secondaries", &self.secondaries.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeyRepository {
    /// A new repository like `keystone-manage fernet_setup`: staged key 0 and primary key 1.
    pub fn initialize() -> Self {
        Self {
            staged: FernetKey::generate(),
            primary: (1, FernetKey::generate()),
            secondaries: BTreeMap::new(),
        }
    }

    /// Rotates like `keystone-manage fernet_rotate`: the staged key becomes the primary at
    /// index `primary + 1`, a fresh key is staged at 0, and the oldest secondaries are dropped
    /// until at most `max_active_keys` (at least [`MIN_ACTIVE_KEYS`]) keys remain.
    pub fn rotate(&mut self, max_active_keys: usize) {
        let max_active_keys = max_active_keys.max(MIN_ACTIVE_KEYS);
        let new_primary = match self.primary.0.checked_add(1) {
            Some(index) => index,
            None => self.compact_indexes() + 1,
        };
        let promoted = std::mem::replace(&mut self.staged, FernetKey::generate());
        let (old_index, old_key) = std::mem::replace(&mut self.primary, (new_primary, promoted));
        self.secondaries.insert(old_index, old_key);
        // Staged + primary are always kept; the rest of the budget goes to the newest
        // secondaries.
        while self.secondaries.len() > max_active_keys - 2 {
            self.secondaries.pop_first();
        }
    }

    /// Renumbers secondaries `1..=n` and the primary `n + 1`, returning the primary's new
    /// index. Only reachable after ~4 billion rotations; decryption doesn't care about
    /// numbers, only about their order, which is preserved.
    fn compact_indexes(&mut self) -> u32 {
        let secondaries = std::mem::take(&mut self.secondaries);
        let mut next = 1u32;
        for key in secondaries.into_values() {
            self.secondaries.insert(next, key);
            next += 1;
        }
        self.primary.0 = next;
        next
    }

    /// The key that encrypts new tokens (the highest index).
    pub fn primary(&self) -> &FernetKey {
        &self.primary.1
    }

    /// The primary key's index.
    pub fn primary_index(&self) -> u32 {
        self.primary.0
    }

    /// The staged key (index 0): accepted for decryption, primary after the next rotation.
    pub fn staged(&self) -> &FernetKey {
        &self.staged
    }

    /// Every key, in the order [`decrypt`] should try them (Keystone's order): the primary
    /// first (it signed most live tokens), then secondaries newest to oldest, staged last.
    pub fn decryption_keys(&self) -> Vec<&FernetKey> {
        std::iter::once(&self.primary.1)
            .chain(self.secondaries.values().rev())
            .chain(std::iter::once(&self.staged))
            .collect()
    }

    /// Encrypts with the primary key at the current time.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        encrypt(self.primary(), plaintext)
    }

    /// Decrypts with any key in the repository; see [`decrypt`](crate::decrypt).
    pub fn decrypt(&self, token: &str, ttl: Option<u64>, now: u64) -> Result<Vec<u8>, FernetError> {
        decrypt(self.decryption_keys(), token, ttl, now)
    }

    /// `(index, base64 key)` for every key in ascending index order, for storing in a table.
    pub fn entries(&self) -> Vec<(u32, String)> {
        std::iter::once((0, &self.staged))
            .chain(self.secondaries.iter().map(|(i, k)| (*i, k)))
            .chain(std::iter::once((self.primary.0, &self.primary.1)))
            .map(|(i, k)| (i, k.to_base64()))
            .collect()
    }

    /// Rebuilds a repository from [`entries`](Self::entries) (any order). Fails on a malformed
    /// key, a repeated index, or a missing staged (0) or primary (> 0) key.
    pub fn from_entries<S: AsRef<str>>(
        entries: impl IntoIterator<Item = (u32, S)>,
    ) -> Result<Self, KeyRepositoryError> {
        let mut keys = BTreeMap::new();
        for (index, key) in entries {
            let key = FernetKey::from_base64(key.as_ref())
                .map_err(|_| KeyRepositoryError::InvalidKey(index))?;
            if keys.insert(index, key).is_some() {
                return Err(KeyRepositoryError::DuplicateIndex(index));
            }
        }
        if keys.is_empty() {
            return Err(KeyRepositoryError::Empty);
        }
        let staged = keys.remove(&0).ok_or(KeyRepositoryError::MissingStaged)?;
        let primary = keys.pop_last().ok_or(KeyRepositoryError::MissingPrimary)?;
        Ok(Self {
            staged,
            primary,
            secondaries: keys,
        })
    }

    /// Loads a Keystone key directory (`/etc/keystone/fernet-keys` layout): one file per key,
    /// named by its decimal index. Other file names are ignored, as Keystone does.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self, KeyRepositoryError> {
        let dir = dir.as_ref();
        let mut entries = Vec::new();
        for (index, path) in index_files(dir)? {
            // Keystone reads through symlinks too (`os.path.isfile`).
            if !fs::metadata(&path).map_err(io_err(&path))?.is_file() {
                continue;
            }
            entries.push((index, fs::read_to_string(&path).map_err(io_err(&path))?));
        }
        Self::from_entries(entries)
    }

    /// Writes the repository in Keystone's layout, creating `dir` if needed (mode 0700).
    ///
    /// Each key file is written to a temporary name with mode 0600, synced, then renamed into
    /// place, so a concurrent reader sees either the old or the new key, never a torn one. Index
    /// files for keys no longer in the repository are removed *after* the new keys are in
    /// place, so a reader never finds the repository without a staged or primary key.
    pub fn save_dir(&self, dir: impl AsRef<Path>) -> Result<(), KeyRepositoryError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        set_mode(dir, 0o700)?;

        let entries = self.entries();
        for (index, key) in &entries {
            let tmp = dir.join(format!(".{index}.tmp"));
            let path = dir.join(index.to_string());
            write_private(&tmp, key.as_bytes())?;
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
        }
        for (index, path) in index_files(dir)? {
            let current = entries.iter().any(|(i, _)| *i == index);
            // `01` is a stale alias of `1`: remove it too, or the next load sees a duplicate.
            let canonical = path.file_name().and_then(|n| n.to_str()) == Some(&index.to_string());
            if !(current && canonical) {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        // Make the renames and removals durable.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    }
}

/// `(index, path)` of every non-directory entry whose name is a decimal key index.
fn index_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>, KeyRepositoryError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // `u32::from_str` also takes a leading `+`; Keystone key names are plain digits.
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Never touch directories (nor try to read them as keys).
        let is_dir = entry.file_type().map_err(io_err(dir))?.is_dir();
        if let (Ok(index), false) = (name.parse::<u32>(), is_dir) {
            files.push((index, entry.path()));
        }
    }
    Ok(files)
}

/// Creates/truncates `path` with mode 0600 and writes `data` durably.
fn write_private(path: &Path, data: &[u8]) -> Result<(), KeyRepositoryError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_err(path))?;
    // `mode` only applies to newly created files; a leftover temp file keeps its old mode.
    set_mode(path, 0o600)?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(io_err(path))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), KeyRepositoryError> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), KeyRepositoryError> {
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyRepositoryError + '_ {
    move |source| KeyRepositoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}
