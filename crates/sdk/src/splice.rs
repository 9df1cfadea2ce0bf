//! Zero-copy image downloads on Linux: the response body goes from the
//! socket to the file with `splice` (socket → pipe → file), so the bytes
//! are copied once, into the file's page cache, instead of into a user
//! buffer and again into the file. This takes our own minimal HTTP/1.1
//! GET, since the HTTP client owns its sockets.
//!
//! Only for what it does well: plain `http`, no proxy, a `200` answer with
//! a `Content-Length`, and an image the server reports as dense
//! (`x-image-allocated-size`, see glance's download): a sparse image
//! goes through the ordinary path, which skips its runs of zeros instead of
//! writing them. Anything else answers [`Spliced::NotHere`] before the file
//! is touched, and the caller downloads the ordinary way (which also turns
//! an error answer into the usual error).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Header with the bytes the image occupies on the server's disk.
pub const ALLOCATED_HEADER: &str = "x-image-allocated-size";

/// Pipe capacity: bytes moved per pair of `splice` calls.
const PIPE_SIZE: usize = 1 << 20;
/// Response heads larger than this are not ours to parse.
const MAX_HEAD: usize = 64 << 10;

pub enum Spliced {
    /// Downloaded: this many bytes.
    Done(u64),
    /// Not a case for splicing: download the ordinary way.
    NotHere,
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
    let Some((sock, length, rest)) = request(url, token) else {
        return Ok(Spliced::NotHere);
    };
    total.store(length, Ordering::Relaxed);
    let mut file = std::fs::File::create(dest)?;
    let first = rest.len().min(length as usize);
    file.write_all(&rest[..first])?;
    let mut done = first as u64;
    received.store(done, Ordering::Relaxed);
    let (pipe_out, pipe_in) = pipe()?;
    while done < length {
        let want = ((length - done) as usize).min(PIPE_SIZE);
        let n = splice(sock.as_raw_fd(), pipe_in.as_raw_fd(), want)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("download ended after {done} of {length} bytes"),
            ));
        }
        let mut left = n;
        while left > 0 {
            let m = splice(pipe_out.as_raw_fd(), file.as_raw_fd(), left)?;
            if m == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the file took no more bytes",
                ));
            }
            left -= m;
        }
        done += n as u64;
        received.store(done, Ordering::Relaxed);
    }
    Ok(Spliced::Done(done))
}

/// Send the GET; the socket, body length and body bytes read with the
/// head, when the answer is one to splice.
fn request(url: &str, token: &str) -> Option<(TcpStream, u64, Vec<u8>)> {
    let u = reqwest::Url::parse(url).ok()?;
    if u.scheme() != "http" || proxied() {
        return None;
    }
    let (host, port) = (u.host_str()?, u.port_or_known_default()?);
    let mut target = u.path().to_string();
    if let Some(q) = u.query() {
        target.push('?');
        target.push_str(q);
    }
    let authority = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut sock = TcpStream::connect((host, port)).ok()?;
    write!(
        sock,
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nX-Auth-Token: {token}\r\n\
         Accept: application/octet-stream\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let (head, rest) = read_head(&mut sock).ok()?;
    let length = dense_body_length(&head)?;
    Some((sock, length, rest))
}

/// A proxy would have to see the request: leave it to the HTTP client.
fn proxied() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
}

/// Read up to the end of the response head; returns the head and the
/// body bytes that came with it.
fn read_head(sock: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = sock.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the response head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
    }
}

/// The body length of a `200` answer with a plain body of a dense image.
fn dense_body_length(head: &str) -> Option<u64> {
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    let mut parts = status.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") || parts.next()? != "200" {
        return None;
    }
    let (mut length, mut allocated, mut chunked) = (None, None, false);
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.parse::<u64>().ok(),
            "transfer-encoding" => chunked = true,
            ALLOCATED_HEADER => allocated = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    let length = length?;
    // Dense: at least 7/8 of the bytes are on the server's disk.
    (!chunked && allocated? >= length - length / 8).then_some(length)
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

    #[test]
    fn only_dense_plain_200_answers_are_spliced() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 800\r\nx-image-allocated-size: 800";
        assert_eq!(dense_body_length(ok), Some(800));
        let mostly = "HTTP/1.1 200 OK\r\nContent-Length: 800\r\nX-Image-Allocated-Size: 700";
        assert_eq!(dense_body_length(mostly), Some(800));
        let sparse = "HTTP/1.1 200 OK\r\ncontent-length: 800\r\nx-image-allocated-size: 4";
        assert_eq!(dense_body_length(sparse), None);
        let unknown = "HTTP/1.1 200 OK\r\ncontent-length: 800";
        assert_eq!(dense_body_length(unknown), None);
        let error = "HTTP/1.1 404 Not Found\r\ncontent-length: 80\r\nx-image-allocated-size: 80";
        assert_eq!(dense_body_length(error), None);
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-image-allocated-size: 80";
        assert_eq!(dense_body_length(chunked), None);
    }
}
