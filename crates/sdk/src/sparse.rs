//! Writing image bytes so that runs of zeros become holes: a sparse 2 GiB
//! image stays a few MB on disk when uploaded or downloaded. Blocking I/O:
//! run it on a thread of its own (callers feed it through a channel).

use std::fs::File;
use std::io::{IoSlice, Seek, SeekFrom, Write};

/// Zero runs shorter than this are written as data.
const BLOCK: usize = 64 << 10;

/// Whether every byte of `b` is zero (written to vectorize: no early exit
/// inside a 4 KiB block).
pub fn is_zero(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

/// Appends bytes to a new file, seeking over all-zero blocks.
pub struct SparseWriter {
    file: File,
    /// Logical length so far.
    pos: u64,
    /// Where the file's cursor is.
    file_pos: u64,
    /// Data runs waiting to go out in one `writev`.
    pending: Vec<(usize, usize, usize)>,
    pending_len: usize,
    /// With early writeback: where the last started writeback ended.
    writeback_from: Option<u64>,
}

/// Early writeback starts once this much was written since the last one.
const WRITEBACK_EVERY: u64 = 16 << 20;

impl SparseWriter {
    pub fn new(file: File) -> SparseWriter {
        SparseWriter {
            file,
            pos: 0,
            file_pos: 0,
            pending: Vec::new(),
            pending_len: 0,
            writeback_from: None,
        }
    }

    /// Start writing dirty pages to disk as the file grows, not only at
    /// [`finish`](Self::finish): a durable finish then waits for the last
    /// few MiB instead of the whole file, so receiving and the disk work
    /// overlap (what `cp` followed by `sync` cannot do).
    pub fn with_early_writeback(mut self) -> SparseWriter {
        self.writeback_from = Some(0);
        self
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.write_slices(&[data])
    }

    /// Append the slices in order, as if concatenated. Runs of data go out
    /// in one `writev` with no copy into a staging buffer: on some machines
    /// a write() costs far more per call than per byte, and the copy is the
    /// rest of the cost.
    pub fn write_slices<B: AsRef<[u8]>>(&mut self, slices: &[B]) -> std::io::Result<()> {
        for (i, s) in slices.iter().enumerate() {
            let data = s.as_ref();
            let mut at = 0;
            for block in data.chunks(BLOCK) {
                if is_zero(block) {
                    self.flush(slices)?;
                    self.pos += block.len() as u64;
                } else {
                    match self.pending.last_mut() {
                        Some((j, _, end)) if *j == i && *end == at => *end += block.len(),
                        _ => self.pending.push((i, at, at + block.len())),
                    }
                    self.pending_len += block.len();
                }
                at += block.len();
            }
        }
        self.flush(slices)
    }

    /// Write the pending data runs at the logical end.
    fn flush<B: AsRef<[u8]>>(&mut self, slices: &[B]) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.file_pos != self.pos {
            self.file.seek(SeekFrom::Start(self.pos))?;
        }
        let len = self.pending_len;
        let mut bufs: Vec<IoSlice<'_>> = self
            .pending
            .drain(..)
            .map(|(i, a, b)| IoSlice::new(&slices[i].as_ref()[a..b]))
            .collect();
        self.pending_len = 0;
        let mut bufs = &mut bufs[..];
        while !bufs.is_empty() {
            match self.file.write_vectored(bufs) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pos += len as u64;
        self.file_pos = self.pos;
        self.start_writeback(false);
        Ok(())
    }

    /// Ask the kernel to start writing what was written since the last
    /// call (without waiting for it), once enough has piled up.
    fn start_writeback(&mut self, always: bool) {
        let Some(from) = self.writeback_from else {
            return;
        };
        if self.pos <= from || (!always && self.pos - from < WRITEBACK_EVERY) {
            return;
        }
        sync_file_range_write(&self.file, from, self.pos - from);
        self.writeback_from = Some(self.pos);
    }

    /// Bytes written so far (holes included).
    pub fn len(&self) -> u64 {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Give the file its full length (trailing zeros become a hole) and,
    /// with `durable`, flush it to disk.
    pub fn finish(mut self, durable: bool) -> std::io::Result<u64> {
        self.file.set_len(self.pos)?;
        if durable {
            self.start_writeback(true);
            self.file.sync_data()?;
        }
        Ok(self.pos)
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: start writeback of a range
/// without waiting. Only an optimisation (the final `fdatasync` is what
/// makes the file durable), so a failure is ignored.
#[cfg(target_os = "linux")]
fn sync_file_range_write(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on a descriptor `file` keeps open for the
    // duration of the call; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_file_range_write(_file: &File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_and_data_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        let mut all = Vec::new();
        for part in [
            vec![1u8; 10],
            vec![0u8; 300_000],
            vec![2u8; 5],
            vec![0u8; 70_000],
        ] {
            w.write(&part).unwrap();
            all.extend_from_slice(&part);
        }
        assert_eq!(w.finish(true).unwrap(), all.len() as u64);
        assert_eq!(std::fs::read(&p).unwrap(), all);
    }

    #[test]
    fn slices_with_holes_and_early_writeback() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut w = SparseWriter::new(File::create(&p).unwrap()).with_early_writeback();
        let parts: Vec<Vec<u8>> = vec![
            vec![3u8; 10],
            vec![0u8; 3 * BLOCK + 17],
            vec![4u8; 5],
            vec![5u8; BLOCK - 5],
            vec![6u8; 17 << 20],
            vec![0u8; BLOCK],
        ];
        w.write_slices(&parts[..3]).unwrap();
        w.write_slices(&parts[3..]).unwrap();
        let all = parts.concat();
        assert_eq!(w.finish(true).unwrap(), all.len() as u64);
        assert_eq!(std::fs::read(&p).unwrap(), all);
    }

    #[test]
    fn one_buffer_with_holes_inside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut all = vec![7u8; 3 * BLOCK + 100];
        all[BLOCK..3 * BLOCK].fill(0);
        all.extend(vec![0u8; BLOCK]);
        all.extend(vec![9u8; 10]);
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        w.write(&all).unwrap();
        w.write(&[0u8; 5]).unwrap();
        all.extend([0u8; 5]);
        assert_eq!(w.finish(false).unwrap(), all.len() as u64);
        assert_eq!(std::fs::read(&p).unwrap(), all);
    }
}
