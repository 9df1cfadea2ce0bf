//! Routes the generic dispatcher cannot serve: Glance v1 create and update
//! driven by `X-Image-Meta-*` headers with a streamed body, the streaming
//! download (`GET /v1/images/{id}`, with `Range` and `?format=`), and
//! `HEAD` answering metadata as headers. Lists, deletes, actions and specs
//! stay generic.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use cloudpods_apis::image as api;
use cloudpods_db::row::s;
use cloudpods_db::{Row, Sql, crud};
use cloudpods_rest::params::{get_str, unwrap_envelope};
use cloudpods_rest::service::ApiRequest;
use cloudpods_rest::{HttpError, Model, Object, Result, Service, dispatch, generic};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::Glance;
use crate::models::IMAGE_SUBFORMATS;
use crate::pipeline::{ByteStream, OnFail};
use crate::resource::{ImageModel, check_properties, save_properties};

/// Header fields accepted on create (others, like `tag`, are ignored).
const CREATE_KEYS: &[&str] = &[
    "name",
    "generate_name",
    "description",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "protected",
    "is_data",
    "is_standard",
    "os_arch",
    "is_public",
    "public_scope",
    "properties",
    "project_id",
    "project",
    "tenant",
    "tenant_id",
    "project_domain",
    "size",
    "checksum",
    "copy_from",
];

/// Header fields accepted on update.
const UPDATE_KEYS: &[&str] = &[
    "name",
    "description",
    "min_disk",
    "min_ram",
    "protected",
    "is_standard",
    "os_arch",
    "is_public",
    "public_scope",
    "properties",
    "size",
    "checksum",
    "copy_from",
];

pub fn register(svc: Service, g: Arc<Glance>, m: Arc<ImageModel>) -> Service {
    let (g1, m1) = (g.clone(), m.clone());
    let (g2, m2) = (g.clone(), m.clone());
    svc.route(Method::POST, "/v1/images", true, move |req| {
        let (g, m) = (g1.clone(), m1.clone());
        async move { create(g, m, req).await }
    })
    .route(Method::GET, "/v1/images/{id}", true, move |req| {
        let (g, m) = (g2.clone(), m2.clone());
        async move { get_or_head(g, m, req).await }
    })
    .route(Method::PUT, "/v1/images/{id}", true, move |req| {
        let (g, m) = (g.clone(), m.clone());
        async move { put(g, m, req).await }
    })
}

fn content_type(h: &HeaderMap) -> String {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Whether the request carries image bytes (anything but JSON or a form,
/// with a body).
fn has_bytes(h: &HeaderMap) -> bool {
    let ct = content_type(h);
    if ct.starts_with("application/json") || ct.starts_with("application/x-www-form-urlencoded") {
        return false;
    }
    let len = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = h
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    len.is_some_and(|n| n > 0) || chunked
}

fn header_meta(h: &HeaderMap, keys: &[&str]) -> Object {
    let mut m = api::meta_from_headers(
        h.iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
    );
    m.retain(|k, _| keys.contains(&k.as_str()));
    m
}

/// `size` and `checksum` the client declared.
fn declared(input: &mut Object) -> Result<(Option<u64>, Option<String>)> {
    let size = match input.remove("size") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .ok_or_else(|| HttpError::input("size must be a non-negative integer"))?,
        ),
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().parse::<u64>().map_err(|_| {
            HttpError::input(format!("size must be a non-negative integer, not {s:?}"))
        })?),
        Some(_) => return Err(HttpError::input("size must be an integer")),
    };
    let md5 = input
        .remove("checksum")
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|s| !s.is_empty());
    if let Some(m) = &md5
        && (m.len() != 32 || !m.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(HttpError::input(format!(
            "checksum must be an md5 in hex, not {m:?}"
        )));
    }
    Ok((size, md5))
}

fn body_stream(req: &ApiRequest) -> ByteStream {
    req.take_body()
        .into_data_stream()
        .map_err(|e| e.to_string())
        .boxed()
}

fn image_id(v: &Value) -> String {
    v["image"]["id"].as_str().unwrap_or_default().to_string()
}

/// `POST /v1/images`: JSON, or headers with the bytes as the body, or
/// headers with `copy_from`.
async fn create(g: Arc<Glance>, m: Arc<ImageModel>, mut req: ApiRequest) -> Result<Response> {
    let r = create_inner(g, m, &mut req).await;
    if r.is_err() {
        drain(&req).await;
    }
    r
}

/// Read (and drop) what is left of a refused upload's body, up to a bound,
/// so that the client gets to read the error instead of a broken pipe.
/// Larger bodies are cut off: the connection closes.
async fn drain(req: &ApiRequest) {
    const MAX: usize = 64 << 20;
    let mut s = req.take_body().into_data_stream();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut n = 0usize;
        while let Some(Ok(c)) = s.next().await {
            n += c.len();
            if n > MAX {
                break;
            }
        }
    })
    .await;
}

async fn create_inner(
    g: Arc<Glance>,
    m: Arc<ImageModel>,
    req: &mut ApiRequest,
) -> Result<Response> {
    let ctx = req.ctx()?.clone();
    let bytes = has_bytes(&req.headers);
    let mut input = if content_type(&req.headers).starts_with("application/json") {
        let body = req.json().await?;
        let input = unwrap_envelope(body, &["image"], true)?;
        match cloudpods_apis::lenient::normalize_keys(Value::Object(input)) {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    } else {
        header_meta(&req.headers, CREATE_KEYS)
    };
    let (size, md5) = declared(&mut input)?;
    let copy_from = input
        .remove("copy_from")
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|s| !s.is_empty());
    if bytes && copy_from.is_some() {
        return Err(HttpError::input(
            "give the image bytes or copy_from, not both",
        ));
    }
    if let Some(url) = &copy_from {
        // Refused before anything is created.
        crate::copy_from::check(url, &g.opts.copy_from_allow).await?;
    }
    if let (Some(n), true) = (size, g.opts.max_image_bytes > 0)
        && n > g.opts.max_image_bytes
    {
        return Err(crate::GlanceError::TooLarge {
            limit: g.opts.max_image_bytes,
        }
        .into());
    }
    let created = generic::create(
        m.as_ref(),
        &ctx,
        Some(json!({ "image": input })),
        Vec::new(),
    )
    .await?;
    let id = image_id(&created);
    if bytes {
        g.upload(&id, body_stream(req), size, md5, OnFail::Discard)
            .await?;
    } else if let Some(url) = copy_from {
        g.spawn_copy_from(&id, url);
    }
    Ok(dispatch::ok_json(
        generic::reload_response(m.as_ref(), &ctx, &id).await?,
    ))
}

/// Apply header metadata to an image: properties replace the old ones
/// (Glance v1 purges properties not sent), other fields go through the
/// generic update.
async fn apply_meta(
    m: &ImageModel,
    ctx: &cloudpods_rest::Ctx,
    id: &str,
    mut meta: Object,
) -> Result<()> {
    if let Some(p) = meta.remove("properties") {
        let props = check_properties(&p)?;
        save_properties(&m.g.db, id, &props, true).await?;
        if let Some(a) = props.get("os_arch") {
            meta.entry("os_arch").or_insert(a.clone());
        }
    }
    if !meta.is_empty() {
        generic::update(m, ctx, id, Some(json!({ "image": meta }))).await?;
    }
    Ok(())
}

/// `PUT /v1/images/{id}`: upload into a queued image, or update it (JSON
/// body or `X-Image-Meta-*` headers).
async fn put(g: Arc<Glance>, m: Arc<ImageModel>, mut req: ApiRequest) -> Result<Response> {
    let r = put_inner(g, m, &mut req).await;
    if r.is_err() {
        drain(&req).await;
    }
    r
}

async fn put_inner(g: Arc<Glance>, m: Arc<ImageModel>, req: &mut ApiRequest) -> Result<Response> {
    let ctx = req.ctx()?.clone();
    let ident = req.param("id").to_string();
    let obj = generic::lookup_for(m.as_ref(), &ctx, &ident, "update", None).await?;
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let status = obj
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if content_type(&req.headers).starts_with("application/json") {
        let body = req.json().await?;
        let mut input = unwrap_envelope(body, &["image"], false)?;
        let copy_from = input
            .remove("copy_from")
            .and_then(|v| v.as_str().map(str::to_string));
        generic::update(m.as_ref(), &ctx, &id, Some(json!({ "image": input }))).await?;
        if let Some(url) = copy_from {
            start_copy(&g, &id, &status, &url).await?;
        }
    } else {
        let mut meta = header_meta(&req.headers, UPDATE_KEYS);
        let (size, md5) = declared(&mut meta)?;
        let copy_from = meta
            .remove("copy_from")
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty());
        let bytes = has_bytes(&req.headers);
        if bytes && status != api::STATUS_QUEUED {
            return Err(HttpError::invalid_status(format!(
                "cannot upload image in status {status}"
            )));
        }
        if let Some(url) = &copy_from {
            if status != api::STATUS_QUEUED {
                return Err(HttpError::invalid_status(format!(
                    "cannot import into image in status {status}"
                )));
            }
            crate::copy_from::check(url, &g.opts.copy_from_allow).await?;
        }
        apply_meta(m.as_ref(), &ctx, &id, meta).await?;
        if bytes {
            g.upload(&id, body_stream(req), size, md5, OnFail::Requeue)
                .await?;
        } else if let Some(url) = copy_from {
            g.spawn_copy_from(&id, url);
        }
    }
    Ok(dispatch::ok_json(
        generic::reload_response(m.as_ref(), &ctx, &id).await?,
    ))
}

async fn start_copy(g: &Arc<Glance>, id: &str, status: &str, url: &str) -> Result<()> {
    if status != api::STATUS_QUEUED {
        return Err(HttpError::invalid_status(format!(
            "cannot import into image in status {status}"
        )));
    }
    crate::copy_from::check(url, &g.opts.copy_from_allow).await?;
    g.spawn_copy_from(id, url.to_string());
    Ok(())
}

/// The sub-format row of an image.
async fn subformat(g: &Glance, id: &str, fmt: &str) -> Result<Option<Row>> {
    let mut q = Sql::new(format!(
        "SELECT {} FROM `image_subformats` WHERE `image_id` = ",
        crud::column_list(&IMAGE_SUBFORMATS)
    ));
    q.bind(id).push(" AND `format` = ").bind(fmt);
    Ok(crud::fetch_rows(g.db.read(), &IMAGE_SUBFORMATS, &q)
        .await?
        .into_iter()
        .next())
}

/// The file to serve for `?format=`: (location, size, md5, format).
async fn resolve_file(g: &Glance, obj: &Row, q: &Object) -> Result<(String, u64, String, String)> {
    let own = s(obj, "disk_format");
    let fmt = get_str(q, "format").or_else(|| get_str(q, "disk_format"));
    let status = s(obj, "status");
    if status != api::STATUS_ACTIVE {
        return Err(HttpError::invalid_status(format!(
            "cannot download image in status {status}"
        )));
    }
    match fmt {
        Some(f) if f != own => {
            let sub = subformat(g, &s(obj, "id"), &f)
                .await?
                .ok_or_else(|| HttpError::not_found(format!("format {f} not found")))?;
            let st = s(&sub, "status");
            if st != api::STATUS_ACTIVE {
                return Err(HttpError::invalid_status(format!(
                    "cannot download format {f} in status {st}"
                )));
            }
            let size = sub.get("size").and_then(Value::as_u64).unwrap_or(0);
            Ok((s(&sub, "location"), size, s(&sub, "checksum"), f))
        }
        _ => {
            let size = obj.get("size").and_then(Value::as_u64).unwrap_or(0);
            Ok((s(obj, "location"), size, s(obj, "checksum"), own))
        }
    }
}

/// A parsed `Range` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// Serve everything (no header, or several ranges).
    Full,
    /// `start..end` (end exclusive).
    Part(u64, u64),
    Unsatisfiable,
}

/// Parse a single-range `bytes=` header against a file of `size` bytes.
pub fn parse_range(h: Option<&str>, size: u64) -> Range {
    let Some(h) = h else { return Range::Full };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last N bytes.
        return match b.parse::<u64>() {
            Ok(0) | Err(_) => Range::Unsatisfiable,
            Ok(n) if size == 0 => {
                let _ = n;
                Range::Unsatisfiable
            }
            Ok(n) => Range::Part(size.saturating_sub(n), size),
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return Range::Unsatisfiable;
    };
    if start >= size {
        return Range::Unsatisfiable;
    }
    let end = if b.is_empty() {
        size
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => (e + 1).min(size),
            _ => return Range::Unsatisfiable,
        }
    };
    Range::Part(start, end)
}

/// Bytes the image file occupies on the server's disk (see
/// `cloudpods_sdk::splice`).
const ALLOCATED_SIZE: HeaderName = HeaderName::from_static("x-image-allocated-size");

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `GET /v1/images/{id}` streams the bytes; `HEAD` answers metadata as
/// headers; class properties (`distinct-field`) stay JSON.
async fn get_or_head(g: Arc<Glance>, m: Arc<ImageModel>, req: ApiRequest) -> Result<Response> {
    let ctx = req.ctx()?.clone();
    let ident = req.param("id").to_string();
    if req.method == Method::GET && m.class_properties().contains(&ident.as_str()) {
        return Ok(dispatch::ok_json(
            m.get_property(&ctx, &ident, &req.query).await?,
        ));
    }
    let obj = generic::lookup_get(m.as_ref(), &ctx, &ident, None).await?;
    if req.method == Method::HEAD {
        return head(&g, &m, &ctx, obj, &req.query).await;
    }
    let (location, size, md5, fmt) = resolve_file(&g, &obj, &req.query).await?;
    if location.is_empty() {
        return Err(HttpError::invalid_status("the image has no stored file"));
    }
    let range = parse_range(
        req.headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (start, end, status) = match range {
        Range::Full => (0, size, StatusCode::OK),
        Range::Part(a, b) => (a, b, StatusCode::PARTIAL_CONTENT),
        Range::Unsatisfiable => {
            let mut r = HttpError::input(format!("range not satisfiable for {size} bytes"))
                .into_response_with(StatusCode::RANGE_NOT_SATISFIABLE);
            r.headers_mut()
                .insert(header::CONTENT_RANGE, hv(&format!("bytes */{size}")));
            return Ok(r);
        }
    };
    let stream = g
        .store
        .open(&location, start, end)
        .await
        .map_err(HttpError::from)?;
    let allocated = g.store.allocated(&location).await;
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, hv(&(end - start).to_string()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            hv(&format!("bytes {start}-{}/{size}", end.saturating_sub(1))),
        );
    }
    for (k, v) in [
        ("x-image-meta-id", s(&obj, "id")),
        ("x-image-meta-name", api::encode_value(&s(&obj, "name"))),
        ("x-image-meta-disk_format", fmt),
        ("x-image-meta-size", size.to_string()),
        ("x-image-meta-checksum", md5),
    ] {
        if let Ok(name) = HeaderName::from_bytes(k.as_bytes()) {
            h.insert(name, hv(&v));
        }
    }
    // Lets our SDK splice a dense image straight to disk (extra header:
    // other clients ignore it).
    if let Some(a) = allocated {
        h.insert(ALLOCATED_SIZE, hv(&a.to_string()));
    }
    Ok(resp)
}

async fn head(
    g: &Glance,
    m: &ImageModel,
    ctx: &cloudpods_rest::Ctx,
    obj: Row,
    q: &Object,
) -> Result<Response> {
    let id = s(&obj, "id");
    let v = generic::object_response(m, ctx, obj, q).await?;
    let mut o = match v.get("image") {
        Some(Value::Object(o)) => o.clone(),
        _ => Object::new(),
    };
    o.remove("subformats");
    o.remove("metadata");
    if let Some(f) = get_str(q, "format").or_else(|| get_str(q, "disk_format"))
        && let Some(sub) = subformat(g, &id, &f).await?
    {
        o.insert("disk_format".into(), json!(f));
        o.insert(
            "status".into(),
            sub.get("status").cloned().unwrap_or_default(),
        );
        o.insert("size".into(), sub.get("size").cloned().unwrap_or_default());
        o.insert(
            "checksum".into(),
            sub.get("checksum").cloned().unwrap_or_default(),
        );
    }
    let mut resp = dispatch::empty(StatusCode::OK);
    let h = resp.headers_mut();
    for (k, v) in api::meta_to_headers(&o) {
        if let (Ok(name), Ok(val)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            h.insert(name, val);
        }
    }
    Ok(resp)
}

/// An error answered with another status than its class's (416).
trait WithStatus {
    fn into_response_with(self, status: StatusCode) -> Response;
}

impl WithStatus for HttpError {
    fn into_response_with(self, status: StatusCode) -> Response {
        let mut body = self.body();
        body.code = status.as_u16();
        let mut r = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Range::Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Range::Part(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Range::Part(90, 100));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Range::Part(90, 100));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Range::Part(50, 100));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-1"), 100), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Range::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Range::Full);
        assert_eq!(parse_range(Some("bytes=x-"), 100), Range::Unsatisfiable);
    }
}
