//! Signed calls to the AWS query APIs (EC2, STS) and S3, with retries of
//! throttled and failed calls, and pagination.

use std::time::Duration;

use reqwest::Url;

use crate::sigv4::{self, Credentials};
use crate::{CloudError, ProviderConfig, Result};

/// Error codes AWS uses for throttling.
const THROTTLE_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
];

/// Error codes meaning the credentials (or signature) were refused.
const AUTH_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "UnrecognizedClientException",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "AccessDenied",
    "UnauthorizedOperation",
];

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    creds: Credentials,
    /// Custom endpoint for every service (emulators, compatible clouds).
    custom: Option<Url>,
    cfg: ProviderConfig,
}

impl Client {
    pub fn new(cfg: ProviderConfig) -> Result<Client> {
        let custom = if cfg.access_url.trim().is_empty() {
            None
        } else {
            let u = Url::parse(cfg.access_url.trim()).map_err(|e| CloudError::Invalid {
                code: "InvalidAccessUrl".into(),
                message: format!("access_url {:?}: {e}", cfg.access_url),
            })?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(CloudError::Invalid {
                    code: "InvalidAccessUrl".into(),
                    message: format!("access_url {:?} must be an http(s) URL", cfg.access_url),
                });
            }
            Some(u)
        };
        if cfg.account.is_empty() || cfg.secret.is_empty() {
            return Err(CloudError::Invalid {
                code: "MissingCredentials".into(),
                message: "the access key id and the secret are required".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| CloudError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            creds: Credentials::new(cfg.account.clone(), cfg.secret.clone()),
            custom,
            cfg,
        })
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.cfg
    }

    fn endpoint(&self, service: &str, region: &str) -> Result<Url> {
        if let Some(u) = &self.custom {
            return Ok(u.clone());
        }
        let host = match service {
            "s3" if region == "us-east-1" => "https://s3.amazonaws.com/".to_string(),
            _ => format!("https://{service}.{region}.amazonaws.com/"),
        };
        Url::parse(&host).map_err(|e| CloudError::Parse(e.to_string()))
    }

    /// One query-API action (`Action=…&Version=…` form POST), retried while
    /// it is throttled or fails with a server or transport error. Returns
    /// the response XML.
    pub async fn query(
        &self,
        service: &str,
        region: &str,
        version: &str,
        action: &str,
        params: &[(String, String)],
    ) -> Result<String> {
        let mut form: Vec<(String, String)> = vec![
            ("Action".into(), action.into()),
            ("Version".into(), version.into()),
        ];
        form.extend(params.iter().cloned());
        // `application/x-www-form-urlencoded` as botocore sends it (spaces
        // as `+`): servers that re-encode the parsed form to check the
        // payload hash (moto) get the same bytes back.
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let url = self.endpoint(service, region)?;
        // Reads are retried on any transient failure; a change only when it
        // was throttled (refused before it ran): after a 5xx or a timeout
        // it may have happened, and running it again could do it twice.
        let read = ["Describe", "Get", "List"]
            .iter()
            .any(|p| action.starts_with(p));
        self.with_retry(action, read, || {
            self.send(
                service,
                region,
                "POST",
                &url,
                &[],
                body.as_bytes(),
                Some("application/x-www-form-urlencoded; charset=utf-8"),
            )
        })
        .await
    }

    /// A GET on S3 (path style: `/bucket/key`).
    pub async fn s3_get(
        &self,
        region: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Result<String> {
        let mut url = self.endpoint("s3", region)?;
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        self.with_retry("s3", true, || {
            self.send("s3", region, "GET", &url, query, b"", None)
        })
        .await
    }

    async fn with_retry<F, Fut>(&self, what: &str, read: bool, mut f: F) -> Result<String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<String>>,
    {
        let attempts = self.cfg.max_attempts.max(1);
        let mut delay = self.cfg.backoff;
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e)
                    if attempt < attempts
                        && (matches!(e, CloudError::Throttled(_))
                            || (read && e.is_retryable())) =>
                {
                    // Full jitter keeps many syncs from retrying in step.
                    let jitter = rand::random::<f64>() * 0.5 + 0.75;
                    let pause = delay.mul_f64(jitter).min(Duration::from_secs(20));
                    tracing::debug!(action = what, attempt, error = %e, ?pause, "cloud call failed; retrying");
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(Duration::from_secs(20));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        service: &str,
        region: &str,
        method: &str,
        url: &Url,
        query: &[(String, String)],
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<String> {
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(CloudError::Parse("endpoint without host".into())),
        };
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let payload_hash = sigv4::sha256_hex(body);
        let mut headers = vec![
            ("host".to_string(), host),
            ("x-amz-date".to_string(), amz_date.clone()),
        ];
        if service == "s3" {
            headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        }
        if let Some(ct) = content_type {
            headers.push(("content-type".into(), ct.into()));
        }
        let path = url.path().to_string();
        let req = sigv4::Request {
            method,
            path: &path,
            query,
            headers: &headers,
            payload: body,
        };
        let auth = sigv4::authorization_with_hash(
            &self.creds,
            region,
            service,
            &amz_date,
            &req,
            &payload_hash,
        );
        let mut full = url.clone();
        if !query.is_empty() {
            full.set_query(Some(&sigv4::canonical_query(query)));
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| CloudError::Parse(e.to_string()))?;
        let mut rb = self
            .http
            .request(method, full)
            .header("authorization", auth)
            .body(body.to_vec());
        for (k, v) in &headers {
            if k != "host" {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(transport)?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        Err(classify(status, &text))
    }
}

fn form_encode(s: &str) -> String {
    s.split(' ')
        .map(sigv4::uri_encode)
        .collect::<Vec<_>>()
        .join("+")
}

/// A transport error, without the URL's query (it holds no secret, but
/// keep messages short).
fn transport(e: reqwest::Error) -> CloudError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    CloudError::Transport(msg)
}

/// The `Code` and `Message` of an AWS error document (EC2's
/// `<Response><Errors><Error>`, STS/IAM's `<ErrorResponse><Error>`, S3's
/// `<Error>`).
pub fn error_parts(text: &str) -> (String, String) {
    let find = |tag: &str| -> String {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        text.find(&open)
            .and_then(|i| {
                let rest = &text[i + open.len()..];
                rest.find(&close).map(|j| rest[..j].to_string())
            })
            .map(|s| unescape(&s))
            .unwrap_or_default()
    };
    (find("Code"), find("Message"))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

pub fn classify(status: u16, text: &str) -> CloudError {
    let (code, mut message) = error_parts(text);
    if message.is_empty() {
        message = text.chars().take(200).collect();
    }
    if THROTTLE_CODES.contains(&code.as_str()) || status == 429 {
        return CloudError::Throttled(format!("{code}: {message}"));
    }
    if AUTH_CODES.contains(&code.as_str()) || status == 401 {
        return CloudError::Unauthorized(if code.is_empty() {
            message
        } else {
            format!("{code}: {message}")
        });
    }
    if code.contains("NotFound") || code == "NoSuchBucket" || code == "NoSuchKey" {
        return CloudError::NotFound(message);
    }
    if status >= 500 || status == 408 {
        return CloudError::Server {
            status,
            code,
            message,
        };
    }
    if status == 403 {
        return CloudError::Unauthorized(format!("{code}: {message}"));
    }
    CloudError::Invalid { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_aws_errors() {
        let ec2 = r#"<?xml version="1.0"?><Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-1' does not exist</Message></Error></Errors><RequestID>x</RequestID></Response>"#;
        assert!(matches!(classify(400, ec2), CloudError::NotFound(m) if m.contains("i-1")));
        let thr = r#"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors></Response>"#;
        assert!(classify(503, thr).is_retryable());
        assert!(matches!(classify(503, thr), CloudError::Throttled(_)));
        let sts = r#"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>"#;
        assert!(
            matches!(classify(403, sts), CloudError::Unauthorized(m) if m.contains("security token"))
        );
        assert!(matches!(
            classify(500, "boom"),
            CloudError::Server { status: 500, .. }
        ));
        let bad = r#"<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>a &amp; b</Message></Error></Errors></Response>"#;
        assert!(
            matches!(classify(400, bad), CloudError::Invalid { code, message } if code == "InvalidParameterValue" && message == "a & b")
        );
    }

    #[test]
    fn rejects_bad_access_urls() {
        let cfg = ProviderConfig {
            access_url: "ftp://x".into(),
            account: "a".into(),
            secret: "b".into(),
            ..Default::default()
        };
        assert!(Client::new(cfg).is_err());
        let cfg = ProviderConfig {
            access_url: "not a url".into(),
            account: "a".into(),
            secret: "b".into(),
            ..Default::default()
        };
        assert!(Client::new(cfg).is_err());
    }
}
