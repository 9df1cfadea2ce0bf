//! A minimal S3 client (path-style) signed with AWS Signature Version 4,
//! written from the published specification: enough to keep image files in
//! a bucket — put (single or multipart), ranged get, head, delete.
//!
//! Multipart parts are read from the local file one at a time, so memory
//! stays at one part whatever the image size.

use std::path::Path;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use hmac::{KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::error::{GlanceError, Result};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Unreserved characters stay, the rest is %XX.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The sha256 of an empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Smallest part S3 accepts (except the last).
const MIN_PART: u64 = 8 << 20;
/// S3 allows at most 10 000 parts.
const MAX_PARTS: u64 = 9_000;

fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The SigV4 `Authorization` header for a request. `headers` are the
/// headers to sign (lower-case names; must include `host`,
/// `x-amz-content-sha256` and `x-amz-date`), `path` is the unencoded path.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    access_key: &str,
    secret_key: &str,
    region: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    payload_sha256: &str,
    amz_date: &str,
) -> String {
    let uri: String = path
        .split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/");
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    h.sort();
    let canonical_headers: String = h.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: String = h
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{method}\n{uri}\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload_sha256}"
    );
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"s3");
    let k = hmac(&k, b"aws4_request");
    let sig = hex::encode(hmac(&k, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={sig}"
    )
}

/// Where and as whom.
#[derive(Clone)]
pub struct S3Config {
    /// `http://127.0.0.1:9000` (path-style addressing).
    pub endpoint: String,
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

/// A bucket.
#[derive(Debug, Clone)]
pub struct S3 {
    cfg: S3Config,
    http: reqwest::Client,
    host: String,
}

fn err(what: &str, e: impl std::fmt::Display) -> GlanceError {
    GlanceError::Storage(format!("s3 {what}: {e}"))
}

impl S3 {
    pub fn new(cfg: S3Config) -> Result<S3> {
        let url = reqwest::Url::parse(&cfg.endpoint).map_err(|e| err("endpoint", e))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err(err("endpoint", "no host")),
        };
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| err("client", e))?;
        Ok(S3 { cfg, http, host })
    }

    pub fn bucket(&self) -> &str {
        &self.cfg.bucket
    }

    fn path(&self, key: &str) -> String {
        if key.is_empty() {
            format!("/{}", self.cfg.bucket)
        } else {
            format!("/{}/{key}", self.cfg.bucket)
        }
    }

    /// Build and send one signed request.
    async fn send(
        &self,
        method: Method,
        key: &str,
        query: &[(String, String)],
        extra: &[(String, String)],
        body: Option<Bytes>,
        unsigned: bool,
    ) -> Result<reqwest::Response> {
        let path = self.path(key);
        let payload = match (&body, unsigned) {
            (_, true) => "UNSIGNED-PAYLOAD".to_string(),
            (Some(b), false) => hex::encode(Sha256::digest(b)),
            (None, false) => EMPTY_SHA256.to_string(),
        };
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("x-amz-content-sha256".to_string(), payload.clone()),
            ("x-amz-date".to_string(), amz_date.clone()),
        ];
        headers.extend(extra.iter().cloned());
        let auth = authorization(
            &self.cfg.access_key,
            &self.cfg.secret_key,
            &self.cfg.region,
            method.as_str(),
            &path,
            query,
            &headers,
            &payload,
            &amz_date,
        );
        let encoded: String = path
            .split('/')
            .map(uri_encode)
            .collect::<Vec<_>>()
            .join("/");
        let mut url = format!("{}{encoded}", self.cfg.endpoint.trim_end_matches('/'));
        if !query.is_empty() {
            let qs: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
                .collect();
            url.push('?');
            url.push_str(&qs.join("&"));
        }
        let mut rb = self.http.request(method, &url);
        for (k, v) in &headers {
            if k != "host" {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        rb = rb.header("authorization", auth);
        if let Some(b) = body {
            rb = rb.body(b);
        }
        rb.send().await.map_err(|e| err("request", e))
    }

    async fn check(resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(err(what, format!("{status}: {}", text.trim())))
    }

    /// Create the bucket unless it exists.
    pub async fn ensure_bucket(&self) -> Result<()> {
        let r = self.send(Method::HEAD, "", &[], &[], None, false).await?;
        if r.status().is_success() {
            return Ok(());
        }
        let r = self.send(Method::PUT, "", &[], &[], None, false).await?;
        let status = r.status();
        if status.is_success() || status.as_u16() == 409 {
            return Ok(());
        }
        Self::check(r, "create bucket").await.map(|_| ())
    }

    /// Upload a local file as `key`.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| GlanceError::io(path, e))?
            .len();
        let part = MIN_PART.max(size.div_ceil(MAX_PARTS));
        let mut f = tokio::fs::File::open(path)
            .await
            .map_err(|e| GlanceError::io(path, e))?;
        if size <= part {
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf)
                .await
                .map_err(|e| GlanceError::io(path, e))?;
            let r = self
                .send(Method::PUT, key, &[], &[], Some(Bytes::from(buf)), false)
                .await?;
            return Self::check(r, "put").await.map(|_| ());
        }
        let r = self
            .send(
                Method::POST,
                key,
                &[("uploads".into(), String::new())],
                &[],
                None,
                false,
            )
            .await?;
        let text = Self::check(r, "create multipart upload")
            .await?
            .text()
            .await
            .map_err(|e| err("create multipart upload", e))?;
        let upload_id = xml_value(&text, "UploadId")
            .ok_or_else(|| err("create multipart upload", "no UploadId in the answer"))?;
        match self
            .put_parts(key, &upload_id, &mut f, path, size, part)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let q = [("uploadId".to_string(), upload_id.clone())];
                let _ = self.send(Method::DELETE, key, &q, &[], None, false).await;
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
            f.read_exact(&mut buf)
                .await
                .map_err(|e| GlanceError::io(path, e))?;
            let q = [
                ("partNumber".to_string(), n.to_string()),
                ("uploadId".to_string(), upload_id.to_string()),
            ];
            let r = self
                .send(Method::PUT, key, &q, &[], Some(Bytes::from(buf)), false)
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
                "<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let q = [("uploadId".to_string(), upload_id.to_string())];
        let r = self
            .send(Method::POST, key, &q, &[], Some(Bytes::from(xml)), false)
            .await?;
        let r = Self::check(r, "complete multipart upload").await?;
        // S3 may answer 200 with an error document.
        let text = r.text().await.unwrap_or_default();
        if text.contains("<Error>") {
            return Err(err("complete multipart upload", text));
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
        let r = self.send(Method::GET, key, &[], &range, None, true).await?;
        let r = Self::check(r, "get").await?;
        Ok(r.bytes_stream().map_err(std::io::Error::other).boxed())
    }

    /// Size of `key`, `None` when missing.
    pub async fn head(&self, key: &str) -> Result<Option<u64>> {
        let r = self.send(Method::HEAD, key, &[], &[], None, false).await?;
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
        let r = self
            .send(Method::DELETE, key, &[], &[], None, false)
            .await?;
        if r.status().as_u16() == 404 {
            return Ok(());
        }
        Self::check(r, "delete").await.map(|_| ())
    }
}

/// The text of the first `<tag>…</tag>` in an XML document.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let a = xml.find(&open)? + open.len();
    let b = xml[a..].find(&close)? + a;
    Some(xml[a..b].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "GET Object" example of the AWS SigV4 documentation for S3.
    #[test]
    fn aws_documented_example() {
        let headers = vec![
            (
                "host".to_string(),
                "examplebucket.s3.amazonaws.com".to_string(),
            ),
            ("range".to_string(), "bytes=0-9".to_string()),
            ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
            ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
        ];
        let auth = authorization(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "GET",
            "/test.txt",
            &[],
            &headers,
            EMPTY_SHA256,
            "20130524T000000Z",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn xml_values() {
        let x = "<InitiateMultipartUploadResult><Bucket>b</Bucket><UploadId>abc-1</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(xml_value(x, "UploadId").as_deref(), Some("abc-1"));
        assert_eq!(xml_value(x, "Key"), None);
    }
}
