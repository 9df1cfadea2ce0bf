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
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::client::Client;
use crate::endpoint::encode_segment;
use crate::error::{Result, SdkError};
use crate::resource::{ListResult, ResourceManager};

/// Catalog service type of glance.
pub const IMAGE: &str = "image";

/// Read size for uploads from files.
const CHUNK: usize = 1 << 20;

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
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| io_err(path, e))?;
        let size = file.metadata().await.map_err(|e| io_err(path, e))?.len();
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
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| io_err(path, e))?;
        let size = file.metadata().await.map_err(|e| io_err(path, e))?.len();
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
        file: tokio::fs::File,
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
        let file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| io_err(dest, e))?;
        // Network chunks are small: batch them into large writes.
        let mut f = tokio::io::BufWriter::with_capacity(CHUNK, file);
        let mut stream = resp.bytes_stream();
        let mut pos = 0u64;
        let mut file_pos = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| SdkError::Transport {
                method: "GET".into(),
                url: p.clone(),
                source,
            })?;
            // Keep sparse images sparse: skip zero runs.
            if !is_zero(&chunk) {
                if file_pos != pos {
                    f.seek(std::io::SeekFrom::Start(pos))
                        .await
                        .map_err(|e| io_err(dest, e))?;
                }
                f.write_all(&chunk).await.map_err(|e| io_err(dest, e))?;
                file_pos = pos + chunk.len() as u64;
            }
            pos += chunk.len() as u64;
            progress(pos, total);
        }
        f.flush().await.map_err(|e| io_err(dest, e))?;
        f.get_mut()
            .set_len(pos)
            .await
            .map_err(|e| io_err(dest, e))?;
        if let Some(t) = total
            && t != pos
        {
            return Err(SdkError::Config(format!(
                "download ended after {pos} of {t} bytes"
            )));
        }
        Ok(pos)
    }

    /// Update fields (`name`, `min_disk`, `properties`…).
    pub async fn update(&self, id: &str, fields: Map<String, Value>) -> Result<Value> {
        self.manager().update(id, fields).await
    }

    pub async fn delete(&self, id: &str, params: &Map<String, Value>) -> Result<Value> {
        self.manager().delete(id, params).await
    }
}

/// Whether every byte is zero (no early exit inside a block, so it
/// vectorizes).
fn is_zero(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

/// A file as a stream of chunks.
fn file_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::try_unfold((file, vec![0u8; CHUNK]), |(mut f, mut buf)| async move {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        let chunk = bytes::Bytes::copy_from_slice(&buf[..n]);
        Ok(Some((chunk, (f, buf))))
    })
}
