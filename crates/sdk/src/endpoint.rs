//! Endpoint discovery and URL building.
//!
//! Catalog URLs carry a version only for some services
//! (`http://h:30500/v3` for keystone, `http://h:30292/v1` for glance, none for
//! the region `https://h:30888`). Like Cloudpods' own clients, the SDK strips a
//! trailing `/vN` from the catalog URL and appends the service's prefix
//! ([`service_prefix`]); request paths are relative to that base.

use cloudpods_apis::identity::TokenBody;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::error::{Result, SdkError};

/// Characters escaped in a path segment (ids may be names with spaces etc.).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// Percent-encode one path segment (an id or a name).
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The path prefix a service's routes live under.
pub fn service_prefix(service_type: &str) -> &'static str {
    match service_type {
        "identity" => "/v3",
        "image" => "/v1",
        _ => "",
    }
}

fn is_version_segment(seg: &str) -> bool {
    let Some(rest) = seg.strip_prefix('v') else {
        return false;
    };
    let mut parts = rest.splitn(2, '.');
    let major_ok = parts
        .next()
        .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
    let minor_ok = parts
        .next()
        .is_none_or(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
    major_ok && minor_ok
}

/// Strip trailing slashes and a trailing `/vN` (or `/vN.M`) path segment.
///
/// ```
/// use cloudpods_sdk::endpoint::strip_version;
/// assert_eq!(strip_version("http://h:30292/v1/"), "http://h:30292");
/// assert_eq!(strip_version("https://h:30888"), "https://h:30888");
/// ```
pub fn strip_version(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    let path_start = url.find("://").map_or(0, |i| i + 3);
    match url.rfind('/') {
        Some(idx) if idx >= path_start && is_version_segment(&url[idx + 1..]) => {
            url[..idx].trim_end_matches('/')
        }
        _ => url,
    }
}

/// The base URL of a service: the catalog URL without its version, plus the
/// service's own prefix.
pub fn service_base(catalog_url: &str, service_type: &str) -> String {
    format!(
        "{}{}",
        strip_version(catalog_url),
        service_prefix(service_type)
    )
}

/// Join a base URL and a path, collapsing duplicate slashes in the path.
pub fn join(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() {
        return base.to_owned();
    }
    let mut out = String::with_capacity(base.len() + path.len() + 1);
    out.push_str(base);
    for s in segs {
        out.push('/');
        out.push_str(s);
    }
    out
}

/// Full URL of `path` on a service whose catalog URL is `catalog_url`.
///
/// A path that already starts with the service prefix (`/v3/projects`) is not
/// prefixed twice.
pub fn service_url(catalog_url: &str, service_type: &str, path: &str) -> String {
    let prefix = service_prefix(service_type);
    let trimmed = format!("/{}", path.trim_start_matches('/'));
    let rel = if !prefix.is_empty()
        && (trimmed == prefix || trimmed.starts_with(&format!("{prefix}/")))
    {
        &trimmed[prefix.len()..]
    } else {
        trimmed.as_str()
    };
    join(&service_base(catalog_url, service_type), rel)
}

/// Pick the catalog URL of a service: interface first, then `public`, then
/// `internal` (see [`TokenBody::endpoint`]), restricted to `region` when set.
pub fn select(
    token: &TokenBody,
    service_type: &str,
    interface: &str,
    region: Option<&str>,
) -> Result<String> {
    token
        .endpoint(service_type, interface, region)
        .map(str::to_owned)
        .ok_or_else(|| SdkError::NoEndpoint {
            service_type: service_type.to_owned(),
            interface: interface.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpods_apis::identity::{CatalogEndpoint, CatalogService};

    #[test]
    fn identity_keeps_v3() {
        assert_eq!(
            service_base("http://h:30500/v3", "identity"),
            "http://h:30500/v3"
        );
        assert_eq!(
            service_url("http://h:30500/v3", "identity", "/users"),
            "http://h:30500/v3/users"
        );
        assert_eq!(
            service_url(
                "http://h:30500/v3/",
                "identity",
                "/v3/projects/p/users/u/roles/r"
            ),
            "http://h:30500/v3/projects/p/users/u/roles/r"
        );
        assert_eq!(
            service_url("http://h:30500", "identity", "auth/tokens"),
            "http://h:30500/v3/auth/tokens"
        );
    }

    #[test]
    fn region_has_no_prefix() {
        assert_eq!(
            service_url("https://h:30888", "compute_v2", "/servers"),
            "https://h:30888/servers"
        );
        assert_eq!(
            service_url("https://h:30888/", "compute_v2", "//servers//x"),
            "https://h:30888/servers/x"
        );
        assert_eq!(
            service_url("https://h:30888/v2", "compute_v2", "/servers"),
            "https://h:30888/servers"
        );
    }

    #[test]
    fn image_stripped_and_readded() {
        assert_eq!(
            service_base("http://h:30292/v1", "image"),
            "http://h:30292/v1"
        );
        assert_eq!(
            service_url("http://h:30292/v1", "image", "/images"),
            "http://h:30292/v1/images"
        );
        assert_eq!(
            service_url("http://h:30292", "image", "/images"),
            "http://h:30292/v1/images"
        );
    }

    #[test]
    fn strip_version_edge_cases() {
        assert_eq!(strip_version("http://v1"), "http://v1");
        assert_eq!(strip_version("http://h/api/v2.0"), "http://h/api");
        assert_eq!(strip_version("http://h/vx"), "http://h/vx");
        assert_eq!(strip_version("http://h/v"), "http://h/v");
        assert_eq!(strip_version("http://h/v3//"), "http://h");
        assert_eq!(
            strip_version("http://h/api/s/identity/v3"),
            "http://h/api/s/identity"
        );
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("my vm/1?x"), "my%20vm%2F1%3Fx");
        assert_eq!(encode_segment("abc-123_x.y"), "abc-123_x.y");
        assert_eq!(encode_segment("中"), "%E4%B8%AD");
    }

    fn ep(interface: &str, region: &str, url: &str) -> CatalogEndpoint {
        CatalogEndpoint {
            id: format!("{interface}-{region}"),
            interface: interface.into(),
            name: String::new(),
            region: region.into(),
            region_id: region.into(),
            url: url.into(),
        }
    }

    #[test]
    fn endpoint_selection() {
        let token = TokenBody {
            catalog: vec![
                CatalogService {
                    id: "1".into(),
                    name: "region2".into(),
                    service_type: "compute_v2".into(),
                    endpoints: vec![
                        ep("public", "region0", "https://pub:30888"),
                        ep("internal", "region0", "https://int:30888"),
                        ep("public", "region1", "https://pub1:30888"),
                    ],
                },
                CatalogService {
                    id: "2".into(),
                    name: "glance".into(),
                    service_type: "image".into(),
                    endpoints: vec![ep("public", "region0", "http://img:30292/v1")],
                },
            ],
            ..Default::default()
        };
        let pick =
            |svc: &str, iface: &str, region: Option<&str>| select(&token, svc, iface, region).ok();
        assert_eq!(
            pick("compute_v2", "internal", Some("region0")).as_deref(),
            Some("https://int:30888")
        );
        assert_eq!(
            pick("compute_v2", "public", Some("region1")).as_deref(),
            Some("https://pub1:30888")
        );
        // internal missing in region1: fall back to public.
        assert_eq!(
            pick("compute_v2", "internal", Some("region1")).as_deref(),
            Some("https://pub1:30888")
        );
        // internal missing for image: fall back to public.
        assert_eq!(
            pick("image", "internal", None).as_deref(),
            Some("http://img:30292/v1")
        );
        assert_eq!(pick("compute_v2", "internal", Some("nowhere")), None);
        let err = select(&token, "scheduler", "internal", None).expect_err("no scheduler");
        assert!(matches!(err, SdkError::NoEndpoint { .. }));
        assert_eq!(
            err.to_string(),
            "no internal endpoint for service type \"scheduler\" in the token catalog"
        );
    }
}
