//! AWS Signature Version 4, written from the published specification
//! (canonical request → string to sign → derived key → signature), the
//! signed HTTP request built on it ([`signed_request`]), the AWS error
//! document ([`error_parts`]) and a minimal S3 client ([`s3`]).
//!
//! The one signer of the workspace: the cloud provider's AWS driver (EC2,
//! STS, IAM, S3) and glance's S3 storage backend both use it. Tested against
//! the AWS SigV4 test suite vectors below and, in the integration tests,
//! against moto with signature checking switched on.

pub mod s3;

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// RFC 3986 unreserved characters stay; everything else is %XX (upper case).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The sha256 of an empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An access key pair. `Debug` never prints the secret.
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    secret_key: String,
}

impl Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.access_key)
    }
}

/// The parts of a request that are signed.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Absolute path, not yet encoded (`/`, `/bucket/key`).
    pub path: &'a str,
    /// Query parameters, not yet encoded, in any order.
    pub query: &'a [(String, String)],
    /// Headers to sign, including `host` and `x-amz-date`.
    pub headers: &'a [(String, String)],
    pub payload: &'a [u8],
}

/// Percent-encode like AWS (unreserved characters kept).
pub fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `/a b/c` → `/a%20b/c`: each segment encoded once (the S3 rule; the
/// EC2/STS paths we sign are `/`, where both rules agree).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    q.sort();
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lower-cased, trimmed, sorted headers and the `;`-joined names.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    h.sort_by(|a, b| a.0.cmp(&b.0));
    // Repeated names join their values with commas.
    let mut merged: Vec<(String, String)> = Vec::new();
    for (k, v) in h {
        match merged.last_mut() {
            Some(last) if last.0 == k => {
                last.1.push(',');
                last.1.push_str(&v);
            }
            _ => merged.push((k, v)),
        }
    }
    let text: String = merged.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let names = merged
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (text, names)
}

/// The canonical request and the signed header names.
pub fn canonical_request(req: &Request<'_>, payload_hash: &str) -> (String, String) {
    let (headers, signed) = canonical_headers(req.headers);
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        headers,
        signed,
        payload_hash
    );
    (text, signed)
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The signing key for a day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Sign `req`; `amz_date` is `YYYYMMDDTHHMMSSZ` and must equal the request's
/// `x-amz-date` header. Returns the `Authorization` header value.
pub fn authorization(
    creds: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    req: &Request<'_>,
) -> String {
    let payload_hash = sha256_hex(req.payload);
    authorization_with_hash(creds, region, service, amz_date, req, &payload_hash)
}

/// As [`authorization`] with a precomputed payload hash (S3 sends it in
/// `x-amz-content-sha256`).
pub fn authorization_with_hash(
    creds: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    req: &Request<'_>,
    payload_hash: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let (creq, signed) = canonical_request(req, payload_hash);
    let sts = string_to_sign(amz_date, &scope, &creq);
    let key = signing_key(&creds.secret_key, date, region, service);
    let sig = hex::encode(hmac(&key, sts.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
        creds.access_key
    )
}

/// Where signed requests go: an http(s) URL's origin, its `host` header and
/// its path prefix (requests are made below it).
#[derive(Debug, Clone)]
pub struct Endpoint {
    origin: String,
    host: String,
    prefix: String,
}

impl Endpoint {
    /// `None` unless `url` is http(s) with a host.
    pub fn new(url: &reqwest::Url) -> Option<Endpoint> {
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return None,
        };
        Some(Endpoint {
            origin: format!("{}://{host}", url.scheme()),
            host,
            prefix: url.path().trim_end_matches('/').to_string(),
        })
    }

    /// As [`Endpoint::new`] from text.
    pub fn parse(url: &str) -> Option<Endpoint> {
        reqwest::Url::parse(url)
            .ok()
            .as_ref()
            .and_then(Endpoint::new)
    }
}

/// One request to sign and send.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub method: reqwest::Method,
    /// Absolute path below the endpoint's prefix, not yet encoded (`/`,
    /// `/bucket/key`).
    pub path: &'a str,
    /// Query parameters, not yet encoded.
    pub query: &'a [(String, String)],
    /// Further headers to sign and send (`range`, `content-type`).
    pub headers: &'a [(String, String)],
    pub body: Option<Bytes>,
    /// What to sign as the payload hash instead of the body's sha256
    /// (`UNSIGNED-PAYLOAD`).
    pub payload_hash: Option<&'a str>,
}

/// Build `call` against `endpoint`, signed for `region` and `service` (S3
/// also gets `x-amz-content-sha256`), ready to send.
pub fn signed_request(
    http: &reqwest::Client,
    creds: &Credentials,
    region: &str,
    service: &str,
    endpoint: &Endpoint,
    call: Call<'_>,
) -> reqwest::RequestBuilder {
    let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let payload_hash = match call.payload_hash {
        Some(h) => h.to_string(),
        None => sha256_hex(call.body.as_deref().unwrap_or_default()),
    };
    let mut headers = vec![
        ("host".to_string(), endpoint.host.clone()),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    if service == "s3" {
        headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
    }
    headers.extend(call.headers.iter().cloned());
    let path = format!("{}{}", endpoint.prefix, call.path);
    let req = Request {
        method: call.method.as_str(),
        path: &path,
        query: call.query,
        headers: &headers,
        payload: b"",
    };
    let auth = authorization_with_hash(creds, region, service, &amz_date, &req, &payload_hash);
    let mut url = format!("{}{}", endpoint.origin, canonical_uri(&path));
    if !call.query.is_empty() {
        url.push('?');
        url.push_str(&canonical_query(call.query));
    }
    let mut rb = http.request(call.method, url).header("authorization", auth);
    for (k, v) in &headers {
        if k != "host" {
            rb = rb.header(k.as_str(), v.as_str());
        }
    }
    match call.body {
        Some(b) => rb.body(b),
        None => rb,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorList {
    #[serde(default, rename = "Error")]
    error: Vec<ErrorBody>,
}

/// Any of the three shapes, whatever the root element is called.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorDoc {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    errors: Option<ErrorList>,
}

/// The `Code` and `Message` of an AWS error document (EC2's
/// `<Response><Errors><Error>`, STS/IAM's `<ErrorResponse><Error>`, S3's
/// `<Error>`); empty when the text is not one.
pub fn error_parts(text: &str) -> (String, String) {
    let Ok(doc) = quick_xml::de::from_str::<ErrorDoc>(text) else {
        return (String::new(), String::new());
    };
    if doc.code.is_some() || doc.message.is_some() {
        return (
            doc.code.unwrap_or_default(),
            doc.message.unwrap_or_default(),
        );
    }
    let body = doc
        .error
        .or_else(|| doc.errors.and_then(|e| e.error.into_iter().next()))
        .unwrap_or_default();
    (body.code, body.message)
}

/// Whether the document's root element is `<Error>` (S3 may answer 200
/// with one).
pub fn is_error_document(text: &str) -> bool {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(text);
    loop {
        match r.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => return e.name().as_ref() == b"Error",
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from the AWS Signature Version 4 test suite
    //! (credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
    //! 2015-08-30T12:36:00Z, us-east-1, service `service`) and the IAM
    //! `ListUsers` example of the SigV4 documentation.

    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";

    fn creds() -> Credentials {
        Credentials::new("AKIDEXAMPLE", SECRET)
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn suite(
        method: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        payload: &[u8],
    ) -> String {
        let mut headers = h(&[("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)]);
        headers.extend(h(extra));
        let query = h(query);
        let req = Request {
            method,
            path: "/",
            query: &query,
            headers: &headers,
            payload,
        };
        authorization(&creds(), "us-east-1", "service", DATE, &req)
    }

    fn expect(signed: &str, sig: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={sig}"
        )
    }

    #[test]
    fn get_vanilla() {
        let headers = h(&[("Host", "example.amazonaws.com"), ("X-Amz-Date", DATE)]);
        let req = Request {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            payload: b"",
        };
        let (creq, _) = canonical_request(&req, EMPTY_SHA256);
        assert_eq!(
            creq,
            format!(
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY_SHA256}"
            )
        );
        assert_eq!(
            string_to_sign(DATE, "20150830/us-east-1/service/aws4_request", &creq),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            suite("GET", &[], &[], b""),
            expect(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let query = h(&[("Param2", "value2"), ("Param1", "value1")]);
        assert_eq!(canonical_query(&query), "Param1=value1&Param2=value2");
        assert_eq!(
            suite(
                "GET",
                &[("Param2", "value2"), ("Param1", "value1")],
                &[],
                b""
            ),
            expect(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn post_vanilla() {
        assert_eq!(
            suite("POST", &[], &[], b""),
            expect(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn post_header_value_case() {
        assert_eq!(
            suite("POST", &[], &[("My-Header1", "VALUE1")], b""),
            expect(
                "host;my-header1;x-amz-date",
                "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"
            )
        );
    }

    #[test]
    fn iam_list_users_example() {
        // The worked example of the SigV4 documentation.
        assert_eq!(
            hex::encode(signing_key(SECRET, "20150830", "us-east-1", "iam")),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let headers = h(&[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Host", "iam.amazonaws.com"),
            ("X-Amz-Date", DATE),
        ]);
        let query = h(&[("Action", "ListUsers"), ("Version", "2010-05-08")]);
        let req = Request {
            method: "GET",
            path: "/",
            query: &query,
            headers: &headers,
            payload: b"",
        };
        let (creq, _) = canonical_request(&req, EMPTY_SHA256);
        assert_eq!(
            sha256_hex(creq.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let auth = authorization(&creds(), "us-east-1", "iam", DATE, &req);
        assert!(
            auth.ends_with(
                "SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
            ),
            "{auth}"
        );
    }

    /// The "GET Object" example of the AWS SigV4 documentation for S3.
    #[test]
    fn s3_documented_example() {
        let headers = h(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        let req = Request {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &headers,
            payload: b"",
        };
        let auth = authorization_with_hash(
            &Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            "us-east-1",
            "s3",
            "20130524T000000Z",
            &req,
            EMPTY_SHA256,
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn error_documents() {
        let ec2 = r#"<?xml version="1.0"?><Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>a &amp; b</Message></Error></Errors><RequestID>x</RequestID></Response>"#;
        assert_eq!(
            error_parts(ec2),
            ("InvalidInstanceID.NotFound".into(), "a & b".into())
        );
        let sts = r#"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>bad token</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
        assert_eq!(
            error_parts(sts),
            ("InvalidClientTokenId".into(), "bad token".into())
        );
        let s3 = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>k</Key></Error>"#;
        assert_eq!(
            error_parts(s3),
            (
                "NoSuchKey".into(),
                "The specified key does not exist.".into()
            )
        );
        assert_eq!(error_parts("boom"), (String::new(), String::new()));
        assert!(is_error_document(s3));
        assert!(!is_error_document(ec2));
        assert!(!is_error_document(
            "<CompleteMultipartUploadResult><Error>no</Error></CompleteMultipartUploadResult>"
        ));
        assert!(!is_error_document(""));
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:5000").expect("endpoint");
        assert_eq!(
            (e.origin.as_str(), e.host.as_str(), e.prefix.as_str()),
            ("http://127.0.0.1:5000", "127.0.0.1:5000", "")
        );
        let e = Endpoint::parse("https://s3.example.com/store/").expect("endpoint");
        assert_eq!(
            (e.host.as_str(), e.prefix.as_str()),
            ("s3.example.com", "/store")
        );
        assert!(Endpoint::parse("ftp://x").is_none());
        assert!(Endpoint::parse("not a url").is_none());
    }

    #[test]
    fn encoding_and_redaction() {
        assert_eq!(uri_encode("a b/c~d"), "a%20b%2Fc~d");
        assert_eq!(canonical_uri("/bucket/my key"), "/bucket/my%20key");
        let c = creds();
        assert!(!format!("{c:?}").contains(SECRET));
    }
}
