//! Quotas: limits per project (and domain), usage counted live from the
//! resource tables.
//!
//! A create checks limits against usage *inside its own transaction*, after
//! touching the project's quota row: SQLite serialises writers, and on MySQL
//! the touched row is locked until commit, so two concurrent creates of one
//! project cannot both pass a check that only one of them fits. Because the
//! new rows exist from that commit on, the "reservation" is the rows
//! themselves; a failed create is undone (its guests end in a `*_fail`
//! status that holds no resources, or are deleted), which releases it.

use cloudpods_db::{Db, DbTx, Row, Sql, crud};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::models::QUOTAS;

/// Limits (`-1` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub cpu: i64,
    /// MB
    pub memory: i64,
    /// MB
    pub storage: i64,
    pub port: i64,
    pub eip: i64,
    pub snapshot: i64,
    pub server: i64,
    pub keypair: i64,
    pub secgroup: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::default_project()
    }
}

impl Limits {
    pub fn default_project() -> Limits {
        Limits {
            cpu: 2000,
            memory: 8 * 1024 * 1024,
            storage: 200 * 1024 * 1024,
            port: 2000,
            eip: 200,
            snapshot: 2000,
            server: 2000,
            keypair: 200,
            secgroup: 500,
        }
    }

    pub fn unlimited() -> Limits {
        Limits {
            cpu: -1,
            memory: -1,
            storage: -1,
            port: -1,
            eip: -1,
            snapshot: -1,
            server: -1,
            keypair: -1,
            secgroup: -1,
        }
    }

    /// `(name, value)` of every limit, in a fixed order.
    pub fn pairs(&self) -> [(&'static str, i64); 9] {
        [
            ("cpu", self.cpu),
            ("memory", self.memory),
            ("storage", self.storage),
            ("port", self.port),
            ("eip", self.eip),
            ("snapshot", self.snapshot),
            ("server", self.server),
            ("keypair", self.keypair),
            ("secgroup", self.secgroup),
        ]
    }
}

/// Usage of one project (same fields as limits).
pub type Usage = Limits;

fn zero() -> Usage {
    Limits {
        cpu: 0,
        memory: 0,
        storage: 0,
        port: 0,
        eip: 0,
        snapshot: 0,
        server: 0,
        keypair: 0,
        secgroup: 0,
    }
}

async fn sum<'e, E>(exec: E, sql: Sql) -> Result<i64, cloudpods_db::DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    crud::fetch_i64(exec, &sql).await
}

/// Live usage of a project (`scope_type = "project"`) or a domain.
pub async fn usage(
    tx: &mut DbTx,
    dialect: cloudpods_db::Dialect,
    scope_type: &str,
    scope_id: &str,
) -> Result<Usage, cloudpods_db::DbError> {
    let owner = if scope_type == "domain" {
        "domain_id"
    } else {
        "tenant_id"
    };
    let holds = crate::store::GUEST_HOLDS_RESOURCES;
    let mut u = zero();
    let mut q = Sql::new(format!(
        "SELECT {} FROM `guests_tbl` WHERE `deleted` = 0 AND {holds} AND `{owner}` = ",
        dialect.sum_int("`vcpu_count`")
    ));
    q.bind(scope_id);
    u.cpu = sum(&mut **tx, q).await?;
    let mut q = Sql::new(format!(
        "SELECT {} FROM `guests_tbl` WHERE `deleted` = 0 AND {holds} AND `{owner}` = ",
        dialect.sum_int("`vmem_size`")
    ));
    q.bind(scope_id);
    u.memory = sum(&mut **tx, q).await?;
    let mut q = Sql::new(format!(
        "SELECT COUNT(*) FROM `guests_tbl` WHERE `deleted` = 0 AND {holds} AND `{owner}` = "
    ));
    q.bind(scope_id);
    u.server = sum(&mut **tx, q).await?;
    // Storage: disks plus what pending guests will create (from their
    // create parameters, counted until their disks exist).
    // A disk that failed to allocate holds nothing; one being resized
    // holds its target size.
    let mut q = Sql::new(format!(
        "SELECT {} FROM `disks_tbl` WHERE `deleted` = 0 AND `status` <> 'alloc_failed' AND `{owner}` = ",
        dialect.sum_int(
            "CASE WHEN `pending_size` > `disk_size` THEN `pending_size` ELSE `disk_size` END"
        )
    ));
    q.bind(scope_id);
    u.storage = sum(&mut **tx, q).await?;
    let mut q = Sql::new(format!(
        "SELECT {} FROM `guests_tbl` WHERE `deleted` = 0 AND {holds} AND `{owner}` = ",
        dialect.sum_int("`pending_storage`")
    ));
    q.bind(scope_id);
    u.storage += sum(&mut **tx, q).await?;
    let mut q = Sql::new(format!(
        "SELECT COUNT(*) FROM `guestnetworks_tbl` gn JOIN `guests_tbl` g ON g.`id` = gn.`guest_id` WHERE g.`deleted` = 0 AND g.`{owner}` = "
    ));
    q.bind(scope_id);
    u.port = sum(&mut **tx, q).await?;
    let mut q = Sql::new(format!(
        "SELECT {} FROM `guests_tbl` WHERE `deleted` = 0 AND {holds} AND `{owner}` = ",
        dialect.sum_int("`pending_ports`")
    ));
    q.bind(scope_id);
    u.port += sum(&mut **tx, q).await?;
    for (table, field, live) in [
        ("elasticips_tbl", "eip", ""),
        (
            "snapshots_tbl",
            "snapshot",
            " AND `status` <> 'create_failed'",
        ),
        ("secgroups_tbl", "secgroup", ""),
    ] {
        let mut q = Sql::new(format!(
            "SELECT COUNT(*) FROM `{table}` WHERE `deleted` = 0{live} AND `{owner}` = "
        ));
        q.bind(scope_id);
        let n = sum(&mut **tx, q).await?;
        match field {
            "eip" => u.eip = n,
            "snapshot" => u.snapshot = n,
            _ => u.secgroup = n,
        }
    }
    Ok(u)
}

/// The limits of a project or domain (stored, or the defaults).
pub async fn limits<'e, E>(
    exec: E,
    scope_type: &str,
    scope_id: &str,
    default: Limits,
) -> Result<Limits, cloudpods_db::DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut q = Sql::new(format!(
        "SELECT {} FROM `quotas_tbl` WHERE `scope_type` = ",
        crud::column_list(&QUOTAS)
    ));
    q.bind(scope_type).push(" AND `scope_id` = ").bind(scope_id);
    let rows = crud::fetch_rows(exec, &QUOTAS, &q).await?;
    let Some(r) = rows.first() else {
        return Ok(default);
    };
    let g = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(-1);
    Ok(Limits {
        cpu: g("cpu"),
        memory: g("memory"),
        storage: g("storage"),
        port: g("port"),
        eip: g("eip"),
        snapshot: g("snapshot"),
        server: g("server"),
        keypair: g("keypair"),
        secgroup: g("secgroup"),
    })
}

/// Store limits (upsert).
pub async fn set_limits(
    db: &Db,
    scope_type: &str,
    scope_id: &str,
    l: &Limits,
) -> Result<(), cloudpods_db::DbError> {
    let mut tx = db.begin().await?;
    let mut del = Sql::new("DELETE FROM `quotas_tbl` WHERE `scope_type` = ");
    del.bind(scope_type)
        .push(" AND `scope_id` = ")
        .bind(scope_id);
    del.query()?
        .execute(&mut *tx)
        .await
        .map_err(cloudpods_db::DbError::from)?;
    let mut row: Row = serde_json::to_value(l)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    row.insert("id".into(), json!(format!("{scope_type}:{scope_id}")));
    row.insert("scope_type".into(), json!(scope_type));
    row.insert("scope_id".into(), json!(scope_id));
    crud::prepare_insert(&QUOTAS, &mut row);
    crud::insert(&mut *tx, &QUOTAS, &row).await?;
    tx.commit().await.map_err(cloudpods_db::DbError::from)?;
    Ok(())
}

/// Lock the project's quota row for the rest of `tx` (MySQL row lock;
/// SQLite already serialises writers). Start `tx` with [`begin`].
pub async fn lock(tx: &mut DbTx, scope_id: &str) -> Result<(), cloudpods_db::DbError> {
    let mut q = Sql::new(
        "UPDATE `quotas_tbl` SET `update_version` = `update_version` + 1 WHERE `scope_type` = 'project' AND `scope_id` = ",
    );
    q.bind(scope_id);
    let n = q
        .query()?
        .execute(&mut **tx)
        .await
        .map_err(cloudpods_db::DbError::from)?
        .rows_affected();
    if n == 0 {
        // No stored limits and not prepared by [`begin`]: write the
        // placeholder (defaults) here. Safe on SQLite, whose transaction
        // holds the only writer.
        crud::insert(&mut **tx, &QUOTAS, &placeholder(scope_id)).await?;
    }
    Ok(())
}

/// Begin a transaction that will check the quota of `project_id`.
///
/// On MySQL the project's quota row is created first, on its own and
/// before the transaction takes a connection: inserting it inside
/// concurrent transactions takes gap and shared locks that deadlock when
/// several creates of a new project arrive at once, and a second
/// connection taken while holding the first can exhaust the pool.
pub async fn begin(db: &Db, project_id: &str) -> Result<DbTx, cloudpods_db::DbError> {
    if db.dialect() == cloudpods_db::Dialect::Mysql && !project_id.is_empty() {
        ensure_placeholder(db, project_id).await?;
    }
    db.begin().await
}

/// A quota row meaning "this project uses the defaults".
fn placeholder(scope_id: &str) -> Row {
    let mut row = Row::new();
    row.insert("id".into(), json!(format!("project:{scope_id}")));
    row.insert("scope_type".into(), json!("project"));
    row.insert("scope_id".into(), json!(scope_id));
    for (k, _) in Limits::unlimited().pairs() {
        row.insert(k.into(), json!(-2)); // -2 = "use the defaults"
    }
    crud::prepare_insert(&QUOTAS, &mut row);
    row
}

/// Make sure the project has a quota row, outside any transaction.
async fn ensure_placeholder(db: &Db, scope_id: &str) -> Result<(), cloudpods_db::DbError> {
    let mut q = Sql::new("SELECT COUNT(*) FROM `quotas_tbl` WHERE `id` = ");
    q.bind(format!("project:{scope_id}"));
    if sum(db.write(), q).await? > 0 {
        return Ok(());
    }
    let row = placeholder(scope_id);
    crud::with_retry(|| async {
        match crud::insert(db.write(), &QUOTAS, &row).await {
            // Another request created it first.
            Err(cloudpods_db::DbError::Duplicate(_)) => Ok(()),
            other => other.map(|_| ()),
        }
    })
    .await
}

/// Check that adding `add` to the project's usage stays within its limits.
/// Returns the first exceeded resource as a message.
pub async fn check(
    db: &Db,
    tx: &mut DbTx,
    project_id: &str,
    default: Limits,
    add: &Usage,
) -> Result<Option<String>, cloudpods_db::DbError> {
    check_owner(db, tx, project_id, "", default, add).await
}

/// [`check`] for a project and, when `domain_id` is given and the domain
/// has stored limits, for its domain too (domains without stored limits
/// are unlimited).
pub async fn check_owner(
    db: &Db,
    tx: &mut DbTx,
    project_id: &str,
    domain_id: &str,
    default: Limits,
    add: &Usage,
) -> Result<Option<String>, cloudpods_db::DbError> {
    let dialect = db.dialect();
    lock(tx, project_id).await?;
    let l = effective_limits(&mut **tx, "project", project_id, default).await?;
    let u = usage(tx, dialect, "project", project_id).await?;
    if let Some(msg) = exceeded("project", &l, &u, add) {
        return Ok(Some(msg));
    }
    if !domain_id.is_empty() {
        let l = effective_limits(&mut **tx, "domain", domain_id, Limits::unlimited()).await?;
        if l != Limits::unlimited() {
            let u = usage(tx, dialect, "domain", domain_id).await?;
            if let Some(msg) = exceeded("domain", &l, &u, add) {
                return Ok(Some(msg));
            }
        }
    }
    Ok(None)
}

/// Keypairs belong to users: the count of the user's keypairs is checked
/// against the keypair limit of the project the user works in.
pub async fn check_keypair(
    tx: &mut DbTx,
    project_id: &str,
    user_id: &str,
    default: Limits,
) -> Result<Option<String>, cloudpods_db::DbError> {
    lock(tx, project_id).await?;
    let l = effective_limits(&mut **tx, "project", project_id, default).await?;
    if l.keypair < 0 {
        return Ok(None);
    }
    let used = keypair_usage(&mut **tx, user_id).await?;
    if used + 1 > l.keypair {
        return Ok(Some(format!(
            "quota exceeded for keypair: {used} used + 1 requested > {} allowed",
            l.keypair
        )));
    }
    Ok(None)
}

/// Live keypairs of a user.
pub async fn keypair_usage<'e, E>(exec: E, user_id: &str) -> Result<i64, cloudpods_db::DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut q =
        Sql::new("SELECT COUNT(*) FROM `keypairs_tbl` WHERE `deleted` = 0 AND `user_id` = ");
    q.bind(user_id);
    sum(exec, q).await
}

fn exceeded(what: &str, l: &Limits, u: &Usage, add: &Usage) -> Option<String> {
    for ((name, limit), ((_, used), (_, more))) in l
        .pairs()
        .iter()
        .zip(u.pairs().iter().zip(add.pairs().iter()))
    {
        if *limit >= 0 && *more > 0 && used + more > *limit {
            return Some(format!(
                "{what} quota exceeded for {name}: {used} used + {more} requested > {limit} allowed"
            ));
        }
    }
    None
}

/// Stored limits with placeholder values (-2, "the defaults") resolved.
pub async fn effective_limits<'e, E>(
    exec: E,
    scope_type: &str,
    scope_id: &str,
    default: Limits,
) -> Result<Limits, cloudpods_db::DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let l = limits(exec, scope_type, scope_id, default).await?;
    let d = default.pairs();
    let mut fixed = l.pairs();
    for (idx, (_, v)) in fixed.iter_mut().enumerate() {
        if *v == -2 {
            *v = d[idx].1;
        }
    }
    Ok(from_pairs(&fixed))
}

/// The inverse of [`Limits::pairs`].
pub fn from_pairs(p: &[(&'static str, i64); 9]) -> Limits {
    Limits {
        cpu: p[0].1,
        memory: p[1].1,
        storage: p[2].1,
        port: p[3].1,
        eip: p[4].1,
        snapshot: p[5].1,
        server: p[6].1,
        keypair: p[7].1,
        secgroup: p[8].1,
    }
}

/// A usage value with nothing in it, to fill in for a create.
pub fn nothing() -> Usage {
    zero()
}
