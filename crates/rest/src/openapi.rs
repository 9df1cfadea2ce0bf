//! The OpenAPI 3 document of a service, generated from its table
//! descriptors and routes — the same data the dispatcher serves from, so it
//! cannot drift from the code.

use cloudpods_db::{ColFlags, ColType, ModelDesc};
use serde_json::{Map, Value, json};

use crate::service::{Seg, Service};

fn schema_of(ty: ColType) -> Value {
    match ty {
        ColType::Str(n) => json!({"type": "string", "maxLength": n}),
        ColType::Text => json!({"type": "string"}),
        ColType::Int | ColType::BigInt | ColType::AutoId => json!({"type": "integer"}),
        ColType::Float => json!({"type": "number"}),
        ColType::Bool => json!({"type": "boolean"}),
        ColType::Time => json!({"type": "string", "format": "date-time"}),
        ColType::Json => json!({}),
    }
}

fn cap(s: &str) -> String {
    s.split('_')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn model_schemas(desc: &ModelDesc) -> (Value, Value, Value) {
    let mut out = Map::new();
    let mut create = Map::new();
    let mut update = Map::new();
    let mut required = Vec::new();
    for c in &desc.columns {
        if c.flags.has(ColFlags::SECRET) {
            continue;
        }
        out.insert(c.name.into(), schema_of(c.ty));
        if c.flags.has(ColFlags::CREATE) {
            create.insert(c.name.into(), schema_of(c.ty));
            if c.flags.has(ColFlags::REQUIRED) {
                required.push(c.name);
            }
        }
        if c.flags.has(ColFlags::UPDATE) {
            update.insert(c.name.into(), schema_of(c.ty));
        }
    }
    for f in &desc.extra_create_fields {
        create.entry(f.to_string()).or_insert(json!({}));
    }
    (
        json!({"type": "object", "properties": out}),
        json!({"type": "object", "properties": create, "required": required}),
        json!({"type": "object", "properties": update}),
    )
}

fn envelope(key: &str, schema: &str) -> Value {
    json!({"type": "object", "properties": {key: {"$ref": format!("#/components/schemas/{schema}")}}})
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({
        "description": desc,
        "content": {"application/json": {"schema": schema}},
    })
}

fn error_responses() -> Value {
    let e = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({"400": e, "401": e, "403": e, "404": e, "409": e})
}

fn list_params() -> Value {
    let p = |name: &str, ty: &str, d: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": ty}, "description": d});
    json!([
        p("limit", "integer", "page size (default and maximum 2048)"),
        p("offset", "integer", "rows to skip"),
        p("order_by", "string", "column to order by (repeatable)"),
        p("order", "string", "asc or desc"),
        p("details", "boolean", "add detail fields (default true)"),
        p("search", "string", "substring of the name"),
        p("filter", "string", "field.op(args), repeatable"),
        p("filter_any", "boolean", "OR the filters instead of AND"),
        p("scope", "string", "project, domain or system"),
        p("field", "string", "project these columns only (repeatable)"),
        p(
            "paging_marker",
            "string",
            "marker paging: id after which to continue"
        ),
    ])
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "id or name"})
}

/// Build the document.
pub fn document(svc: &Service) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["code", "class", "details"], "properties": {
            "code": {"type": "integer"}, "class": {"type": "string"},
            "details": {"type": "string"}, "time": {"type": "string"}}}),
    );
    let prefix = svc.prefix;
    let mut models: Vec<_> = svc.models().collect();
    models.sort_by_key(|m| m.desc().plural);
    for m in models {
        let d = m.desc();
        let name = cap(d.keyword);
        let (out, create, update) = model_schemas(d);
        schemas.insert(name.clone(), out);
        schemas.insert(format!("{name}Create"), create);
        schemas.insert(format!("{name}Update"), update);
        let list_schema = json!({"type": "object", "properties": {
            d.plural: {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
            "total": {"type": "integer"}, "limit": {"type": "integer"}, "offset": {"type": "integer"}}});
        let collection = json!({
            "get": {"operationId": format!("{}_list", d.plural), "tags": [d.plural], "parameters": list_params(),
                    "responses": {"200": ok("list", list_schema)}},
            "post": {"operationId": format!("{}_create", d.plural), "tags": [d.plural],
                     "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                        d.keyword: {"$ref": format!("#/components/schemas/{name}Create")}, "count": {"type": "integer"}}, "required": [d.keyword]}}}},
                     "responses": {"200": ok("created", envelope(d.keyword, &name))}},
        });
        paths.insert(format!("{prefix}/{}", d.plural), collection);
        paths.insert(
            format!("{prefix}/{}/{{id}}", d.plural),
            json!({
                "parameters": [id_param()],
                "get": {"operationId": format!("{}_get", d.plural), "tags": [d.plural], "responses": {"200": ok("object", envelope(d.keyword, &name))}},
                "put": {"operationId": format!("{}_update", d.plural), "tags": [d.plural],
                        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {d.keyword: {"$ref": format!("#/components/schemas/{name}Update")}}}}}},
                        "responses": {"200": ok("updated", envelope(d.keyword, &name))}},
                "patch": {"operationId": format!("{}_patch", d.plural), "tags": [d.plural],
                        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {d.keyword: {"$ref": format!("#/components/schemas/{name}Update")}}}}}},
                        "responses": {"200": ok("updated", envelope(d.keyword, &name))}},
                "head": {"operationId": format!("{}_head", d.plural), "tags": [d.plural], "responses": {"200": {"description": "exists"}}},
                "delete": {"operationId": format!("{}_delete", d.plural), "tags": [d.plural], "responses": {"200": ok("deleted", envelope(d.keyword, &name))}},
                // `POST /{plural}/{action}` has the same shape as an object
                // path (OpenAPI forbids a second template for it).
                "post": {"operationId": format!("{}_class_action", d.plural), "tags": [d.plural],
                         "summary": "perform a class action: the path segment is the action name; body and answer are wrapped in the plural",
                         "responses": {"200": ok("result", json!({"type": "object"}))}},
            }),
        );
        for prop in m.class_properties() {
            paths.insert(
                format!("{prefix}/{}/{prop}", d.plural),
                json!({"get": {"operationId": format!("{}_property_{}", d.plural, prop.replace('-', "_")), "tags": [d.plural],
                               "summary": "class property", "responses": {"200": ok("property", json!({"type": "object"}))}}}),
            );
        }
        paths.insert(
            format!("{prefix}/{}/{{id}}/{{action}}", d.plural),
            json!({
                "parameters": [id_param(), {"name": "action", "in": "path", "required": true, "schema": {"type": "string"}}],
                "post": {"operationId": format!("{}_perform", d.plural), "tags": [d.plural], "summary": "perform an action",
                         "responses": {"200": ok("result", json!({"type": "object"}))}},
                "get": {"operationId": format!("{}_spec", d.plural), "tags": [d.plural], "summary": "get a spec",
                        "responses": {"200": ok("spec", json!({"type": "object"}))}},
            }),
        );
        for (ctx, _) in m.contexts() {
            paths.insert(
                format!("{prefix}/{ctx}/{{ctx_id}}/{}", d.plural),
                json!({
                    "parameters": [{"name": "ctx_id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "get": {"operationId": format!("{}_list_in_{ctx}", d.plural), "tags": [d.plural], "responses": {"200": ok("list", json!({"type": "object"}))}},
                    "post": {"operationId": format!("{}_create_in_{ctx}", d.plural), "tags": [d.plural], "responses": {"200": ok("created", envelope(d.keyword, &name))}},
                }),
            );
            let obj = || ok("object", envelope(d.keyword, &name));
            paths.insert(
                format!("{prefix}/{ctx}/{{ctx_id}}/{}/{{id}}", d.plural),
                json!({
                    "parameters": [{"name": "ctx_id", "in": "path", "required": true, "schema": {"type": "string"}}, id_param()],
                    "get": {"operationId": format!("{}_get_in_{ctx}", d.plural), "tags": [d.plural], "responses": {"200": obj()}},
                    "put": {"operationId": format!("{}_update_in_{ctx}", d.plural), "tags": [d.plural], "responses": {"200": obj()}},
                    "patch": {"operationId": format!("{}_patch_in_{ctx}", d.plural), "tags": [d.plural], "responses": {"200": obj()}},
                    "delete": {"operationId": format!("{}_delete_in_{ctx}", d.plural), "tags": [d.plural], "responses": {"200": obj()}},
                }),
            );
        }
    }
    for j in svc.joints() {
        let d = j.desc();
        let (m, _) = j.master();
        let (s, _) = j.slave();
        let name = cap(d.keyword);
        let (out, _, _) = model_schemas(d);
        schemas.insert(name.clone(), out);
        paths.insert(
            format!("{prefix}/{}", d.plural),
            json!({"get": {"operationId": format!("{}_list", d.plural), "tags": [d.plural], "responses": {"200": ok("list", json!({"type": "object"}))}}}),
        );
        // Both orders are served: /servers/{id}/disks and /disks/{id}/servers.
        for (a, b, sfx) in [(m, s, ""), (s, m, "_reversed")] {
            paths.insert(
                format!("{prefix}/{a}/{{id}}/{b}"),
                json!({"parameters": [id_param()], "get": {"operationId": format!("{}_list_descendants{sfx}", d.plural), "tags": [d.plural], "responses": {"200": ok("list", json!({"type": "object"}))}}}),
            );
            paths.insert(
                format!("{prefix}/{a}/{{id}}/{b}/{{sid}}"),
                json!({"parameters": [id_param(), {"name": "sid", "in": "path", "required": true, "schema": {"type": "string"}}],
                       "get": {"operationId": format!("{}_get{sfx}", d.plural), "tags": [d.plural], "responses": {"200": ok("joint", envelope(d.keyword, &name))}},
                       "post": {"operationId": format!("{}_attach{sfx}", d.plural), "tags": [d.plural], "responses": {"200": ok("joint", envelope(d.keyword, &name))}},
                       "put": {"operationId": format!("{}_update{sfx}", d.plural), "tags": [d.plural], "responses": {"200": ok("joint", envelope(d.keyword, &name))}},
                       "delete": {"operationId": format!("{}_detach{sfx}", d.plural), "tags": [d.plural], "responses": {"200": ok("joint", envelope(d.keyword, &name))}}}),
            );
        }
    }
    // Every generic operation may answer the Cloudpods errors.
    if let Some(errs) = error_responses().as_object() {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                if let Some(r) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    for (code, e) in errs {
                        r.entry(code.clone()).or_insert_with(|| e.clone());
                    }
                }
            }
        }
    }
    for r in &svc.routes {
        let path: String = r
            .segs
            .iter()
            .map(|s| match s {
                Seg::Static(x) => format!("/{x}"),
                Seg::Param(p) => format!("/{{{p}}}"),
            })
            .collect();
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let params: Vec<Value> = r
            .segs
            .iter()
            .filter_map(|s| match s {
                Seg::Param(p) => Some(json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}})),
                Seg::Static(_) => None,
            })
            .collect();
        let method = r.method.as_str().to_ascii_lowercase();
        let op_id = format!("{method}{}", path.replace(['/', '{', '}', '.', '-'], "_"));
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            let mut op = json!({"operationId": op_id, "responses": {"200": {"description": "ok"}}});
            if !params.is_empty() {
                op["parameters"] = Value::Array(params);
            }
            if r.auth {
                op["security"] = json!([{"token": []}]);
            } else {
                op["security"] = json!([]);
            }
            obj.insert(method, op);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": format!("cloudpods-rs {}", svc.name), "version": svc.version},
        "paths": paths,
        "security": [{"token": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
        },
    })
}
