//! Guest consoles relayed by the agent: `GET /servers/{id}/console/{vnc|serial}`
//! is a WebSocket (binary frames) to the guest's VNC server or serial port.
//!
//! QEMU's VNC listens on loopback only, so the agent is the way in; each
//! viewer gets its own VNC connection (QEMU shares the screen). The serial
//! port is a QEMU socket chardev, which takes one client at a time: the
//! agent holds that one connection per guest ([`SerialHubs`]) and fans the
//! output out to every viewer, writing any viewer's keystrokes back. A new
//! viewer first gets the tail of the serial log, so it sees what came
//! before it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{broadcast, mpsc};

use crate::DriverError;

/// A console kind, as the path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Vnc,
    Serial,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "vnc" => Some(Protocol::Vnc),
            "serial" => Some(Protocol::Serial),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Vnc => "vnc",
            Protocol::Serial => "serial",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a guest's console is on this host.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// QEMU's VNC server (RFB), on loopback.
    Vnc(SocketAddr),
    /// QEMU's serial chardev socket and the log it also writes.
    Serial { socket: PathBuf, log: PathBuf },
}

/// How much of the serial log a new viewer is sent first.
const SERIAL_TAIL: u64 = 16 * 1024;
/// Pings keep proxies and load balancers from closing an idle console.
const PING_EVERY: Duration = Duration::from_secs(20);

/// Send the viewer what `from` yields, pinging it while idle, until `from`
/// ends (then close it) or the viewer is gone.
async fn to_viewer(
    tx: &mut SplitSink<WebSocket, Message>,
    from: impl futures::Stream<Item = bytes::Bytes>,
) {
    let mut from = std::pin::pin!(from);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            b = from.next() => match b {
                Some(b) => {
                    if tx.send(Message::Binary(b)).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

/// Connect to a VNC server before the WebSocket upgrade, so a guest whose
/// VNC is gone is an HTTP error rather than a socket that closes at once.
pub async fn connect_vnc(addr: SocketAddr) -> Result<TcpStream, DriverError> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| DriverError(format!("the guest's VNC server at {addr} refused: {e}")))
}

/// Relay one viewer to a VNC connection until either side closes.
pub async fn relay_vnc(ws: WebSocket, tcp: TcpStream) {
    let (mut rd, mut wr) = tcp.into_split();
    let (mut tx, mut rx) = ws.split();
    let up = async {
        while let Some(Ok(m)) = rx.next().await {
            let data = match m {
                Message::Binary(b) => b,
                Message::Text(t) => t.as_bytes().to_vec().into(),
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        let screen = futures::stream::unfold(
            (&mut rd, vec![0u8; 64 * 1024]),
            |(rd, mut buf)| async move {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => Some((bytes::Bytes::copy_from_slice(&buf[..n]), (rd, buf))),
                }
            },
        );
        to_viewer(&mut tx, screen).await;
    };
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}

/// The agent's serial connections, one per guest with viewers.
#[derive(Default, Clone)]
pub struct SerialHubs {
    hubs: Arc<Mutex<HashMap<String, Arc<SerialHub>>>>,
}

struct SerialHub {
    output: broadcast::Sender<bytes::Bytes>,
    input: mpsc::Sender<bytes::Bytes>,
}

impl SerialHubs {
    /// The hub of guest `id`, connecting to its serial socket when there
    /// is none (or the last one ended with the guest).
    async fn hub(&self, id: &str, socket: &PathBuf) -> Result<Arc<SerialHub>, DriverError> {
        if let Some(h) = self.lock().get(id).filter(|h| !h.input.is_closed()) {
            return Ok(h.clone());
        }
        let stream = UnixStream::connect(socket).await.map_err(|e| {
            DriverError(format!(
                "the guest's serial console ({}) is not reachable: {e}",
                socket.display()
            ))
        })?;
        let (mut rd, mut wr) = stream.into_split();
        let (output, _) = broadcast::channel(256);
        let (input, mut input_rx) = mpsc::channel::<bytes::Bytes>(64);
        let hub = Arc::new(SerialHub {
            output: output.clone(),
            input,
        });
        let mut map = self.lock();
        // Another viewer raced us here: keep its hub, drop this connection.
        if let Some(h) = map.get(id).filter(|h| !h.input.is_closed()) {
            return Ok(h.clone());
        }
        map.insert(id.to_string(), hub.clone());
        drop(map);
        let hubs = self.clone();
        let gid = id.to_string();
        let me = Arc::downgrade(&hub);
        tokio::spawn(async move {
            let reader = async {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        // No viewer right now is fine: the log keeps it.
                        Ok(n) => {
                            let _ = output.send(bytes::Bytes::copy_from_slice(&buf[..n]));
                        }
                    }
                }
            };
            let writer = async {
                while let Some(b) = input_rx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
            };
            tokio::select! {
                _ = reader => {},
                _ = writer => {},
            }
            // The guest's side ended (it stopped): forget this hub so the
            // next viewer connects again, and close the viewers' sockets.
            let mut map = hubs.lock();
            if map
                .get(&gid)
                .is_some_and(|h| std::ptr::eq(Arc::as_ptr(h), me.as_ptr()))
            {
                map.remove(&gid);
            }
        });
        Ok(hub)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SerialHub>>> {
        match self.hubs.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// Join guest `id`'s serial console, before the WebSocket upgrade.
    pub async fn join(
        &self,
        id: &str,
        socket: &PathBuf,
        log: &PathBuf,
    ) -> Result<SerialViewer, DriverError> {
        let hub = self.hub(id, socket).await?;
        // Subscribe first, then read the tail: a line may show twice, none
        // is lost.
        let output = hub.output.subscribe();
        let tail = read_tail(log).await;
        Ok(SerialViewer {
            output,
            input: hub.input.clone(),
            tail,
        })
    }
}

/// One viewer of a serial console.
pub struct SerialViewer {
    output: broadcast::Receiver<bytes::Bytes>,
    input: mpsc::Sender<bytes::Bytes>,
    tail: Vec<u8>,
}

async fn read_tail(log: &PathBuf) -> Vec<u8> {
    let Ok(mut f) = tokio::fs::File::open(log).await else {
        return Vec::new();
    };
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    if len > SERIAL_TAIL {
        use tokio::io::AsyncSeekExt;
        let _ = f.seek(std::io::SeekFrom::Start(len - SERIAL_TAIL)).await;
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf).await;
    buf
}

/// Relay one viewer to the guest's serial console until either ends.
pub async fn relay_serial(ws: WebSocket, viewer: SerialViewer) {
    let SerialViewer {
        mut output,
        input,
        tail,
    } = viewer;
    let (mut tx, mut rx) = ws.split();
    let up = async {
        while let Some(Ok(m)) = rx.next().await {
            let data = match m {
                Message::Binary(b) => b,
                Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            if input.send(data).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        if !tail.is_empty() && tx.send(Message::Binary(tail.into())).await.is_err() {
            return;
        }
        let serial = futures::stream::unfold(&mut output, |rx| async move {
            loop {
                match rx.recv().await {
                    Ok(b) => return Some((b, rx)),
                    // A slow viewer missed some output; it goes on.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        to_viewer(&mut tx, serial).await;
    };
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}
