//! Property tests for parsing, canonical round-trips and evaluation invariants.

use cloudpods_rbac::{Effect, PolicyBlob, PolicySet, Request};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Small vocabulary so that generated rules and requests actually overlap.
const NAMES: &[&str] = &[
    "*", "compute", "image", "servers", "disks", "list", "get", "perform", "start", "vnc",
];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(str::to_owned)
}

fn effect_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("allow")),
        Just(json!("deny")),
        Just(json!("Allow")),
        Just(json!("DENY")),
        any::<bool>().prop_map(Value::Bool),
    ]
}

/// A valid node at `level` (0 = service map's values are at level 1).
fn valid_node(level: usize) -> BoxedStrategy<Value> {
    if level == 4 {
        return effect_json().boxed();
    }
    prop_oneof![
        effect_json(),
        prop::collection::btree_map(name(), valid_node(level + 1), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
    .boxed()
}

fn valid_blob() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(name(), valid_node(1), 0..4).prop_map(|m| {
        let services: Map<String, Value> = m.into_iter().collect();
        json!({ "policy": services })
    })
}

/// Arbitrary JSON, biased towards things that look like policies.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![name(), "[a-zA-Z0-9*. _-]{0,5}", Just("policy".to_owned())];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        effect_json(),
        ".{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(7, 64, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
struct Req(String, String, String, Option<String>);

impl Req {
    fn get(&self) -> Request<'_> {
        Request {
            service: &self.0,
            resource: &self.1,
            action: &self.2,
            extra: self.3.as_deref(),
        }
    }
}

fn request() -> impl Strategy<Value = Req> {
    (name(), name(), name(), prop::option::of(name())).prop_map(|(s, r, a, e)| Req(s, r, a, e))
}

fn any_request() -> impl Strategy<Value = Req> {
    let s = ".{0,8}";
    (s, s, s, prop::option::of(s)).prop_map(|(s, r, a, e)| Req(s, r, a, e))
}

/// Flattens canonical JSON into (key path, effect) rules.
fn flatten(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Effect)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(k.clone());
                flatten(child, path, out);
                path.pop();
            }
        }
        Value::String(s) => out.push((path.clone(), s.parse().unwrap())),
        other => panic!("non-canonical value {other}"),
    }
}

/// Brute-force reference: specificity of `rule` for `req`, if it matches.
fn specificity(rule: &[String], req: &Request<'_>) -> Option<[bool; 4]> {
    let levels = [
        Some(req.service),
        Some(req.resource),
        Some(req.action),
        req.extra,
    ];
    let mut spec = [false; 4];
    for (i, key) in rule.iter().enumerate() {
        if key == "*" {
            continue;
        }
        if levels[i] != Some(key.as_str()) {
            return None;
        }
        spec[i] = true;
    }
    Some(spec)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics(v in any_json()) {
        for candidate in [v.clone(), json!({ "policy": v })] {
            if let Ok(b) = PolicyBlob::parse(&candidate) {
                // Whatever is accepted is representable canonically.
                prop_assert_eq!(PolicyBlob::parse(&b.to_json()).unwrap(), b);
            }
        }
    }

    #[test]
    fn roundtrip(v in valid_blob()) {
        let b = PolicyBlob::parse(&v).unwrap();
        let canon = b.to_json();
        let b2 = PolicyBlob::parse(&canon).unwrap();
        prop_assert_eq!(&b2, &b);
        prop_assert_eq!(b2.to_json(), canon.clone());
        // The unwrapped form parses to the same blob.
        prop_assert_eq!(PolicyBlob::parse(&canon["policy"]).unwrap(), b);
    }

    #[test]
    fn allow_all_allows_everything(r in any_request(), r2 in request()) {
        let b = PolicyBlob::parse(&json!({"policy": {"*": "allow"}})).unwrap();
        prop_assert!(b.allows(&r.get()));
        prop_assert!(b.allows(&r2.get()));
    }

    #[test]
    fn matches_brute_force_reference(v in valid_blob(), reqs in prop::collection::vec(request(), 1..16)) {
        let b = PolicyBlob::parse(&v).unwrap();
        let mut rules = Vec::new();
        flatten(&b.to_json()["policy"], &mut Vec::new(), &mut rules);
        for r in &reqs {
            let r = r.get();
            let mut matching: Vec<_> = rules
                .iter()
                .filter_map(|(path, e)| specificity(path, &r).map(|s| (s, path.join("."), *e)))
                .collect();
            matching.sort_by_key(|a| a.0);
            // Within a blob no two matching rules are equally specific.
            for w in matching.windows(2) {
                prop_assert!(w[0].0 != w[1].0, "tie in one blob: {:?}", matching);
            }
            let expected = matching.last().map(|(_, p, e)| (p.clone(), *e));
            let got = b.explain(&r).map(|m| (m.rule, m.effect));
            prop_assert_eq!(got, expected, "request {}", r);
        }
    }

    #[test]
    fn adding_deny_is_monotone(
        v in valid_blob(),
        other in valid_blob(),
        deny in prop::collection::vec(name(), 1..=4),
        reqs in prop::collection::vec(request(), 1..16),
    ) {
        let before = PolicyBlob::parse(&v).unwrap();
        let mut after = before.clone();
        let path: Vec<&str> = deny.iter().map(String::as_str).collect();
        after.set_rule(&path, Effect::Deny).unwrap();

        let mut deny_only = PolicyBlob::default();
        deny_only.set_rule(&path, Effect::Deny).unwrap();
        let other = PolicyBlob::parse(&other).unwrap();
        let set_before = PolicySet::new().with("a", before.clone()).with("b", other.clone());
        let set_after = set_before.clone().with("deny", deny_only);
        let set_edited = PolicySet::new().with("a", after.clone()).with("b", other);

        for r in &reqs {
            let r = r.get();
            if !before.allows(&r) {
                prop_assert!(!after.allows(&r), "blob: {} became allowed", r);
            }
            if !set_before.allows(&r) {
                prop_assert!(!set_after.allows(&r), "set+deny: {} became allowed", r);
                prop_assert!(!set_edited.allows(&r), "edited set: {} became allowed", r);
            }
        }
        // And the deny rule's own path (with wildcards filled in) is denied.
        let full: Vec<&str> = path.iter().copied().chain(std::iter::repeat("start")).take(4).collect();
        let r = Request { service: full[0], resource: full[1], action: full[2], extra: Some(full[3]) };
        prop_assert!(!after.allows(&r));
    }
}
