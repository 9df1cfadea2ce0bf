//! Image service (glance) calls that are not plain JSON: streaming upload
//! with `X-Image-Meta-*` headers and a progress callback, streaming
//! download to a file (sparse: runs of zeros are skipped, not written), and
//! `show` through `HEAD` as Cloudpods' clients do.
//!
//! ```no_run
//! # async fn demo(client: cloudpods_sdk::Client) -> Result<(), cloudpods_sdk::SdkError> {
//! use serde_json::{json, Map};
//! let images = cloudpods_sdk::image::Images::new(client);
//! let mut meta = Map::new();
//! meta.insert("name".into(), json!("debian-12"));
//! meta.insert("disk_format".into(), json!("qcow2"));
//! let img = images
//!     .upload_file(std::path::Path::new("debian.qcow2"), &meta, |sent| eprintln!("{sent}"))
//!     .await?;
//! images.download_to(img["id"].as_str().unwrap(), None, std::path::Path::new("copy.qcow2"), |_, _| {}).await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use cloudpods_apis::image::{meta_to_headers, object_from_headers};
use futures::StreamExt;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::endpoint::encode_segment;
use crate::error::{Result, SdkError};
use crate::recycle::Recycler;
use crate::resource::{ListResult, ResourceManager};
use crate::sparse::SparseWriter;

/// Catalog service type of glance.
pub const IMAGE: &str = "image";

/// Read size for uploads from files, write size for downloads.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the network and the file.
const READ_AHEAD: usize = 4;

/// The image service.
#[derive(Clone)]
pub struct Images {
    client: Client,
}

fn io_err(path: &Path, e: std::io::Error) -> SdkError {
    SdkError::Config(format!("{}: {e}", path.display()))
}

fn unwrap_image(v: Value) -> Value {
    match v {
        Value::Object(mut o) => o.remove("image").unwrap_or(Value::Object(o)),
        v => v,
    }
}

impl Images {
    pub fn new(client: Client) -> Images {
        Images { client }
    }

    /// The generic manager (list, delete, actions).
    pub fn manager(&self) -> ResourceManager {
        self.client.resource(IMAGE, "image", "images")
    }

    pub async fn list(&self, params: &Map<String, Value>) -> Result<ListResult> {
        self.manager().list(params).await
    }

    /// Metadata of one image (id or name): `HEAD`, then the typed list row
    /// when visible in a list (falls back to the header values).
    pub async fn show(&self, id: &str) -> Result<Value> {
        let h = self.manager().head(id).await?;
        let obj = object_from_headers(
            h.iter()
                .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
        );
        let Some(real_id) = obj.get("id").and_then(Value::as_str).map(str::to_string) else {
            return Ok(Value::Object(obj));
        };
        let mut q = Map::new();
        q.insert("id".into(), json!(real_id));
        q.insert("details".into(), json!(true));
        q.insert("pending_delete".into(), json!("all"));
        if let Ok(l) = self.list(&q).await
            && let Some(row) = l.items.into_iter().next()
        {
            return Ok(row);
        }
        Ok(Value::Object(obj))
    }

    /// Upload a file as a new image. `meta` holds image fields
    /// (`name`, `disk_format`, `properties`…); `progress` gets the bytes
    /// sent so far.
    pub async fn upload_file<F>(
        &self,
        path: &Path,
        meta: &Map<String, Value>,
        progress: F,
    ) -> Result<Value>
    where
        F: Fn(u64) + Send + Sync + 'static,
    {
        let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let size = file.metadata().map_err(|e| io_err(path, e))?.len();
        let mut meta = meta.clone();
        meta.insert("size".into(), json!(size));
        self.upload_stream(Method::POST, "/images", file, &meta, progress)
            .await
    }

    /// Upload a file into an existing (queued) image.
    pub async fn upload_into<F>(&self, id: &str, path: &Path, progress: F) -> Result<Value>
    where
        F: Fn(u64) + Send + Sync + 'static,
    {
        let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
        let size = file.metadata().map_err(|e| io_err(path, e))?.len();
        let mut meta = Map::new();
        meta.insert("size".into(), json!(size));
        let p = format!("/images/{}", encode_segment(id));
        self.upload_stream(Method::PUT, &p, file, &meta, progress)
            .await
    }

    async fn upload_stream<F>(
        &self,
        method: Method,
        path: &str,
        file: std::fs::File,
        meta: &Map<String, Value>,
        progress: F,
    ) -> Result<Value>
    where
        F: Fn(u64) + Send + Sync + 'static,
    {
        let mut headers = HeaderMap::new();
        for (k, v) in meta_to_headers(meta) {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| SdkError::Config(format!("header {k}: {e}")))?;
            let val = HeaderValue::from_str(&v)
                .map_err(|e| SdkError::Config(format!("header {k}: {e}")))?;
            headers.insert(name, val);
        }
        if let Some(size) = meta.get("size").and_then(Value::as_u64) {
            headers.insert(
                reqwest::header::CONTENT_LENGTH,
                HeaderValue::from_str(&size.to_string())
                    .map_err(|e| SdkError::Config(e.to_string()))?,
            );
        }
        let progress = Arc::new(progress);
        let mut sent = 0u64;
        let stream = file_stream(file).map(move |chunk| {
            if let Ok(c) = &chunk {
                sent += c.len() as u64;
                progress(sent);
            }
            chunk
        });
        let body = reqwest::Body::wrap_stream(stream);
        let resp = self
            .client
            .upload(method, IMAGE, path, None, body, headers)
            .await?;
        Ok(unwrap_image(resp.body))
    }

    /// Download an image (or its sub-format `format`) to `dest`.
    /// `progress(received, total)`. Returns the bytes written.
    pub async fn download_to<F>(
        &self,
        id: &str,
        format: Option<&str>,
        dest: &Path,
        progress: F,
    ) -> Result<u64>
    where
        F: Fn(u64, Option<u64>),
    {
        let mut q = Map::new();
        if let Some(f) = format {
            q.insert("format".into(), json!(f));
        }
        let p = format!("/images/{}", encode_segment(id));
        #[cfg(target_os = "linux")]
        if let Some(n) = self
            .download_spliced(&p, (!q.is_empty()).then_some(&q), dest, &progress)
            .await?
        {
            return Ok(n);
        }
        let resp = self
            .client
            .raw_stream(
                Method::GET,
                IMAGE,
                &p,
                (!q.is_empty()).then_some(&q),
                HeaderMap::new(),
            )
            .await?;
        let total = resp.content_length();
        let file = std::fs::File::create(dest).map_err(|e| io_err(dest, e))?;
        // Writes happen on a thread of their own, fed through a short
        // queue of batches of network chunks (one `writev` each, no copy
        // into a staging buffer): no hop through the blocking pool per
        // network read, and the disk applies back-pressure to the download.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<bytes::Bytes>>(READ_AHEAD);
        let writer = tokio::task::spawn_blocking(move || {
            let mut w = SparseWriter::new(file);
            while let Some(batch) = rx.blocking_recv() {
                w.write_slices(&batch)?;
            }
            w.finish(false)
        });
        let mut stream = resp.bytes_stream();
        let mut pos = 0u64;
        let mut batch = Vec::new();
        let mut batched = 0usize;
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(source) => {
                    failure = Some(SdkError::Transport {
                        method: "GET".into(),
                        url: p.clone(),
                        source,
                    });
                    break;
                }
            };
            pos += chunk.len() as u64;
            progress(pos, total);
            batched += chunk.len();
            batch.push(chunk);
            if batched >= CHUNK {
                batched = 0;
                if tx.send(std::mem::take(&mut batch)).await.is_err() {
                    break; // the writer failed: its result says why
                }
            }
        }
        if failure.is_none() && !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| SdkError::Config(format!("download writer: {e}")))?
            .map_err(|e| io_err(dest, e))?;
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(t) = total
            && t != written
        {
            return Err(SdkError::Config(format!(
                "download ended after {written} of {t} bytes"
            )));
        }
        Ok(written)
    }

    /// The zero-copy download (see [`crate::splice`]), when it applies.
    #[cfg(target_os = "linux")]
    async fn download_spliced<F>(
        &self,
        path: &str,
        query: Option<&Map<String, Value>>,
        dest: &Path,
        progress: &F,
    ) -> Result<Option<u64>>
    where
        F: Fn(u64, Option<u64>),
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        let Some(token) = self.client.token_as_is() else {
            return Ok(None);
        };
        let url = self.client.url(IMAGE, path, query)?;
        let (received, total) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (r, t, d) = (received.clone(), total.clone(), dest.to_path_buf());
        let mut job =
            tokio::task::spawn_blocking(move || crate::splice::download(&url, &token, &d, &r, &t));
        let report = || {
            let t = total.load(Ordering::Relaxed);
            progress(received.load(Ordering::Relaxed), (t > 0).then_some(t));
        };
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        let done = loop {
            tokio::select! {
                r = &mut job => break r,
                _ = tick.tick() => report(),
            }
        };
        let done = done
            .map_err(|e| SdkError::Config(format!("download: {e}")))?
            .map_err(|e| SdkError::Config(format!("downloading to {}: {e}", dest.display())))?;
        match done {
            crate::splice::Spliced::Done { bytes, spliced } => {
                report();
                if spliced {
                    tracing::debug!(bytes, "download spliced");
                } else {
                    tracing::debug!(bytes, "download read, zeros skipped");
                }
                Ok(Some(bytes))
            }
            crate::splice::Spliced::NotHere => {
                tracing::debug!("download the ordinary way");
                Ok(None)
            }
        }
    }

    /// Update fields (`name`, `min_disk`, `properties`…).
    pub async fn update(&self, id: &str, fields: Map<String, Value>) -> Result<Value> {
        self.manager().update(id, fields).await
    }

    pub async fn delete(&self, id: &str, params: &Map<String, Value>) -> Result<Value> {
        self.manager().delete(id, params).await
    }
}

/// A file as a stream of chunks, read on a thread of its own a few chunks
/// ahead of the network.
fn file_stream(
    mut file: std::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buffers = Recycler::new(READ_AHEAD + 4);
        loop {
            let mut buf = buffers.take(CHUNK);
            let r = file.read(&mut buf);
            let item = match r {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buffers.lend(buf))
                }
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.blocking_send(item).is_err() || stop {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
