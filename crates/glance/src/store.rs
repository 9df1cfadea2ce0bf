//! Where image files live: a local directory, or an S3 bucket.
//!
//! Every image passes through the local directory first — uploads land
//! there, `qemu-img` probes and converts there — and [`Store::persist`]
//! then hands the finished file to the backend: with the local backend the
//! file simply stays, with S3 it is uploaded and the local copy removed.
//! Locations are recorded as `file:///…` or `s3://bucket/key`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{GlanceError, Result};
use crate::s3::S3;

/// Size of one mapped window of a local download.
const MAP_WINDOW: usize = 512 << 10;
/// Windows mapped ahead of the network: bounds a download's memory.
const MAP_AHEAD: usize = 2;

pub enum Backend {
    Local,
    S3(S3),
}

pub struct Store {
    dir: PathBuf,
    backend: Backend,
}

impl Store {
    pub fn new(dir: PathBuf, backend: Backend) -> Store {
        Store { dir, backend }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Local => "local",
            Backend::S3(_) => "s3",
        }
    }

    /// Prepare the directory (and the bucket).
    pub async fn init(&self) -> Result<()> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| GlanceError::io(&self.dir, e))?;
        if let Backend::S3(s3) = &self.backend {
            s3.ensure_bucket().await?;
        }
        Ok(())
    }

    /// The local file of an image (`fmt` = a sub-format).
    pub fn local(&self, id: &str, fmt: Option<&str>) -> PathBuf {
        match fmt {
            Some(f) => self.dir.join(format!("{id}.{f}")),
            None => self.dir.join(id),
        }
    }

    /// Where bytes are received before they are complete.
    pub fn partial(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.partial"))
    }

    /// Hand a finished local file to the backend; returns its location.
    pub async fn persist(&self, local: &Path) -> Result<String> {
        match &self.backend {
            Backend::Local => Ok(format!("file://{}", local.display())),
            Backend::S3(s3) => {
                let key = local
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                s3.put_file(&key, local).await?;
                let _ = tokio::fs::remove_file(local).await;
                Ok(format!("s3://{}/{key}", s3.bucket()))
            }
        }
    }

    /// Stream bytes `start..end` of the file at `location`.
    pub async fn open(
        &self,
        location: &str,
        start: u64,
        end: u64,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
        if let Some(path) = location.strip_prefix("file://") {
            return read_local(PathBuf::from(path), start, end).await;
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            let Backend::S3(s3) = &self.backend else {
                return Err(GlanceError::Storage(format!(
                    "{location} is in S3 but the S3 backend is not configured"
                )));
            };
            let key = rest.split_once('/').map(|(_, k)| k).unwrap_or_default();
            return s3.get(key, start, end).await;
        }
        Err(GlanceError::Storage(format!(
            "unknown location {location:?}"
        )))
    }

    /// Bytes the file at `location` occupies on disk (local files only):
    /// tells a client whether the image is sparse.
    pub async fn allocated(&self, location: &str) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let path = location.strip_prefix("file://")?;
        let meta = tokio::fs::metadata(path).await.ok()?;
        Some(meta.blocks() * 512)
    }

    /// Remove the file at `location` (missing is fine).
    pub async fn remove(&self, location: &str) -> Result<()> {
        if let Some(path) = location.strip_prefix("file://") {
            return match tokio::fs::remove_file(path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(GlanceError::io(Path::new(path), e)),
            };
        }
        if let Some(rest) = location.strip_prefix("s3://")
            && let Backend::S3(s3) = &self.backend
        {
            let key = rest.split_once('/').map(|(_, k)| k).unwrap_or_default();
            return s3.delete(key).await;
        }
        Ok(())
    }

    /// Remove every local file of an image (staging, partial, sub-formats).
    pub async fn remove_local(&self, id: &str) {
        let Ok(mut rd) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(e)) = rd.next_entry().await {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == id || name.starts_with(&format!("{id}.")) {
                let _ = tokio::fs::remove_file(e.path()).await;
            }
        }
    }
}

/// Stream `start..end` of a local file as read-only mappings of
/// `MAP_WINDOW` bytes, mapped (and read in) ahead of the network by one
/// blocking thread.
///
/// hyper writes each window straight from the page cache into the socket,
/// so a download costs one copy on this side, as `sendfile` would, instead
/// of a `read` into a buffer and then a send from it. At most
/// `MAP_AHEAD` windows (plus the one hyper is sending) are mapped at a
/// time; a window is unmapped as soon as hyper drops it, so the server's
/// resident memory stays flat whatever the image size.
///
/// Image files are never modified in place: uploads and conversions write
/// a `.partial` file and rename it over the old one, and a rename or
/// delete leaves an open mapping on the old inode intact. Only a file
/// truncated under the server by someone else could fault a mapping.
async fn read_local(
    path: PathBuf,
    start: u64,
    end: u64,
) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
    let file = std::fs::File::open(&path).map_err(|e| GlanceError::io(&path, e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(MAP_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut at = start;
        while at < end {
            let len = ((end - at) as usize).min(MAP_WINDOW);
            let window = map_window(&file, at, len);
            at += len as u64;
            if tx.blocking_send(window).is_err() {
                return; // client gone
            }
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed())
}

/// Map `len` bytes of `file` at `offset` with its pages read in and
/// mapped here, on the blocking thread (`MADV_POPULATE_READ`): hyper's copy
/// out of the window on a runtime thread then never waits for the disk,
/// and a read error is this window's error instead of a `SIGBUS` in the
/// copy. Kernels before 5.14 lack that advice: the window is then read
/// into a buffer.
fn map_window(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    // A mapping past the end of the file faults instead of failing, so a
    // file shorter than its recorded size is refused here.
    let size = file.metadata()?.len();
    if offset + len as u64 > size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("image file is {size} bytes, shorter than expected"),
        ));
    }
    // SAFETY: the mapping is read-only and image files are replaced by
    // rename, never written or truncated in place (see `read_local`).
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)?
    };
    match map.advise(memmap2::Advice::PopulateRead) {
        Ok(()) => Ok(Bytes::from_owner(map)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        }
        Err(e) => Err(e),
    }
}
