//! Cloudpods query strings: structured JSON encoded as `application/x-www-form-urlencoded`.
//!
//! Cloudpods' `appsrv` hands every request's query string to
//! `jsonutils.ParseQueryString` (yunionio/jsonutils `querystring.go`), so list
//! and action parameters arrive as a JSON *document*, not a flat map. This
//! module mirrors those rules:
//!
//! | query string                                   | JSON                                                  |
//! |------------------------------------------------|-------------------------------------------------------|
//! | `a.b=1`                                        | `{"a":{"b":"1"}}`                                     |
//! | `filter.0=x&filter.1=y`                        | `{"filter":["x","y"]}`                                |
//! | `disks.0.size=10&disks.0.image_id=i&disks.1.size=20` | `{"disks":[{"size":"10","image_id":"i"},{"size":"20"}]}` |
//! | `status=a&status=b`                            | `{"status":["a","b"]}`                                |
//! | `status[]=a` (PHP style append)                | `{"status":["a"]}`                                    |
//! | `details`                                      | `{"details":""}`                                      |
//!
//! Rules, in detail:
//!
//! * Pairs are split on `&`; keys and values are decoded with form-urlencoded
//!   rules (`+` is a space, `%XX` is a byte, invalid UTF-8 is replaced with
//!   U+FFFD, malformed `%` escapes are kept literally). A pair without `=` has
//!   the value `""`. Empty pairs (`&&`) and pairs with an empty key are skipped.
//! * Values always stay JSON strings; typed decoding (see
//!   [`crate::lenient::de`]) converts them later.
//! * A key is a `.`-separated path. At most [`MAX_DEPTH`] segments are
//!   recognised: the 16th segment keeps the rest of the key, dots included, as
//!   one literal key. A key with an empty segment (`.a`, `a.`, `a..b`) is not
//!   split at all and is used literally.
//! * A trailing `[]` on a key (`tags[]=a&tags[]=b`) appends to an array; the
//!   result is an array even with a single value.
//! * A key given several times becomes an array of strings in input order.
//! * An object whose keys are all array indexes becomes an array ordered by
//!   index; sparse indexes are compacted (`a.0=x&a.5=y` → `["x","y"]`). An
//!   index is a canonical decimal (`0`, `7`, `42`; not `07`) no greater than
//!   [`MAX_INDEX`]; anything else (e.g. `a.20000=x`) is an ordinary object key,
//!   and an object mixing index and non-index keys stays an object with
//!   string keys. Nothing is ever preallocated from an index.
//! * Conflicts (`a=1&a.b=2`): the structured (object/array) value wins and
//!   the plain values given for the same path are dropped, whatever the order.
//! * Object keys keep the order of their first appearance.
//!
//! [`to_query`] is the inverse used by the SDK and `climc` (jsonutils
//! `JSONObject.QueryString`): nested objects become dotted keys, arrays of
//! scalars become repeated keys (a one-element array is written `key.0=v` so
//! that it parses back as an array), arrays containing objects or arrays are
//! written `key.N...`, booleans are `true`/`false`, numbers are written as they
//! are, `null`, empty objects and empty arrays are omitted.
//! `parse_query(&to_query(v)) == v` holds for objects whose leaves are
//! non-empty strings and whose keys contain no `.`, are not array indexes and
//! do not end in `[]`.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Maximum number of `.`-separated segments recognised in a key.
pub const MAX_DEPTH: usize = 16;

/// Largest path segment treated as an array index.
pub const MAX_INDEX: usize = 10_000;

/// Intermediate tree built while parsing: a node may carry both plain values
/// and children until it is converted (children win).
#[derive(Default)]
struct Node {
    values: Vec<String>,
    force_array: bool,
    children: Vec<(String, Node)>,
    lookup: HashMap<String, usize>,
}

impl Node {
    fn child(&mut self, key: &str) -> &mut Node {
        let idx = match self.lookup.get(key) {
            Some(&i) => i,
            None => {
                let i = self.children.len();
                self.children.push((key.to_owned(), Node::default()));
                self.lookup.insert(key.to_owned(), i);
                i
            }
        };
        &mut self.children[idx].1
    }

    fn into_value(self) -> Value {
        if !self.children.is_empty() {
            return children_to_value(self.children);
        }
        if self.values.len() == 1 && !self.force_array {
            return self
                .values
                .into_iter()
                .next()
                .map_or(Value::Null, Value::String);
        }
        Value::Array(self.values.into_iter().map(Value::String).collect())
    }
}

fn array_index(seg: &str) -> Option<usize> {
    let bytes = seg.as_bytes();
    if bytes.is_empty() || bytes.len() > 5 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    seg.parse::<usize>().ok().filter(|&i| i <= MAX_INDEX)
}

fn children_to_value(children: Vec<(String, Node)>) -> Value {
    let indexes: Option<Vec<usize>> = children.iter().map(|(k, _)| array_index(k)).collect();
    match indexes {
        Some(idx) => {
            // Keys are unique, so indexes are unique: sorting compacts them.
            let mut items: Vec<(usize, Node)> = idx
                .into_iter()
                .zip(children.into_iter().map(|(_, n)| n))
                .collect();
            items.sort_by_key(|(i, _)| *i);
            Value::Array(items.into_iter().map(|(_, n)| n.into_value()).collect())
        }
        None => Value::Object(
            children
                .into_iter()
                .map(|(k, n)| (k, n.into_value()))
                .collect(),
        ),
    }
}

/// Split a decoded key into path segments according to the module rules.
fn split_key(key: &str) -> Vec<&str> {
    let segs: Vec<&str> = key.splitn(MAX_DEPTH, '.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        vec![key]
    } else {
        segs
    }
}

/// Parse a Cloudpods query string into a JSON object. Never fails: anything
/// that is not structured is kept as a literal key or string value.
pub fn parse_query(qs: &str) -> Map<String, Value> {
    let qs = qs.strip_prefix('?').unwrap_or(qs);
    let mut root = Node::default();
    for (key, value) in form_urlencoded::parse(qs.as_bytes()) {
        let (key, append) = match key.strip_suffix("[]") {
            Some(k) => (k, true),
            None => (key.as_ref(), false),
        };
        if key.is_empty() {
            continue;
        }
        let mut node = &mut root;
        for seg in split_key(key) {
            node = node.child(seg);
        }
        node.values.push(value.into_owned());
        node.force_array |= append;
    }
    root.children
        .into_iter()
        .map(|(k, n)| (k, n.into_value()))
        .collect()
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn encode_value(ser: &mut form_urlencoded::Serializer<'_, String>, key: &str, v: &Value) {
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, sub) in m {
                encode_value(ser, &format!("{key}.{k}"), sub);
            }
        }
        Value::Array(items) => {
            let all_scalar = items
                .iter()
                .all(|i| !matches!(i, Value::Array(_) | Value::Object(_)));
            let non_null: Vec<&Value> = items.iter().filter(|i| !i.is_null()).collect();
            if all_scalar && non_null.len() >= 2 {
                for item in non_null {
                    if let Some(s) = scalar_string(item) {
                        ser.append_pair(key, &s);
                    }
                }
            } else {
                for (i, item) in non_null.into_iter().enumerate() {
                    encode_value(ser, &format!("{key}.{i}"), item);
                }
            }
        }
        scalar => {
            if let Some(s) = scalar_string(scalar) {
                ser.append_pair(key, &s);
            }
        }
    }
}

/// Encode a JSON object as a Cloudpods query string (the inverse of
/// [`parse_query`]; see the module docs for the rules).
pub fn to_query(v: &Map<String, Value>) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, sub) in v {
        encode_value(&mut ser, k, sub);
    }
    ser.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn q(s: &str) -> Value {
        Value::Object(parse_query(s))
    }

    #[test]
    fn dotted_keys_make_objects() {
        assert_eq!(q("a.b=1"), json!({"a": {"b": "1"}}));
        assert_eq!(
            q("a.b.c=1&a.d=2"),
            json!({"a": {"b": {"c": "1"}, "d": "2"}})
        );
    }

    #[test]
    fn numeric_segments_make_arrays() {
        assert_eq!(q("filter.0=x&filter.1=y"), json!({"filter": ["x", "y"]}));
        assert_eq!(
            q("disks.0.size=10&disks.0.image_id=i&disks.1.size=20"),
            json!({"disks": [{"size": "10", "image_id": "i"}, {"size": "20"}]})
        );
        assert_eq!(q("a.1=y&a.0=x"), json!({"a": ["x", "y"]}));
    }

    #[test]
    fn repeated_keys_make_string_arrays() {
        assert_eq!(q("status=a&status=b"), json!({"status": ["a", "b"]}));
        assert_eq!(
            q("limit=20&status=a&status=b&status=c"),
            json!({"limit": "20", "status": ["a", "b", "c"]})
        );
    }

    #[test]
    fn values_stay_strings() {
        assert_eq!(
            q("limit=20&details=true"),
            json!({"limit": "20", "details": "true"})
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(
            q("name=my+vm&desc=a%26b%3Dc"),
            json!({"name": "my vm", "desc": "a&b=c"})
        );
        assert_eq!(
            q("my+key=1&k%2Ey=2"),
            json!({"my key": "1", "k": {"y": "2"}})
        );
        assert_eq!(q("n=%E4%B8%AD"), json!({"n": "中"}));
        assert_eq!(q("bad=%zz%"), json!({"bad": "%zz%"}));
        assert_eq!(q("inv=%ff"), json!({"inv": "\u{fffd}"}));
    }

    #[test]
    fn key_without_value_and_empty_pairs() {
        assert_eq!(q("details&x="), json!({"details": "", "x": ""}));
        assert_eq!(q("&&a=1&&&=orphan&=&b=2&"), json!({"a": "1", "b": "2"}));
        assert_eq!(q(""), json!({}));
        assert_eq!(q("?a=1"), json!({"a": "1"}));
    }

    #[test]
    fn php_style_append() {
        assert_eq!(q("tags[]=a&tags[]=b"), json!({"tags": ["a", "b"]}));
        assert_eq!(q("tags[]=a"), json!({"tags": ["a"]}));
        assert_eq!(q("tags%5B%5D=a"), json!({"tags": ["a"]}));
        assert_eq!(q("tags=a&tags[]=b"), json!({"tags": ["a", "b"]}));
        assert_eq!(q("a.b[]=x"), json!({"a": {"b": ["x"]}}));
        assert_eq!(q("[]=x"), json!({}));
    }

    #[test]
    fn sparse_indexes_compact() {
        assert_eq!(q("a.0=x&a.5=y"), json!({"a": ["x", "y"]}));
        assert_eq!(q("a.9=z&a.3=y&a.10000=w"), json!({"a": ["y", "z", "w"]}));
    }

    #[test]
    fn huge_or_noncanonical_index_is_object_key() {
        assert_eq!(q("a.20000=x"), json!({"a": {"20000": "x"}}));
        assert_eq!(
            q("a.0=x&a.99999999999999999999=y"),
            json!({"a": {"0": "x", "99999999999999999999": "y"}})
        );
        assert_eq!(q("a.07=x"), json!({"a": {"07": "x"}}));
        assert_eq!(q("a.0=x&a.b=y"), json!({"a": {"0": "x", "b": "y"}}));
    }

    #[test]
    fn structured_value_wins_conflicts() {
        assert_eq!(q("a=1&a.b=2"), json!({"a": {"b": "2"}}));
        assert_eq!(q("a.b=2&a=1"), json!({"a": {"b": "2"}}));
        assert_eq!(q("a=1&a.0=2"), json!({"a": ["2"]}));
    }

    #[test]
    fn empty_segments_are_literal() {
        assert_eq!(
            q(".a=1&b.=2&c..d=3"),
            json!({".a": "1", "b.": "2", "c..d": "3"})
        );
    }

    #[test]
    fn depth_limit() {
        let key: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let m = parse_query(&format!("{}=v", key.join(".")));
        let mut cur = &Value::Object(m);
        for seg in &key[..MAX_DEPTH - 1] {
            cur = &cur[seg.as_str()];
        }
        assert_eq!(cur, &json!({"k15.k16.k17.k18.k19": "v"}));
    }

    #[test]
    fn first_appearance_order() {
        let m = parse_query("z=1&a=2&m.x=3&z=4");
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn to_query_rules() {
        let v = obj(json!({
            "name": "my vm&x=y",
            "limit": 20,
            "ratio": 1.5,
            "details": true,
            "pending": false,
            "skip": null,
            "status": ["running", "ready"],
            "one": ["x"],
            "empty": [],
            "eobj": {},
            "meta": {"a": {"b": "c"}},
            "disks": [{"size": 10, "image_id": "i"}, {"size": 20}],
        }));
        assert_eq!(
            to_query(&v),
            "name=my+vm%26x%3Dy&limit=20&ratio=1.5&details=true&pending=false\
             &status=running&status=ready&one.0=x&meta.a.b=c\
             &disks.0.size=10&disks.0.image_id=i&disks.1.size=20"
        );
        assert_eq!(
            q(&to_query(&v)),
            json!({
                "name": "my vm&x=y", "limit": "20", "ratio": "1.5", "details": "true",
                "pending": "false", "status": ["running", "ready"], "one": ["x"],
                "meta": {"a": {"b": "c"}},
                "disks": [{"size": "10", "image_id": "i"}, {"size": "20"}],
            })
        );
        assert_eq!(to_query(&Map::new()), "");
    }

    #[test]
    fn to_query_nested_arrays_and_nulls() {
        let v = obj(
            json!({"a": [["x", "y"], {"b": 1}], "c": [null, "p", null, "q"], "d": [null, {"e": 1}]}),
        );
        assert_eq!(to_query(&v), "a.0=x&a.0=y&a.1.b=1&c=p&c=q&d.0.e=1");
        assert_eq!(
            q(&to_query(&v)),
            json!({"a": [["x", "y"], {"b": "1"}], "c": ["p", "q"], "d": [{"e": "1"}]})
        );
    }

    fn key() -> impl Strategy<Value = String> {
        "[a-z_]{1,8}"
    }

    fn leaf() -> impl Strategy<Value = Value> {
        any::<String>()
            .prop_filter("non-empty", |s| !s.is_empty())
            .prop_map(Value::String)
    }

    fn object_of(inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
        prop::collection::vec((key(), inner), 1..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect()))
            .boxed()
    }

    /// Values of nesting depth `depth` at most (a leaf is depth 0).
    fn value(depth: u32) -> BoxedStrategy<Value> {
        if depth == 0 {
            return leaf().boxed();
        }
        let sub = value(depth - 1);
        prop_oneof![
            3 => leaf(),
            1 => prop::collection::vec(leaf(), 2..5).prop_map(Value::Array),
            1 => object_of(sub.clone()),
            1 => prop::collection::vec(object_of(value(depth.saturating_sub(2))), 1..4)
                .prop_map(Value::Array),
        ]
        .boxed()
    }

    proptest! {
        #[test]
        fn parse_never_panics_charset(s in "[a-z0-9.=&%+\\[\\]]{0,200}") {
            let _ = parse_query(&s);
        }

        #[test]
        fn parse_never_panics_unicode(s in any::<String>()) {
            let _ = parse_query(&s);
        }

        #[test]
        fn parse_never_panics_deep(s in "([a-z0-9]{1,3}[.]){0,40}[a-z0-9]{0,3}(\\[\\])?=[a-z%]{0,4}(&[0-9.]{1,40}=x){0,5}") {
            let _ = parse_query(&s);
        }

        #[test]
        fn round_trip(kv in prop::collection::vec((key(), value(3)), 0..5)) {
            let m: Map<String, Value> = kv.into_iter().collect();
            let qs = to_query(&m);
            prop_assert_eq!(parse_query(&qs), m, "query string: {}", qs);
        }
    }
}
