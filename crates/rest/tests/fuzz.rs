//! Property tests: whatever the path, query string or JSON body, the
//! dispatcher answers in the Cloudpods error shape (or 200) — never a panic,
//! never a 500 — and requests that fail write nothing.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

/// `cases` per property; `PROPTEST_CASES=N` overrides it for a longer hunt.
fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    env: Env,
    server: String,
    disk: String,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (env, server, disk) = rt.block_on(async {
        let env = Env::new().await;
        let server = env.server(ALICE, "fz", json!({"vcpu_count": 1})).await;
        let disk = env
            .post("/disks", ALICE, json!({"disk": {"name": "fzd"}}))
            .await;
        let disk = disk.ok()["disk"]["id"].as_str().expect("id").to_string();
        env.post("/zones", ADMIN, json!({"zone": {"name": "fzz"}}))
            .await
            .ok();
        env.post(
            &format!("/servers/{server}/user-metadata"),
            ALICE,
            json!({"k": "v"}),
        )
        .await
        .ok();
        (env, server, disk)
    });
    Fixture {
        rt,
        env,
        server,
        disk,
    }
}

/// An answer is acceptable when it is not a server error and, if it is an
/// error, it has the Cloudpods shape with status == code.
fn check(r: &Resp, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(r.status < 500, "{what}: {} {}", r.status, r.body);
    prop_assert!(r.header("x-request-id").is_some(), "{what}: no request id");
    if r.status >= 400 && !r.raw.is_empty() {
        prop_assert_eq!(&r.body["code"], &json!(r.status), "{}: {}", what, r.body);
        prop_assert!(r.body["class"].is_string(), "{what}: {}", r.body);
        prop_assert!(r.body["details"].is_string(), "{what}: {}", r.body);
    }
    Ok(())
}

/// Whether a row (an object with `id` and `created_at`) carries the
/// secret column.
fn leaks_secret(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            (m.contains_key("id") && m.contains_key("created_at") && m.contains_key("secret"))
                || m.values().any(leaks_secret)
        }
        Value::Array(a) => a.iter().any(leaks_secret),
        _ => false,
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "servers", "zones", "hosts", "disks", "guestdisks", "status", "start", "echo",
            "distinct-field", "metadata", "user-metadata", "vnc", "fz", "fzd", "fzz",
            "batch-echo", "ping", "version", "metrics", "openapi.json", "change-owner",
            "", "..", ".", "%", "__x",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
        1 => "[a-z0-9'\";%_ -]{0,12}",
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
    ])
}

#[test]
fn arbitrary_paths_never_fail_the_server() {
    let f = fixture();
    let strategy = (
        method(),
        prop::collection::vec(segment(), 0..6),
        prop::sample::select(vec![ALICE, ADMIN, BOB, DADMIN, NOSTART, "bad"]),
        prop::bool::ANY,
    );
    let before = f.rt.block_on(f.env.fingerprint());
    runner(128)
        .run(&strategy, |(method, segs, token, raw_segs)| {
            let path: String = segs
                .iter()
                .map(|s| {
                    let s = s.replace("{id}", &f.server).replace("{disk}", &f.disk);
                    if raw_segs
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    {
                        format!("/{s}")
                    } else {
                        format!("/{}", encode(&s))
                    }
                })
                .collect();
            let path = if path.is_empty() {
                "/".to_string()
            } else {
                path
            };
            // Reads and failed writes must not change anything; successful
            // writes (e.g. a valid rename) are possible, so only GET/HEAD
            // are checked for side effects here.
            let r = f.rt.block_on(f.env.call(method, &path, Some(token), None));
            check(&r, &format!("{method} {path}"))
        })
        .expect("paths");
    // Ids in paths hit real objects too.
    let strategy = (
        method(),
        prop::sample::select(vec![
            "/servers/{id}",
            "/servers/{id}/{x}",
            "/servers/{id}/disks/{disk}",
            "/disks/{disk}/servers/{id}",
            "/servers/{x}",
            "/zones/fzz/hosts/{x}",
            "/servers/{id}/disks/{x}",
            "/{x}/{id}",
            "/servers/{x}/{x}",
        ]),
        segment(),
    );
    runner(128)
        .run(&strategy, |(method, tmpl, x)| {
            let path = tmpl
                .replace("{id}", &f.server)
                .replace("{disk}", &f.disk)
                .replace("{x}", &encode(&x));
            let method = if method == "DELETE" { "GET" } else { method };
            let r = f.rt.block_on(f.env.call(method, &path, Some(ALICE), None));
            check(&r, &format!("{method} {path}"))
        })
        .expect("paths with ids");
    // No body, GET/HEAD/PUT/PATCH/POST/OPTIONS on these routes: nothing deleted.
    let after = f.rt.block_on(f.env.fingerprint());
    assert_eq!(
        before.iter().map(|(t, n, _)| (t, *n)).collect::<Vec<_>>()[..4],
        after.iter().map(|(t, n, _)| (t, *n)).collect::<Vec<_>>()[..4]
    );
}

fn query_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "limit", "offset", "order_by", "order", "details", "search", "filter", "filter.0",
            "filter.1", "filter_any", "field", "scope", "admin", "system", "paging_marker",
            "paging_order", "pending_delete", "pending_delete_all", "with_meta",
            "with_user_meta", "force_no_paging", "tags.0.key", "tags.0.value", "tags",
            "no_tags.0.key", "project_id", "project", "tenant", "project_domain", "domain_id",
            "id", "name", "status", "vcpu_count", "secret", "tags.1", "order_by.0", "field[]",
            "name.x", "filter.x", "zone_id", "disk_id", "guest_id", "index",
        ])
        .prop_map(str::to_string),
        1 => "[a-z_.0-9\\[\\]]{1,12}",
    ]
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "", "0", "1", "-1", "2048", "5000", "9223372036854775807", "-9223372036854775808",
            "99999999999999999999", "true", "False", "off", "system", "domain", "project",
            "asc", "desc", "name", "vcpu_count", "id", "p1", "p2", "proj2", "nan", "inf",
            "1e3", "name.equals(fz)", "vcpu_count.between(1,9)", "name.in(a,'b')",
            "vcpu_count.gt(nan)", "vcpu_count.ge(1e400)", "name.like(%)", "status.isnull()",
            "created_at.between('2020-01-01','2099-01-01')", "secret.equals(x)",
            "name.contains(')", "user:k", "v", "' OR 1=1 --",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

#[test]
fn arbitrary_queries_never_fail_the_server() {
    let f = fixture();
    let strategy = (
        prop::sample::select(vec![
            "/servers",
            "/servers/fz",
            "/servers/distinct-field",
            "/zones/fzz/hosts",
            "/guestdisks",
            "/servers/fz/disks",
            "/servers/fz/status",
            "/disks",
            "/zones",
        ]),
        prop::collection::vec((query_key(), query_value()), 0..6),
        prop::sample::select(vec![ALICE, ADMIN, DADMIN]),
    );
    let before = f.rt.block_on(f.env.fingerprint());
    runner(128)
        .run(&strategy, |(path, pairs, token)| {
            let qs: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            let uri = format!("{path}?{}", qs.join("&"));
            let r = f.rt.block_on(f.env.call("GET", &uri, Some(token), None));
            check(&r, &uri)?;
            if r.status == 200 {
                prop_assert!(!leaks_secret(&r.body), "{uri}: {}", r.body);
            }
            Ok(())
        })
        .expect("queries");
    // Queries on deletes are merged into the input: still no 500s.
    runner(64)
        .run(
            &(prop::collection::vec((query_key(), query_value()), 0..4)),
            |pairs| {
                let qs: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect();
                let uri = format!("/servers/does-not-exist?{}", qs.join("&"));
                let r = f.rt.block_on(f.env.call("DELETE", &uri, Some(ALICE), None));
                check(&r, &uri)
            },
        )
        .expect("delete queries");
    assert_eq!(f.rt.block_on(f.env.fingerprint()), before);
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        "[a-z]{0,8}".prop_map(Value::String),
        prop::sample::select(vec!["1", "true", "running", "p2", "proj1", "fz", ""])
            .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "name", "description", "vcpu_count", "vcpuCount", "hostname", "secret", "status",
            "count", "generate_name", "project_id", "project", "tenant", "project_domain",
            "domain", "__meta__", "metadata", "dry_run", "id", "server", "servers", "guestdisk",
            "index", "zone_id", "disk_size", "k", "purge", "override_pending_delete",
            "tenant_id", "deleted", "created_at", "update_version", "is_system", "scope",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Bodies: sometimes wrapped in the envelope, sometimes with a count.
fn json_body() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((json_key(), json_value()), 0..6),
        prop::sample::select(vec![
            None,
            Some("server"),
            Some("servers"),
            Some("guestdisk"),
            Some("host"),
        ]),
        prop::option::of(json_leaf()),
        prop::bool::weighted(0.1),
        json_value(),
    )
        .prop_map(|(kv, envelope, count, raw, other)| {
            if raw {
                return other;
            }
            let inner = Value::Object(kv.into_iter().collect());
            let mut outer = match envelope {
                Some(k) => {
                    let mut m = Map::new();
                    m.insert(k.to_string(), inner);
                    m
                }
                None => match inner {
                    Value::Object(m) => m,
                    _ => Map::new(),
                },
            };
            if let Some(c) = count {
                outer.insert("count".into(), c);
            }
            Value::Object(outer)
        })
}

#[test]
fn arbitrary_bodies_never_fail_the_server() {
    let f = fixture();
    let strategy = (
        prop::sample::select(vec![
            ("POST", "/servers"),
            ("POST", "/servers"),
            ("POST", "/servers/check-create-data"),
            ("POST", "/servers/batch-echo"),
            ("PUT", "/servers/{id}"),
            ("PATCH", "/servers/{id}"),
            ("POST", "/servers/{id}/echo"),
            ("POST", "/servers/{id}/start"),
            ("POST", "/servers/{id}/status"),
            ("POST", "/servers/{id}/user-metadata"),
            ("POST", "/servers/{id}/set-user-metadata"),
            ("POST", "/servers/{id}/metadata"),
            ("POST", "/servers/{id}/change-owner"),
            ("POST", "/servers/{id}/cancel-delete"),
            ("POST", "/zones/fzz/hosts"),
            ("POST", "/zones"),
            ("POST", "/servers/{id}/disks/{disk}"),
            ("PUT", "/servers/{id}/disks/{disk}"),
            ("DELETE", "/servers/{id}/disks/{disk}"),
            ("DELETE", "/servers/does-not-exist"),
        ]),
        json_body(),
        prop::sample::select(vec![ALICE, ADMIN, NOSTART]),
    );
    runner(128)
        .run(&strategy, |((method, tmpl), body, token)| {
            let uri = tmpl.replace("{id}", &f.server).replace("{disk}", &f.disk);
            let before = f.rt.block_on(f.env.fingerprint());
            let r =
                f.rt.block_on(f.env.call(method, &uri, Some(token), Some(body.clone())));
            check(&r, &format!("{method} {uri} {body}"))?;
            if r.status >= 400 {
                let after = f.rt.block_on(f.env.fingerprint());
                prop_assert_eq!(
                    before,
                    after,
                    "{} {} {} wrote on failure",
                    method,
                    uri,
                    body
                );
            } else if !uri.contains("metadata") {
                // (Metadata actions answer the metadata map, whose keys are
                // free-form and may well be "secret".)
                prop_assert!(!leaks_secret(&r.body), "{method} {uri} {body}: {}", r.body);
            }
            Ok(())
        })
        .expect("bodies");
    // The fixture objects survive: the server is still addressable.
    let r =
        f.rt.block_on(f.env.get(&format!("/servers/{}", f.server), ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
}
