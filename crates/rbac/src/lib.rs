//! Cloudpods RBAC policy model and evaluation (mirrors `pkg/util/rbacutils`).
//!
//! # Policy format
//!
//! A policy is a JSON blob
//! `{"policy": {<service>: {<resource>: {<action>: <effect> | {<extra>: <effect>}}}}}`.
//! The outer `"policy"` key is optional: an object whose *only* key is `"policy"` is
//! unwrapped, any other object is taken to be the service map itself. Any key may be `"*"`
//! (wildcard), and any level below the root may directly be an effect, which then applies to
//! everything below it: `{"policy": {"*": "allow"}}` allows everything. An effect is
//! `"allow"`/`"deny"` (case-insensitive) or `true`/`false`.
//!
//! Actions are `list|get|create|update|delete|perform`; the extra level names the specific
//! perform action or get spec (`servers.perform.start`, `servers.get.vnc`).
//!
//! Validation ([`PolicyBlob::parse`]) rejects non-object blobs, values that are neither
//! effects nor objects, objects at the extra level (nesting deeper than four levels), empty
//! keys, keys with characters outside `[A-Za-z0-9_*.-]`, and keys that use `*` other than as
//! the whole key (there is no globbing, so `ser*` would silently never match). Errors name
//! the offending location, e.g. `policy.compute.servers.perform: value must be ...`.
//!
//! # Evaluation
//!
//! A [`Request`] is `(service, resource, action, extra)`. Matching walks the levels
//! service → resource → action → extra; at each level a key equal to the request's value
//! matches *exactly*, `"*"` matches anything *by wildcard*, and an effect reached early
//! matches everything below it (the remaining levels count as wildcard matches). A request
//! without an extra matches only `"*"` at the extra level (or rules that stop above it).
//! Keys are compared case-sensitively.
//!
//! Rules are ranked by *specificity*: exact-vs-wildcard flags compared from the service level
//! down, so an exact service match beats a wildcard service match whatever happens at lower
//! levels, then resource, then action, then extra. The most specific matching rule wins.
//! Within one blob two distinct rules never have the same specificity; across the blobs of a
//! [`PolicySet`], equally specific rules are resolved in favour of deny. No match means not
//! allowed.
//!
//! # Scopes
//!
//! [`ScopedPolicies`] holds one [`PolicySet`] per [`Scope`] (`project < domain < system`).
//! A grant at a higher scope implies the lower ones, see [`ScopedPolicies::allowed_at`].
//! [`default_grants`] describes what every authenticated user may do; callers OR it in
//! (typically by pushing it into every set).
//!
//! ```
//! use cloudpods_rbac::{PolicyBlob, PolicySet, Request};
//! let blob = PolicyBlob::from_json_str(
//!     r#"{"policy":{"compute":{"*":{"*":"allow"},
//!         "servers":{"*":"allow","perform":{"*":"allow","start":"deny"}}}}}"#,
//! )?;
//! let start = Request::new("compute", "servers", "perform").with_extra("start");
//! let set = PolicySet::new().with("ops", blob);
//! assert!(!set.allows(&start));
//! let why = set.explain(&start).map(|m| m.to_string());
//! assert_eq!(why.as_deref(), Some("policy \"ops\" denies compute.servers.perform.start"));
//! assert!(set.allows(&Request::new("compute", "disks", "create")));
//! # Ok::<(), cloudpods_rbac::PolicyError>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

mod builtin;
pub use builtin::{PredefinedPolicy, default_grants, predefined_policies};

#[cfg(test)]
mod tests;

/// Wildcard key, matches any value at its level.
pub const WILDCARD: &str = "*";
/// Standard actions.
pub const ACTION_LIST: &str = "list";
pub const ACTION_GET: &str = "get";
pub const ACTION_CREATE: &str = "create";
pub const ACTION_UPDATE: &str = "update";
pub const ACTION_DELETE: &str = "delete";
pub const ACTION_PERFORM: &str = "perform";

/// Number of levels: service, resource, action, extra.
const LEVELS: usize = 4;
/// Name of the outer wrapper key, also used as the root of error paths.
const ROOT: &str = "policy";

/// Result of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }

    /// Parses a JSON effect: `"allow"`/`"deny"` in any case, or a boolean.
    fn from_json(v: &Value) -> Option<Effect> {
        match v {
            Value::Bool(true) => Some(Effect::Allow),
            Value::Bool(false) => Some(Effect::Deny),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Effect {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.eq_ignore_ascii_case("allow") {
            Ok(Effect::Allow)
        } else if s.eq_ignore_ascii_case("deny") {
            Ok(Effect::Deny)
        } else {
            Err(ParseError::new("effect", s, "allow, deny"))
        }
    }
}

/// Scope a policy applies at. Ordered `Project < Domain < System`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Project,
    Domain,
    System,
}

impl Scope {
    /// All scopes, highest first (the order in which grants are checked).
    pub const ALL_DESC: [Scope; 3] = [Scope::System, Scope::Domain, Scope::Project];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Project => "project",
            Scope::Domain => "domain",
            Scope::System => "system",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ParseError;
    /// Accepts exactly the serde names; anything else (including `user`) is an error.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "project" => Ok(Scope::Project),
            "domain" => Ok(Scope::Domain),
            "system" => Ok(Scope::System),
            _ => Err(ParseError::new("scope", s, "project, domain, system")),
        }
    }
}

/// Error parsing an [`Effect`] or [`Scope`] from a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: &'static str,
    value: String,
    expected: &'static str,
}

impl ParseError {
    fn new(kind: &'static str, value: &str, expected: &'static str) -> Self {
        ParseError {
            kind,
            value: value.to_owned(),
            expected,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?} (expected one of: {})",
            self.kind, self.value, self.expected
        )
    }
}

impl std::error::Error for ParseError {}

/// A policy validation error; `path` is the dotted location (rooted at `policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

impl PolicyError {
    fn at(path: &[&str], message: impl Into<String>) -> Self {
        let mut p = String::from(ROOT);
        for seg in path {
            p.push('.');
            p.push_str(seg);
        }
        PolicyError {
            path: p,
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for PolicyError {}

/// An authorization request. `extra` is the perform action / get spec, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request<'a> {
    pub service: &'a str,
    pub resource: &'a str,
    pub action: &'a str,
    pub extra: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn new(service: &'a str, resource: &'a str, action: &'a str) -> Self {
        Request {
            service,
            resource,
            action,
            extra: None,
        }
    }

    pub fn with_extra(mut self, extra: &'a str) -> Self {
        self.extra = Some(extra);
        self
    }

    fn levels(&self) -> [Option<&'a str>; LEVELS] {
        [
            Some(self.service),
            Some(self.resource),
            Some(self.action),
            self.extra,
        ]
    }
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.service, self.resource, self.action)?;
        if let Some(e) = self.extra {
            write!(f, ".{e}")?;
        }
        Ok(())
    }
}

/// The rule that decided a request, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedRule {
    /// Dotted key path of the rule, e.g. `compute.servers.perform.start` or `compute.*`.
    pub rule: String,
    pub effect: Effect,
    /// Name of the policy in the [`PolicySet`] it came from (`None` for a bare blob).
    pub policy: Option<String>,
    /// Exact (`true`) vs wildcard match per level; compared lexicographically.
    #[serde(skip)]
    specificity: [bool; LEVELS],
}

impl MatchedRule {
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// Ranking key: more specific first, then deny over allow on ties.
    fn rank(&self) -> ([bool; LEVELS], bool) {
        (self.specificity, self.effect == Effect::Deny)
    }
}

impl fmt::Display for MatchedRule {
    /// E.g. `policy denies compute.servers.perform.start`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.effect {
            Effect::Allow => "allows",
            Effect::Deny => "denies",
        };
        match &self.policy {
            Some(name) => write!(f, "policy {name:?} {verb} {}", self.rule),
            None => write!(f, "policy {verb} {}", self.rule),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Leaf(Effect),
    Map(BTreeMap<String, Node>),
}

/// One validated policy. Keys are kept sorted so [`PolicyBlob::to_json`] is canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyBlob {
    services: BTreeMap<String, Node>,
}

/// Checks a key, returning the error message if invalid.
fn key_error(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("empty key".to_owned());
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '.' | '-');
    if !key.chars().all(valid) {
        return Some(format!(
            "invalid key {key:?}: allowed characters are A-Z a-z 0-9 _ * . -"
        ));
    }
    if key.contains('*') && key != WILDCARD {
        return Some(format!(
            "invalid key {key:?}: \"*\" must be the whole key (no partial wildcards)"
        ));
    }
    None
}

impl PolicyBlob {
    /// A blob allowing everything (`{"policy": {"*": "allow"}}`).
    pub fn allow_all() -> Self {
        let mut services = BTreeMap::new();
        services.insert(WILDCARD.to_owned(), Node::Leaf(Effect::Allow));
        PolicyBlob { services }
    }

    /// Validates and parses a blob, with or without the outer `"policy"` key.
    pub fn parse(value: &Value) -> Result<Self, PolicyError> {
        let Value::Object(obj) = value else {
            return Err(PolicyError::at(&[], "policy blob must be a JSON object"));
        };
        // Unwrap only when "policy" is the sole key, so a blob carrying other top-level
        // fields is never half-read (it fails validation as a service map instead).
        let services = match (obj.len(), obj.get(ROOT)) {
            (1, Some(Value::Object(inner))) => inner,
            (1, Some(_)) => return Err(PolicyError::at(&[], "value must be an object")),
            _ => obj,
        };
        let mut path = Vec::with_capacity(LEVELS);
        Ok(PolicyBlob {
            services: parse_map(services, &mut path)?,
        })
    }

    /// Parses a JSON string (convenience for config files and API bodies).
    pub fn from_json_str(s: &str) -> Result<Self, PolicyError> {
        let v: Value = serde_json::from_str(s)
            .map_err(|e| PolicyError::at(&[], format!("invalid JSON: {e}")))?;
        Self::parse(&v)
    }

    /// Canonical JSON: outer `"policy"` key, sorted keys, lowercase effects.
    pub fn to_json(&self) -> Value {
        let mut outer = Map::new();
        outer.insert(ROOT.to_owned(), map_to_json(&self.services));
        Value::Object(outer)
    }

    /// True if the blob has no rules at all.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Sets the rule at `path` (1 to 4 keys) to `effect`, replacing whatever was below it.
    /// If an ancestor of `path` is already an effect, it is first expanded to `{"*": effect}`,
    /// which has the same meaning, so other requests are unaffected.
    pub fn set_rule(&mut self, path: &[&str], effect: Effect) -> Result<(), PolicyError> {
        if path.is_empty() || path.len() > LEVELS {
            return Err(PolicyError::at(path, "rule path must have 1 to 4 keys"));
        }
        for (i, key) in path.iter().enumerate() {
            if let Some(msg) = key_error(key) {
                return Err(PolicyError::at(&path[..i], msg));
            }
        }
        let mut map = &mut self.services;
        for key in &path[..path.len() - 1] {
            let node = map
                .entry((*key).to_owned())
                .or_insert_with(|| Node::Map(BTreeMap::new()));
            if let Node::Leaf(e) = *node {
                let mut expanded = BTreeMap::new();
                expanded.insert(WILDCARD.to_owned(), Node::Leaf(e));
                *node = Node::Map(expanded);
            }
            map = match node {
                Node::Map(m) => m,
                // Unreachable: leaves were expanded just above.
                Node::Leaf(_) => return Err(PolicyError::at(path, "internal error")),
            };
        }
        if let Some(last) = path.last() {
            map.insert((*last).to_owned(), Node::Leaf(effect));
        }
        Ok(())
    }

    /// The effect of the most specific matching rule, if any.
    pub fn evaluate(&self, req: &Request<'_>) -> Option<Effect> {
        self.explain(req).map(|m| m.effect)
    }

    /// True if the most specific matching rule allows the request.
    pub fn allows(&self, req: &Request<'_>) -> bool {
        self.evaluate(req) == Some(Effect::Allow)
    }

    /// The most specific matching rule, if any.
    pub fn explain(&self, req: &Request<'_>) -> Option<MatchedRule> {
        let levels = req.levels();
        let mut path = Vec::with_capacity(LEVELS);
        let mut spec = [false; LEVELS];
        let effect = walk(&self.services, &levels, 0, &mut path, &mut spec)?;
        Some(MatchedRule {
            rule: path.join("."),
            effect,
            policy: None,
            specificity: spec,
        })
    }
}

fn parse_map<'v>(
    obj: &'v Map<String, Value>,
    path: &mut Vec<&'v str>,
) -> Result<BTreeMap<String, Node>, PolicyError> {
    let mut out = BTreeMap::new();
    for (key, value) in obj {
        if let Some(msg) = key_error(key) {
            return Err(PolicyError::at(path, msg));
        }
        path.push(key);
        let node = if let Some(effect) = Effect::from_json(value) {
            Node::Leaf(effect)
        } else if path.len() == LEVELS {
            // The extra level is the last one: only effects are allowed here.
            let msg = if value.is_object() {
                "value must be \"allow\" or \"deny\" (policies nest at most 4 levels: \
                 service.resource.action.extra)"
            } else {
                "value must be \"allow\" or \"deny\""
            };
            return Err(PolicyError::at(path, msg));
        } else if let Value::Object(inner) = value {
            Node::Map(parse_map(inner, path)?)
        } else {
            return Err(PolicyError::at(
                path,
                "value must be \"allow\", \"deny\" or an object",
            ));
        };
        path.pop();
        out.insert(key.clone(), node);
    }
    Ok(out)
}

fn map_to_json(map: &BTreeMap<String, Node>) -> Value {
    let obj = map
        .iter()
        .map(|(k, node)| {
            let v = match node {
                Node::Leaf(e) => Value::String(e.as_str().to_owned()),
                Node::Map(m) => map_to_json(m),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(obj)
}

/// Depth-first search trying the exact key before `"*"` at every level. Because specificity
/// is lexicographic (higher levels dominate) with exact > wildcard, the first match found in
/// this order is the most specific one, so no ranking is needed within a blob.
fn walk<'n>(
    map: &'n BTreeMap<String, Node>,
    levels: &[Option<&str>; LEVELS],
    level: usize,
    path: &mut Vec<&'n str>,
    spec: &mut [bool; LEVELS],
) -> Option<Effect> {
    // A request value of "*" is not a name, so it only matches the wildcard key.
    let exact = levels[level]
        .filter(|v| *v != WILDCARD)
        .and_then(|v| map.get_key_value(v));
    let wildcard = map.get_key_value(WILDCARD);
    for (is_exact, candidate) in [(true, exact), (false, wildcard)] {
        let Some((key, node)) = candidate else {
            continue;
        };
        path.push(key);
        spec[level] = is_exact;
        let found = match node {
            Node::Leaf(e) => Some(*e),
            Node::Map(m) if level + 1 < LEVELS => walk(m, levels, level + 1, path, spec),
            Node::Map(_) => None,
        };
        if found.is_some() {
            return found;
        }
        path.pop();
        spec[level] = false;
    }
    None
}

impl Serialize for PolicyBlob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for PolicyBlob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        PolicyBlob::parse(&v).map_err(serde::de::Error::custom)
    }
}

/// Several named policies evaluated together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    policies: Vec<(String, PolicyBlob)>,
}

impl PolicySet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, name: impl Into<String>, blob: PolicyBlob) {
        self.policies.push((name.into(), blob));
    }

    /// Builder form of [`PolicySet::push`].
    pub fn with(mut self, name: impl Into<String>, blob: PolicyBlob) -> Self {
        self.push(name, blob);
        self
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &PolicyBlob)> {
        self.policies.iter().map(|(n, b)| (n.as_str(), b))
    }

    /// The deciding rule: the most specific of each policy's best rule, deny winning ties.
    pub fn explain(&self, req: &Request<'_>) -> Option<MatchedRule> {
        let mut best: Option<MatchedRule> = None;
        for (name, blob) in &self.policies {
            let Some(mut m) = blob.explain(req) else {
                continue;
            };
            // Strictly greater only, so among identical ranks the first policy is reported.
            if best.as_ref().is_none_or(|b| m.rank() > b.rank()) {
                m.policy = Some(name.clone());
                best = Some(m);
            }
        }
        best
    }

    pub fn evaluate(&self, req: &Request<'_>) -> Option<Effect> {
        self.explain(req).map(|m| m.effect)
    }

    /// No matching rule means not allowed.
    pub fn allows(&self, req: &Request<'_>) -> bool {
        self.evaluate(req) == Some(Effect::Allow)
    }
}

impl FromIterator<(String, PolicyBlob)> for PolicySet {
    fn from_iter<I: IntoIterator<Item = (String, PolicyBlob)>>(iter: I) -> Self {
        PolicySet {
            policies: iter.into_iter().collect(),
        }
    }
}

impl Extend<(String, PolicyBlob)> for PolicySet {
    fn extend<I: IntoIterator<Item = (String, PolicyBlob)>>(&mut self, iter: I) {
        self.policies.extend(iter);
    }
}

/// The policies a token holds, grouped by the scope they were granted at. Each scope's set
/// is evaluated independently (a deny at system scope does not block a project-scope grant).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopedPolicies {
    pub system: PolicySet,
    pub domain: PolicySet,
    pub project: PolicySet,
}

impl ScopedPolicies {
    pub fn get(&self, scope: Scope) -> &PolicySet {
        match scope {
            Scope::System => &self.system,
            Scope::Domain => &self.domain,
            Scope::Project => &self.project,
        }
    }

    pub fn get_mut(&mut self, scope: Scope) -> &mut PolicySet {
        match scope {
            Scope::System => &mut self.system,
            Scope::Domain => &mut self.domain,
            Scope::Project => &mut self.project,
        }
    }

    /// The highest scope whose set allows the request (checked system, domain, project).
    pub fn max_allowed_scope(&self, req: &Request<'_>) -> Option<Scope> {
        Scope::ALL_DESC
            .into_iter()
            .find(|s| self.get(*s).allows(req))
    }

    /// Allowed at `scope` if the set of `scope` or of any higher scope allows it: a system
    /// grant implies domain and project access.
    pub fn allowed_at(&self, req: &Request<'_>, scope: Scope) -> bool {
        self.max_allowed_scope(req).is_some_and(|s| s >= scope)
    }
}
