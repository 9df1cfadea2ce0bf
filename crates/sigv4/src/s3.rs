//! A minimal S3 client (path style), signed with [`crate::signed_request`]:
//! the bucket list, and enough to keep files in a bucket — put (single or
//! multipart), ranged get, head, delete. Answers are XML, read with
//! quick-xml.
//!
//! Multipart parts are read from the local file one at a time, so memory
//! stays at one part whatever the file size.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::{Call, Credentials, Endpoint, error_parts, is_error_document, signed_request};

/// Smallest part S3 accepts (except the last).
const MIN_PART: u64 = 8 << 20;
/// S3 allows at most 10 000 parts.
const MAX_PARTS: u64 = 9_000;

/// What went wrong, and in which operation (`put`, `head`, `ListBuckets`…).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// S3 answered an error (`code` and `message` from its error document;
    /// without one, `message` is the start of the body).
    #[error("s3 {op}: HTTP {status}: {code}: {message}")]
    Status {
        op: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer (connection, timeout).
    #[error("s3 {op}: {source}")]
    Transport {
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The local file could not be read.
    #[error("s3 {op}: local file {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An answer we could not read.
    #[error("s3 {op}: {message}")]
    Parse { op: &'static str, message: String },
    #[error("s3 endpoint {0:?} must be an http(s) URL with a host")]
    Endpoint(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and as whom.
#[derive(Clone)]
pub struct S3Config {
    /// `http://127.0.0.1:9000` (path-style addressing).
    pub endpoint: String,
    /// Not used by account-wide calls ([`S3::list_buckets`]).
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "S3Config({}, bucket {}, key {}, <secret>)",
            self.endpoint, self.bucket, self.access_key
        )
    }
}

/// One bucket of a `ListBuckets` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BucketInfo {
    pub name: String,
    #[serde(default)]
    pub creation_date: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAllMyBuckets {
    #[serde(default)]
    buckets: Option<BucketList>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BucketList {
    #[serde(default)]
    bucket: Vec<BucketInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateMultipartUpload {
    upload_id: String,
}

fn parse<'de, T: Deserialize<'de>>(op: &'static str, text: &'de str) -> Result<T> {
    quick_xml::de::from_str(text).map_err(|e| Error::Parse {
        op,
        message: e.to_string(),
    })
}

/// A bucket on an endpoint.
#[derive(Debug, Clone)]
pub struct S3 {
    bucket: String,
    region: String,
    endpoint: Endpoint,
    creds: Credentials,
    http: reqwest::Client,
}

impl S3 {
    pub fn new(cfg: S3Config) -> Result<S3> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|source| Error::Transport {
                op: "client",
                source,
            })?;
        Self::with_http(cfg, http)
    }

    /// As [`S3::new`], sending with `http` (its timeouts and pool).
    pub fn with_http(cfg: S3Config, http: reqwest::Client) -> Result<S3> {
        let endpoint =
            Endpoint::parse(&cfg.endpoint).ok_or_else(|| Error::Endpoint(cfg.endpoint.clone()))?;
        let creds = Credentials::new(cfg.access_key.clone(), cfg.secret_key.clone());
        Ok(S3 {
            bucket: cfg.bucket,
            region: cfg.region,
            endpoint,
            creds,
            http,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `/bucket` or `/bucket/key`.
    fn path(&self, key: &str) -> String {
        if key.is_empty() {
            format!("/{}", self.bucket)
        } else {
            format!("/{}/{key}", self.bucket)
        }
    }

    /// Build and send one signed request.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Option<Bytes>,
        unsigned: bool,
    ) -> Result<reqwest::Response> {
        let call = Call {
            method,
            path,
            query,
            headers,
            body,
            payload_hash: unsigned.then_some("UNSIGNED-PAYLOAD"),
        };
        signed_request(
            &self.http,
            &self.creds,
            &self.region,
            "s3",
            &self.endpoint,
            call,
        )
        .send()
        .await
        .map_err(|source| Error::Transport { op, source })
    }

    /// A request without query, headers or body.
    async fn bare(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
    ) -> Result<reqwest::Response> {
        self.send(op, method, path, &[], &[], None, false).await
    }

    /// The response when it is a success, else its error document.
    async fn check(resp: reqwest::Response, op: &'static str) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(status_error(op, status.as_u16(), &text))
    }

    /// The body of a successful answer.
    async fn text(resp: reqwest::Response, op: &'static str) -> Result<String> {
        Self::check(resp, op)
            .await?
            .text()
            .await
            .map_err(|source| Error::Transport { op, source })
    }

    /// Every bucket of the account (`GET /`).
    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        const OP: &str = "ListBuckets";
        let r = self.bare(OP, Method::GET, "/").await?;
        let text = Self::text(r, OP).await?;
        let list: ListAllMyBuckets = parse(OP, &text)?;
        Ok(list.buckets.map(|b| b.bucket).unwrap_or_default())
    }

    /// Create the bucket unless it exists.
    pub async fn ensure_bucket(&self) -> Result<()> {
        let r = self
            .bare("head bucket", Method::HEAD, &self.path(""))
            .await?;
        if r.status().is_success() {
            return Ok(());
        }
        let r = self
            .bare("create bucket", Method::PUT, &self.path(""))
            .await?;
        if r.status().as_u16() == 409 {
            return Ok(());
        }
        Self::check(r, "create bucket").await.map(|_| ())
    }

    /// Upload a local file as `key`.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        let io = |source| Error::Io {
            op: "put",
            path: path.to_path_buf(),
            source,
        };
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        let part = MIN_PART.max(size.div_ceil(MAX_PARTS));
        let mut f = tokio::fs::File::open(path).await.map_err(io)?;
        if size <= part {
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf).await.map_err(io)?;
            let r = self
                .send(
                    "put",
                    Method::PUT,
                    &self.path(key),
                    &[],
                    &[],
                    Some(buf.into()),
                    false,
                )
                .await?;
            return Self::check(r, "put").await.map(|_| ());
        }
        const OP: &str = "create multipart upload";
        let q = [("uploads".to_string(), String::new())];
        let r = self
            .send(OP, Method::POST, &self.path(key), &q, &[], None, false)
            .await?;
        let text = Self::text(r, OP).await?;
        let upload_id = parse::<InitiateMultipartUpload>(OP, &text)?.upload_id;
        match self
            .put_parts(key, &upload_id, &mut f, path, size, part)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let q = [("uploadId".to_string(), upload_id.clone())];
                let _ = self
                    .send(
                        "abort",
                        Method::DELETE,
                        &self.path(key),
                        &q,
                        &[],
                        None,
                        false,
                    )
                    .await;
                Err(e)
            }
        }
    }

    async fn put_parts(
        &self,
        key: &str,
        upload_id: &str,
        f: &mut tokio::fs::File,
        path: &Path,
        size: u64,
        part: u64,
    ) -> Result<()> {
        let mut etags = Vec::new();
        let mut sent = 0u64;
        let mut n = 1u32;
        while sent < size {
            let len = part.min(size - sent) as usize;
            let mut buf = vec![0u8; len];
            f.read_exact(&mut buf).await.map_err(|source| Error::Io {
                op: "upload part",
                path: path.to_path_buf(),
                source,
            })?;
            let q = [
                ("partNumber".to_string(), n.to_string()),
                ("uploadId".to_string(), upload_id.to_string()),
            ];
            let r = self
                .send(
                    "upload part",
                    Method::PUT,
                    &self.path(key),
                    &q,
                    &[],
                    Some(buf.into()),
                    false,
                )
                .await?;
            let r = Self::check(r, "upload part").await?;
            let etag = r
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            etags.push((n, etag));
            sent += len as u64;
            n += 1;
        }
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, e) in &etags {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                quick_xml::escape::escape(e.as_str())
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        const OP: &str = "complete multipart upload";
        let q = [("uploadId".to_string(), upload_id.to_string())];
        let r = self
            .send(
                OP,
                Method::POST,
                &self.path(key),
                &q,
                &[],
                Some(xml.into()),
                false,
            )
            .await?;
        let r = Self::check(r, OP).await?;
        let status = r.status().as_u16();
        // S3 may answer 200 with an error document.
        let text = r.text().await.unwrap_or_default();
        if is_error_document(&text) {
            return Err(status_error(OP, status, &text));
        }
        Ok(())
    }

    /// Stream bytes `start..end` of `key`.
    pub async fn get(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
        if end <= start {
            return Ok(futures::stream::empty().boxed());
        }
        let range = [("range".to_string(), format!("bytes={start}-{}", end - 1))];
        let r = self
            .send("get", Method::GET, &self.path(key), &[], &range, None, true)
            .await?;
        let r = Self::check(r, "get").await?;
        Ok(r.bytes_stream().map_err(std::io::Error::other).boxed())
    }

    /// Size of `key`, `None` when missing.
    pub async fn head(&self, key: &str) -> Result<Option<u64>> {
        let r = self.bare("head", Method::HEAD, &self.path(key)).await?;
        if r.status().as_u16() == 404 {
            return Ok(None);
        }
        let r = Self::check(r, "head").await?;
        Ok(r.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        let r = self.bare("delete", Method::DELETE, &self.path(key)).await?;
        if r.status().as_u16() == 404 {
            return Ok(());
        }
        Self::check(r, "delete").await.map(|_| ())
    }
}

/// An error answer: the document's code and message, or the start of the
/// body when it has none.
fn status_error(op: &'static str, status: u16, text: &str) -> Error {
    let (code, mut message) = error_parts(text);
    if message.is_empty() {
        message = text.trim().chars().take(200).collect();
    }
    Error::Status {
        op,
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let x = r#"<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key><UploadId>abc-1</UploadId></InitiateMultipartUploadResult>"#;
        let u: InitiateMultipartUpload = parse("t", x).expect("upload id");
        assert_eq!(u.upload_id, "abc-1");
        assert!(parse::<InitiateMultipartUpload>("t", "<X><Key>k</Key></X>").is_err());
        let l = r#"<ListAllMyBucketsResult><Owner><ID>o</ID></Owner><Buckets><Bucket><Name>a</Name><CreationDate>2024-01-01T00:00:00.000Z</CreationDate></Bucket><Bucket><Name>b</Name></Bucket></Buckets></ListAllMyBucketsResult>"#;
        let l: ListAllMyBuckets = parse("t", l).expect("list");
        let names: Vec<_> = l.buckets.expect("buckets").bucket;
        assert_eq!(names.len(), 2);
        assert_eq!(names[0].creation_date, "2024-01-01T00:00:00.000Z");
        let empty: ListAllMyBuckets = parse(
            "t",
            "<ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>",
        )
        .expect("empty");
        assert!(
            empty
                .buckets
                .map(|b| b.bucket)
                .unwrap_or_default()
                .is_empty()
        );
    }

    #[test]
    fn status_errors() {
        let e = status_error(
            "get",
            404,
            "<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>",
        );
        assert!(
            matches!(&e, Error::Status { status: 404, code, message, .. } if code == "NoSuchKey" && message == "gone"),
            "{e}"
        );
        let e = status_error("get", 502, " bad gateway ");
        assert!(matches!(&e, Error::Status { message, .. } if message == "bad gateway"));
    }

    #[test]
    fn paths() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg = S3Config {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "images".into(),
            access_key: "a".into(),
            secret_key: "topsecret".into(),
            region: "us-east-1".into(),
        };
        let s3 = S3::new(cfg.clone()).expect("s3");
        assert_eq!(s3.path(""), "/images");
        assert_eq!(s3.path("x.raw"), "/images/x.raw");
        assert!(!format!("{cfg:?}").contains("topsecret"));
        assert!(
            S3::new(S3Config {
                endpoint: "nope".into(),
                ..cfg
            })
            .is_err()
        );
    }
}
