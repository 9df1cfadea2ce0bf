//! The generic resource manager.
//!
//! Cloudpods serves every resource through one dispatcher with the same
//! routes and envelopes (request `{"<keyword>": {...}}`, list answer
//! `{"<plural>": [...], "total", "limit", "offset"}`), so one JSON-typed
//! manager covers them all. Zero `total`/`limit`/`offset` are omitted by the
//! server and read as 0.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use crate::client::{Client, RawResponse};
use crate::endpoint::encode_segment;
use crate::error::{Result, SdkError};

/// One page of a list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListResult {
    pub items: Vec<Value>,
    /// Total number of matching rows (0 when the server omitted it).
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
    /// Marker of the next page, for marker-paged resources.
    pub next_marker: Option<String>,
    pub marker_field: Option<String>,
    pub marker_order: Option<String>,
    /// `totals` of `summary_stats` lists.
    pub totals: Option<Value>,
}

fn lenient_u64(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn opt_string(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl ListResult {
    /// Parse a list answer. Items are read from `plural`, or from `data`
    /// (Cloudpods' alternative key).
    pub fn from_body(body: &Value, plural: &str) -> std::result::Result<ListResult, String> {
        let obj = body
            .as_object()
            .ok_or_else(|| "the list answer is not a JSON object".to_owned())?;
        let items = match obj.get(plural).or_else(|| obj.get("data")) {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Null) => Vec::new(),
            Some(_) => return Err(format!("{plural:?} is not an array")),
            None => return Err(format!("the list answer has no {plural:?} key")),
        };
        Ok(ListResult {
            items,
            total: lenient_u64(obj.get("total")),
            limit: lenient_u64(obj.get("limit")),
            offset: lenient_u64(obj.get("offset")),
            next_marker: opt_string(obj.get("next_marker")),
            marker_field: opt_string(obj.get("marker_field")),
            marker_order: opt_string(obj.get("marker_order")),
            totals: obj.get("totals").filter(|v| !v.is_null()).cloned(),
        })
    }

    /// The list in its wire shape (zero values omitted, as the server does).
    pub fn to_json(&self, plural: &str) -> Value {
        let mut m = Map::new();
        m.insert(plural.to_owned(), Value::Array(self.items.clone()));
        for (k, v) in [
            ("total", self.total),
            ("limit", self.limit),
            ("offset", self.offset),
        ] {
            if v != 0 {
                m.insert(k.to_owned(), Value::from(v));
            }
        }
        for (k, v) in [
            ("next_marker", &self.next_marker),
            ("marker_field", &self.marker_field),
            ("marker_order", &self.marker_order),
        ] {
            if let Some(v) = v {
                m.insert(k.to_owned(), Value::String(v.clone()));
            }
        }
        if let Some(t) = &self.totals {
            m.insert("totals".to_owned(), t.clone());
        }
        Value::Object(m)
    }
}

/// One element of a batch create answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// Per-object status (200 on success).
    pub status: u16,
    /// The object, or the error body.
    pub body: Value,
}

impl BatchItem {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What `create` returns: one object, or one result per object of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateResult {
    One(Value),
    Batch(Vec<BatchItem>),
}

impl CreateResult {
    /// The created objects (failed batch elements are skipped).
    pub fn into_objects(self) -> Vec<Value> {
        match self {
            CreateResult::One(v) => vec![v],
            CreateResult::Batch(items) => items
                .into_iter()
                .filter(BatchItem::is_success)
                .map(|i| i.body)
                .collect(),
        }
    }
}

/// `{"<key>": body}`.
fn wrap(key: &str, body: Map<String, Value>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.to_owned(), Value::Object(body));
    m
}

/// `body[key]` when present, else the whole body (lenient servers answer
/// unwrapped objects).
fn unwrap_key(body: Value, key: &str) -> Value {
    match body {
        Value::Object(mut m) if m.contains_key(key) => m.remove(key).unwrap_or(Value::Null),
        other => other,
    }
}

fn parse_batch(url: &str, v: Value) -> Result<Vec<BatchItem>> {
    let Value::Array(items) = v else {
        return Err(SdkError::Decode {
            url: url.to_owned(),
            reason: "the batch create answer is not an array".to_owned(),
        });
    };
    Ok(items
        .into_iter()
        .map(|item| match item {
            Value::Object(mut m) if m.contains_key("body") || m.contains_key("status") => {
                let status = u16::try_from(lenient_u64(m.get("status"))).unwrap_or(0);
                BatchItem {
                    status: if status == 0 { 200 } else { status },
                    body: m.remove("body").unwrap_or(Value::Null),
                }
            }
            other => BatchItem {
                status: 200,
                body: other,
            },
        })
        .collect())
}

/// CRUD and actions on one resource type of one service.
#[derive(Debug, Clone)]
pub struct ResourceManager {
    client: Client,
    service_type: String,
    keyword: String,
    plural: String,
}

impl ResourceManager {
    /// See [`Client::resource`].
    pub fn new(client: Client, service_type: &str, keyword: &str, plural: &str) -> ResourceManager {
        ResourceManager {
            client,
            service_type: service_type.to_owned(),
            keyword: keyword.to_owned(),
            plural: plural.to_owned(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn service_type(&self) -> &str {
        &self.service_type
    }

    /// The singular envelope key (`server`).
    pub fn keyword(&self) -> &str {
        &self.keyword
    }

    /// The plural envelope key and route (`servers`).
    pub fn plural(&self) -> &str {
        &self.plural
    }

    fn path(&self, parts: &[&str]) -> String {
        let mut p = format!("/{}", self.plural);
        for s in parts {
            p.push('/');
            p.push_str(&encode_segment(s));
        }
        p
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: Option<&Map<String, Value>>,
        body: Option<Map<String, Value>>,
    ) -> Result<RawResponse> {
        self.client
            .raw(
                method,
                &self.service_type,
                path,
                query.filter(|q| !q.is_empty()),
                body.map(Value::Object),
                HeaderMap::new(),
            )
            .await
    }

    async fn list_at(&self, path: &str, params: &Map<String, Value>) -> Result<ListResult> {
        let resp = self.call(Method::GET, path, Some(params), None).await?;
        ListResult::from_body(&resp.body, &self.plural).map_err(|reason| SdkError::Decode {
            url: path.to_owned(),
            reason,
        })
    }

    /// `GET /{plural}?params`.
    pub async fn list(&self, params: &Map<String, Value>) -> Result<ListResult> {
        self.list_at(&self.path(&[]), params).await
    }

    /// `GET /{ctx_plural}/{ctx_id}/{plural}?params` (context or joint list).
    pub async fn list_in_context(
        &self,
        ctx_plural: &str,
        ctx_id: &str,
        params: &Map<String, Value>,
    ) -> Result<ListResult> {
        let path = format!("/{ctx_plural}/{}/{}", encode_segment(ctx_id), self.plural);
        self.list_at(&path, params).await
    }

    /// `GET /{plural}/{id}` (id or name), unwrapped from the keyword.
    pub async fn get(&self, id: &str, params: &Map<String, Value>) -> Result<Value> {
        let resp = self
            .call(Method::GET, &self.path(&[id]), Some(params), None)
            .await?;
        Ok(unwrap_key(resp.body, &self.keyword))
    }

    /// The `id` of the object named or identified by `name_or_id`.
    pub async fn get_id(&self, name_or_id: &str, params: &Map<String, Value>) -> Result<String> {
        let obj = self.get(name_or_id, params).await?;
        obj.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SdkError::Decode {
                url: self.path(&[name_or_id]),
                reason: "the object has no id".to_owned(),
            })
    }

    /// `HEAD /{plural}/{id}`: the answer's headers (glance puts image
    /// metadata there).
    pub async fn head(&self, id: &str) -> Result<HeaderMap> {
        let resp = self
            .call(Method::HEAD, &self.path(&[id]), None, None)
            .await?;
        Ok(resp.headers)
    }

    /// `GET /{plural}/{id}/{spec}`, unwrapped from the keyword.
    pub async fn get_specific(
        &self,
        id: &str,
        spec: &str,
        params: &Map<String, Value>,
    ) -> Result<Value> {
        let resp = self
            .call(Method::GET, &self.path(&[id, spec]), Some(params), None)
            .await?;
        Ok(unwrap_key(resp.body, &self.keyword))
    }

    async fn create_at(
        &self,
        path: &str,
        body: Map<String, Value>,
        count: Option<u32>,
    ) -> Result<CreateResult> {
        let mut req = wrap(&self.keyword, body);
        if let Some(n) = count {
            req.insert("count".to_owned(), Value::from(n));
        }
        let resp = self.call(Method::POST, path, None, Some(req)).await?;
        let batch = count.is_some_and(|n| n > 1);
        match resp.body {
            Value::Object(mut m) if batch || !m.contains_key(&self.keyword) => {
                if let Some(list) = m.remove(&self.plural) {
                    return Ok(CreateResult::Batch(parse_batch(path, list)?));
                }
                Ok(CreateResult::One(
                    m.remove(&self.keyword).unwrap_or(Value::Object(m)),
                ))
            }
            other => Ok(CreateResult::One(unwrap_key(other, &self.keyword))),
        }
    }

    /// `POST /{plural}` with `{"<keyword>": body, "count": n}`.
    ///
    /// One object comes back as [`CreateResult::One`] (`resp[keyword]`); a
    /// batch (`count > 1`) as [`CreateResult::Batch`] from `resp[plural]`.
    pub async fn create(
        &self,
        body: Map<String, Value>,
        count: Option<u32>,
    ) -> Result<CreateResult> {
        self.create_at(&self.path(&[]), body, count).await
    }

    /// `POST /{ctx_plural}/{ctx_id}/{plural}` (e.g. `POST /zones/{z}/hosts`).
    pub async fn create_in_context(
        &self,
        ctx_plural: &str,
        ctx_id: &str,
        body: Map<String, Value>,
        count: Option<u32>,
    ) -> Result<CreateResult> {
        let path = format!("/{ctx_plural}/{}/{}", encode_segment(ctx_id), self.plural);
        self.create_at(&path, body, count).await
    }

    /// `PUT /{ctx_plural}/{ctx_id}/{plural}/{id}` (attach/join routes such as
    /// `PUT /groups/{g}/users/{u}`); the body is sent only when given.
    pub async fn put_in_context(
        &self,
        ctx_plural: &str,
        ctx_id: &str,
        id: &str,
        body: Option<Map<String, Value>>,
    ) -> Result<Value> {
        let path = format!(
            "/{ctx_plural}/{}/{}/{}",
            encode_segment(ctx_id),
            self.plural,
            encode_segment(id)
        );
        let body = body.map(|b| wrap(&self.keyword, b));
        let resp = self.call(Method::PUT, &path, None, body).await?;
        Ok(unwrap_key(resp.body, &self.keyword))
    }

    /// `DELETE /{ctx_plural}/{ctx_id}/{plural}/{id}` (detach/leave routes).
    pub async fn delete_in_context(
        &self,
        ctx_plural: &str,
        ctx_id: &str,
        id: &str,
        params: &Map<String, Value>,
    ) -> Result<Value> {
        let path = format!(
            "/{ctx_plural}/{}/{}/{}",
            encode_segment(ctx_id),
            self.plural,
            encode_segment(id)
        );
        let resp = self.call(Method::DELETE, &path, Some(params), None).await?;
        Ok(unwrap_key(resp.body, &self.keyword))
    }

    /// `PUT /{plural}/{id}` with `{"<keyword>": body}`.
    pub async fn update(&self, id: &str, body: Map<String, Value>) -> Result<Value> {
        let resp = self
            .call(
                Method::PUT,
                &self.path(&[id]),
                None,
                Some(wrap(&self.keyword, body)),
            )
            .await?;
        Ok(unwrap_key(resp.body, &self.keyword))
    }

    /// `PATCH /{plural}/{id}` with `{"<keyword>": body}` (same semantics as
    /// update on Cloudpods).
    pub async fn patch(&self, id: &str, body: Map<String, Value>) -> Result<Value> {
        let resp = self
            .call(
                Method::PATCH,
                &self.path(&[id]),
                None,
                Some(wrap(&self.keyword, body)),
            )
            .await?;
        Ok(unwrap_key(resp.body, &self.keyword))
    }

    /// `DELETE /{plural}/{id}?params`; the deleted object's details come back.
    pub async fn delete(&self, id: &str, params: &Map<String, Value>) -> Result<Value> {
        let resp = self
            .call(Method::DELETE, &self.path(&[id]), Some(params), None)
            .await?;
        Ok(unwrap_key(resp.body, &self.keyword))
    }

    /// `POST /{plural}/{id}/{action}` with `{"<keyword>": body}`.
    pub async fn perform_action(
        &self,
        id: &str,
        action: &str,
        body: Map<String, Value>,
    ) -> Result<Value> {
        let resp = self
            .call(
                Method::POST,
                &self.path(&[id, action]),
                None,
                Some(wrap(&self.keyword, body)),
            )
            .await?;
        Ok(unwrap_key(resp.body, &self.keyword))
    }

    /// `POST /{plural}/{action}` with `{"<plural>": body}` (class action).
    pub async fn perform_class_action(
        &self,
        action: &str,
        body: Map<String, Value>,
    ) -> Result<Value> {
        let resp = self
            .call(
                Method::POST,
                &self.path(&[action]),
                None,
                Some(wrap(&self.plural, body)),
            )
            .await?;
        Ok(unwrap_key(resp.body, &self.plural))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_tolerates_missing_counters() {
        let l = ListResult::from_body(&json!({"servers": []}), "servers").expect("list");
        assert_eq!(l, ListResult::default());
        let l = ListResult::from_body(
            &json!({"servers": [{"id": "a"}], "total": 41, "limit": "20", "offset": 20, "next_marker": "m"}),
            "servers",
        )
        .expect("list");
        assert_eq!(l.items.len(), 1);
        assert_eq!((l.total, l.limit, l.offset), (41, 20, 20));
        assert_eq!(l.next_marker.as_deref(), Some("m"));
        let l = ListResult::from_body(&json!({"data": [{"id": "a"}], "total": 1}), "servers")
            .expect("data key");
        assert_eq!(l.items.len(), 1);
        assert!(ListResult::from_body(&json!({"other": []}), "servers").is_err());
        assert!(ListResult::from_body(&json!([]), "servers").is_err());
    }

    #[test]
    fn list_to_json_omits_zeros() {
        let l = ListResult {
            items: vec![json!({"id": "a"})],
            total: 1,
            limit: 20,
            ..Default::default()
        };
        assert_eq!(
            l.to_json("users"),
            json!({"users": [{"id": "a"}], "total": 1, "limit": 20})
        );
    }

    #[test]
    fn batch_and_unwrap() {
        let b = parse_batch(
            "/servers",
            json!([{"status": 200, "body": {"id": "a"}}, {"status": 400, "body": {"code": 400}}]),
        )
        .expect("batch");
        assert_eq!(b.len(), 2);
        assert!(b[0].is_success());
        assert!(!b[1].is_success());
        assert_eq!(
            CreateResult::Batch(b).into_objects(),
            vec![json!({"id": "a"})]
        );
        assert_eq!(
            unwrap_key(json!({"server": {"id": 1}}), "server"),
            json!({"id": 1})
        );
        assert_eq!(unwrap_key(json!({"id": 1}), "server"), json!({"id": 1}));
        assert!(parse_batch("/x", json!({})).is_err());
    }
}
