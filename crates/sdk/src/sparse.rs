//! Writing image bytes so that runs of zeros become holes: a sparse 2 GiB
//! image stays a few MB on disk when uploaded or downloaded. Blocking I/O:
//! run it on a thread of its own (callers feed it through a channel).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

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
}

impl SparseWriter {
    pub fn new(file: File) -> SparseWriter {
        SparseWriter {
            file,
            pos: 0,
            file_pos: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        // Runs of data blocks go out in one write: on some machines a
        // write() costs far more per call than per byte.
        let mut run: Option<usize> = None;
        let mut at = 0;
        for block in data.chunks(BLOCK) {
            if is_zero(block) {
                if let Some(start) = run.take() {
                    self.write_at(&data[start..at])?;
                }
            } else if run.is_none() {
                run = Some(at);
            }
            at += block.len();
            if run.is_none() {
                self.pos += block.len() as u64;
            }
        }
        if let Some(start) = run {
            self.write_at(&data[start..])?;
        }
        Ok(())
    }

    /// Write `data` at the logical end.
    fn write_at(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.file_pos != self.pos {
            self.file.seek(SeekFrom::Start(self.pos))?;
        }
        self.file.write_all(data)?;
        self.pos += data.len() as u64;
        self.file_pos = self.pos;
        Ok(())
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
    pub fn finish(self, durable: bool) -> std::io::Result<u64> {
        self.file.set_len(self.pos)?;
        if durable {
            self.file.sync_data()?;
        }
        Ok(self.pos)
    }
}

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
