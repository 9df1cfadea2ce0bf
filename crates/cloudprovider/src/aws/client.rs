//! Signed calls to the AWS query APIs (EC2, STS) and S3, with retries of
//! throttled and failed calls, and pagination.

use std::time::Duration;

use reqwest::Url;

use cloudpods_sigv4::s3::{self, S3, S3Config};
use cloudpods_sigv4::{Call, Credentials, Endpoint, error_parts, signed_request, uri_encode};

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
                &url,
                body.as_bytes(),
                "application/x-www-form-urlencoded; charset=utf-8",
            )
        })
        .await
    }

    /// The account's buckets (S3 `ListBuckets`, account-wide), retried
    /// like any read.
    pub async fn list_buckets(&self, region: &str) -> Result<Vec<s3::BucketInfo>> {
        let s3 = S3::with_http(
            S3Config {
                endpoint: self.endpoint("s3", region)?.to_string(),
                bucket: String::new(),
                access_key: self.cfg.account.clone(),
                secret_key: self.cfg.secret.clone(),
                region: region.to_string(),
            },
            self.http.clone(),
        )
        .map_err(s3_error)?;
        let s3 = &s3;
        self.with_retry("s3", true, move || async move {
            s3.list_buckets().await.map_err(s3_error)
        })
        .await
    }

    async fn with_retry<T, F, Fut>(&self, what: &str, read: bool, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
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

    /// One signed call; the body of a successful answer.
    async fn send(
        &self,
        service: &str,
        region: &str,
        url: &Url,
        body: &[u8],
        content_type: &str,
    ) -> Result<String> {
        let endpoint =
            Endpoint::new(url).ok_or_else(|| CloudError::Parse("endpoint without host".into()))?;
        let headers = [("content-type".to_string(), content_type.to_string())];
        let call = Call {
            method: reqwest::Method::POST,
            path: "/",
            query: &[],
            headers: &headers,
            body: Some(body.to_vec().into()),
            payload_hash: None,
        };
        let resp = signed_request(&self.http, &self.creds, region, service, &endpoint, call)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(transport)?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        Err(classify(status, &text))
    }
}

fn form_encode(s: &str) -> String {
    s.split(' ').map(uri_encode).collect::<Vec<_>>().join("+")
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

/// An S3 client error as the driver reports it.
fn s3_error(e: s3::Error) -> CloudError {
    match e {
        s3::Error::Status {
            status,
            code,
            message,
            ..
        } => classify_parts(status, code, message),
        s3::Error::Transport { source, .. } => transport(source),
        e @ s3::Error::Endpoint(_) => CloudError::Invalid {
            code: "InvalidAccessUrl".into(),
            message: e.to_string(),
        },
        e => CloudError::Parse(e.to_string()),
    }
}

pub fn classify(status: u16, text: &str) -> CloudError {
    let (code, mut message) = error_parts(text);
    if message.is_empty() {
        message = text.chars().take(200).collect();
    }
    classify_parts(status, code, message)
}

/// As [`classify`] with the document's code and message.
fn classify_parts(status: u16, code: String, message: String) -> CloudError {
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
