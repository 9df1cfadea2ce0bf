//! The image cache: glance images downloaded once per host, used as the
//! read-only backing files of guest disks.
//!
//! `GET /v1/images/{id}` is streamed to `<id>.part` while its MD5 is
//! computed; it must match the image's checksum (`X-Image-Meta-Checksum`)
//! before the file is renamed into place, so a half or corrupt download is
//! never used. Concurrent creates of the same image wait on one download
//! (a lock per image), and later ones find the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::DriverError;

/// Where images come from.
#[async_trait]
pub trait ImageSource: Send + Sync + 'static {
    /// `GET` (or `HEAD`) an image by id or name: the response, unread.
    async fn fetch(&self, image: &str, head: bool) -> Result<reqwest::Response, DriverError>;
}

/// Glance reached through the catalog with the agent's session.
pub struct GlanceSource(pub cloudpods_sdk::Client);

#[async_trait]
impl ImageSource for GlanceSource {
    async fn fetch(&self, image: &str, head: bool) -> Result<reqwest::Response, DriverError> {
        let method = if head {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let path = format!("/images/{}", cloudpods_sdk::endpoint::encode_segment(image));
        self.0
            .raw_stream(method, "image", &path, None, Default::default())
            .await
            .map_err(|e| DriverError(format!("fetching image {image} from glance: {e}")))
    }
}

/// A glance-compatible server at a fixed URL (`{base}/images/{id}`), no
/// token.
pub struct UrlSource {
    pub base: String,
    pub http: reqwest::Client,
}

#[async_trait]
impl ImageSource for UrlSource {
    async fn fetch(&self, image: &str, head: bool) -> Result<reqwest::Response, DriverError> {
        let url = format!("{}/images/{image}", self.base.trim_end_matches('/'));
        let req = if head {
            self.http.head(&url)
        } else {
            self.http.get(&url)
        };
        let resp = req
            .send()
            .await
            .map_err(|e| DriverError(format!("fetching image {image}: {e}")))?;
        if !resp.status().is_success() {
            return Err(DriverError(format!(
                "fetching image {image}: {}",
                resp.status()
            )));
        }
        Ok(resp)
    }
}

/// What the cache knows of an image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedImage {
    pub id: String,
    pub name: String,
    /// `qcow2`, `raw`… as qemu-img sees it.
    pub format: String,
    pub size: u64,
    pub virtual_size: u64,
    pub checksum: String,
    pub path: String,
    /// The first sector carries a boot signature (BIOS can boot it).
    pub bootable: bool,
}

pub struct ImageCache {
    dir: PathBuf,
    source: Option<Arc<dyn ImageSource>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Downloads done by this process (tests check single-flight).
    downloads: AtomicU64,
}

impl ImageCache {
    pub fn new(dir: PathBuf, source: Option<Arc<dyn ImageSource>>) -> ImageCache {
        let _ = std::fs::create_dir_all(&dir);
        ImageCache {
            dir,
            source,
            locks: Mutex::new(HashMap::new()),
            downloads: AtomicU64::new(0),
        }
    }

    pub fn downloads(&self) -> u64 {
        self.downloads.load(Ordering::Relaxed)
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Cached images (`GET /disks/image_cache`).
    pub fn list(&self) -> Vec<CachedImage> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "json")
                    && let Ok(t) = std::fs::read_to_string(e.path())
                    && let Ok(img) = serde_json::from_str::<CachedImage>(&t)
                    && Path::new(&img.path).exists()
                {
                    out.push(img);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn lookup(&self, image: &str) -> Option<CachedImage> {
        if let Ok(t) = std::fs::read_to_string(self.meta_path(&safe(image)))
            && let Ok(img) = serde_json::from_str::<CachedImage>(&t)
            && Path::new(&img.path).exists()
        {
            return Some(img);
        }
        // Asked by name.
        self.list().into_iter().find(|i| i.name == image)
    }

    fn lock_for(&self, image: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = match self.locks.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(image.to_string()).or_default().clone()
    }

    /// The cached image, downloading it first if needed.
    pub async fn get(&self, image: &str) -> Result<CachedImage, DriverError> {
        if let Some(img) = self.lookup(image) {
            return Ok(img);
        }
        let lock = self.lock_for(image);
        let _g = lock.lock().await;
        if let Some(img) = self.lookup(image) {
            return Ok(img);
        }
        let source = self.source.as_ref().ok_or_else(|| {
            DriverError(format!(
                "image {image} is not cached and this agent has no image service"
            ))
        })?;
        self.download(source.as_ref(), image).await
    }

    async fn download(
        &self,
        source: &dyn ImageSource,
        image: &str,
    ) -> Result<CachedImage, DriverError> {
        let started = std::time::Instant::now();
        let resp = source.fetch(image, false).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(DriverError(format!("fetching image {image}: {status}")));
        }
        let header = |h: &reqwest::header::HeaderMap, k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let mut headers = resp.headers().clone();
        if header(&headers, "x-image-meta-checksum").is_empty()
            && let Ok(h) = source.fetch(image, true).await
        {
            headers = h.headers().clone();
        }
        let id = Some(header(&headers, "x-image-meta-id"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| image.to_string());
        let id = safe(&id);
        let name = header(&headers, "x-image-meta-name");
        let expected = header(&headers, "x-image-meta-checksum").to_lowercase();
        let path = self.dir.join(&id);
        let part = self.dir.join(format!("{id}.part"));
        let result = async {
            let mut file = tokio::fs::File::create(&part)
                .await
                .map_err(|e| DriverError(format!("image cache: {e}")))?;
            let mut md5 = Md5::new();
            let mut size = 0u64;
            let mut resp = resp;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| DriverError(format!("downloading image {image}: {e}")))?
            {
                md5.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| DriverError(format!("image cache: {e}")))?;
            }
            file.sync_all()
                .await
                .map_err(|e| DriverError(format!("image cache: {e}")))?;
            let got = hex::encode(md5.finalize());
            if !expected.is_empty() && got != expected {
                return Err(DriverError(format!(
                    "image {image}: checksum mismatch (glance says {expected}, downloaded {got})"
                )));
            }
            if size == 0 {
                return Err(DriverError(format!("image {image} is empty")));
            }
            let info = crate::cmd::run(
                "qemu-img",
                ["info", "--output=json", &part.display().to_string()],
            )
            .await?;
            let info: serde_json::Value = serde_json::from_str(&info)
                .map_err(|e| DriverError(format!("qemu-img info: {e}")))?;
            let format = info["format"].as_str().unwrap_or("raw").to_string();
            let virtual_size = info["virtual-size"].as_u64().unwrap_or(size);
            let bootable = has_boot_signature(&part, &format).await;
            std::fs::rename(&part, &path).map_err(|e| DriverError(format!("image cache: {e}")))?;
            Ok(CachedImage {
                id: id.clone(),
                name,
                format,
                size,
                virtual_size,
                checksum: got,
                path: path.display().to_string(),
                bootable,
            })
        }
        .await;
        match result {
            Ok(img) => {
                let text =
                    serde_json::to_string_pretty(&img).map_err(|e| DriverError(e.to_string()))?;
                std::fs::write(self.meta_path(&id), text)
                    .map_err(|e| DriverError(format!("image cache: {e}")))?;
                if image != id {
                    // Let a lookup by the name the region used find it.
                    let _ = std::fs::write(
                        self.meta_path(&safe(image)),
                        serde_json::to_string(&img).unwrap_or_default(),
                    );
                }
                self.downloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(image = %id, size = img.size, elapsed_ms = started.elapsed().as_millis() as u64, "image cached");
                Ok(img)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                Err(e)
            }
        }
    }

    /// Drop an image from the cache.
    pub fn remove(&self, image: &str) {
        if let Some(img) = self.lookup(image) {
            let _ = std::fs::remove_file(&img.path);
            let _ = std::fs::remove_file(self.meta_path(&img.id));
        }
        let _ = std::fs::remove_file(self.meta_path(&safe(image)));
    }
}

/// A file name from an image reference.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether sector 0 ends in 0x55AA (an MBR or a GPT protective MBR).
pub async fn has_boot_signature(path: &Path, format: &str) -> bool {
    let sector = if format == "raw" {
        use std::io::Read;
        let mut buf = vec![0u8; 512];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut buf))
            .ok()
            .map(|_| buf)
    } else {
        let out = path.with_extension("sector0");
        let r = crate::cmd::run(
            "qemu-img",
            [
                "dd".to_string(),
                "-f".into(),
                format.to_string(),
                "-O".into(),
                "raw".into(),
                "bs=512".into(),
                "count=1".into(),
                format!("if={}", path.display()),
                format!("of={}", out.display()),
            ],
        )
        .await;
        let data = r.ok().and_then(|_| std::fs::read(&out).ok());
        let _ = std::fs::remove_file(&out);
        data
    };
    matches!(sector, Some(s) if s.len() >= 512 && s[510] == 0x55 && s[511] == 0xAA)
}
