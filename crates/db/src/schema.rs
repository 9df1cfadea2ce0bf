//! Table descriptors.
//!
//! A [`ModelDesc`] declares a resource the way Cloudpods declares its models
//! by embedding base structs: the behaviours (standalone, status, owner,
//! sharable, soft delete, pending delete, external) add their standard
//! columns, and the resource adds its own. The REST layer, the migrations and
//! the generic queries all read the same descriptor.

use cloudpods_rbac::Scope;
use serde_json::Value;

use crate::pool::Dialect;

/// Column types. Timestamps are fixed-width strings (see `cloudpods_apis::time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// VARCHAR(n); indexable on MySQL.
    Str(u16),
    /// Long text, not indexable.
    Text,
    Int,
    BigInt,
    Float,
    Bool,
    Time,
    /// Any JSON value, stored as text.
    Json,
    /// Auto-increment integer primary key (joint tables).
    AutoId,
}

impl ColType {
    pub fn ddl(self, dialect: Dialect) -> String {
        match (dialect, self) {
            (Dialect::Sqlite, ColType::Str(_) | ColType::Text | ColType::Time | ColType::Json) => {
                "TEXT".into()
            }
            (Dialect::Sqlite, ColType::Int | ColType::BigInt | ColType::Bool) => "INTEGER".into(),
            (Dialect::Sqlite, ColType::Float) => "REAL".into(),
            (Dialect::Sqlite, ColType::AutoId) => "INTEGER PRIMARY KEY AUTOINCREMENT".into(),
            (Dialect::Mysql, ColType::Str(n)) => format!("VARCHAR({n})"),
            (Dialect::Mysql, ColType::Text) => "TEXT".into(),
            (Dialect::Mysql, ColType::Json) => "MEDIUMTEXT".into(),
            (Dialect::Mysql, ColType::Time) => "VARCHAR(32)".into(),
            (Dialect::Mysql, ColType::Int) => "INT".into(),
            (Dialect::Mysql, ColType::BigInt) => "BIGINT".into(),
            (Dialect::Mysql, ColType::Bool) => "SMALLINT".into(),
            (Dialect::Mysql, ColType::Float) => "DOUBLE".into(),
            (Dialect::Mysql, ColType::AutoId) => {
                "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY".into()
            }
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ColType::Int | ColType::BigInt | ColType::Float | ColType::AutoId
        )
    }
}

/// What callers may do with a column through the generic API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ColFlags(u32);

impl ColFlags {
    /// Settable on create.
    pub const CREATE: ColFlags = ColFlags(1);
    /// Settable on update.
    pub const UPDATE: ColFlags = ColFlags(1 << 1);
    /// Usable as an equality list filter (`?status=running`).
    pub const LIST: ColFlags = ColFlags(1 << 2);
    /// Matched by `?search=`.
    pub const SEARCH: ColFlags = ColFlags(1 << 3);
    /// Required on create.
    pub const REQUIRED: ColFlags = ColFlags(1 << 4);
    /// Never returned by the API (password hashes, encrypted secrets).
    pub const SECRET: ColFlags = ColFlags(1 << 5);
    /// Settable on create/update by system-scope callers only.
    pub const ADMIN: ColFlags = ColFlags(1 << 6);
    /// Case-insensitive (names).
    pub const NOCASE: ColFlags = ColFlags(1 << 7);

    pub fn has(self, other: ColFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for ColFlags {
    type Output = ColFlags;
    fn bitor(self, rhs: ColFlags) -> ColFlags {
        ColFlags(self.0 | rhs.0)
    }
}

/// One column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    pub default: Option<Value>,
    pub flags: ColFlags,
    /// Also create a single-column index.
    pub index: bool,
}

macro_rules! ctor {
    ($fn:ident, $ty:expr) => {
        pub fn $fn(name: &'static str) -> Column {
            Column::new(name, $ty)
        }
    };
}

impl Column {
    pub fn new(name: &'static str, ty: ColType) -> Column {
        Column {
            name,
            ty,
            default: None,
            flags: ColFlags::default(),
            index: false,
        }
    }
    pub fn str(name: &'static str, len: u16) -> Column {
        Column::new(name, ColType::Str(len))
    }
    ctor!(text, ColType::Text);
    ctor!(int, ColType::Int);
    ctor!(bigint, ColType::BigInt);
    ctor!(float, ColType::Float);
    ctor!(bool, ColType::Bool);
    ctor!(time, ColType::Time);
    ctor!(json, ColType::Json);

    pub fn flag(mut self, f: ColFlags) -> Column {
        self.flags = self.flags | f;
        self
    }
    /// Settable on create.
    pub fn create(self) -> Column {
        self.flag(ColFlags::CREATE)
    }
    /// Settable on create and update.
    pub fn update(self) -> Column {
        self.flag(ColFlags::CREATE | ColFlags::UPDATE)
    }
    /// Equality list filter.
    pub fn list(self) -> Column {
        self.flag(ColFlags::LIST)
    }
    pub fn search(self) -> Column {
        self.flag(ColFlags::SEARCH)
    }
    pub fn required(self) -> Column {
        self.flag(ColFlags::REQUIRED | ColFlags::CREATE)
    }
    pub fn secret(self) -> Column {
        self.flag(ColFlags::SECRET)
    }
    pub fn admin(self) -> Column {
        self.flag(ColFlags::ADMIN)
    }
    pub fn indexed(mut self) -> Column {
        self.index = true;
        self
    }
    pub fn default(mut self, v: impl Into<Value>) -> Column {
        self.default = Some(v.into());
        self
    }

    fn default_ddl(&self) -> Option<String> {
        match self.default.as_ref()? {
            Value::Bool(b) => Some((*b as i64).to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) if matches!(self.ty, ColType::Str(_)) => {
                Some(format!("'{}'", s.replace('\'', "''")))
            }
            _ => None,
        }
    }

    /// `name TYPE [DEFAULT x]` for CREATE TABLE / ADD COLUMN.
    pub fn ddl(&self, dialect: Dialect) -> String {
        let mut s = format!("`{}` {}", self.name, self.ty.ddl(dialect));
        if self.flags.has(ColFlags::NOCASE) && dialect == Dialect::Sqlite {
            s.push_str(" COLLATE NOCASE");
        }
        if let Some(d) = self.default_ddl() {
            s.push_str(" DEFAULT ");
            s.push_str(&d);
        }
        s
    }
}

/// A secondary index.
#[derive(Debug, Clone)]
pub struct Index {
    pub name: String,
    pub columns: Vec<&'static str>,
    pub unique: bool,
}

/// Index names are limited to 64 characters on MySQL; long ones keep a
/// readable prefix and a hash of the full name.
fn index_name(prefix: &str, table: &str, cols: &[&str]) -> String {
    let full = format!("{prefix}_{table}_{}", cols.join("_"));
    if full.len() <= 60 {
        return full;
    }
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}_{:012x}", &full[..46], hash & 0xffff_ffff_ffff)
}

/// Who owns rows of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Global (keystone catalog, regions…).
    None,
    /// `domain_id` (infrastructure, identity objects).
    Domain,
    /// `tenant_id` + `domain_id` (virtual resources).
    Project,
    /// `user_id` (credentials, keypairs in some deployments).
    User,
}

/// How primary keys are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStyle {
    /// Dashed UUIDv4 (region, glance).
    Uuid,
    /// 32 lowercase hex characters (keystone).
    Hex32,
    /// Auto-increment `row_id` (joint tables).
    Auto,
    /// The caller supplies the id (e.g. `default`, `region0`).
    Given,
}

/// The descriptor of one resource table.
#[derive(Debug, Clone)]
pub struct ModelDesc {
    /// Singular envelope key, e.g. `server`.
    pub keyword: &'static str,
    /// Plural envelope key and URL segment, e.g. `servers`.
    pub plural: &'static str,
    pub table: &'static str,
    /// Policy service name (`compute`, `identity`, `image`).
    pub service: &'static str,
    pub owner: Owner,
    /// The scope at which the resource is managed (Cloudpods' manager
    /// `ResourceScope()`): creating, changing, deleting or acting on a row
    /// needs a grant at least this high, whatever the policies say. Derived
    /// from the owner unless declared ([`ModelDesc::managed_at`]).
    pub manage_scope: Scope,
    /// The lowest grant that may read rows at all (visibility still
    /// applies below system scope).
    pub read_scope: Scope,
    manage_declared: bool,
    pub id_style: IdStyle,
    pub standalone: bool,
    pub status: Option<&'static str>,
    pub soft_delete: bool,
    pub sharable: bool,
    pub enabled: Option<bool>,
    pub pending_delete: bool,
    pub external: bool,
    pub metadata: bool,
    /// Names must be unique within the owner (project/domain/global).
    pub unique_name: bool,
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
    /// Input keys accepted on create besides settable columns (handled by
    /// the resource's own code, e.g. `password`, `disks`, `nets`).
    pub extra_create_fields: Vec<&'static str>,
    pub extra_update_fields: Vec<&'static str>,
}

impl ModelDesc {
    pub fn new(keyword: &'static str, plural: &'static str, table: &'static str) -> ModelDesc {
        ModelDesc {
            keyword,
            plural,
            table,
            service: "",
            owner: Owner::None,
            manage_scope: Scope::System,
            read_scope: Scope::Project,
            manage_declared: false,
            id_style: IdStyle::Uuid,
            standalone: false,
            status: None,
            soft_delete: true,
            sharable: false,
            enabled: None,
            pending_delete: false,
            external: false,
            metadata: false,
            unique_name: false,
            columns: Vec::new(),
            indexes: Vec::new(),
            extra_create_fields: Vec::new(),
            extra_update_fields: Vec::new(),
        }
    }

    pub fn service(mut self, s: &'static str) -> Self {
        self.service = s;
        self
    }
    pub fn owner(mut self, o: Owner) -> Self {
        self.owner = o;
        if !self.manage_declared {
            self.manage_scope = match o {
                Owner::None => Scope::System,
                Owner::Domain => Scope::Domain,
                Owner::Project | Owner::User => Scope::Project,
            };
        }
        self
    }
    /// Declare the scope the resource is managed at (hosts, zones, wires are
    /// domain-owned rows managed by the system admin only).
    pub fn managed_at(mut self, s: Scope) -> Self {
        self.manage_scope = s;
        self.manage_declared = true;
        self
    }
    /// Reading needs at least this grant (e.g. hosts: domain).
    pub fn read_at(mut self, s: Scope) -> Self {
        self.read_scope = s;
        self
    }
    pub fn ids(mut self, s: IdStyle) -> Self {
        self.id_style = s;
        self
    }
    /// Has `name` and `description`.
    pub fn standalone(mut self) -> Self {
        self.standalone = true;
        self.metadata = true;
        self
    }
    pub fn status(mut self, default: &'static str) -> Self {
        self.status = Some(default);
        self
    }
    pub fn hard_delete(mut self) -> Self {
        self.soft_delete = false;
        self
    }
    pub fn sharable(mut self) -> Self {
        self.sharable = true;
        self
    }
    pub fn enabled(mut self, default: bool) -> Self {
        self.enabled = Some(default);
        self
    }
    pub fn pending_delete(mut self) -> Self {
        self.pending_delete = true;
        self
    }
    pub fn external(mut self) -> Self {
        self.external = true;
        self
    }
    pub fn unique_name(mut self) -> Self {
        self.unique_name = true;
        self
    }
    pub fn col(mut self, c: Column) -> Self {
        self.columns.push(c);
        self
    }
    pub fn index(mut self, cols: &[&'static str]) -> Self {
        let name = index_name("ix", self.table, cols);
        self.indexes.push(Index {
            name,
            columns: cols.to_vec(),
            unique: false,
        });
        self
    }
    pub fn unique(mut self, cols: &[&'static str]) -> Self {
        let name = index_name("ux", self.table, cols);
        self.indexes.push(Index {
            name,
            columns: cols.to_vec(),
            unique: true,
        });
        self
    }
    pub fn extra_create(mut self, fields: &[&'static str]) -> Self {
        self.extra_create_fields.extend_from_slice(fields);
        self
    }
    pub fn extra_update(mut self, fields: &[&'static str]) -> Self {
        self.extra_update_fields.extend_from_slice(fields);
        self
    }

    /// Add the standard columns implied by the behaviours and the standard
    /// indexes. Call once, last.
    pub fn build(mut self) -> Self {
        let mut std_cols = Vec::new();
        if self.id_style == IdStyle::Auto {
            std_cols.push(Column::new("row_id", ColType::AutoId));
        } else {
            std_cols.push(Column::str("id", 128).flag(ColFlags::LIST));
        }
        std_cols.push(Column::time("created_at"));
        std_cols.push(Column::time("updated_at"));
        std_cols.push(Column::int("update_version").default(0));
        if self.soft_delete {
            std_cols.push(Column::bool("deleted").default(false));
            std_cols.push(Column::time("deleted_at"));
        }
        if self.standalone {
            std_cols.push(
                Column::str("name", 128)
                    .flag(ColFlags::NOCASE)
                    .update()
                    .list()
                    .search()
                    .indexed(),
            );
            std_cols.push(Column::str("description", 256).update());
            std_cols.push(Column::bool("is_emulated").default(false));
        }
        if let Some(default) = self.status {
            std_cols.push(Column::str("status", 36).list().default(default));
            std_cols.push(Column::float("progress").default(0));
        }
        match self.owner {
            Owner::Domain => {
                std_cols.push(
                    Column::str("domain_id", 64)
                        .list()
                        .default("default")
                        .indexed(),
                );
            }
            Owner::Project => {
                std_cols.push(Column::str("tenant_id", 64).list());
                std_cols.push(
                    Column::str("domain_id", 64)
                        .list()
                        .default("default")
                        .indexed(),
                );
            }
            Owner::User => {
                std_cols.push(Column::str("user_id", 64).list().indexed());
                std_cols.push(Column::str("domain_id", 64).list().default("default"));
            }
            Owner::None => {}
        }
        if self.pending_delete {
            std_cols.push(Column::bool("pending_deleted").default(false));
            std_cols.push(Column::time("pending_deleted_at"));
            std_cols.push(Column::bool("is_system").default(false).create().admin());
            std_cols.push(Column::str("project_src", 10).default("local"));
        }
        if self.sharable {
            std_cols.push(Column::bool("is_public").default(false).list());
            std_cols.push(Column::str("public_scope", 16).default("none").list());
            std_cols.push(Column::str("public_src", 10));
        }
        if let Some(default) = self.enabled {
            std_cols.push(Column::bool("enabled").default(default).update().list());
        }
        if self.external {
            std_cols.push(Column::str("external_id", 256).list().indexed());
            std_cols.push(Column::str("manager_id", 128).list().indexed());
            std_cols.push(Column::time("imported_at"));
            std_cols.push(Column::str("source", 16).default("local"));
        }
        // Resource columns may override a standard one (same name).
        for c in std_cols.into_iter().rev() {
            if !self.columns.iter().any(|x| x.name == c.name) {
                self.columns.insert(0, c);
            }
        }
        // Lists order by (created_at, pk) by default; this index lets both
        // databases walk it backwards and stop at the page instead of
        // sorting the table.
        // Lists filter out deleted (and recycled) rows and order by
        // (created_at, pk). An index with those equality columns first and
        // the order after lets both databases walk it backwards and stop at
        // the page, and answers the total's COUNT(*) from the index alone.
        let pk = self.pk();
        let mut live: Vec<&'static str> = Vec::new();
        if self.soft_delete {
            live.push("deleted");
        }
        if self.pending_delete {
            live.push("pending_deleted");
        }
        let with = |prefix: &[&'static str], extra: &[&'static str]| -> Vec<&'static str> {
            let mut v: Vec<&'static str> = prefix.to_vec();
            v.extend_from_slice(extra);
            v.extend_from_slice(&["created_at", pk]);
            v
        };
        let mut ordered: Vec<Vec<&'static str>> = vec![with(&live, &[])];
        // The common equality filters, too: `?status=running` and a
        // project's own list.
        if self.status.is_some() {
            ordered.push(with(&live, &["status"]));
        }
        if self.owner == Owner::Project {
            ordered.push(with(&live, &["tenant_id"]));
        }
        // A narrow index of just the live-row flags: the total's COUNT(*)
        // reads it instead of the wide ordering index.
        if !live.is_empty() {
            ordered.push(live.clone());
        }
        for cols in ordered {
            if !self.indexes.iter().any(|i| i.columns == cols) {
                self = self.index(&cols);
            }
        }
        let idx_cols: Vec<&'static str> = self
            .columns
            .iter()
            .filter(|c| c.index)
            .map(|c| c.name)
            .collect();
        for c in idx_cols {
            if !self.indexes.iter().any(|i| i.columns == [c]) {
                self = self.index(&[c]);
            }
        }
        self
    }

    pub fn pk(&self) -> &'static str {
        if self.id_style == IdStyle::Auto {
            "row_id"
        } else {
            "id"
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.column(name).is_some()
    }

    /// `CREATE TABLE` statement for `dialect`.
    pub fn create_table_ddl(&self, dialect: Dialect) -> String {
        let mut cols: Vec<String> = self.columns.iter().map(|c| c.ddl(dialect)).collect();
        if self.id_style != IdStyle::Auto {
            cols.push("PRIMARY KEY (`id`)".into());
        }
        let tail = match dialect {
            Dialect::Sqlite => "",
            Dialect::Mysql => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        };
        format!(
            "CREATE TABLE IF NOT EXISTS `{}` ({}){}",
            self.table,
            cols.join(", "),
            tail
        )
    }

    /// `CREATE INDEX` statement for one index.
    pub fn index_ddl(&self, idx: &Index) -> String {
        let cols: Vec<String> = idx.columns.iter().map(|c| format!("`{c}`")).collect();
        format!(
            "CREATE {}INDEX `{}` ON `{}` ({})",
            if idx.unique { "UNIQUE " } else { "" },
            idx.name,
            self.table,
            cols.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_columns_follow_behaviours() {
        let d = ModelDesc::new("server", "servers", "guests_tbl")
            .owner(Owner::Project)
            .standalone()
            .status("init")
            .pending_delete()
            .col(Column::int("vcpu_count").update())
            .build();
        for c in [
            "id",
            "created_at",
            "deleted",
            "name",
            "status",
            "tenant_id",
            "domain_id",
            "pending_deleted",
            "vcpu_count",
        ] {
            assert!(d.has(c), "missing {c}");
        }
        assert_eq!(d.columns[0].name, "id");
        let ddl = d.create_table_ddl(Dialect::Mysql);
        assert!(ddl.contains("`vcpu_count` INT"));
        assert!(ddl.contains("PRIMARY KEY (`id`)"));
        assert!(d.indexes.iter().any(|i| i.columns
            == [
                "deleted",
                "pending_deleted",
                "tenant_id",
                "created_at",
                "id"
            ]));
    }
}
