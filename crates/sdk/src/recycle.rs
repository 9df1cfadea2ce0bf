//! Buffers handed to the HTTP layer as `Bytes` and taken back once it has
//! sent and dropped them: a fresh buffer costs zeroing and a page fault per
//! 4 KiB on first touch, which on a VM is slower than filling it.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

pub struct Recycler {
    lent: VecDeque<Bytes>,
    keep: usize,
}

impl Recycler {
    /// Keeps track of up to `keep` lent buffers: enough to cover the
    /// channel, the stream and the socket's queue.
    pub fn new(keep: usize) -> Recycler {
        Recycler {
            lent: VecDeque::with_capacity(keep),
            keep: keep.max(1),
        }
    }

    /// A buffer of `n` bytes: a returned one with its old contents, or a
    /// new zeroed one.
    pub fn take(&mut self, n: usize) -> BytesMut {
        for _ in 0..self.lent.len() {
            let Some(b) = self.lent.pop_front() else {
                break;
            };
            match b.try_into_mut() {
                Ok(mut m) if m.capacity() >= n => {
                    m.resize(n, 0);
                    return m;
                }
                Ok(_) => {}
                Err(b) => self.lent.push_back(b),
            }
        }
        BytesMut::zeroed(n)
    }

    /// Hand `buf` out, keeping a reference to get it back later.
    pub fn lend(&mut self, buf: BytesMut) -> Bytes {
        let b = buf.freeze();
        if self.lent.len() >= self.keep {
            self.lent.pop_front();
        }
        self.lent.push_back(b.clone());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_only_returned_buffers() {
        let mut r = Recycler::new(4);
        let buf = r.take(8);
        let a = r.lend(buf);
        let first = a.as_ptr();
        // Still held by the "socket": a new buffer.
        let buf = r.take(8);
        let b = r.lend(buf);
        assert_ne!(b.as_ptr(), first);
        drop(a);
        let c = r.take(4);
        assert_eq!(c.as_ptr(), first);
        assert_eq!(c.len(), 4);
        let d = r.take(8);
        assert_ne!(d.as_ptr(), first);
        drop(b);
    }
}
