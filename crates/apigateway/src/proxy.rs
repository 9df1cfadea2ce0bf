//! Everything under `/api/` that is not `/api/v1/auth`: resources with the
//! gateway's reshaping, batch operations (207), RPC calls and the backend
//! proxy, each forwarded with the caller's own token.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::auth::upstream_error;
use crate::error::{GatewayError, Result};
use crate::segment;
use crate::{Caller, Gateway, catalog_type, check_same_origin};

/// Largest JSON body the resource proxy reads (uploads go through the
/// backend proxy, streamed).
const MAX_JSON: usize = 8 << 20;

/// List fields besides the rows that a list answer keeps.
const LIST_FIELDS: &[&str] = &[
    "total",
    "limit",
    "offset",
    "next_marker",
    "marker_field",
    "marker_order",
    "totals",
];

pub async fn api(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match route(&gw, method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(
    gw: &Gateway,
    method: Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let path = uri.path().trim_start_matches("/api/");
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let query = uri.query().unwrap_or_default();
    let caller = gw.caller(headers).await?;
    if caller.by_cookie {
        check_same_origin(&method, headers)?;
    }
    match segs.as_slice() {
        [s, service, rest @ ..] if s == "s" => {
            backend(gw, &caller, method, service, rest, query, headers, body).await
        }
        [ver, rest @ ..] if is_version(ver) => {
            let json_body = read_json(body).await?;
            match rest {
                [rpc, res, call] if rpc == "rpc" => {
                    rpc_call(gw, &caller, res, call, json_body).await
                }
                [res] if res == "capabilities" => capabilities(gw, &caller, query).await,
                [res, ..] => resource(gw, &caller, method, res, &rest[1..], query, json_body).await,
                [] => Err(GatewayError::NotFound("no resource given".into())),
            }
        }
        _ => Err(GatewayError::NotFound(format!("no route /api/{path}"))),
    }
}

fn is_version(s: &str) -> bool {
    s.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

async fn read_json(body: Body) -> Result<Option<Value>> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_JSON)
        .await
        .map_err(|e| GatewayError::Input(format!("reading the body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| GatewayError::Input(format!("the body is not JSON: {e}")))
}

/// One call to a service with the caller's token: its status and JSON.
async fn call(
    gw: &Gateway,
    c: &Caller,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut req = gw
        .http
        .request(method, url)
        .header("X-Auth-Token", &c.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"details": String::from_utf8_lossy(&bytes)}))
    };
    Ok((status, v))
}

/// Answer a service's reply: errors as they are, success reshaped.
fn answer(status: u16, body: Value) -> Result<Response> {
    if status >= 400 {
        return Err(upstream_error(status, &body));
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if code == StatusCode::NO_CONTENT || body.is_null() {
        return Ok(code.into_response());
    }
    Ok((code, axum::Json(reshape(body))).into_response())
}

/// The gateway's reshaping: `{"servers": [..], "total": N}` becomes
/// `{"data": [..], "total": N}` (zero counts left out, as Cloudpods does);
/// `{"server": {..}}` becomes the bare object.
pub fn reshape(body: Value) -> Value {
    let Value::Object(mut m) = body else {
        return body;
    };
    let rows_key = m
        .iter()
        .find(|(k, v)| v.is_array() && !LIST_FIELDS.contains(&k.as_str()))
        .map(|(k, _)| k.clone());
    let only_list_fields = |m: &Map<String, Value>, rows: &str| {
        m.keys()
            .all(|k| k == rows || LIST_FIELDS.contains(&k.as_str()))
    };
    if let Some(rows) = rows_key
        && only_list_fields(&m, &rows)
    {
        let mut out = Map::new();
        out.insert("data".into(), m.remove(&rows).unwrap_or_default());
        for f in LIST_FIELDS {
            match m.remove(*f) {
                Some(Value::Number(n)) if n.as_i64() == Some(0) => {}
                Some(Value::Null) | None => {}
                Some(v) => {
                    out.insert((*f).into(), v);
                }
            }
        }
        return Value::Object(out);
    }
    if m.len() == 1
        && let Some((_, v)) = m.iter().next()
        && v.is_object()
    {
        return m.into_iter().next().map(|(_, v)| v).unwrap_or_default();
    }
    Value::Object(m)
}

/// Query without the `id=` keys (they name the objects of a batch).
fn split_ids(query: &str) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "id" {
            ids.push(v.into_owned());
        } else if k != "batchGet" {
            rest.append_pair(&k, &v);
        }
    }
    (ids, rest.finish())
}

fn with_query(url: String, q: &str) -> String {
    if q.is_empty() {
        url
    } else {
        format!("{url}?{q}")
    }
}

/// A bare body wrapped in the resource's keyword, as services expect it.
fn wrap(keyword: &str, body: Option<Value>) -> Value {
    match body {
        Some(Value::Object(m)) if m.len() == 1 && m.contains_key(keyword) => Value::Object(m),
        Some(b) => json!({ keyword: b }),
        None => json!({ keyword: {} }),
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    gw: &Gateway,
    c: &Caller,
    method: Method,
    res: &str,
    rest: &[String],
    query: &str,
    body: Option<Value>,
) -> Result<Response> {
    let info = gw
        .resource(res)
        .ok_or_else(|| GatewayError::NotFound(format!("resource {res} not found")))?
        .clone();
    let base = format!(
        "{}/{res}",
        gw.endpoint(&c.token, catalog_type(&info.service)).await?
    );
    let (ids, q) = split_ids(query);
    let kw = info.keyword.as_str();
    let is_write = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    // Batches: `?id=a&id=b` on a collection (or a class action) applies to
    // each object, answered 207 per item.
    let batch = !ids.is_empty()
        && matches!(
            (&method, rest),
            (&Method::GET, [])
                | (&Method::POST, [_])
                | (&Method::PUT | &Method::PATCH | &Method::DELETE, [])
        );
    if batch {
        let mut items = Vec::new();
        for id in &ids {
            let url = match rest {
                [action] => format!("{base}/{}/{}", segment(id), segment(action)),
                _ => format!("{base}/{}", segment(id)),
            };
            let b = is_write.then(|| wrap(kw, body.clone()));
            let (st, v) = call(gw, c, method.clone(), &with_query(url, &q), b).await?;
            items.push(batch_item(id, st, v));
        }
        return Ok(multi_status(items));
    }
    let path: String = rest.iter().map(|s| format!("/{}", segment(s))).collect();
    let url = with_query(format!("{base}{path}"), &q);
    match (&method, rest) {
        (&Method::POST, []) => {
            let mut b = match body {
                Some(Value::Object(m)) => m,
                None => Map::new(),
                Some(_) => {
                    return Err(GatewayError::Input("the body must be a JSON object".into()));
                }
            };
            let count = b
                .remove("__count__")
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
            // The count travels beside the object, as Cloudpods' clients
            // send it; the service answers one `{"status", "body"}` each.
            let mut wrapped = wrap(kw, Some(Value::Object(b)));
            if let (Some(n), Value::Object(w)) = (count, &mut wrapped) {
                w.insert("count".into(), json!(n));
            }
            let (st, v) = call(gw, c, method, &url, Some(wrapped)).await?;
            match count {
                Some(n) if n > 1 && st < 400 => {
                    let items = v[info.plural.as_str()]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|item| {
                            let st = item["status"].as_u64().unwrap_or(200) as u16;
                            let id = item["body"]["id"].as_str().unwrap_or_default();
                            batch_item(id, st, item["body"].clone())
                        })
                        .collect();
                    Ok(multi_status(items))
                }
                _ => answer(st, v),
            }
        }
        (&Method::GET, _) | (&Method::DELETE, _) => {
            let (st, v) = call(gw, c, method, &url, None).await?;
            answer(st, v)
        }
        _ => {
            let (st, v) = call(gw, c, method, &url, Some(wrap(kw, body))).await?;
            answer(st, v)
        }
    }
}

fn batch_item(id: &str, status: u16, v: Value) -> Value {
    if status >= 400 {
        let mut e = v;
        if let Value::Object(m) = &mut e {
            m.entry("error").or_insert_with(|| json!(status));
        }
        json!({"status": status, "id": id, "data": e})
    } else {
        json!({"status": status, "id": id, "data": reshape(v)})
    }
}

fn multi_status(items: Vec<Value>) -> Response {
    (
        StatusCode::MULTI_STATUS,
        axum::Json(json!({ "data": items })),
    )
        .into_response()
}

/// `GET /api/v2/capabilities`: the region's flat object inside `data[0]`,
/// as Cloudpods' client module answers it.
async fn capabilities(gw: &Gateway, c: &Caller, query: &str) -> Result<Response> {
    let base = gw.endpoint(&c.token, "compute_v2").await?;
    let (st, v) = call(
        gw,
        c,
        Method::GET,
        &with_query(format!("{base}/capabilities"), query),
        None,
    )
    .await?;
    if st >= 400 {
        return Err(upstream_error(st, &v));
    }
    let obj = match v {
        Value::Object(mut m) if m.len() == 1 && m.contains_key("capabilities") => {
            m.remove("capabilities").unwrap_or_default()
        }
        other => other,
    };
    Ok(axum::Json(json!({ "data": [obj] })).into_response())
}

/// `/api/<v>/rpc/<res>/<call>`: the calls the console makes that are not
/// resource operations. The scheduler's forecast is the one there is.
async fn rpc_call(
    gw: &Gateway,
    c: &Caller,
    res: &str,
    name: &str,
    body: Option<Value>,
) -> Result<Response> {
    match (res, name) {
        ("schedulers", "forecast") => {
            let base = gw.endpoint(&c.token, "scheduler").await?;
            let b = wrap("scheduler", body);
            let (st, v) = call(
                gw,
                c,
                Method::POST,
                &format!("{base}/scheduler/forecast"),
                Some(b),
            )
            .await?;
            answer(st, v)
        }
        _ => Err(GatewayError::NotFound(format!("no rpc {res}/{name}"))),
    }
}

/// `/api/s/<service>/<path>`: passed to the service verbatim, the bodies
/// streamed both ways (image uploads and downloads).
#[allow(clippy::too_many_arguments)]
async fn backend(
    gw: &Gateway,
    c: &Caller,
    method: Method,
    service: &str,
    rest: &[String],
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let base = gw.endpoint(&c.token, service).await?;
    let path: String = rest.iter().map(|s| format!("/{}", segment(s))).collect();
    let url = with_query(format!("{base}{path}"), query);
    let mut req = gw
        .http
        .request(method, &url)
        .header("X-Auth-Token", &c.token)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    for (k, v) in headers {
        let name = k.as_str();
        let pass = name.starts_with("x-image-meta-")
            || matches!(
                name,
                "content-type" | "content-length" | "range" | "x-request-id"
            );
        if pass {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await?;
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        let name = k.as_str();
        if !matches!(name, "connection" | "transfer-encoding" | "keep-alive") {
            out = out.header(k, v);
        }
    }
    out.body(Body::from_stream(resp.bytes_stream()))
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_become_data_and_objects_lose_their_keyword() {
        let l = reshape(json!({"servers": [{"id": "a"}], "total": 1, "limit": 20, "offset": 0}));
        assert_eq!(l, json!({"data": [{"id": "a"}], "total": 1, "limit": 20}));
        assert_eq!(reshape(json!({"server": {"id": "a"}})), json!({"id": "a"}));
        // Anything else stays as it is.
        let other = json!({"can_create": true, "candidates": []});
        assert_eq!(reshape(other.clone()), other);
    }

    #[test]
    fn batch_ids_leave_the_rest_of_the_query() {
        let (ids, q) = split_ids("id=a&scope=system&id=b&batchGet=true");
        assert_eq!(ids, vec!["a", "b"]);
        assert_eq!(q, "scope=system");
    }

    #[test]
    fn bodies_are_wrapped_once() {
        assert_eq!(
            wrap("server", Some(json!({"name": "x"}))),
            json!({"server": {"name": "x"}})
        );
        assert_eq!(
            wrap("server", Some(json!({"server": {"name": "x"}}))),
            json!({"server": {"name": "x"}})
        );
        assert_eq!(wrap("server", None), json!({"server": {}}));
    }
}
