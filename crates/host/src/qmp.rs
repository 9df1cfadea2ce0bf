//! A small QMP client over a unix socket.
//!
//! QMP is JSON lines: the server greets (`{"QMP": …}`), the client sends
//! `qmp_capabilities`, then each `{"execute": …}` is answered by
//! `{"return": …}` or `{"error": {"class", "desc"}}`, with asynchronous
//! `{"event": …}` lines interleaved. The agent connects for each control
//! action and disconnects afterwards: QEMU serves one client at a time, and
//! short connections survive agent restarts without any state.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// A QMP failure.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached.
    #[error("cannot connect to QMP socket {path}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("QMP connection broken")]
    Io(#[from] std::io::Error),
    /// QEMU closed the connection.
    #[error("QEMU closed the QMP connection")]
    Closed,
    /// No answer in time.
    #[error("QMP command {0} timed out")]
    Timeout(String),
    /// QEMU refused the command; `desc` is QEMU's own message.
    #[error("{desc}")]
    Command { class: String, desc: String },
    /// A line that is not JSON.
    #[error("QMP sent something that is not JSON")]
    Protocol(#[from] serde_json::Error),
}

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Events seen while waiting for answers.
    pub events: Vec<Value>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl Qmp {
    /// Connect, read the greeting and negotiate capabilities.
    pub async fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (r, w) = stream.into_split();
        let mut q = Qmp {
            reader: BufReader::new(r),
            writer: w,
            events: Vec::new(),
        };
        let greeting = tokio::time::timeout(TIMEOUT, q.read_line())
            .await
            .map_err(|_| QmpError::Timeout("greeting".into()))??;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Closed);
        }
        q.execute("qmp_capabilities", None).await?;
        Ok(q)
    }

    async fn read_line(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).await?;
            if n == 0 {
                return Err(QmpError::Closed);
            }
            if !line.trim().is_empty() {
                return Ok(serde_json::from_str(line.trim())?);
            }
        }
    }

    /// Run one command and return its `return` value.
    pub async fn execute(&mut self, cmd: &str, args: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({"execute": cmd});
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).await?;
        let answer = tokio::time::timeout(TIMEOUT, async {
            loop {
                let v = self.read_line().await?;
                if v.get("event").is_some() {
                    self.events.push(v);
                    continue;
                }
                return Ok::<Value, QmpError>(v);
            }
        })
        .await
        .map_err(|_| QmpError::Timeout(cmd.to_string()))??;
        if let Some(e) = answer.get("error") {
            return Err(QmpError::Command {
                class: e["class"].as_str().unwrap_or_default().to_string(),
                desc: e["desc"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(answer.get("return").cloned().unwrap_or(Value::Null))
    }

    /// Wait up to `within` for an event named `name` (already seen ones
    /// count), returning it.
    pub async fn wait_event(&mut self, name: &str, within: Duration) -> Option<Value> {
        if let Some(pos) = self.events.iter().position(|e| e["event"] == name) {
            return Some(self.events.remove(pos));
        }
        let fut = async {
            loop {
                match self.read_line().await {
                    Ok(v) if v["event"] == name => return Some(v),
                    Ok(v) => self.events.push(v),
                    Err(_) => return None,
                }
            }
        };
        tokio::time::timeout(within, fut).await.ok().flatten()
    }
}

/// Run one command on a fresh connection.
pub async fn run(path: &Path, cmd: &str, args: Option<Value>) -> Result<Value, QmpError> {
    let mut q = Qmp::connect(path).await?;
    q.execute(cmd, args).await
}
