//! The generic dispatcher: one handler that maps every path onto the
//! service's custom routes, models and joints (Cloudpods
//! `appsrv/dispatcher`). Static segments win over id slots, empty segments
//! are collapsed (`//servers`), and every answer carries `X-Request-Id`.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::Value;

use crate::context::Ctx;
use crate::error::{HttpError, Result};
use crate::generic;
use crate::model::JointModel;
use crate::params::Object;
use crate::service::{ApiRequest, Seg, Service};

/// Serve one request.
pub async fn handle(svc: Arc<Service>, req: Request) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // A panicking hook must not drop the connection without an answer:
    // answer 500 in the Cloudpods shape (the panic itself is logged by the
    // panic hook; its message is not for the client).
    let (result, template) = match AssertUnwindSafe(route(&svc, req, &request_id))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(_) => (
            Err(HttpError::internal("internal error")),
            "panic".to_string(),
        ),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if e.class.code() >= 500 {
                tracing::error!(service = svc.name, %method, %path, request_id, error = %e, "request failed");
            }
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("cloudpods-rs"));
    let status = resp.status().as_u16();
    crate::metrics::record(
        svc.name,
        crate::metrics::method_label(&method),
        &template,
        status,
        start.elapsed(),
    );
    tracing::debug!(service = svc.name, %method, %path, status, elapsed_ms = start.elapsed().as_millis() as u64, "request");
    resp
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

fn json_response(v: Value) -> Response {
    let body = serde_json::to_vec(&v).unwrap_or_default();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn authenticate(
    svc: &Service,
    headers: &axum::http::HeaderMap,
    request_id: &str,
) -> Result<Ctx> {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| HttpError::unauthorized("Unauthorized"))?;
    let identity = svc.verifier.verify(token).await?;
    Ok(Ctx {
        identity,
        request_id: request_id.to_string(),
        service: svc.policy_service,
        tenants: svc.tenants.clone(),
    })
}

fn match_custom(
    svc: &Service,
    method: &Method,
    segs: &[String],
) -> (Option<usize>, bool, HashMap<String, String>) {
    let mut path_matched = false;
    for (i, r) in svc.routes.iter().enumerate() {
        if r.segs.len() != segs.len() {
            continue;
        }
        let mut params = HashMap::new();
        let ok = r.segs.iter().zip(segs).all(|(p, s)| match p {
            Seg::Static(x) => x == s,
            Seg::Param(name) => {
                params.insert(name.clone(), s.clone());
                true
            }
        });
        if !ok {
            continue;
        }
        if r.method == *method || (method == Method::HEAD && r.method == Method::GET) {
            return (Some(i), true, params);
        }
        path_matched = true;
    }
    (None, path_matched, HashMap::new())
}

/// Route a request; also return the route template for metrics.
async fn route(svc: &Arc<Service>, req: Request, request_id: &str) -> (Result<Response>, String) {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let segs = segments(parts.uri.path());
    let query: Object = cloudpods_apis::querystring::parse_query(parts.uri.query().unwrap_or(""));

    let (custom, custom_path, params) = match_custom(svc, &method, &segs);
    if let Some(i) = custom {
        let r = &svc.routes[i];
        let template = format!("{} {}", crate::metrics::method_label(&method), r.template);
        let ctx = if r.auth {
            match authenticate(svc, &parts.headers, request_id).await {
                Ok(c) => Some(c),
                Err(e) => return (Err(e), template),
            }
        } else {
            // Optional auth: pass the identity when a valid token is given.
            if parts.headers.contains_key("x-auth-token") {
                authenticate(svc, &parts.headers, request_id).await.ok()
            } else {
                None
            }
        };
        let api = ApiRequest {
            method,
            params,
            query,
            headers: parts.headers,
            body: std::sync::Mutex::new(Some(body)),
            ctx,
            body_limit: svc.body_limit,
            request_id: request_id.to_string(),
        };
        return ((r.handler)(api).await, template);
    }

    // Generic routes live under the prefix.
    let prefix = segments(svc.prefix);
    if !segs.starts_with(&prefix) || segs.len() == prefix.len() {
        let err = if custom_path {
            HttpError::new(
                cloudpods_apis::ErrorClass::MethodNotAllowed,
                format!("method {method} not allowed"),
            )
        } else {
            HttpError::new(
                cloudpods_apis::ErrorClass::NotFoundError,
                format!("path {} not found", parts.uri.path()),
            )
        };
        return (Err(err), "unmatched".into());
    }
    let rest: Vec<String> = segs[prefix.len()..].to_vec();
    let Some(first) = rest.first() else {
        return (Err(HttpError::not_found("not found")), "unmatched".into());
    };
    if !svc.models.contains_key(first.as_str())
        && !svc.joints.iter().any(|j| j.desc().plural == first)
    {
        // A custom route's path with another method (`DELETE /ping`) is a
        // 405 here too: with an empty prefix (the region) every custom path
        // gets past the prefix check above.
        let err = if custom_path {
            method_not_allowed(&method)
        } else {
            HttpError::new(
                cloudpods_apis::ErrorClass::NotFoundError,
                format!("resource {first} not found"),
            )
        };
        return (Err(err), "unmatched".into());
    }
    let ctx = match authenticate(svc, &parts.headers, request_id).await {
        Ok(c) => c,
        Err(e) => {
            let m = crate::metrics::method_label(&method);
            return (Err(e), format!("{m} {}/{first}", svc.prefix));
        }
    };
    let mut api = ApiRequest {
        method: method.clone(),
        params: HashMap::new(),
        query,
        headers: parts.headers,
        body: std::sync::Mutex::new(Some(body)),
        ctx: None,
        body_limit: svc.body_limit,
        request_id: request_id.to_string(),
    };
    let (template, result) = generic_route(svc, &ctx, &method, &rest, &mut api).await;
    let m = crate::metrics::method_label(&method);
    let template = format!("{m} {}{template}", svc.prefix);
    (result.map(json_response), template)
}

fn method_not_allowed(method: &Method) -> HttpError {
    HttpError::new(
        cloudpods_apis::ErrorClass::MethodNotAllowed,
        format!("method {method} not allowed here"),
    )
}

fn find_joint<'a>(svc: &'a Service, a: &str, b: &str) -> Option<(&'a Arc<dyn JointModel>, bool)> {
    for j in &svc.joints {
        if j.master().0 == a && j.slave().0 == b {
            return Some((j, true));
        }
        if j.slave().0 == a && j.master().0 == b {
            return Some((j, false));
        }
    }
    None
}

/// Merge the query and the (unwrapped) body for deletes.
async fn delete_input(api: &mut ApiRequest, keyword: &str) -> Result<Object> {
    let body = api.json().await?;
    let mut q = api.query.clone();
    if body.is_some() {
        let b = crate::params::unwrap_envelope(body, &[keyword], false)?;
        q.extend(b);
    }
    let Value::Object(q) = cloudpods_apis::lenient::normalize_keys(Value::Object(q)) else {
        return Ok(Object::new());
    };
    Ok(q)
}

async fn generic_route(
    svc: &Service,
    ctx: &Ctx,
    method: &Method,
    rest: &[String],
    api: &mut ApiRequest,
) -> (String, Result<Value>) {
    let get = *method == Method::GET || *method == Method::HEAD;
    let update = *method == Method::PUT || *method == Method::PATCH;
    match rest {
        [p] => {
            let t = format!("/{p}");
            if let Some(m) = svc.models.get(p.as_str()) {
                let r = if get {
                    generic::list(m.as_ref(), ctx, &api.query, Vec::new()).await
                } else if *method == Method::POST {
                    match api.json().await {
                        Ok(body) => generic::create(m.as_ref(), ctx, body, Vec::new()).await,
                        Err(e) => Err(e),
                    }
                } else {
                    Err(method_not_allowed(method))
                };
                return (t, r);
            }
            // A joint table listed on its own.
            if let Some(j) = svc.joints.iter().find(|j| j.desc().plural == p) {
                if !get {
                    return (t, Err(method_not_allowed(method)));
                }
                return (t, joint_list_all(svc, ctx, j.as_ref(), &api.query).await);
            }
            (
                t,
                Err(HttpError::not_found(format!("resource {p} not found"))),
            )
        }
        [p, x] => {
            let Some(m) = svc.models.get(p.as_str()) else {
                return (
                    format!("/{p}/{{id}}"),
                    Err(HttpError::not_found(format!("resource {p} not found"))),
                );
            };
            if get && m.class_properties().contains(&x.as_str()) {
                return (
                    format!("/{p}/{x}"),
                    m.get_property(ctx, x, &api.query).await,
                );
            }
            let t = format!("/{p}/{{id}}");
            let r = if get {
                generic::get(m.as_ref(), ctx, x, &api.query).await
            } else if *method == Method::POST {
                // Class action; body wrapped in the plural (some clients
                // send the singular, accept both).
                match api.json().await {
                    Ok(body) => {
                        let input = crate::params::unwrap_envelope(
                            body,
                            &[m.desc().plural, m.desc().keyword],
                            false,
                        );
                        match input {
                            Ok(input) => {
                                let input = match cloudpods_apis::lenient::normalize_keys(
                                    Value::Object(input),
                                ) {
                                    Value::Object(o) => o,
                                    _ => Object::new(),
                                };
                                let r = async {
                                    ctx.require_on(m.desc(), "perform", Some(x))?;
                                    m.perform_class(ctx, x, input).await
                                }
                                .await;
                                r.map(|v| serde_json::json!({ m.desc().plural: v }))
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            } else if update {
                match api.json().await {
                    Ok(body) => generic::update(m.as_ref(), ctx, x, body).await,
                    Err(e) => Err(e),
                }
            } else if *method == Method::DELETE {
                match delete_input(api, m.desc().keyword).await {
                    Ok(q) => generic::delete(m.as_ref(), ctx, x, q).await,
                    Err(e) => Err(e),
                }
            } else {
                Err(method_not_allowed(method))
            };
            (t, r)
        }
        [a, aid, b] => {
            if let Some((j, forward)) = find_joint(svc, a, b) {
                let t = format!("/{a}/{{id}}/{b}");
                if !get {
                    return (t, Err(method_not_allowed(method)));
                }
                return (
                    t,
                    joint_descendants(svc, ctx, j.as_ref(), forward, aid, &api.query).await,
                );
            }
            if let Some(m) = svc.models.get(b.as_str())
                && let Some((_, fk)) = m.contexts().iter().find(|(c, _)| c == a)
            {
                let t = format!("/{a}/{{id}}/{b}");
                let owner = match context_owner(svc, ctx, a, aid).await {
                    Ok(o) => o,
                    Err(e) => return (t, Err(e)),
                };
                let r = if get {
                    generic::list(
                        m.as_ref(),
                        ctx,
                        &api.query,
                        vec![cloudpods_db::crud::eq(fk, owner.as_str())],
                    )
                    .await
                } else if *method == Method::POST {
                    match api.json().await {
                        Ok(body) => {
                            generic::create(m.as_ref(), ctx, body, vec![(fk, Value::String(owner))])
                                .await
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    Err(method_not_allowed(method))
                };
                return (t, r);
            }
            let Some(m) = svc.models.get(a.as_str()) else {
                return (
                    format!("/{a}/{{id}}/{{x}}"),
                    Err(HttpError::not_found(format!("resource {a} not found"))),
                );
            };
            let t = format!("/{a}/{{id}}/{{action}}");
            let r = if get {
                generic::spec(m.as_ref(), ctx, aid, b, &api.query).await
            } else if *method == Method::POST {
                match api.json().await {
                    Ok(body) => generic::perform(m.as_ref(), ctx, aid, b, body).await,
                    Err(e) => Err(e),
                }
            } else {
                Err(method_not_allowed(method))
            };
            (t, r)
        }
        [a, aid, b, bid] => {
            let t = format!("/{a}/{{id}}/{b}/{{id}}");
            if let Some((j, forward)) = find_joint(svc, a, b) {
                let (mid, sid) = if forward { (aid, bid) } else { (bid, aid) };
                return (
                    t,
                    joint_op(svc, ctx, j.as_ref(), method, mid, sid, api).await,
                );
            }
            if let Some(m) = svc.models.get(b.as_str())
                && let Some((_, fk)) = m.contexts().iter().find(|(c, _)| c == a)
            {
                let r = async {
                    let owner = context_owner(svc, ctx, a, aid).await?;
                    let obj = generic::lookup_get(m.as_ref(), ctx, bid, None).await?;
                    if obj.get(*fk).and_then(Value::as_str) != Some(owner.as_str()) {
                        return Err(HttpError::not_found(format!(
                            "{} {bid} not found in {a} {aid}",
                            m.desc().keyword
                        )));
                    }
                    if get {
                        generic::get(m.as_ref(), ctx, bid, &api.query).await
                    } else if update {
                        let body = api.json().await?;
                        generic::update(m.as_ref(), ctx, bid, body).await
                    } else if *method == Method::DELETE {
                        let q = delete_input(api, m.desc().keyword).await?;
                        generic::delete(m.as_ref(), ctx, bid, q).await
                    } else {
                        Err(method_not_allowed(method))
                    }
                }
                .await;
                return (t, r);
            }
            // `b` matched nothing: keep the client's segment out of the
            // metrics label (unbounded cardinality).
            (
                format!("/{a}/{{id}}/{{x}}/{{id}}"),
                Err(HttpError::not_found(format!("resource {a}/{b} not found"))),
            )
        }
        _ => (
            "unmatched".into(),
            Err(HttpError::not_found("path not found")),
        ),
    }
}

/// Resolve the context object of `/{ctx}/{id}/{plural}` to its id.
async fn context_owner(svc: &Service, ctx: &Ctx, plural: &str, ident: &str) -> Result<String> {
    let m = svc
        .models
        .get(plural)
        .ok_or_else(|| HttpError::not_found(format!("resource {plural} not found")))?;
    let obj = generic::lookup_get(m.as_ref(), ctx, ident, None).await?;
    Ok(obj
        .get(m.desc().pk())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string())
}

/// `GET /{joint}`: rows whose master the caller can see.
async fn joint_list_all(svc: &Service, ctx: &Ctx, j: &dyn JointModel, q: &Object) -> Result<Value> {
    let (mplural, mcol) = j.master();
    let mut conds = Vec::new();
    if let Some(m) = svc.models.get(mplural) {
        let scope = ctx.list_scope(j.desc(), q)?;
        if let Some(v) = ctx.visibility(m.desc(), scope) {
            let mut c = cloudpods_db::Sql::default();
            c.ident(mcol)
                .push(&format!(
                    " IN (SELECT `{}` FROM `{}` WHERE ",
                    m.desc().pk(),
                    m.desc().table
                ))
                .append(v)
                .push(")");
            conds.push(c);
        }
    }
    generic::joint_list(j, ctx, conds, q).await
}

/// `GET /{master}/{id}/{slave}` (or reversed).
async fn joint_descendants(
    svc: &Service,
    ctx: &Ctx,
    j: &dyn JointModel,
    forward: bool,
    ident: &str,
    q: &Object,
) -> Result<Value> {
    let (plural, col) = if forward { j.master() } else { j.slave() };
    let m = svc
        .models
        .get(plural)
        .ok_or_else(|| HttpError::not_found(format!("resource {plural} not found")))?;
    let obj = generic::lookup_get(m.as_ref(), ctx, ident, None).await?;
    let id = obj
        .get(m.desc().pk())
        .and_then(Value::as_str)
        .unwrap_or_default();
    generic::joint_list(j, ctx, vec![cloudpods_db::crud::eq(col, id)], q).await
}

async fn joint_op(
    svc: &Service,
    ctx: &Ctx,
    j: &dyn JointModel,
    method: &Method,
    mid: &str,
    sid: &str,
    api: &mut ApiRequest,
) -> Result<Value> {
    let (mp, mcol) = j.master();
    let (sp, scol) = j.slave();
    let mm = svc
        .models
        .get(mp)
        .ok_or_else(|| HttpError::not_found(format!("resource {mp} not found")))?;
    let sm = svc
        .models
        .get(sp)
        .ok_or_else(|| HttpError::not_found(format!("resource {sp} not found")))?;
    let action = match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT | Method::PATCH => "update",
        Method::DELETE => "delete",
        _ => return Err(method_not_allowed(method)),
    };
    ctx.require(
        j.desc().plural,
        if action == "create" { "create" } else { action },
        None,
    )?;
    let master = if action == "get" {
        generic::lookup_get(mm.as_ref(), ctx, mid, None).await?
    } else {
        generic::lookup_for(mm.as_ref(), ctx, mid, "update", None).await?
    };
    let slave = generic::lookup_get(sm.as_ref(), ctx, sid, None).await?;
    let m_id = master
        .get(mm.desc().pk())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let s_id = slave
        .get(sm.desc().pk())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let find_joint_row = || async {
        let spec = cloudpods_db::ListSpec {
            conds: vec![
                cloudpods_db::crud::eq(mcol, m_id.as_str()),
                cloudpods_db::crud::eq(scol, s_id.as_str()),
            ],
            limit: Some(1),
            ..Default::default()
        };
        let (rows, _) = cloudpods_db::crud::list(j.db(), j.desc(), &spec).await?;
        rows.into_iter().next().ok_or_else(|| {
            HttpError::not_found(format!(
                "{} {mid} is not attached to {} {sid}",
                mm.desc().keyword,
                sm.desc().keyword
            ))
        })
    };
    let row = match action {
        "get" => find_joint_row().await?,
        "create" => {
            let body = api.json().await?;
            let input = crate::params::unwrap_envelope(body, &[j.desc().keyword], false)?;
            j.attach(ctx, master, slave, input).await?
        }
        "update" => {
            let joint = find_joint_row().await?;
            let body = api.json().await?;
            let input = crate::params::unwrap_envelope(body, &[j.desc().keyword], false)?;
            j.update(ctx, joint, input).await?
        }
        _ => {
            let q = delete_input(api, j.desc().keyword).await?;
            j.detach(ctx, master, slave, q).await?
        }
    };
    let mut rows = vec![row];
    j.details(ctx, &mut rows).await?;
    generic::strip_secrets(j.desc(), &mut rows);
    Ok(serde_json::json!({ j.desc().keyword: rows.pop().unwrap_or_default() }))
}

/// Answer a response with an empty body and a status (e.g. 204).
pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// JSON answer with status 200.
pub fn ok_json(v: Value) -> Response {
    json_response(v)
}
