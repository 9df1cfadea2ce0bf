//! Receiving image bytes: a stream of chunks goes to a local file in
//! constant memory, and md5 and sha256 are computed behind the writer.
//!
//! The network side (this task) only moves `Bytes` (reference-counted, not
//! copied) into a bounded channel; one blocking thread writes them, so a
//! slow disk applies back-pressure to the sender instead of piling up
//! chunks. Runs of zeros are skipped with a seek, so sparse images stay
//! sparse on disk, and the file is synced every 64 MiB on the way, so the
//! final `fsync` waits for the last few MiB only.
//!
//! The checksums do not hold the client up. Like Cloudpods, which saves
//! the stream and computes the checksum in the image pipeline afterwards,
//! the upload answers once the bytes are durable; here a hasher thread
//! follows the writer through the file (page cache) meanwhile, and the
//! pipeline waits for it before the image turns `active`. md5 is the
//! slowest step of an upload (one core: ~600 MB/s here, `cp` + `sync`
//! moves 1.5-1.8 GB/s), and hashing inline made the client wait for it.
//! A client that declares a checksum still waits: a mismatch is refused
//! with the upload.

use std::fmt::Display;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use cloudpods_sdk::recycle::Recycler;
use cloudpods_sdk::sparse::SparseWriter;
use futures::{Stream, StreamExt};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::{GlanceError, Result};

/// Chunks in flight to the writer, and to the md5 thread.
const DEPTH: usize = 4;
/// Network reads are often a few KiB: small ones are gathered into chunks
/// of this size, so the writer wakes per 256 KiB, not per read (larger
/// chunks raised the server's peak memory past 100 MB).
const GATHER: usize = 256 << 10;
/// Read size of the hasher.
const HASH_CHUNK: usize = 256 << 10;

/// What arrived: its size, and its checksums once the hasher is done.
#[derive(Debug)]
pub struct Received {
    pub size: u64,
    pub checksums: Checksums,
}

/// md5 and sha256 of an image's bytes.
#[derive(Debug, Clone)]
pub struct Hashes {
    pub md5: String,
    pub sha256: String,
}

/// The checksums of an upload, computed behind its writer on threads of
/// their own. Dropped before they are known — the upload failed, the image
/// went away, the waiting task was dropped — it stops the hasher.
#[derive(Debug)]
pub struct Checksums {
    result: Option<tokio::sync::oneshot::Receiver<Result<Hashes>>>,
    cancel: Arc<AtomicBool>,
    known: bool,
}

impl Checksums {
    /// Hash `file` on a new thread, following the writer's reports on
    /// `written` (`yield_while_sending`: see [`IdleWhileSending`]).
    fn spawn(
        file: File,
        path: PathBuf,
        written: std::sync::mpsc::Receiver<u64>,
        yield_while_sending: bool,
    ) -> Result<Checksums> {
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let c = cancel.clone();
        std::thread::Builder::new()
            .name("glance-hash".into())
            .spawn(move || {
                let _ = tx.send(hash_behind(file, path, written, c, yield_while_sending));
            })
            .map_err(|e| GlanceError::Storage(format!("hash thread: {e}")))?;
        Ok(Checksums {
            result: Some(rx),
            cancel,
            known: false,
        })
    }

    pub async fn wait(mut self) -> Result<Hashes> {
        let Some(rx) = self.result.take() else {
            return Err(GlanceError::Storage("checksums already taken".into()));
        };
        // `self` lives across the await: a dropped wait still cancels.
        let r = rx
            .await
            .map_err(|_| GlanceError::Storage("the hash thread ended without a result".into()))?;
        self.known = true;
        r
    }
}

impl Drop for Checksums {
    fn drop(&mut self) {
        if !self.known {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
}

/// While an upload is still arriving, its hashing threads run as
/// `SCHED_IDLE`: they use the CPU the transfer leaves idle, so the client
/// is not slowed by md5 (one core at ~600 MB/s here); once the last byte
/// is written they return to their own policy. Measured on the 2-vCPU VM,
/// 1 GiB, upload medians: 1.13-1.67 s hashing at normal priority alongside
/// the transfer, 1.07-1.27 s like this; hashing only after it made
/// `active` 0.3 s later. Leaving `SCHED_IDLE` needs `CAP_SYS_NICE` (or
/// RLIMIT_NICE): where the process cannot, hashing simply competes (the
/// threads are the hasher's own, nothing else inherits the policy).
struct IdleWhileSending {
    previous: libc::c_int,
}

impl IdleWhileSending {
    fn start() -> Option<IdleWhileSending> {
        if !may_leave_idle() {
            return None;
        }
        // SAFETY: pid 0 is the calling thread.
        let previous = unsafe { libc::sched_getscheduler(0) };
        (previous >= 0 && set_policy(libc::SCHED_IDLE)).then_some(IdleWhileSending { previous })
    }
}

impl Drop for IdleWhileSending {
    fn drop(&mut self) {
        set_policy(self.previous);
    }
}

fn set_policy(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

/// Whether this process may switch a thread back from `SCHED_IDLE`:
/// tried once on a throwaway thread.
fn may_leave_idle() -> bool {
    static MAY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MAY.get_or_init(|| {
        std::thread::spawn(|| set_policy(libc::SCHED_IDLE) && set_policy(libc::SCHED_OTHER))
            .join()
            .unwrap_or(false)
    })
}

/// Write the chunks, telling the hasher how far the file is written.
fn write_loop(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    file: File,
    path: PathBuf,
    written: std::sync::mpsc::Sender<u64>,
) -> Result<()> {
    let mut w = SparseWriter::new(file).with_sync_as_it_goes();
    let mut pos = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        w.write(&chunk).map_err(|e| GlanceError::io(&path, e))?;
        pos += chunk.len() as u64;
        let _ = written.send(pos);
    }
    w.finish(true).map_err(|e| GlanceError::io(&path, e))?;
    Ok(())
}

/// Hash the file up to each position the writer reports, until the writer
/// is gone. Bytes the writer skipped as zeros at the current end of the
/// file are not there yet: a short read is completed with zeros. md5 runs
/// on a thread of its own (the slowest step), sha256 here.
fn hash_behind(
    file: File,
    path: PathBuf,
    written: std::sync::mpsc::Receiver<u64>,
    cancel: Arc<AtomicBool>,
    yield_while_sending: bool,
) -> Result<Hashes> {
    use std::os::unix::fs::FileExt;
    use std::sync::mpsc::TryRecvError;
    let mut idle = yield_while_sending.then(IdleWhileSending::start).flatten();
    let sending = Arc::new(AtomicBool::new(true));
    let (to_md5, chunks) = std::sync::mpsc::sync_channel::<Bytes>(DEPTH);
    let md5_sending = sending.clone();
    let md5er = std::thread::Builder::new()
        .name("glance-md5".into())
        .spawn(move || {
            let mut idle = yield_while_sending.then(IdleWhileSending::start).flatten();
            let mut d = Md5::new();
            for c in chunks {
                if idle.is_some() && !md5_sending.load(Ordering::Relaxed) {
                    idle = None;
                }
                d.update(&c);
            }
            hex::encode(d.finalize())
        })
        .map_err(|e| GlanceError::Storage(format!("md5 thread: {e}")))?;
    let mut sha = Sha256::new();
    let mut buffers = Recycler::new(DEPTH + 2);
    let (mut pos, mut upto) = (0u64, 0u64);
    let mut failed = None;
    loop {
        // How far the writer is: wait only when caught up.
        loop {
            let next = if pos < upto {
                written.try_recv()
            } else {
                written.recv().map_err(|_| TryRecvError::Disconnected)
            };
            match next {
                Ok(n) => upto = n,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // Written: hash at this thread's own priority now.
                    drop(idle.take());
                    sending.store(false, Ordering::Relaxed);
                    break;
                }
            }
        }
        if pos >= upto {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            failed = Some(GlanceError::Storage("checksums cancelled".into()));
            break;
        }
        let n = ((upto - pos) as usize).min(HASH_CHUNK);
        let mut buf = buffers.take(n);
        let mut got = 0;
        while got < n {
            match file.read_at(&mut buf[got..], pos + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(GlanceError::io(&path, e));
                    break;
                }
            }
        }
        if failed.is_some() {
            break;
        }
        buf[got..].fill(0);
        sha.update(&buf);
        pos += n as u64;
        if to_md5.send(buffers.lend(buf)).is_err() {
            break;
        }
    }
    sending.store(false, Ordering::Relaxed);
    drop(to_md5);
    let md5 = md5er
        .join()
        .map_err(|_| GlanceError::Storage("md5 thread panicked".into()))?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(Hashes {
        md5,
        sha256: hex::encode(sha.finalize()),
    })
}

async fn joined<T>(h: tokio::task::JoinHandle<T>, what: &str) -> Result<T> {
    h.await
        .map_err(|e| GlanceError::Storage(format!("{what} task: {e}")))
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
    // Read and write: the hasher reads through a clone of this descriptor,
    // which stays valid when the file is renamed into place.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| GlanceError::io(path, e))?;
    let reader = file.try_clone().map_err(|e| GlanceError::io(path, e))?;
    let (wtx, wrx) = tokio::sync::mpsc::channel::<Bytes>(DEPTH);
    let (progress, written) = std::sync::mpsc::channel::<u64>();
    let p = path.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || write_loop(wrx, file, p, progress));
    // Created now, so that every early return below stops the hasher.
    let checksums = Checksums::spawn(reader, path.to_path_buf(), written, true)?;
    let mut total: u64 = 0;
    let mut failure: Option<GlanceError> = None;
    let mut gathered = bytes::BytesMut::new();
    let mut done = false;
    while !done {
        let item = stream.next().await;
        done = item.is_none();
        let chunk = match item {
            None => Bytes::new(),
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                failure = Some(GlanceError::Truncated {
                    received: total,
                    reason: e.to_string(),
                });
                break;
            }
        };
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
        let chunk = if chunk.len() >= GATHER && gathered.is_empty() {
            chunk
        } else {
            if gathered.is_empty() {
                gathered.reserve(GATHER.max(chunk.len()));
            }
            gathered.extend_from_slice(&chunk);
            if gathered.len() < GATHER && !done {
                continue;
            }
            gathered.split().freeze()
        };
        if chunk.is_empty() {
            continue;
        }
        if wtx.send(chunk).await.is_err() {
            // The writer stopped (I/O error): its result says why.
            break;
        }
    }
    drop(wtx);
    // The hasher stops with the writer; on failure its result is dropped.
    let written = joined(writer, "writer").await?;
    if let Some(f) = failure {
        return Err(f);
    }
    written?;
    if let Some(n) = expect
        && total != n
    {
        return Err(GlanceError::Input(format!(
            "declared size {n} bytes but received {total}"
        )));
    }
    Ok(Received {
        size: total,
        checksums,
    })
}

/// The size, md5 and sha256 of a whole local file (a converted
/// sub-format; an upload whose hasher was lost to a restart).
pub async fn hash_file(path: &Path) -> Result<(u64, Hashes)> {
    let f = File::open(path).map_err(|e| GlanceError::io(path, e))?;
    let size = f.metadata().map_err(|e| GlanceError::io(path, e))?.len();
    let (all, written) = std::sync::mpsc::channel();
    let _ = all.send(size);
    drop(all);
    let hashes = Checksums::spawn(f, path.to_path_buf(), written, false)?
        .wait()
        .await?;
    Ok((size, hashes))
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
        let hashes = r.checksums.wait().await.unwrap();
        assert_eq!(hashes.md5, hex::encode(Md5::digest(&all)));
        assert_eq!(hashes.sha256, hex::encode(Sha256::digest(&all)));
        let (size, h) = hash_file(&p).await.unwrap();
        assert_eq!(size, all.len() as u64);
        assert_eq!(h.md5, hashes.md5);
        assert_eq!(h.sha256, hashes.sha256);
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
