//! Zero-copy image downloads on Linux: the response body goes from the
//! socket to the file with `splice` (socket → pipe → file), so the bytes
//! are copied once, into the file's page cache, instead of into a user
//! buffer and again into the file. This takes our own minimal HTTP/1.1
//! GET, since the HTTP client owns its sockets.
//!
//! Only for plain `http` without a proxy, and a `200` answer with a
//! `Content-Length`. An image the server reports as dense
//! (`x-image-allocated-size`, see glance's download) is spliced; any other
//! is read from the same connection and written with [`SparseWriter`],
//! which skips runs of zeros, so sparse images keep their holes. Anything
//! else answers [`Spliced::NotHere`] before the file is touched, and the
//! caller downloads the ordinary way (which also turns an error answer
//! into the usual error).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sparse::SparseWriter;

/// Header with the bytes the image occupies on the server's disk.
pub const ALLOCATED_HEADER: &str = "x-image-allocated-size";

/// Pipe capacity: bytes moved per pair of `splice` calls.
const PIPE_SIZE: usize = 1 << 20;
/// Response heads larger than this are not ours to parse.
const MAX_HEAD: usize = 64 << 10;
/// As the HTTP client's connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A server silent this long has stalled: the download fails.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

pub enum Spliced {
    /// Downloaded this many bytes; `spliced` for a dense image, otherwise
    /// read with its zeros skipped.
    Done { bytes: u64, spliced: bool },
    /// Not a case for this path: download the ordinary way.
    NotHere,
}

/// An answer this path takes.
struct Answer {
    sock: TcpStream,
    length: u64,
    dense: bool,
    /// Body bytes that came with the head.
    early: Vec<u8>,
}

fn receiving(e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("receiving the image: {e}"))
}

/// GET `url` with `token` into `dest`, counting bytes into `received`
/// (the total is stored into `total` once known).
pub fn download(
    url: &str,
    token: &str,
    dest: &Path,
    received: &Arc<AtomicU64>,
    total: &Arc<AtomicU64>,
) -> std::io::Result<Spliced> {
    // Until the file is created, anything unexpected (even a refused
    // connection) is left to the ordinary path and its usual errors.
    let Some(mut a) = request(url, token) else {
        return Ok(Spliced::NotHere);
    };
    total.store(a.length, Ordering::Relaxed);
    let file = std::fs::File::create(dest)?;
    let early = a.early.len().min(a.length as usize);
    let done = if a.dense {
        let mut file = file;
        file.write_all(&a.early[..early])?;
        received.store(early as u64, Ordering::Relaxed);
        splice_rest(&mut a.sock, &mut file, early as u64, a.length, received)?
    } else {
        let mut w = SparseWriter::new(file);
        w.write(&a.early[..early])?;
        received.store(early as u64, Ordering::Relaxed);
        let done = read_rest(&mut a.sock, early as u64, a.length, received, |b| {
            w.write(b)
        })?;
        w.finish(false)?;
        done
    };
    Ok(Spliced::Done {
        bytes: done,
        spliced: a.dense,
    })
}

fn ended_early(done: u64, length: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("download ended after {done} of {length} bytes"),
    )
}

/// socket → pipe → file. A file system that cannot take `splice` (EINVAL)
/// gets the rest by reads and writes.
fn splice_rest(
    sock: &mut TcpStream,
    file: &mut std::fs::File,
    mut done: u64,
    length: u64,
    received: &AtomicU64,
) -> std::io::Result<u64> {
    let (pipe_out, pipe_in) = pipe()?;
    let mut by_hand = false;
    while done < length && !by_hand {
        let want = ((length - done) as usize).min(PIPE_SIZE);
        let n = match splice(sock.as_raw_fd(), pipe_in.as_raw_fd(), want) {
            Ok(0) => return Err(ended_early(done, length)),
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(receiving(e)),
        };
        let mut left = n;
        while left > 0 {
            match splice(pipe_out.as_raw_fd(), file.as_raw_fd(), left) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        "the file took no more bytes",
                    ));
                }
                Ok(m) => left -= m,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // What is in the pipe goes out by hand, then the rest.
                    let mut buf = vec![0u8; left];
                    std::fs::File::from(pipe_out.try_clone()?).read_exact(&mut buf)?;
                    file.write_all(&buf)?;
                    left = 0;
                    by_hand = true;
                }
                Err(e) => return Err(e),
            }
        }
        done += n as u64;
        received.store(done, Ordering::Relaxed);
    }
    read_rest(sock, done, length, received, |b| file.write_all(b))
}

/// socket → buffer → `write` (the file, or a `SparseWriter` for sparse
/// images).
fn read_rest(
    sock: &mut TcpStream,
    mut done: u64,
    length: u64,
    received: &AtomicU64,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    while done < length {
        let want = ((length - done) as usize).min(buf.len());
        let n = sock.read(&mut buf[..want]).map_err(receiving)?;
        if n == 0 {
            return Err(ended_early(done, length));
        }
        write(&buf[..n])?;
        done += n as u64;
        received.store(done, Ordering::Relaxed);
    }
    Ok(done)
}

/// Send the GET; the answer, when it is one this path takes.
fn request(url: &str, token: &str) -> Option<Answer> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    if u.scheme() != "http" || proxied(host) {
        return None;
    }
    let mut target = u.path().to_string();
    if let Some(q) = u.query() {
        target.push('?');
        target.push_str(q);
    }
    let authority = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut sock = u
        .socket_addrs(|| None)
        .ok()?
        .iter()
        .find_map(|a| TcpStream::connect_timeout(a, CONNECT_TIMEOUT).ok())?;
    sock.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nX-Auth-Token: {token}\r\n\
         Accept: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).ok()?;
    let (length, dense, early) = read_head(&mut sock)?;
    Some(Answer {
        sock,
        length,
        dense,
        early,
    })
}

/// A proxy would have to see the request (unless `no_proxy` exempts the
/// host): leave it to the HTTP client.
fn proxied(host: &str) -> bool {
    let var = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    };
    if var(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]).is_none() {
        return false;
    }
    let exempt = var(&["no_proxy", "NO_PROXY"]).unwrap_or_default();
    !exempt.split(',').map(str::trim).any(|e| {
        let e = e.trim_start_matches('.');
        e == "*" || (!e.is_empty() && (host == e || host.ends_with(&format!(".{e}"))))
    })
}

/// Read and parse the response head (`httparse`): the body length and
/// density of an answer this path takes, and the body bytes that came
/// with the head.
fn read_head(sock: &mut TcpStream) -> Option<(u64, bool, Vec<u8>)> {
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = sock.read(&mut chunk).ok()?;
        if n == 0 || buf.len() + n > MAX_HEAD {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(end) = resp.parse(&buf).ok()? {
            let (length, dense) = plain_body(&resp)?;
            return Some((length, dense, buf.split_off(end)));
        }
    }
}

/// The body length of a `200` answer with a plain body, and whether the
/// server reports the image as dense (at least 7/8 of it on disk).
fn plain_body(resp: &httparse::Response<'_, '_>) -> Option<(u64, bool)> {
    if resp.code != Some(200) {
        return None;
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if header("transfer-encoding").is_some() {
        return None;
    }
    let length = header("content-length")?.parse::<u64>().ok()?;
    let allocated = header(ALLOCATED_HEADER).and_then(|v| v.parse::<u64>().ok());
    let dense = allocated.is_some_and(|a| a >= length - length / 8);
    Some((length, dense))
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened and are owned only here.
    let (out, inp) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A larger pipe moves more per call; the default 64 KiB also works.
    // SAFETY: F_SETPIPE_SZ on a pipe we own.
    unsafe {
        libc::fcntl(
            inp.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            PIPE_SIZE as libc::c_int,
        )
    };
    Ok((out, inp))
}

fn splice(from: libc::c_int, to: libc::c_int, len: usize) -> std::io::Result<usize> {
    loop {
        // SAFETY: plain descriptors, no offsets (both move with the file
        // position / the socket).
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(head: &str) -> Option<(u64, bool)> {
        let head = format!("{head}\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        assert!(resp.parse(head.as_bytes()).unwrap().is_complete());
        plain_body(&resp)
    }

    #[test]
    fn plain_200_answers_are_taken_and_dense_ones_spliced() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 800\r\nx-image-allocated-size: 800";
        assert_eq!(body_of(ok), Some((800, true)));
        let mostly = "HTTP/1.1 200 OK\r\nContent-Length: 800\r\nX-Image-Allocated-Size: 700";
        assert_eq!(body_of(mostly), Some((800, true)));
        let sparse = "HTTP/1.1 200 OK\r\ncontent-length: 800\r\nx-image-allocated-size: 4";
        assert_eq!(body_of(sparse), Some((800, false)));
        let unknown = "HTTP/1.1 200 OK\r\ncontent-length: 800";
        assert_eq!(body_of(unknown), Some((800, false)));
        let error = "HTTP/1.1 404 Not Found\r\ncontent-length: 80\r\nx-image-allocated-size: 80";
        assert_eq!(body_of(error), None);
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-image-allocated-size: 80";
        assert_eq!(body_of(chunked), None);
    }
}
