//! The declarative command table.
//!
//! A [`Resource`] entry describes one Cloudpods resource: its envelope
//! keyword and plural, the service serving it, the default list columns and
//! the options of its create/update/list/show/delete commands. From it
//! `climc` generates `<kw>-list`, `<kw>-show`, `<kw>-create`, `<kw>-update`,
//! `<kw>-delete` and one `<kw>-<action>` per [`Action`]. An [`Opt`] says how
//! one command-line argument becomes a key of the request (body or query).
//!
//! Everything here is `const`, so resource tables are plain `static`s:
//!
//! ```
//! use climc::spec::{Opt, Ops, Resource, Action};
//! static NETWORK: Resource = Resource::new("network", "networks", "compute_v2")
//!     .columns(&["ID", "Name", "Guest_Ip_Start", "Guest_Ip_End", "Status"])
//!     .create(&[
//!         Opt::pos("NAME", "name", "Name of the network"),
//!         Opt::string("wire", "wire_id", "Wire id or name").required(),
//!         Opt::int("mask", "guest_ip_mask", "Netmask length"),
//!     ])
//!     .update(&[Opt::string("name", "name", "New name")])
//!     .actions(&[Action::new("sync", "syncstatus", "Sync status", &[])]);
//! assert_eq!(NETWORK.prefix(), "network");
//! assert!(NETWORK.ops.contains(Ops::CREATE));
//! ```

use clap::{Arg, ArgAction, ArgMatches};
use serde_json::{Map, Value};

/// A resource another option refers to by name or id; climc resolves it to
/// the id with `GET /{plural}/{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefTo {
    pub service: &'static str,
    pub keyword: &'static str,
    pub plural: &'static str,
}

/// How an argument is parsed and what JSON it yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Required positional string.
    Pos,
    /// Required positional, one or more values → array.
    PosMulti,
    /// `--name VALUE` → string.
    Str,
    /// `--name N` → integer.
    Int,
    /// `--name` flag → this boolean (pairs like `--enabled`/`--disabled`
    /// share a key and exclude each other).
    Set(bool),
    /// Repeatable `--name V` → array of strings.
    Multi,
    /// `--name V` with V one of the choices → string.
    Choice(&'static [&'static str]),
    /// `--name '{"json": 1}'` → the parsed JSON.
    Json,
    /// `--name FILE` → the file's content parsed as JSON.
    JsonFile,
    /// `--name FILE` → the file's content as a string.
    TextFile,
    /// `--name NAME_OR_ID` → the referenced object's id.
    Ref(RefTo),
    /// Positional name or id of a referenced object → its id.
    PosRef(RefTo),
}

/// One command-line argument mapped to request keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt {
    /// Long flag (`password` → `--password`) or positional name (`NAME`).
    pub name: &'static str,
    /// Destination key(s): dotted for nesting (`scope.project.id`), several
    /// separated by commas (`name,type` sets both); empty → not sent.
    pub key: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub required: bool,
}

impl Opt {
    const fn new(name: &'static str, key: &'static str, kind: Kind, help: &'static str) -> Opt {
        Opt {
            name,
            key,
            kind,
            help,
            required: false,
        }
    }
    pub const fn pos(name: &'static str, key: &'static str, help: &'static str) -> Opt {
        Opt::new(name, key, Kind::Pos, help).required()
    }
    pub const fn pos_multi(name: &'static str, key: &'static str, help: &'static str) -> Opt {
        Opt::new(name, key, Kind::PosMulti, help).required()
    }
    pub const fn pos_ref(
        name: &'static str,
        key: &'static str,
        to: RefTo,
        help: &'static str,
    ) -> Opt {
        Opt::new(name, key, Kind::PosRef(to), help).required()
    }
    pub const fn string(name: &'static str, key: &'static str, help: &'static str) -> Opt {
        Opt::new(name, key, Kind::Str, help)
    }
    pub const fn int(name: &'static str, key: &'static str, help: &'static str) -> Opt {
        Opt::new(name, key, Kind::Int, help)
    }
    pub const fn flag(
        name: &'static str,
        key: &'static str,
        value: bool,
        help: &'static str,
    ) -> Opt {
        Opt::new(name, key, Kind::Set(value), help)
    }
    pub const fn multi(name: &'static str, key: &'static str, help: &'static str) -> Opt {
        Opt::new(name, key, Kind::Multi, help)
    }
    pub const fn choice(
        name: &'static str,
        key: &'static str,
        choices: &'static [&'static str],
        help: &'static str,
    ) -> Opt {
        Opt::new(name, key, Kind::Choice(choices), help)
    }
    pub const fn json(name: &'static str, key: &'static str, help: &'static str) -> Opt {
        Opt::new(name, key, Kind::Json, help)
    }
    pub const fn json_file(name: &'static str, key: &'static str, help: &'static str) -> Opt {
        Opt::new(name, key, Kind::JsonFile, help)
    }
    pub const fn text_file(name: &'static str, key: &'static str, help: &'static str) -> Opt {
        Opt::new(name, key, Kind::TextFile, help)
    }
    pub const fn reference(
        name: &'static str,
        key: &'static str,
        to: RefTo,
        help: &'static str,
    ) -> Opt {
        Opt::new(name, key, Kind::Ref(to), help)
    }
    /// Make an option mandatory.
    pub const fn required(mut self) -> Opt {
        self.required = true;
        self
    }

    /// The clap argument.
    pub fn arg(&self) -> Arg {
        let base = Arg::new(self.name).help(self.help);
        let arg = match self.kind {
            Kind::Pos | Kind::PosRef(_) => base.value_name(self.name),
            Kind::PosMulti => base
                .value_name(self.name)
                .num_args(1..)
                .action(ArgAction::Append),
            Kind::Str | Kind::Json | Kind::Ref(_) => base.long(self.name).value_name("VALUE"),
            Kind::JsonFile | Kind::TextFile => base.long(self.name).value_name("FILE"),
            Kind::Int => base
                .long(self.name)
                .value_name("N")
                .value_parser(clap::value_parser!(i64)),
            Kind::Set(_) => base.long(self.name).action(ArgAction::SetTrue),
            Kind::Multi => base
                .long(self.name)
                .value_name("VALUE")
                .action(ArgAction::Append),
            Kind::Choice(choices) => base.long(self.name).value_name("VALUE").value_parser(
                clap::builder::PossibleValuesParser::new(choices.iter().copied()),
            ),
        };
        if self.required {
            arg.required(true)
        } else {
            arg
        }
    }
}

/// The clap arguments of a set of options; `--x`/`--y` flags writing the
/// same key exclude each other.
pub fn args_of(opts: &[Opt]) -> Vec<Arg> {
    opts.iter()
        .map(|o| {
            let mut arg = o.arg();
            if matches!(o.kind, Kind::Set(_)) {
                for other in opts {
                    if other.name != o.name
                        && other.key == o.key
                        && matches!(other.kind, Kind::Set(_))
                    {
                        arg = arg.conflicts_with(other.name);
                    }
                }
            }
            arg
        })
        .collect()
}

/// Which generic commands a resource has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ops(u8);

impl Ops {
    pub const NONE: Ops = Ops(0);
    pub const LIST: Ops = Ops(1);
    pub const SHOW: Ops = Ops(2);
    pub const CREATE: Ops = Ops(4);
    pub const UPDATE: Ops = Ops(8);
    pub const DELETE: Ops = Ops(16);
    pub const ALL: Ops = Ops(31);

    pub const fn with(self, other: Ops) -> Ops {
        Ops(self.0 | other.0)
    }
    pub const fn without(self, other: Ops) -> Ops {
        Ops(self.0 & !other.0)
    }
    pub const fn contains(self, other: Ops) -> bool {
        self.0 & other.0 == other.0
    }
}

/// `<kw>-<name> ID [options]` → `POST /{plural}/{id}/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// Command suffix (`unlock` → `user-unlock`).
    pub name: &'static str,
    /// Wire action (kebab-case, e.g. `live-migrate`).
    pub action: &'static str,
    pub about: &'static str,
    pub opts: &'static [Opt],
}

impl Action {
    pub const fn new(
        name: &'static str,
        action: &'static str,
        about: &'static str,
        opts: &'static [Opt],
    ) -> Action {
        Action {
            name,
            action,
            about,
            opts,
        }
    }
}

/// One resource of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// Envelope keyword (`user`, `role_policy`).
    pub keyword: &'static str,
    /// Route and list key (`users`, `role_policies`).
    pub plural: &'static str,
    /// Catalog service type (`identity`, `compute_v2`, `image`).
    pub service: &'static str,
    /// Command prefix when it differs from the keyword with `_` → `-`
    /// (`cloudaccount` → `cloud-account`).
    pub cmd_prefix: Option<&'static str>,
    /// Default list columns (Cloudpods spelling; matched case-insensitively).
    pub columns: &'static [&'static str],
    pub ops: Ops,
    pub list_opts: &'static [Opt],
    pub show_opts: &'static [Opt],
    pub create_opts: &'static [Opt],
    pub update_opts: &'static [Opt],
    pub delete_opts: &'static [Opt],
    pub actions: &'static [Action],
    /// `*-list` sends `details=true` even without `--details` (for lists
    /// whose useful columns only exist in details, e.g. endpoints'
    /// `service_name`).
    pub list_details: bool,
}

impl Resource {
    pub const fn new(
        keyword: &'static str,
        plural: &'static str,
        service: &'static str,
    ) -> Resource {
        Resource {
            keyword,
            plural,
            service,
            cmd_prefix: None,
            columns: &[],
            ops: Ops::ALL,
            list_opts: &[],
            show_opts: &[],
            create_opts: &[],
            update_opts: &[],
            delete_opts: &[],
            actions: &[],
            list_details: false,
        }
    }
    pub const fn prefix_as(mut self, prefix: &'static str) -> Resource {
        self.cmd_prefix = Some(prefix);
        self
    }
    pub const fn columns(mut self, columns: &'static [&'static str]) -> Resource {
        self.columns = columns;
        self
    }
    pub const fn ops(mut self, ops: Ops) -> Resource {
        self.ops = ops;
        self
    }
    pub const fn list(mut self, opts: &'static [Opt]) -> Resource {
        self.list_opts = opts;
        self
    }
    pub const fn show(mut self, opts: &'static [Opt]) -> Resource {
        self.show_opts = opts;
        self
    }
    pub const fn create(mut self, opts: &'static [Opt]) -> Resource {
        self.create_opts = opts;
        self
    }
    pub const fn update(mut self, opts: &'static [Opt]) -> Resource {
        self.update_opts = opts;
        self
    }
    pub const fn delete(mut self, opts: &'static [Opt]) -> Resource {
        self.delete_opts = opts;
        self
    }
    pub const fn actions(mut self, actions: &'static [Action]) -> Resource {
        self.actions = actions;
        self
    }
    pub const fn list_details(mut self, on: bool) -> Resource {
        self.list_details = on;
        self
    }

    /// The command prefix (`user`, `role-assignment`, `cloud-account`).
    pub fn prefix(&self) -> String {
        match self.cmd_prefix {
            Some(p) => p.to_owned(),
            None => self.keyword.replace('_', "-"),
        }
    }

    /// The reference to this resource for [`Kind::Ref`] options.
    pub const fn as_ref_to(&self) -> RefTo {
        RefTo {
            service: self.service,
            keyword: self.keyword,
            plural: self.plural,
        }
    }
}

/// Set `key` (dotted for nesting) in `map`.
pub fn insert_path(map: &mut Map<String, Value>, key: &str, value: Value) {
    let mut parts = key.split('.').peekable();
    let mut cur = map;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(part.to_owned(), value);
            return;
        }
        let entry = cur
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else {
            return;
        };
        cur = next;
    }
}

/// A value an option produced before references are resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Ready(Value),
    /// To be replaced by the id of the named object.
    Ref(RefTo, String),
}

/// Read the options present in `m` (files are read, JSON parsed); keys and
/// raw values in option order.
pub fn read_opts(opts: &[Opt], m: &ArgMatches) -> anyhow::Result<Vec<(&'static str, Raw)>> {
    let mut out = Vec::new();
    for o in opts {
        if o.key.is_empty() {
            continue;
        }
        let one = || m.get_one::<String>(o.name).cloned();
        let raw = match o.kind {
            Kind::Pos | Kind::Str | Kind::Choice(_) => one().map(|s| Raw::Ready(Value::String(s))),
            Kind::Int => m
                .get_one::<i64>(o.name)
                .map(|n| Raw::Ready(Value::from(*n))),
            Kind::Set(v) => m.get_flag(o.name).then_some(Raw::Ready(Value::Bool(v))),
            Kind::Multi | Kind::PosMulti => m
                .get_many::<String>(o.name)
                .map(|vals| Raw::Ready(Value::Array(vals.cloned().map(Value::String).collect()))),
            Kind::Json => match one() {
                Some(s) => {
                    Some(Raw::Ready(serde_json::from_str(&s).map_err(|e| {
                        anyhow::anyhow!("--{}: invalid JSON: {e}", o.name)
                    })?))
                }
                None => None,
            },
            Kind::JsonFile => match one() {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("--{}: cannot read {path}: {e}", o.name))?;
                    let v: Value = serde_json::from_str(&text).map_err(|e| {
                        anyhow::anyhow!("--{}: {path} is not valid JSON: {e}", o.name)
                    })?;
                    Some(Raw::Ready(v))
                }
                None => None,
            },
            Kind::TextFile => match one() {
                Some(path) => Some(Raw::Ready(Value::String(
                    std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("--{}: cannot read {path}: {e}", o.name))?,
                ))),
                None => None,
            },
            Kind::Ref(to) | Kind::PosRef(to) => one().map(|s| Raw::Ref(to, s)),
        };
        if let Some(r) = raw {
            out.push((o.key, r));
        }
    }
    Ok(out)
}

/// Put resolved values into `map` (keys may list several targets).
pub fn apply(map: &mut Map<String, Value>, key: &str, value: Value) {
    for k in key.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        insert_path(map, k, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Command;
    use serde_json::json;

    const DOMAIN: RefTo = RefTo {
        service: "identity",
        keyword: "domain",
        plural: "domains",
    };

    static OPTS: &[Opt] = &[
        Opt::pos("NAME", "name,type", "name"),
        Opt::string("desc", "description", "description"),
        Opt::int("size", "size", "size"),
        Opt::flag("enabled", "enabled", true, "on"),
        Opt::flag("disabled", "enabled", false, "off"),
        Opt::multi("tag", "tags", "tags"),
        Opt::choice("scope", "scope", &["system", "domain", "project"], "scope"),
        Opt::json("meta", "meta", "json"),
        Opt::reference("domain", "domain_id", DOMAIN, "domain"),
        Opt::string("project", "scope.project.id", "nested"),
    ];

    fn parse(args: &[&str]) -> Result<ArgMatches, clap::Error> {
        Command::new("x")
            .no_binary_name(true)
            .args(args_of(OPTS))
            .try_get_matches_from(args)
    }

    #[test]
    fn options_become_keys() {
        let m = parse(&[
            "vm1",
            "--desc",
            "d",
            "--size",
            "10",
            "--disabled",
            "--tag",
            "a",
            "--tag",
            "b",
            "--scope",
            "domain",
            "--meta",
            r#"{"k":1}"#,
            "--domain",
            "Default",
            "--project",
            "p1",
        ])
        .expect("parse");
        let raw = read_opts(OPTS, &m).expect("read");
        let mut body = Map::new();
        for (k, r) in raw {
            match r {
                Raw::Ready(v) => apply(&mut body, k, v),
                Raw::Ref(to, name) => {
                    assert_eq!(to, DOMAIN);
                    apply(&mut body, k, json!(format!("id-of-{name}")));
                }
            }
        }
        assert_eq!(
            Value::Object(body),
            json!({
                "name": "vm1", "type": "vm1", "description": "d", "size": 10, "enabled": false,
                "tags": ["a", "b"], "scope": {"project": {"id": "p1"}}, "meta": {"k": 1},
                "domain_id": "id-of-Default",
            })
        );
    }

    #[test]
    fn flag_pairs_conflict_and_choices_are_checked() {
        assert!(parse(&["x", "--enabled", "--disabled"]).is_err());
        assert!(parse(&["x", "--scope", "galaxy"]).is_err());
        assert!(parse(&["x", "--size", "ten"]).is_err());
        assert!(parse(&[]).is_err(), "NAME is required");
        let m = parse(&["x", "--meta", "{"]).expect("parse");
        assert!(read_opts(OPTS, &m).is_err());
    }

    #[test]
    fn files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("p.json");
        std::fs::write(&p, r#"{"policy": {"compute": {"*": "allow"}}}"#).expect("write");
        static FILE_OPTS: &[Opt] = &[
            Opt::json_file("file", "blob", "policy"),
            Opt::text_file("text", "text", "raw"),
        ];
        let ps = p.to_string_lossy().into_owned();
        let m = Command::new("x")
            .no_binary_name(true)
            .args(args_of(FILE_OPTS))
            .try_get_matches_from(["--file", ps.as_str(), "--text", ps.as_str()])
            .expect("parse");
        let raw = read_opts(FILE_OPTS, &m).expect("read");
        assert_eq!(
            raw[0].1,
            Raw::Ready(json!({"policy": {"compute": {"*": "allow"}}}))
        );
        assert!(matches!(&raw[1].1, Raw::Ready(Value::String(s)) if s.contains("compute")));
        let m = Command::new("x")
            .no_binary_name(true)
            .args(args_of(FILE_OPTS))
            .try_get_matches_from(["--file", "/nonexistent/x.json"])
            .expect("parse");
        assert!(read_opts(FILE_OPTS, &m).is_err());
    }

    #[test]
    fn insert_path_nests() {
        let mut m = Map::new();
        insert_path(&mut m, "a.b.c", json!(1));
        insert_path(&mut m, "a.b.d", json!(2));
        insert_path(&mut m, "x", json!(3));
        assert_eq!(
            Value::Object(m),
            json!({"a": {"b": {"c": 1, "d": 2}}, "x": 3})
        );
    }

    #[test]
    fn ops_and_prefix() {
        let r = Resource::new("role_assignment", "role_assignments", "identity")
            .ops(Ops::LIST.with(Ops::SHOW));
        assert_eq!(r.prefix(), "role-assignment");
        assert!(r.ops.contains(Ops::LIST));
        assert!(!r.ops.contains(Ops::CREATE));
        assert!(Ops::ALL.without(Ops::DELETE).contains(Ops::UPDATE));
        let r =
            Resource::new("cloudaccount", "cloudaccounts", "compute_v2").prefix_as("cloud-account");
        assert_eq!(r.prefix(), "cloud-account");
    }
}
