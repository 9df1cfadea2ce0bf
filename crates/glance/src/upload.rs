//! Receiving image bytes: a stream of chunks goes to a local file while md5
//! and sha256 are computed on the way, in constant memory.
//!
//! The network side (this task) only moves `Bytes` into bounded channels;
//! a blocking thread writes and computes md5, a second one computes sha256,
//! so a slow disk or hash applies back-pressure to the sender instead of
//! piling up chunks. Runs of zeros are skipped with a seek, so sparse images
//! stay sparse on disk.

use std::fmt::Display;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::{GlanceError, Result};

/// Chunks in flight per consumer.
const DEPTH: usize = 4;

/// What arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub size: u64,
    pub md5: String,
    pub sha256: String,
}

/// Whether every byte of `b` is zero (written to vectorize: no early exit
/// inside a block).
pub fn is_zero(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

fn write_loop(mut rx: tokio::sync::mpsc::Receiver<Bytes>, path: PathBuf) -> Result<String> {
    let mut f = std::fs::File::create(&path).map_err(|e| GlanceError::io(&path, e))?;
    let mut md5 = Md5::new();
    let mut pos: u64 = 0;
    let mut file_pos: u64 = 0;
    while let Some(chunk) = rx.blocking_recv() {
        md5.update(&chunk);
        if !is_zero(&chunk) {
            if file_pos != pos {
                f.seek(SeekFrom::Start(pos))
                    .map_err(|e| GlanceError::io(&path, e))?;
            }
            f.write_all(&chunk).map_err(|e| GlanceError::io(&path, e))?;
            file_pos = pos + chunk.len() as u64;
        }
        pos += chunk.len() as u64;
    }
    // Trailing zeros: extend without writing them.
    f.set_len(pos).map_err(|e| GlanceError::io(&path, e))?;
    f.sync_data().map_err(|e| GlanceError::io(&path, e))?;
    Ok(hex::encode(md5.finalize()))
}

fn hash_loop(mut rx: tokio::sync::mpsc::Receiver<Bytes>) -> String {
    let mut sha = Sha256::new();
    while let Some(chunk) = rx.blocking_recv() {
        sha.update(&chunk);
    }
    hex::encode(sha.finalize())
}

/// Write `stream` to `path` (created or truncated). `expect` is the size the
/// client declared; more or fewer bytes fail. `limit` bounds the size
/// (0 = none). On error the caller removes `path`.
pub async fn receive<S, E>(
    mut stream: S,
    path: &Path,
    expect: Option<u64>,
    limit: u64,
) -> Result<Received>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: Display,
{
    let (wtx, wrx) = tokio::sync::mpsc::channel::<Bytes>(DEPTH);
    let (htx, hrx) = tokio::sync::mpsc::channel::<Bytes>(DEPTH);
    let p = path.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || write_loop(wrx, p));
    let hasher = tokio::task::spawn_blocking(move || hash_loop(hrx));
    let mut total: u64 = 0;
    let mut failure: Option<GlanceError> = None;
    while let Some(item) = stream.next().await {
        let chunk = match item {
            Ok(c) => c,
            Err(e) => {
                failure = Some(GlanceError::Truncated {
                    received: total,
                    reason: e.to_string(),
                });
                break;
            }
        };
        if chunk.is_empty() {
            continue;
        }
        total += chunk.len() as u64;
        if let Some(n) = expect
            && total > n
        {
            failure = Some(GlanceError::Input(format!(
                "received more than the declared size of {n} bytes"
            )));
            break;
        }
        if limit > 0 && total > limit {
            failure = Some(GlanceError::TooLarge { limit });
            break;
        }
        if htx.send(chunk.clone()).await.is_err() || wtx.send(chunk).await.is_err() {
            // The writer stopped (I/O error): its result says why.
            break;
        }
    }
    drop(wtx);
    drop(htx);
    let md5 = writer
        .await
        .map_err(|e| GlanceError::Storage(format!("writer task: {e}")))?;
    let sha256 = hasher
        .await
        .map_err(|e| GlanceError::Storage(format!("hash task: {e}")))?;
    if let Some(f) = failure {
        return Err(f);
    }
    let md5 = md5?;
    if let Some(n) = expect
        && total != n
    {
        return Err(GlanceError::Input(format!(
            "declared size {n} bytes but received {total}"
        )));
    }
    Ok(Received {
        size: total,
        md5,
        sha256,
    })
}

/// md5 and sha256 of a local file (converted sub-formats).
pub async fn hash_file(path: &Path) -> Result<Received> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<Received> {
        use std::io::Read;
        let mut f = std::fs::File::open(&p).map_err(|e| GlanceError::io(&p, e))?;
        let mut md5 = Md5::new();
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| GlanceError::io(&p, e))?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            sha.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Received {
            size,
            md5: hex::encode(md5.finalize()),
            sha256: hex::encode(sha.finalize()),
        })
    })
    .await
    .map_err(|e| GlanceError::Storage(format!("hash task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: Vec<Vec<u8>>,
    ) -> impl Stream<Item = std::result::Result<Bytes, String>> + Unpin {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p))))
    }

    #[tokio::test]
    async fn writes_sparse_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let parts = vec![
            vec![1u8; 10],
            vec![0u8; 1 << 20],
            vec![2u8; 5],
            vec![0u8; 4096],
        ];
        let all: Vec<u8> = parts.concat();
        let r = receive(chunks(parts), &p, Some(all.len() as u64), 0)
            .await
            .unwrap();
        assert_eq!(r.size, all.len() as u64);
        assert_eq!(std::fs::read(&p).unwrap(), all);
        assert_eq!(r.md5, hex::encode(Md5::digest(&all)));
        assert_eq!(r.sha256, hex::encode(Sha256::digest(&all)));
        let h = hash_file(&p).await.unwrap();
        assert_eq!(h.md5, r.md5);
    }

    #[tokio::test]
    async fn size_mismatch_and_truncation_fail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let e = receive(chunks(vec![vec![1u8; 10]]), &p, Some(11), 0)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("declared size 11"), "{e}");
        let e = receive(chunks(vec![vec![1u8; 10]]), &p, Some(5), 0)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("more than the declared"), "{e}");
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("connection reset".to_string()),
        ]);
        let e = receive(broken, &p, None, 0).await.unwrap_err();
        assert!(
            matches!(e, GlanceError::Truncated { received: 3, .. }),
            "{e}"
        );
        let e = receive(chunks(vec![vec![1u8; 10]]), &p, None, 4)
            .await
            .unwrap_err();
        assert!(matches!(e, GlanceError::TooLarge { .. }));
    }
}
