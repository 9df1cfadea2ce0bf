//! Image service (glance) wire shapes: Glance v1 as Cloudpods serves it
//! under `/v1`.
//!
//! Image metadata travels both as JSON (`{"image": {...}}`) and as HTTP
//! headers: uploads carry `X-Image-Meta-<field>` and
//! `X-Image-Meta-Property-<key>` with URL-encoded values, and `HEAD
//! /v1/images/{id}` answers the same way. [`meta_from_headers`] and
//! [`meta_to_headers`] convert between the two, for the server and the
//! clients alike.

use serde_json::{Map, Value};

/// Waiting for its bytes (created without a body, or by `copy_from`).
pub const STATUS_QUEUED: &str = "queued";
/// Bytes are arriving.
pub const STATUS_SAVING: &str = "saving";
/// `qemu-img info` runs on the saved bytes.
pub const STATUS_PROBING: &str = "probing";
/// Sub-formats (`target_image_formats`) are being produced.
pub const STATUS_CONVERTING: &str = "converting";
pub const STATUS_ACTIVE: &str = "active";
/// The bytes arrived but are not an acceptable image (`fail_reason` says why).
pub const STATUS_SAVE_FAIL: &str = "save_fail";
/// Receiving the bytes failed (source unreachable, service restarted
/// mid-upload).
pub const STATUS_KILLED: &str = "killed";
/// Downloads refused (`deactivate`, or while being deleted).
pub const STATUS_DEACTIVATED: &str = "deactivated";
/// In the recycle bin.
pub const STATUS_PENDING_DELETE: &str = "pending_delete";
pub const STATUS_DELETED: &str = "deleted";

/// Formats an image may be declared and stored in.
pub const DISK_FORMATS: &[&str] = &["raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso"];

/// Formats sub-formats may be converted to (`target_image_formats`).
pub const CONVERTIBLE_FORMATS: &[&str] = &["raw", "qcow2", "vmdk", "vhd"];

/// Container formats accepted (Glance v1 compatibility; not interpreted).
pub const CONTAINER_FORMATS: &[&str] = &["bare", "ovf", "aki", "ari", "ami", "ova", "docker"];

/// The properties Cloudpods knows (any other key is accepted too).
pub const STANDARD_PROPERTIES: &[&str] = &[
    "os_type",
    "os_distribution",
    "os_version",
    "os_codename",
    "os_arch",
    "os_language",
    "uefi_support",
    "bios_support",
    "installed_cloud_init",
    "partition_type",
    "disk_driver",
    "net_driver",
    "notes",
];

/// Header prefix of image fields.
pub const META_PREFIX: &str = "x-image-meta-";
/// Header prefix of image properties.
pub const PROPERTY_PREFIX: &str = "x-image-meta-property-";
/// The header naming a URL to import from.
pub const COPY_FROM_HEADER: &str = "x-image-meta-copy_from";

/// Normalize a header-derived key: lowercase, `-` → `_`.
fn field_key(raw: &str) -> String {
    raw.trim().to_ascii_lowercase().replace('-', "_")
}

/// Percent-decode a header value (`+` is a space, as Go's
/// `url.QueryUnescape` reads it). Invalid escapes are kept literally.
pub fn decode_value(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode a header value: everything but RFC 3986 unreserved
/// characters.
pub fn encode_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Image metadata from request headers: `X-Image-Meta-Disk-Format: qcow2`
/// → `{"disk_format": "qcow2"}`, `X-Image-Meta-Property-Os-Type: Linux` →
/// `{"properties": {"os_type": "Linux"}}`. Values stay strings.
pub fn meta_from_headers<'a, I>(headers: I) -> Map<String, Value>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut out = Map::new();
    let mut props = Map::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if let Some(k) = lower.strip_prefix(PROPERTY_PREFIX) {
            if !k.is_empty() {
                props.insert(field_key(k), Value::String(decode_value(value)));
            }
        } else if let Some(k) = lower.strip_prefix(META_PREFIX)
            && !k.is_empty()
        {
            out.insert(field_key(k), Value::String(decode_value(value)));
        }
    }
    if !props.is_empty() {
        out.insert("properties".into(), Value::Object(props));
    }
    out
}

/// Headers describing an image object (the `HEAD` answer): every scalar,
/// non-empty field as `x-image-meta-<field>`, every property as
/// `x-image-meta-property-<key>`, values URL-encoded.
pub fn meta_to_headers(obj: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in obj {
        if k == "properties" {
            if let Value::Object(p) = v {
                for (pk, pv) in p {
                    if let Some(s) = scalar(pv) {
                        out.push((format!("{PROPERTY_PREFIX}{pk}"), encode_value(&s)));
                    }
                }
            }
            continue;
        }
        if let Some(s) = scalar(v)
            && !s.is_empty()
        {
            out.push((format!("{META_PREFIX}{k}"), encode_value(&s)));
        }
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Image metadata read back from `HEAD` headers: the inverse of
/// [`meta_to_headers`] (values stay strings).
pub fn object_from_headers<'a, I>(headers: I) -> Map<String, Value>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut m = meta_from_headers(headers);
    m.entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_round_trip() {
        let m = meta_from_headers([
            ("X-Image-Meta-Name", "my%20image"),
            ("x-image-meta-disk-format", "qcow2"),
            ("X-Image-Meta-Property-Os-Type", "Linux"),
            ("x-image-meta-property-os_distribution", "Debian+12"),
            ("Content-Type", "application/octet-stream"),
        ]);
        assert_eq!(
            Value::Object(m.clone()),
            json!({"name": "my image", "disk_format": "qcow2",
                   "properties": {"os_type": "Linux", "os_distribution": "Debian 12"}})
        );
        let mut obj = m;
        obj.insert("size".into(), json!(1024));
        obj.insert("protected".into(), json!(true));
        obj.insert("empty".into(), json!(""));
        let hs = meta_to_headers(&obj);
        let back = object_from_headers(hs.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        assert_eq!(back["name"], "my image");
        assert_eq!(back["size"], "1024");
        assert_eq!(back["protected"], "true");
        assert!(!back.contains_key("empty"));
        assert_eq!(back["properties"]["os_distribution"], "Debian 12");
    }

    #[test]
    fn decoding_is_lenient() {
        assert_eq!(decode_value("100%"), "100%");
        assert_eq!(decode_value("%zz"), "%zz");
        assert_eq!(decode_value("a%2Bb"), "a+b");
        assert_eq!(decode_value("%E4%B8%AD"), "中");
        assert_eq!(encode_value("中 /"), "%E4%B8%AD%20%2F");
    }
}
