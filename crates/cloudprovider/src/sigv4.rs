//! AWS Signature Version 4, written from the published specification
//! (canonical request → string to sign → derived key → signature).
//!
//! Tested against the AWS SigV4 test suite vectors below and, in the
//! integration tests, against moto with signature checking switched on.

use hmac::{KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// RFC 3986 unreserved characters stay; everything else is %XX (upper case).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

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

#[cfg(test)]
mod tests {
    //! Vectors from the AWS Signature Version 4 test suite
    //! (credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
    //! 2015-08-30T12:36:00Z, us-east-1, service `service`) and the IAM
    //! `ListUsers` example of the SigV4 documentation.

    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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
        let (creq, _) = canonical_request(&req, EMPTY);
        assert_eq!(
            creq,
            format!(
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:{DATE}\n\nhost;x-amz-date\n{EMPTY}"
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
        let (creq, _) = canonical_request(&req, EMPTY);
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

    #[test]
    fn encoding_and_redaction() {
        assert_eq!(uri_encode("a b/c~d"), "a%20b%2Fc~d");
        assert_eq!(canonical_uri("/bucket/my key"), "/bucket/my%20key");
        let c = creds();
        assert!(!format!("{c:?}").contains(SECRET));
    }
}
