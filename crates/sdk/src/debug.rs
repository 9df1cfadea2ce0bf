//! The `--debug` hook: requests printed as equivalent `curl` commands.
//!
//! Secrets never reach the terminal: token headers are replaced by `***`, and
//! so is every scalar JSON value whose key contains `password` or `secret`
//! (objects under such keys are walked into), as well as the token id of a
//! token-method authentication.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Headers whose values are secrets.
const SECRET_HEADERS: &[&str] = &["x-auth-token", "x-subject-token", "authorization", "cookie"];

const MASK: &str = "***";

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret")
}

/// A copy of `v` with secret values replaced by `***`.
pub fn mask_json(v: &Value) -> Value {
    mask_inner(v, None)
}

fn mask_inner(v: &Value, parent: Option<&str>) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, sub)| {
                    let secret = is_secret_key(k) || (parent == Some("token") && k == "id");
                    // `"password": {"user": ...}` (the auth method) is walked
                    // into; only the secret leaves are replaced.
                    let leaf = !matches!(sub, Value::Object(_) | Value::Array(_) | Value::Null);
                    let masked = if secret && leaf {
                        Value::String(MASK.to_owned())
                    } else {
                        mask_inner(sub, Some(k))
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| mask_inner(i, parent)).collect()),
        other => other.clone(),
    }
}

/// Quote for a POSIX shell single-quoted string.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a request carries, for printing.
#[derive(Debug, Clone, Copy)]
pub enum DebugBody<'a> {
    None,
    Json(&'a Value),
    /// A streamed body (uploads); printed as `--data-binary @-`.
    Stream,
}

/// Render a request as a one-line `curl` command with secrets masked.
pub fn curl_line(method: &Method, url: &str, headers: &HeaderMap, body: DebugBody<'_>) -> String {
    let mut out = format!("curl -X {method} {}", shell_quote(url));
    for (name, value) in headers {
        let shown = if SECRET_HEADERS.contains(&name.as_str()) {
            MASK.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.push_str(&format!(" -H {}", shell_quote(&format!("{name}: {shown}"))));
    }
    match body {
        DebugBody::None => {}
        DebugBody::Json(v) => {
            out.push_str(&format!(" -d {}", shell_quote(&mask_json(v).to_string())));
        }
        DebugBody::Stream => out.push_str(" --data-binary @-"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    #[test]
    fn masks_passwords_everywhere() {
        let v = json!({
            "auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "sysadmin", "password": "s3cret"}}}},
            "user": {"name": "u", "password": "p", "old_password": "o"},
            "list": [{"password": "x"}],
            "empty": {"password": null},
        });
        let m = mask_json(&v);
        let s = m.to_string();
        assert!(!s.contains("s3cret"));
        assert!(!s.contains("\"p\""));
        assert!(!s.contains("\"o\""));
        assert!(!s.contains("\"x\""));
        assert_eq!(
            m["auth"]["identity"]["password"],
            json!({"user": {"name": "sysadmin", "password": "***"}})
        );
        assert_eq!(m["user"]["name"], json!("u"));
        assert_eq!(m["empty"]["password"], Value::Null);
        let t = mask_json(
            &json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "gAAAA"}}}}),
        );
        assert_eq!(t["auth"]["identity"]["token"]["id"], json!("***"));
        assert_eq!(t["auth"]["identity"]["methods"], json!(["token"]));
    }

    #[test]
    fn curl_line_masks_token_and_quotes() {
        let mut h = HeaderMap::new();
        h.insert("x-auth-token", HeaderValue::from_static("gAAAAsecret"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let body = json!({"user": {"name": "it's", "password": "pw"}});
        let line = curl_line(
            &Method::POST,
            "http://h:30500/v3/users",
            &h,
            DebugBody::Json(&body),
        );
        assert_eq!(
            line,
            r#"curl -X POST 'http://h:30500/v3/users' -H 'x-auth-token: ***' -H 'content-type: application/json' -d '{"user":{"name":"it'\''s","password":"***"}}'"#
        );
        assert!(!line.contains("gAAAAsecret"));
        let line = curl_line(
            &Method::GET,
            "http://h/x?a=1",
            &HeaderMap::new(),
            DebugBody::Stream,
        );
        assert_eq!(line, "curl -X GET 'http://h/x?a=1' --data-binary @-");
    }
}
