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

/// Read size of local downloads.
const READ_CHUNK: usize = 256 << 10;
/// Chunks read ahead of the network: bounds a download's memory.
const READ_AHEAD: usize = 4;

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
            return Ok(s3.get(key, start, end).await?);
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
            return Ok(s3.delete(key).await?);
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

/// Stream `start..end` of a local file from one blocking thread reading
/// ahead a few chunks: no per-read hop through the blocking pool, and at
/// most `READ_AHEAD` chunks in memory whatever the client's speed.
async fn read_local(
    path: PathBuf,
    start: u64,
    end: u64,
) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
    use cloudpods_sdk::recycle::Recycler;
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&path).map_err(|e| GlanceError::io(&path, e))?;
    f.seek(SeekFrom::Start(start))
        .map_err(|e| GlanceError::io(&path, e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut buffers = Recycler::new(READ_AHEAD + 4);
        let mut left = end.saturating_sub(start);
        while left > 0 {
            let n = (left as usize).min(READ_CHUNK);
            let mut buf = buffers.take(n);
            if let Err(e) = f.read_exact(&mut buf) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            left -= n as u64;
            if tx.blocking_send(Ok(buffers.lend(buf))).is_err() {
                return; // client gone
            }
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed())
}
