use super::*;
use serde_json::json;

fn blob(v: Value) -> PolicyBlob {
    PolicyBlob::parse(&v).unwrap()
}

fn req<'a>(s: &'a str, r: &'a str, a: &'a str, e: Option<&'a str>) -> Request<'a> {
    Request {
        service: s,
        resource: r,
        action: a,
        extra: e,
    }
}

fn err(v: Value) -> String {
    PolicyBlob::parse(&v).unwrap_err().to_string()
}

#[test]
fn brief_example() {
    let b = blob(json!({"policy":{"compute":{"*":{"*":"allow"},
        "servers":{"*":"allow","perform":{"*":"allow","start":"deny"}}}}}));
    assert!(b.allows(&req("compute", "servers", "perform", Some("stop"))));
    assert!(b.allows(&req("compute", "servers", "perform", None)));
    assert!(b.allows(&req("compute", "disks", "create", None)));
    assert!(!b.allows(&req("compute", "servers", "perform", Some("start"))));
    assert!(!b.allows(&req("image", "images", "list", None)));
    let m = b
        .explain(&req("compute", "servers", "perform", Some("start")))
        .unwrap();
    assert_eq!(m.rule, "compute.servers.perform.start");
    assert_eq!(m.effect, Effect::Deny);
    assert_eq!(m.to_string(), "policy denies compute.servers.perform.start");
}

#[test]
fn wildcard_at_each_level() {
    let r = req("compute", "servers", "perform", Some("start"));
    for v in [
        json!({"*": "allow"}),
        json!({"compute": {"*": "allow"}}),
        json!({"compute": {"servers": {"*": "allow"}}}),
        json!({"compute": {"servers": {"perform": {"*": "allow"}}}}),
        json!({"*": {"*": {"*": {"*": "allow"}}}}),
    ] {
        assert!(blob(v.clone()).allows(&r), "{v}");
    }
    // A wildcard must not rescue a mismatch at another level.
    assert!(!blob(json!({"*": {"disks": "allow"}})).allows(&r));
}

#[test]
fn string_at_level_matches_everything_below() {
    let b = blob(json!({"compute": "allow", "image": {"images": "deny"}}));
    assert!(b.allows(&req("compute", "x", "delete", Some("y"))));
    assert!(b.allows(&req("compute", "x", "list", None)));
    assert_eq!(
        b.evaluate(&req("image", "images", "get", None)),
        Some(Effect::Deny)
    );
    assert_eq!(b.evaluate(&req("image", "other", "get", None)), None);
    assert_eq!(
        b.explain(&req("compute", "a", "b", None)).unwrap().rule,
        "compute"
    );
}

#[test]
fn exact_higher_level_beats_wildcard_more_specific_lower() {
    // "*.servers.perform.start" is exact on three lower levels, but "compute.*" is exact at
    // the service level, which dominates.
    let b = blob(json!({
        "*": {"servers": {"perform": {"start": "allow"}}},
        "compute": {"*": "deny"},
    }));
    let r = req("compute", "servers", "perform", Some("start"));
    assert_eq!(b.evaluate(&r), Some(Effect::Deny));
    assert_eq!(b.explain(&r).unwrap().rule, "compute.*");
    // Same across policies in a set.
    let set = PolicySet::new()
        .with(
            "a",
            blob(json!({"*": {"servers": {"perform": {"start": "allow"}}}})),
        )
        .with("b", blob(json!({"compute": "deny"})));
    assert!(!set.allows(&r));
    assert_eq!(set.explain(&r).unwrap().policy.as_deref(), Some("b"));
    // Exact resource beats wildcard resource with exact action.
    let b = blob(json!({"compute": {"servers": "allow", "*": {"perform": "deny"}}}));
    assert!(b.allows(&req("compute", "servers", "perform", None)));
}

#[test]
fn exact_beats_wildcard_when_exact_subtree_has_no_match() {
    // The exact "servers" subtree has no rule for "list", so fall back to the wildcard.
    let b = blob(json!({"compute": {"servers": {"create": "deny"}, "*": "allow"}}));
    assert!(b.allows(&req("compute", "servers", "list", None)));
    assert!(!b.allows(&req("compute", "servers", "create", None)));
}

#[test]
fn extras() {
    let b = blob(
        json!({"compute": {"servers": {"get": {"vnc": "deny"}, "perform": {"start": "allow"}}}}),
    );
    // No extra: only "*" or an early stop matches, specific extras do not.
    assert_eq!(b.evaluate(&req("compute", "servers", "get", None)), None);
    assert_eq!(
        b.evaluate(&req("compute", "servers", "perform", None)),
        None
    );
    assert!(!b.allows(&req("compute", "servers", "get", Some("vnc"))));
    assert!(b.allows(&req("compute", "servers", "perform", Some("start"))));
    assert_eq!(
        b.evaluate(&req("compute", "servers", "perform", Some("stop"))),
        None
    );
    let b = blob(json!({"compute": {"servers": {"get": {"*": "allow", "vnc": "deny"}}}}));
    assert!(b.allows(&req("compute", "servers", "get", None)));
    assert!(!b.allows(&req("compute", "servers", "get", Some("vnc"))));
}

#[test]
fn request_wildcard_value_only_matches_wildcard_key() {
    let b = blob(json!({"compute": {"*": "deny", "servers": "allow"}}));
    let m = b.explain(&req("compute", "*", "list", None)).unwrap();
    assert_eq!(m.rule, "compute.*");
}

#[test]
fn deny_wins_ties_across_policies() {
    let allow = blob(json!({"compute": {"servers": "allow"}}));
    let deny = blob(json!({"compute": {"servers": {"*": "deny"}}}));
    let r = req("compute", "servers", "list", None);
    for set in [
        PolicySet::new()
            .with("a", allow.clone())
            .with("d", deny.clone()),
        PolicySet::new()
            .with("d", deny.clone())
            .with("a", allow.clone()),
    ] {
        let m = set.explain(&r).unwrap();
        assert_eq!(m.effect, Effect::Deny);
        assert_eq!(m.policy.as_deref(), Some("d"));
        assert_eq!(m.to_string(), "policy \"d\" denies compute.servers.*");
    }
    // A more specific allow still beats a less specific deny across policies.
    let set = PolicySet::new().with("d", blob(json!({"*": "deny"}))).with(
        "a",
        blob(json!({"compute": {"servers": {"list": "allow"}}})),
    );
    assert!(set.allows(&r));
    assert!(!PolicySet::new().allows(&r));
}

#[test]
fn effects_case_insensitive_and_booleans() {
    let b = blob(json!({"a": "ALLOW", "b": "Deny", "c": true, "d": false}));
    assert_eq!(
        b.to_json(),
        json!({"policy": {"a": "allow", "b": "deny", "c": "allow", "d": "deny"}})
    );
    assert_eq!("aLLoW".parse::<Effect>(), Ok(Effect::Allow));
    assert!("permit".parse::<Effect>().is_err());
}

#[test]
fn wrapper_is_optional() {
    let a = blob(json!({"policy": {"compute": "allow"}}));
    let b = blob(json!({"compute": "allow"}));
    assert_eq!(a, b);
    assert_eq!(a.to_json(), json!({"policy": {"compute": "allow"}}));
    // "policy" next to other keys is a service name, not the wrapper.
    let c = blob(json!({"policy": {"x": "allow"}, "compute": "deny"}));
    assert!(c.allows(&req("policy", "x", "get", None)));
    assert_eq!(
        err(json!({"policy": "allow"})),
        "policy: value must be an object"
    );
}

#[test]
fn validation_errors_name_location() {
    assert_eq!(
        err(json!({"policy": {"compute": {"servers": {"perform": 1}}}})),
        "policy.compute.servers.perform: value must be \"allow\", \"deny\" or an object"
    );
    assert_eq!(
        err(json!({"compute": {"servers": ["allow"]}})),
        "policy.compute.servers: value must be \"allow\", \"deny\" or an object"
    );
    assert_eq!(
        err(json!({"compute": "permit"})),
        "policy.compute: value must be \"allow\", \"deny\" or an object"
    );
    assert_eq!(
        err(json!({"compute": null})),
        "policy.compute: value must be \"allow\", \"deny\" or an object"
    );
    let e = err(json!({"compute": {"servers": {"perform": {"start": {"x": "allow"}}}}}));
    assert!(
        e.starts_with("policy.compute.servers.perform.start: value must be \"allow\" or \"deny\" (policies nest at most 4 levels"),
        "{e}"
    );
    assert_eq!(
        err(json!({"compute": {"servers": {"perform": {"start": 3}}}})),
        "policy.compute.servers.perform.start: value must be \"allow\" or \"deny\""
    );
    assert_eq!(
        err(json!({"compute": {"": "allow"}})),
        "policy.compute: empty key"
    );
    assert!(
        err(json!({"compute": {"ser vers": "allow"}}))
            .starts_with("policy.compute: invalid key \"ser vers\"")
    );
    assert!(err(json!({"compute": {"ser*": "allow"}})).contains("must be the whole key"));
    assert_eq!(err(json!([1])), "policy: policy blob must be a JSON object");
    assert_eq!(
        err(json!("allow")),
        "policy: policy blob must be a JSON object"
    );
    let e = PolicyBlob::parse(&json!({"a": 1})).unwrap_err();
    assert_eq!(e.path, "policy.a");
    // Allowed characters.
    blob(json!({"a-b_c.D9": {"*": "allow"}}));
    assert!(PolicyBlob::from_json_str("{").is_err());
    assert!(PolicyBlob::from_json_str(r#"{"policy":{"*":"allow"}}"#).is_ok());
}

#[test]
fn empty_blob_matches_nothing() {
    let b = blob(json!({"policy": {}}));
    assert!(b.is_empty());
    assert_eq!(b.evaluate(&req("a", "b", "c", None)), None);
}

#[test]
fn set_rule_preserves_meaning_of_expanded_leaves() {
    let mut b = blob(json!({"compute": "allow"}));
    b.set_rule(&["compute", "servers", "delete"], Effect::Deny)
        .unwrap();
    assert_eq!(
        b.to_json(),
        json!({"policy": {"compute": {"*": "allow", "servers": {"delete": "deny"}}}})
    );
    assert!(b.allows(&req("compute", "disks", "delete", None)));
    assert!(b.allows(&req("compute", "servers", "list", None)));
    assert!(!b.allows(&req("compute", "servers", "delete", None)));
    assert!(b.set_rule(&[], Effect::Deny).is_err());
    assert!(
        b.set_rule(&["a", "b", "c", "d", "e"], Effect::Deny)
            .is_err()
    );
    assert_eq!(
        b.set_rule(&["a", "b c"], Effect::Deny).unwrap_err().path,
        "policy.a"
    );
}

#[test]
fn serde_roundtrip_of_blob() {
    let b = blob(json!({"compute": {"servers": "allow"}}));
    let s = serde_json::to_string(&b).unwrap();
    assert_eq!(s, r#"{"policy":{"compute":{"servers":"allow"}}}"#);
    assert_eq!(serde_json::from_str::<PolicyBlob>(&s).unwrap(), b);
    assert!(serde_json::from_str::<PolicyBlob>(r#"{"a":1}"#).is_err());
}

#[test]
fn scopes_ordering_and_parsing() {
    assert!(Scope::Project < Scope::Domain && Scope::Domain < Scope::System);
    assert_eq!(serde_json::to_string(&Scope::Domain).unwrap(), "\"domain\"");
    assert_eq!(
        serde_json::from_str::<Scope>("\"system\"").unwrap(),
        Scope::System
    );
    assert!(serde_json::from_str::<Scope>("\"user\"").is_err());
    assert_eq!("project".parse::<Scope>(), Ok(Scope::Project));
    assert_eq!(
        "user".parse::<Scope>().unwrap_err().to_string(),
        "unknown scope \"user\" (expected one of: project, domain, system)"
    );
}

#[test]
fn scoped_policies() {
    let r = req("compute", "servers", "create", None);
    let mut sp = ScopedPolicies::default();
    assert_eq!(sp.max_allowed_scope(&r), None);
    assert!(!sp.allowed_at(&r, Scope::Project));

    sp.project.push("p", PolicyBlob::allow_all());
    assert_eq!(sp.max_allowed_scope(&r), Some(Scope::Project));
    assert!(sp.allowed_at(&r, Scope::Project));
    assert!(!sp.allowed_at(&r, Scope::Domain));

    // A system grant implies domain and project access.
    let mut sys = ScopedPolicies::default();
    sys.get_mut(Scope::System)
        .push("s", blob(json!({"compute": "allow"})));
    assert_eq!(sys.max_allowed_scope(&r), Some(Scope::System));
    for s in Scope::ALL_DESC {
        assert!(sys.allowed_at(&r, s));
    }

    // Scopes are evaluated independently: a system deny does not hide a project grant.
    sp.system.push("s", blob(json!({"*": "deny"})));
    sp.domain.push(
        "d",
        blob(json!({"compute": {"servers": {"create": "allow"}}})),
    );
    assert_eq!(sp.max_allowed_scope(&r), Some(Scope::Domain));
    assert!(sp.allowed_at(&r, Scope::Domain));
    assert!(!sp.allowed_at(&r, Scope::System));
    assert_eq!(sp.get(Scope::Domain).len(), 1);
}

#[test]
fn predefined() {
    let ps = predefined_policies();
    let names: Vec<_> = ps.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["sysadmin", "domainadmin", "projectowner", "member"]);
    for p in &ps {
        let b = p.parse().unwrap();
        // Stored blobs are already canonical.
        assert_eq!(b.to_json(), p.blob, "{}", p.name);
    }
    let scope = |n: &str| ps.iter().find(|p| p.name == n).unwrap().scope;
    assert_eq!(scope("sysadmin"), Scope::System);
    assert_eq!(scope("domainadmin"), Scope::Domain);
    assert_eq!(scope("projectowner"), Scope::Project);
    assert_eq!(scope("member"), Scope::Project);
    let all = ps[0].parse().unwrap();
    assert!(all.allows(&req("identity", "users", "delete", None)));

    let m = ps[3].parse().unwrap();
    for r in [
        "servers",
        "disks",
        "snapshots",
        "keypairs",
        "secgroups",
        "eips",
    ] {
        for a in ["create", "update", "delete", "perform", "list", "get"] {
            assert!(m.allows(&req("compute", r, a, None)), "{r} {a}");
        }
        assert!(m.allows(&req("compute", r, "perform", Some("start"))));
    }
    assert!(m.allows(&req("image", "images", "create", None)));
    assert!(m.allows(&req("compute", "networks", "list", None)));
    assert!(m.allows(&req("compute", "networks", "get", Some("x"))));
    assert!(!m.allows(&req("compute", "networks", "create", None)));
    assert!(!m.allows(&req("compute", "hosts", "perform", Some("enable"))));
    for r in ["users", "projects"] {
        assert!(m.allows(&req("identity", r, "get", None)));
        assert!(m.allows(&req("identity", r, "list", None)));
        for a in ["create", "update", "delete"] {
            assert_eq!(
                m.evaluate(&req("identity", r, a, None)),
                Some(Effect::Deny),
                "{r} {a}"
            );
        }
    }
    assert!(!m.allows(&req("identity", "roles", "list", None)));
    assert!(!m.allows(&req("identity", "domains", "create", None)));
}

#[test]
fn default_grants_content() {
    let g = default_grants();
    assert_eq!(
        g.to_json(),
        json!({"policy": {
            "*": {"usages": {"get": "allow"}},
            "identity": {"users": {"get": "allow"}},
        }})
    );
    assert!(!g.allows(&req("compute", "tasks", "perform", Some("x"))));
    assert!(g.allows(&req("image", "usages", "get", None)));
    assert!(g.allows(&req("identity", "users", "get", None)));
    assert!(!g.allows(&req("identity", "users", "list", None)));
    assert!(!g.allows(&req("image", "tasks", "perform", None)));
}

#[test]
fn request_display() {
    assert_eq!(req("a", "b", "c", None).to_string(), "a.b.c");
    assert_eq!(
        Request::new("a", "b", "c").with_extra("d").to_string(),
        "a.b.c.d"
    );
}
