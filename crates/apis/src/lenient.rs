//! Lenient decoding rules of the Cloudpods wire format.
//!
//! Cloudpods decodes requests with yunionio/jsonutils, which is forgiving in
//! ways real clients (climc, the web console, the Python and Java SDKs,
//! Terraform) rely on. This module reproduces that forgiveness:
//!
//! * [`parse_bool`] — jsonutils `JSONString.Bool()` / `utils.ToBool`: `true`,
//!   `on`, `yes`, `1` and `false`, `off`, `no`, `0`, case-insensitive and
//!   trimmed (Python clients send `"True"`).
//! * [`snake_case`] — jsonutils `utils.CamelSplitTokens`, which lets Go
//!   structs accept `OverridePendingDelete`, `overridePendingDelete` and
//!   `override_pending_delete` alike: runs of capitals are one word
//!   (`VCPUCount` → `vcpu_count`, `HTTPServer` → `http_server`), digits stick
//!   to the word before them (`ipAddr6` → `ip_addr6`).
//! * [`normalize_keys`] — renames camel/Pascal-case object keys to snake case
//!   before typed decoding, leaving user-defined maps (`metadata`, `__meta__`,
//!   `tags`, `properties`, `user_data`, `blob`, `policy`, `extra`, `options`)
//!   untouched. When `FooBar` and `foo_bar` are both present the snake-case
//!   key wins; when two non-snake keys collide the first one wins.
//! * [`de`] — serde `deserialize_with` helpers accepting either JSON values or
//!   their string forms, because query strings only carry strings
//!   (see [`crate::querystring`]) and many clients quote numbers in bodies.
//! * [`size_mb`] — Cloudpods size strings (`fileutils.GetSizeMb`): a decimal
//!   integer with an optional unit `k`, `m`, `g`, `t` (optionally followed by
//!   `b`), case-insensitive, default unit MB; kilobytes are truncated.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Parse a lenient boolean: `true|on|yes|1` or `false|off|no|0`,
/// case-insensitive, surrounding whitespace ignored.
pub fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    const TRUE: [&str; 4] = ["true", "on", "yes", "1"];
    const FALSE: [&str; 4] = ["false", "off", "no", "0"];
    if TRUE.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| s.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// Convert a camelCase / PascalCase identifier to snake_case. Strings with no
/// uppercase letter are returned as they are, without allocating.
pub fn snake_case(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_uppercase) {
        return Cow::Borrowed(s);
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                let boundary = prev.is_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_uppercase() && next_lower);
                if boundary && !out.ends_with('_') {
                    out.push('_');
                }
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Keys whose values are user-defined maps: nothing below them is renamed.
pub const PRESERVED_KEYS: [&str; 9] = [
    "metadata",
    "__meta__",
    "tags",
    "properties",
    "user_data",
    "blob",
    "policy",
    "extra",
    "options",
];

/// Recursively rename object keys containing uppercase letters to
/// snake_case, except below the keys listed in [`PRESERVED_KEYS`]. If both
/// `FooBar` and `foo_bar` exist, the original `foo_bar` wins.
pub fn normalize_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(normalize_map(m)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_keys).collect()),
        other => other,
    }
}

fn normalize_map(m: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(m.len());
    for (k, v) in m {
        let renamed = snake_case(&k);
        let is_original = matches!(renamed, Cow::Borrowed(_));
        let new_key = renamed.into_owned();
        let v = if PRESERVED_KEYS.contains(&new_key.as_str()) {
            v
        } else {
            normalize_keys(v)
        };
        // A key that was already snake case overrides an earlier alias (keeping
        // the alias' position); an alias never overrides an existing key.
        if is_original || !out.contains_key(&new_key) {
            out.insert(new_key, v);
        }
    }
    out
}

/// Lenient `deserialize_with` helpers.
///
/// Each accepts the JSON type itself or its string form, so the same struct
/// decodes a JSON body (`{"limit": 20}`) and a parsed query string
/// (`{"limit": "20"}`):
///
/// ```
/// # use serde::Deserialize;
/// use cloudpods_apis::lenient::de;
///
/// #[derive(Deserialize)]
/// struct ListInput {
///     #[serde(default, deserialize_with = "de::opt_i64")]
///     limit: Option<i64>,
///     #[serde(default, deserialize_with = "de::opt_bool")]
///     details: Option<bool>,
///     #[serde(default, deserialize_with = "de::vec_string")]
///     status: Vec<String>,
/// }
///
/// let a: ListInput = serde_json::from_str(r#"{"limit": 20, "details": true, "status": ["a", "b"]}"#).unwrap();
/// let b: ListInput = serde_json::from_str(r#"{"limit": "20", "details": "True", "status": "a"}"#).unwrap();
/// assert_eq!((a.limit, a.details), (b.limit, b.details));
/// assert_eq!(b.status, ["a"]);
/// ```
///
/// Rules:
/// * `opt_*` helpers need `#[serde(default)]` for absent fields; they map
///   `null` to `None`, and for booleans and numbers an empty (or all
///   whitespace) string to `None` as well (`?limit=`). `opt_string` keeps
///   `""` as `Some("")`.
/// * Integers accept integral floats (`20.0`) and strings of either form;
///   out-of-range values are errors, never truncated. Floats must be finite.
/// * Booleans accept the integers `0` and `1`.
/// * `string` / `opt_string` / `vec_string` accept numbers and booleans and
///   convert them to strings. `vec_string` accepts a single value (one
///   element, never split on commas), an array of scalars, or `null` (empty).
pub mod de {
    use std::fmt;

    use serde::de::{Deserializer, Error, SeqAccess, Visitor};

    /// A scalar in any of the forms clients send.
    enum Scalar {
        Null,
        Bool(bool),
        I64(i64),
        U64(u64),
        F64(f64),
        Str(String),
    }

    struct ScalarVisitor(&'static str);

    impl<'de> Visitor<'de> for ScalarVisitor {
        type Value = Scalar;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_bool<E: Error>(self, v: bool) -> Result<Scalar, E> {
            Ok(Scalar::Bool(v))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<Scalar, E> {
            Ok(Scalar::I64(v))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<Scalar, E> {
            Ok(Scalar::U64(v))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<Scalar, E> {
            Ok(Scalar::F64(v))
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Scalar, E> {
            Ok(Scalar::Str(v.to_owned()))
        }
        fn visit_string<E: Error>(self, v: String) -> Result<Scalar, E> {
            Ok(Scalar::Str(v))
        }
        fn visit_none<E: Error>(self) -> Result<Scalar, E> {
            Ok(Scalar::Null)
        }
        fn visit_unit<E: Error>(self) -> Result<Scalar, E> {
            Ok(Scalar::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
            d.deserialize_any(self)
        }
    }

    /// Seed-less wrapper so a scalar can be read as a sequence element.
    struct ScalarElem(Scalar);

    impl<'de> serde::Deserialize<'de> for ScalarElem {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ScalarVisitor("a string, number or boolean"))
                .map(ScalarElem)
        }
    }

    enum ScalarOrSeq {
        One(Scalar),
        Many(Vec<Scalar>),
    }

    struct ScalarOrSeqVisitor;

    const VEC_EXPECTING: &str = "a string, number, boolean or an array of them";

    macro_rules! forward {
        ($($name:ident($t:ty)),*) => {$(
            fn $name<E: Error>(self, v: $t) -> Result<ScalarOrSeq, E> {
                ScalarVisitor(VEC_EXPECTING).$name(v).map(ScalarOrSeq::One)
            }
        )*};
    }

    impl<'de> Visitor<'de> for ScalarOrSeqVisitor {
        type Value = ScalarOrSeq;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(VEC_EXPECTING)
        }
        forward!(
            visit_bool(bool),
            visit_i64(i64),
            visit_u64(u64),
            visit_f64(f64),
            visit_str(&str),
            visit_string(String)
        );
        fn visit_none<E: Error>(self) -> Result<ScalarOrSeq, E> {
            Ok(ScalarOrSeq::One(Scalar::Null))
        }
        fn visit_unit<E: Error>(self) -> Result<ScalarOrSeq, E> {
            Ok(ScalarOrSeq::One(Scalar::Null))
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ScalarOrSeq, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScalarOrSeq, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(ScalarElem(s)) = seq.next_element()? {
                out.push(s);
            }
            Ok(ScalarOrSeq::Many(out))
        }
    }

    fn scalar<'de, D: Deserializer<'de>>(
        d: D,
        expecting: &'static str,
    ) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor(expecting))
    }

    fn is_blank(s: &Scalar) -> bool {
        match s {
            Scalar::Null => true,
            Scalar::Str(s) => s.trim().is_empty(),
            _ => false,
        }
    }

    fn describe(s: &Scalar) -> String {
        match s {
            Scalar::Null => "null".to_owned(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::I64(v) => v.to_string(),
            Scalar::U64(v) => v.to_string(),
            Scalar::F64(v) => v.to_string(),
            Scalar::Str(s) => format!("{s:?}"),
        }
    }

    fn to_bool<E: Error>(s: Scalar) -> Result<bool, E> {
        let ok = match &s {
            Scalar::Bool(b) => Some(*b),
            Scalar::I64(v) => matches!(v, 0 | 1).then_some(*v == 1),
            Scalar::U64(v) => matches!(v, 0 | 1).then_some(*v == 1),
            Scalar::Str(v) => super::parse_bool(v),
            Scalar::Null | Scalar::F64(_) => None,
        };
        ok.ok_or_else(|| E::custom(format!("invalid boolean value {}", describe(&s))))
    }

    fn integral_f64(v: f64) -> Option<f64> {
        (v.is_finite() && v.fract() == 0.0).then_some(v)
    }

    fn str_to_i128(s: &str) -> Option<i128> {
        let s = s.trim();
        if let Ok(v) = s.parse::<i128>() {
            return Some(v);
        }
        // "20.0" style: only integral values that fit in i64/u64 range.
        let f = integral_f64(s.parse::<f64>().ok()?)?;
        (f.abs() < 2f64.powi(64)).then_some(f as i128)
    }

    fn to_i128<E: Error>(s: &Scalar, what: &str) -> Result<i128, E> {
        let v = match s {
            Scalar::I64(v) => Some(i128::from(*v)),
            Scalar::U64(v) => Some(i128::from(*v)),
            Scalar::F64(v) => integral_f64(*v)
                .filter(|f| f.abs() < 2f64.powi(64))
                .map(|f| f as i128),
            Scalar::Str(v) => str_to_i128(v),
            Scalar::Null | Scalar::Bool(_) => None,
        };
        v.ok_or_else(|| E::custom(format!("invalid {what} value {}", describe(s))))
    }

    fn to_i64<E: Error>(s: Scalar) -> Result<i64, E> {
        let v = to_i128(&s, "integer")?;
        i64::try_from(v)
            .map_err(|_| E::custom(format!("integer value {} out of range", describe(&s))))
    }

    fn to_u64<E: Error>(s: Scalar) -> Result<u64, E> {
        let v = to_i128(&s, "unsigned integer")?;
        u64::try_from(v).map_err(|_| {
            E::custom(format!(
                "unsigned integer value {} out of range",
                describe(&s)
            ))
        })
    }

    fn to_f64<E: Error>(s: Scalar) -> Result<f64, E> {
        let v = match &s {
            Scalar::I64(v) => Some(*v as f64),
            Scalar::U64(v) => Some(*v as f64),
            Scalar::F64(v) => Some(*v),
            Scalar::Str(v) => v.trim().parse::<f64>().ok(),
            Scalar::Null | Scalar::Bool(_) => None,
        };
        v.filter(|f| f.is_finite())
            .ok_or_else(|| E::custom(format!("invalid number value {}", describe(&s))))
    }

    fn to_string<E: Error>(s: Scalar) -> Result<String, E> {
        match s {
            Scalar::Str(v) => Ok(v),
            Scalar::Bool(b) => Ok(b.to_string()),
            Scalar::I64(v) => Ok(v.to_string()),
            Scalar::U64(v) => Ok(v.to_string()),
            Scalar::F64(v) => Ok(v.to_string()),
            Scalar::Null => Err(E::custom("invalid string value null")),
        }
    }

    /// A boolean, or its string (`"True"`, `"on"`, `"0"`) or 0/1 form.
    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        to_bool(scalar(d, "a boolean or boolean string")?)
    }

    /// Like [`bool()`]; `null` and `""` are `None`.
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        let s = scalar(d, "a boolean or boolean string")?;
        if is_blank(&s) {
            Ok(None)
        } else {
            to_bool(s).map(Some)
        }
    }

    /// A signed integer, or its string form.
    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        to_i64(scalar(d, "an integer or integer string")?)
    }

    /// Like [`i64()`]; `null` and `""` are `None`.
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let s = scalar(d, "an integer or integer string")?;
        if is_blank(&s) {
            Ok(None)
        } else {
            to_i64(s).map(Some)
        }
    }

    /// An unsigned integer, or its string form.
    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        to_u64(scalar(d, "an unsigned integer or integer string")?)
    }

    /// Like [`u64()`]; `null` and `""` are `None`.
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let s = scalar(d, "an unsigned integer or integer string")?;
        if is_blank(&s) {
            Ok(None)
        } else {
            to_u64(s).map(Some)
        }
    }

    /// A finite number, or its string form.
    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        to_f64(scalar(d, "a number or number string")?)
    }

    /// Like [`f64()`]; `null` and `""` are `None`.
    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let s = scalar(d, "a number or number string")?;
        if is_blank(&s) {
            Ok(None)
        } else {
            to_f64(s).map(Some)
        }
    }

    /// A string; numbers and booleans are converted to their string form.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        to_string(scalar(d, "a string, number or boolean")?)
    }

    /// Like [`string()`]; `null` is `None`, `""` stays `Some("")`.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match scalar(d, "a string, number or boolean")? {
            Scalar::Null => Ok(None),
            s => to_string(s).map(Some),
        }
    }

    /// A list of strings: an array of scalars, a single scalar (one element,
    /// not split on commas), or `null` (empty). `null` elements are dropped.
    pub fn vec_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        match d.deserialize_any(ScalarOrSeqVisitor)? {
            ScalarOrSeq::One(Scalar::Null) => Ok(Vec::new()),
            ScalarOrSeq::One(s) => Ok(vec![to_string(s)?]),
            ScalarOrSeq::Many(items) => items
                .into_iter()
                .filter(|s| !matches!(s, Scalar::Null))
                .map(to_string)
                .collect(),
        }
    }
}

/// Parse a Cloudpods size string into megabytes: a decimal integer with an
/// optional case-insensitive unit `k`/`kb` (truncated), `m`/`mb` (default),
/// `g`/`gb`, `t`/`tb`. Returns `None` for empty, negative, malformed or
/// overflowing input.
pub fn size_mb(s: &str) -> Option<i64> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if num.is_empty() {
        return None;
    }
    let n: i64 = num.parse().ok()?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit
        .strip_suffix('b')
        .filter(|u| !u.is_empty())
        .unwrap_or(&unit);
    match unit {
        "" | "m" => Some(n),
        "k" => Some(n / 1024),
        "g" => n.checked_mul(1024),
        "t" => n.checked_mul(1024 * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::json;

    #[test]
    fn bools() {
        for s in ["true", "True", "TRUE", " on ", "Yes", "1", "\ttrue\n"] {
            assert_eq!(parse_bool(s), Some(true), "{s:?}");
        }
        for s in ["false", "False", "OFF", "no", "0", " No "] {
            assert_eq!(parse_bool(s), Some(false), "{s:?}");
        }
        for s in ["", "maybe", "2", "t", "y", "truee", "-1"] {
            assert_eq!(parse_bool(s), None, "{s:?}");
        }
    }

    #[test]
    fn snake() {
        let cases = [
            ("OverridePendingDelete", "override_pending_delete"),
            ("overridePendingDelete", "override_pending_delete"),
            ("VCPUCount", "vcpu_count"),
            ("HTTPServer", "http_server"),
            ("ipAddr6", "ip_addr6"),
            ("ID", "id"),
            ("userID", "user_id"),
            ("Ipv6Addr", "ipv6_addr"),
            ("ip6Addr", "ip6_addr"),
            ("Foo_Bar", "foo_bar"),
            ("A", "a"),
            ("ÉtatCivil", "état_civil"),
        ];
        for (input, want) in cases {
            assert_eq!(snake_case(input), want, "{input}");
        }
        for s in ["override_pending_delete", "", "vcpu_count", "a1_b", "中文"] {
            assert!(matches!(snake_case(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn normalize() {
        let v = json!({
            "VCPUCount": 2,
            "Disks": [{"ImageId": "x", "SizeMb": 10}],
            "metadata": {"MyKey": {"InnerKey": 1}},
            "Tags": {"UserTag": "v"},
            "__meta__": {"Aa": 1},
            "properties": {"Pp": 1}, "user_data": {"Ud": 1}, "blob": {"Bb": 1},
            "policy": {"Po": 1}, "extra": {"Ex": 1}, "options": {"Op": 1},
            "Nested": {"DeepKey": {"metadata": {"KeepMe": 1}, "RenameMe": 2}},
        });
        assert_eq!(
            normalize_keys(v),
            json!({
                "vcpu_count": 2,
                "disks": [{"image_id": "x", "size_mb": 10}],
                "metadata": {"MyKey": {"InnerKey": 1}},
                "tags": {"UserTag": "v"},
                "__meta__": {"Aa": 1},
                "properties": {"Pp": 1}, "user_data": {"Ud": 1}, "blob": {"Bb": 1},
                "policy": {"Po": 1}, "extra": {"Ex": 1}, "options": {"Op": 1},
                "nested": {"deep_key": {"metadata": {"KeepMe": 1}, "rename_me": 2}},
            })
        );
    }

    #[test]
    fn normalize_conflicts() {
        assert_eq!(
            normalize_keys(json!({"FooBar": 1, "foo_bar": 2})),
            json!({"foo_bar": 2})
        );
        assert_eq!(
            normalize_keys(json!({"foo_bar": 2, "FooBar": 1})),
            json!({"foo_bar": 2})
        );
        assert_eq!(
            normalize_keys(json!({"FooBar": 1, "fooBar": 3})),
            json!({"foo_bar": 1})
        );
        assert_eq!(
            normalize_keys(json!([{"A": 1}, "x", 3])),
            json!([{"a": 1}, "x", 3])
        );
        assert_eq!(normalize_keys(json!("Str")), json!("Str"));
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(default, deserialize_with = "de::bool")]
        b: bool,
        #[serde(default, deserialize_with = "de::opt_bool")]
        ob: Option<bool>,
        #[serde(default, deserialize_with = "de::i64")]
        i: i64,
        #[serde(default, deserialize_with = "de::opt_i64")]
        oi: Option<i64>,
        #[serde(default, deserialize_with = "de::u64")]
        u: u64,
        #[serde(default, deserialize_with = "de::opt_u64")]
        ou: Option<u64>,
        #[serde(default, deserialize_with = "de::f64")]
        f: f64,
        #[serde(default, deserialize_with = "de::opt_f64")]
        of: Option<f64>,
        #[serde(default, deserialize_with = "de::string")]
        s: String,
        #[serde(default, deserialize_with = "de::opt_string")]
        os: Option<String>,
        #[serde(default, deserialize_with = "de::vec_string")]
        v: Vec<String>,
    }

    fn t(v: Value) -> Result<T, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    fn ok(v: Value) -> T {
        match t(v) {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        }
    }

    fn err(v: Value) -> String {
        match t(v) {
            Ok(x) => panic!("expected error, got {x:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn de_native_values() {
        let x = ok(
            json!({"b": true, "ob": false, "i": -5, "oi": 7, "u": 5, "ou": 8,
            "f": 1.5, "of": 2, "s": "x", "os": "y", "v": ["a", "b"]}),
        );
        assert!(x.b);
        assert_eq!(x.ob, Some(false));
        assert_eq!((x.i, x.oi, x.u, x.ou), (-5, Some(7), 5, Some(8)));
        assert_eq!((x.f, x.of), (1.5, Some(2.0)));
        assert_eq!((x.s.as_str(), x.os.as_deref()), ("x", Some("y")));
        assert_eq!(x.v, ["a", "b"]);
    }

    #[test]
    fn de_string_forms() {
        let x = ok(
            json!({"b": "True", "ob": "off", "i": " -5 ", "oi": "7.0", "u": "5", "ou": "8",
            "f": "1.5", "of": "2", "s": 12, "os": true, "v": "a,b"}),
        );
        assert!(x.b);
        assert_eq!(x.ob, Some(false));
        assert_eq!((x.i, x.oi, x.u, x.ou), (-5, Some(7), 5, Some(8)));
        assert_eq!((x.f, x.of), (1.5, Some(2.0)));
        assert_eq!((x.s.as_str(), x.os.as_deref()), ("12", Some("true")));
        assert_eq!(x.v, ["a,b"]);
        let y = ok(json!({"b": 1, "i": 20.0, "s": 1.5, "v": [1, true, null, "x"]}));
        assert!(y.b);
        assert_eq!(y.i, 20);
        assert_eq!(y.s, "1.5");
        assert_eq!(y.v, ["1", "true", "x"]);
        assert_eq!(ok(json!({"v": 3})).v, ["3"]);
        assert_eq!(ok(json!({"u": u64::MAX})).u, u64::MAX);
        assert_eq!(ok(json!({"u": u64::MAX.to_string()})).u, u64::MAX);
    }

    #[test]
    fn de_missing_null_and_blank() {
        let x = ok(json!({"ob": null, "oi": "", "ou": " ", "of": null, "os": null, "v": null}));
        assert_eq!(
            (x.ob, x.oi, x.ou, x.of, x.os),
            (None, None, None, None, None)
        );
        assert!(x.v.is_empty());
        assert_eq!(ok(json!({"os": ""})).os.as_deref(), Some(""));
        assert_eq!(ok(json!({})), ok(json!({"ob": null})));
    }

    #[test]
    fn de_errors() {
        assert!(err(json!({"b": "maybe"})).contains("invalid boolean value \"maybe\""));
        assert!(err(json!({"b": 2})).contains("invalid boolean value 2"));
        assert!(err(json!({"b": null})).contains("invalid boolean value null"));
        assert!(err(json!({"ob": "nope"})).contains("invalid boolean value \"nope\""));
        assert!(err(json!({"i": "abc"})).contains("invalid integer value \"abc\""));
        assert!(err(json!({"i": 1.5})).contains("invalid integer value 1.5"));
        assert!(err(json!({"i": true})).contains("invalid integer value true"));
        assert!(err(json!({"i": u64::MAX})).contains("out of range"));
        assert!(err(json!({"i": "1e30"})).contains("invalid integer value"));
        assert!(err(json!({"u": -1})).contains("unsigned integer value -1 out of range"));
        assert!(err(json!({"ou": "-3"})).contains("out of range"));
        assert!(err(json!({"f": "NaN"})).contains("invalid number value \"NaN\""));
        assert!(err(json!({"of": "inf"})).contains("invalid number value"));
        assert!(err(json!({"s": null})).contains("invalid string value null"));
        assert!(err(json!({"s": ["a"]})).contains("invalid type: sequence"));
        assert!(err(json!({"i": {"a": 1}})).contains("invalid type: map"));
        assert!(err(json!({"v": [["a"]]})).contains("invalid type: sequence"));
        assert!(err(json!({"v": {"a": 1}})).contains("invalid type: map"));
    }

    #[test]
    fn de_from_query_string() {
        let m = crate::querystring::parse_query("b=yes&i=10&v=a&v=b&s=x");
        let x = ok(Value::Object(m));
        assert!(x.b);
        assert_eq!(x.i, 10);
        assert_eq!(x.v, ["a", "b"]);
    }

    #[test]
    fn sizes() {
        let cases = [
            ("10g", Some(10240)),
            ("10G", Some(10240)),
            ("10gb", Some(10240)),
            ("10GB", Some(10240)),
            ("512m", Some(512)),
            ("512M", Some(512)),
            ("512mb", Some(512)),
            ("512", Some(512)),
            (" 30g ", Some(30720)),
            ("1t", Some(1_048_576)),
            ("1TB", Some(1_048_576)),
            ("2048k", Some(2)),
            ("2048kb", Some(2)),
            ("0", Some(0)),
            ("", None),
            ("g", None),
            ("-1", None),
            ("-1g", None),
            ("+1", None),
            ("1.5g", None),
            ("10x", None),
            ("10 g", None),
            ("10b", None),
            ("10gbb", None),
            ("9223372036854775807", Some(i64::MAX)),
            ("9223372036854775808", None),
            ("9223372036854775807g", None),
            ("99999999999999999999999", None),
        ];
        for (input, want) in cases {
            assert_eq!(size_mb(input), want, "{input:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panic(s in any::<String>()) {
            let _ = parse_bool(&s);
            let _ = snake_case(&s);
            let _ = size_mb(&s);
            let _ = normalize_keys(json!({ s.clone(): { s.clone(): [s.clone()] }, "metadata": { s.clone(): 1 } }));
            let _ = t(json!({"b": s, "i": s, "u": s, "f": s, "ob": s, "oi": s, "ou": s, "of": s, "v": s}));
        }

        #[test]
        fn never_panic_idents(s in "[A-Za-z0-9_]{0,24}") {
            let out = snake_case(&s);
            prop_assert!(!out.chars().any(char::is_uppercase));
            prop_assert_eq!(snake_case(&out), out.clone());
        }

        #[test]
        fn sizes_never_panic(s in "[0-9]{0,25}[kmgtbKMGTB]{0,3}") {
            if let Some(v) = size_mb(&s) {
                prop_assert!(v >= 0);
            }
        }

        #[test]
        fn integers_round_trip(i in any::<i64>()) {
            prop_assert_eq!(ok(json!({"i": i.to_string()})).i, i);
            prop_assert_eq!(ok(json!({"i": i})).i, i);
        }
    }
}
