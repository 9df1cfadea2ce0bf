//! Generic row operations driven by a [`ModelDesc`].

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row as _};

use crate::Row;
use crate::error::{DbError, Result};
use crate::pool::Db;
use crate::schema::{ColType, IdStyle, ModelDesc};
use crate::sql::{Sql, SqlValue, coerce, json_to_sql, raw_column};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    fn sql(self) -> &'static str {
        match self {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        }
    }
}

/// A list query on one table. Conditions are ANDed; column names in `order`
/// and `columns` must come from the descriptor (the REST layer validates).
#[derive(Debug, Clone, Default)]
pub struct ListSpec {
    pub conds: Vec<Sql>,
    pub order: Vec<(String, Order)>,
    pub limit: Option<u64>,
    pub offset: u64,
    /// Also compute the total row count.
    pub count: bool,
    /// Projection; `None` = every column.
    pub columns: Option<Vec<String>>,
    /// Include soft-deleted rows.
    pub include_deleted: bool,
}

/// A new primary key in the style of the table.
pub fn new_id(style: IdStyle) -> String {
    match style {
        IdStyle::Hex32 => uuid::Uuid::new_v4().simple().to_string(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// `` `a`, `b`, … `` for every column of `desc`.
pub fn column_list(desc: &ModelDesc) -> String {
    desc.columns
        .iter()
        .map(|c| format!("`{}`", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decode a result row using the descriptor's column types; columns not in
/// the descriptor are kept as their raw values.
pub fn decode_row(desc: &ModelDesc, row: &AnyRow) -> Result<Row> {
    let cols = row.columns();
    // Rows selected with `column_list(desc)` come in descriptor order:
    // match by position instead of searching the descriptor per column.
    let positional = cols.len() == desc.columns.len()
        && cols
            .iter()
            .zip(&desc.columns)
            .all(|(c, d)| sqlx::Column::name(c) == d.name);
    let mut out = Row::with_capacity(cols.len());
    for (i, col) in cols.iter().enumerate() {
        let name = sqlx::Column::name(col);
        let raw = raw_column(row, i)?;
        let c = if positional {
            Some(&desc.columns[i])
        } else {
            desc.column(name)
        };
        let v = match c {
            Some(c) => coerce(c.ty, c.name, raw)?,
            None => raw,
        };
        out.insert(name.to_string(), v);
    }
    Ok(out)
}

/// Run `sql` and decode every row with `desc`.
pub async fn fetch_rows<'e, E>(exec: E, desc: &ModelDesc, sql: &Sql) -> Result<Vec<Row>>
where
    E: Executor<'e, Database = Any>,
{
    let rows = sql.query()?.fetch_all(exec).await?;
    rows.iter().map(|r| decode_row(desc, r)).collect()
}

/// Run a query returning one integer (COUNT, SUM…), 0 when NULL.
pub async fn fetch_i64<'e, E>(exec: E, sql: &Sql) -> Result<i64>
where
    E: Executor<'e, Database = Any>,
{
    let row = sql.query()?.fetch_one(exec).await?;
    Ok(match raw_column(&row, 0)? {
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
        Value::String(s) => s.parse::<f64>().map(|f| f as i64).unwrap_or(0),
        _ => 0,
    })
}

/// `WHERE` clause text for `conds` (plus the soft-delete condition).
fn where_clause(desc: &ModelDesc, conds: &[Sql], include_deleted: bool) -> Sql {
    let mut w = Sql::default();
    let mut first = true;
    let mut and = |w: &mut Sql| {
        w.push(if first { " WHERE " } else { " AND " });
        first = false;
    };
    if desc.soft_delete && !include_deleted {
        and(&mut w);
        w.push("`deleted` = 0");
    }
    for c in conds {
        and(&mut w);
        w.push("(");
        w.append(c.clone());
        w.push(")");
    }
    w
}

/// List rows and optionally the total count.
pub async fn list(db: &Db, desc: &ModelDesc, spec: &ListSpec) -> Result<(Vec<Row>, Option<u64>)> {
    let cols = match &spec.columns {
        Some(cols) => cols
            .iter()
            .map(|c| format!("`{}`", c.replace('`', "")))
            .collect::<Vec<_>>()
            .join(", "),
        None => column_list(desc),
    };
    let w = where_clause(desc, &spec.conds, spec.include_deleted);
    let total = if spec.count {
        let mut q = Sql::new(format!("SELECT COUNT(*) FROM `{}`", desc.table));
        q.append(w.clone());
        Some(fetch_i64(db.read(), &q).await?.max(0) as u64)
    } else {
        None
    };
    let mut q = Sql::new(format!("SELECT {cols} FROM `{}`", desc.table));
    q.append(w);
    if !spec.order.is_empty() {
        q.push(" ORDER BY ");
        for (i, (c, o)) in spec.order.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.ident(c).push(" ").push(o.sql());
        }
    }
    if let Some(limit) = spec.limit {
        q.push(&format!(" LIMIT {limit}"));
        if spec.offset > 0 {
            q.push(&format!(" OFFSET {}", spec.offset));
        }
    } else if spec.offset > 0 {
        // Both dialects need a LIMIT before OFFSET.
        q.push(&format!(" LIMIT {} OFFSET {}", i64::MAX, spec.offset));
    }
    let rows = fetch_rows(db.read(), desc, &q).await?;
    Ok((rows, total))
}

/// Fetch one live row by primary key.
pub async fn get<'e, E>(exec: E, desc: &ModelDesc, id: &str) -> Result<Option<Row>>
where
    E: Executor<'e, Database = Any>,
{
    let mut q = Sql::new(format!(
        "SELECT {} FROM `{}` WHERE ",
        column_list(desc),
        desc.table
    ));
    q.ident(desc.pk()).push(" = ").bind(id);
    if desc.soft_delete {
        q.push(" AND `deleted` = 0");
    }
    let rows = fetch_rows(exec, desc, &q).await?;
    Ok(rows.into_iter().next())
}

/// Fetch one live row by primary key or fail with NotFound.
pub async fn must_get<'e, E>(exec: E, desc: &ModelDesc, id: &str) -> Result<Row>
where
    E: Executor<'e, Database = Any>,
{
    get(exec, desc, id)
        .await?
        .ok_or_else(|| DbError::NotFound(format!("{} {id}", desc.keyword)))
}

/// Fetch live rows by primary keys (any order).
pub async fn get_many(db: &Db, desc: &ModelDesc, ids: &[String]) -> Result<Vec<Row>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let mut q = Sql::new(format!(
            "SELECT {} FROM `{}` WHERE ",
            column_list(desc),
            desc.table
        ));
        q.ident(desc.pk()).push(" IN ").bind_list(chunk.iter());
        if desc.soft_delete {
            q.push(" AND `deleted` = 0");
        }
        out.extend(fetch_rows(db.read(), desc, &q).await?);
    }
    Ok(out)
}

/// Fill in what every new row needs: id, timestamps, version and the
/// descriptor's defaults for absent columns.
pub fn prepare_insert(desc: &ModelDesc, row: &mut Row) {
    let now = cloudpods_apis::time::now();
    if desc.id_style != IdStyle::Auto
        && row
            .get("id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        row.insert("id".into(), Value::String(new_id(desc.id_style)));
    }
    for c in &desc.columns {
        if !row.contains_key(c.name)
            && let Some(d) = &c.default
        {
            row.insert(c.name.to_string(), d.clone());
        }
    }
    row.entry("created_at")
        .or_insert_with(|| Value::String(now.clone()));
    row.insert("updated_at".into(), Value::String(now));
    row.entry("update_version").or_insert(Value::from(0));
    if desc.soft_delete {
        row.insert("deleted".into(), Value::Bool(false));
    }
}

/// INSERT the columns of `row` that the table has. Returns the new
/// auto-increment id for joint tables.
pub async fn insert<'e, E>(exec: E, desc: &ModelDesc, row: &Row) -> Result<Option<i64>>
where
    E: Executor<'e, Database = Any>,
{
    let q = insert_sql(desc, std::slice::from_ref(row));
    let res = q.query()?.execute(exec).await?;
    Ok(res.last_insert_id())
}

/// One multi-row INSERT (rows must share their column set with the first).
pub fn insert_sql(desc: &ModelDesc, rows: &[Row]) -> Sql {
    let first = rows.first();
    let cols: Vec<&crate::schema::Column> = desc
        .columns
        .iter()
        .filter(|c| c.ty != ColType::AutoId && first.is_some_and(|r| r.contains_key(c.name)))
        .collect();
    let mut q = Sql::new(format!("INSERT INTO `{}` (", desc.table));
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.ident(c.name);
    }
    q.push(") VALUES ");
    for (ri, row) in rows.iter().enumerate() {
        if ri > 0 {
            q.push(", ");
        }
        q.bind_list(
            cols.iter()
                .map(|c| json_to_sql(c.ty, row.get(c.name).unwrap_or(&Value::Null))),
        );
    }
    q
}

/// UPDATE the given columns of one live row, bumping `updated_at` and
/// `update_version`. Returns the number of rows changed (0 = not found).
pub async fn update<'e, E>(exec: E, desc: &ModelDesc, id: &str, changes: &Row) -> Result<u64>
where
    E: Executor<'e, Database = Any>,
{
    let mut q = update_sql(desc, changes);
    q.push(" WHERE ").ident(desc.pk()).push(" = ").bind(id);
    if desc.soft_delete {
        q.push(" AND `deleted` = 0");
    }
    Ok(q.query()?.execute(exec).await?.rows_affected())
}

/// `UPDATE t SET …` without the WHERE clause, for callers that add their own
/// conditions (compare-and-set on status, leases).
pub fn update_sql(desc: &ModelDesc, changes: &Row) -> Sql {
    let mut q = Sql::new(format!("UPDATE `{}` SET ", desc.table));
    let now = cloudpods_apis::time::now();
    q.push("`updated_at` = ").bind(now);
    q.push(", `update_version` = `update_version` + 1");
    for c in &desc.columns {
        if matches!(
            c.name,
            "updated_at" | "update_version" | "id" | "row_id" | "created_at"
        ) {
            continue;
        }
        if let Some(v) = changes.get(c.name) {
            q.push(", ")
                .ident(c.name)
                .push(" = ")
                .bind(json_to_sql(c.ty, v));
        }
    }
    q
}

/// Mark a row deleted (or delete it when the table has no soft delete).
pub async fn delete<'e, E>(exec: E, desc: &ModelDesc, id: &str) -> Result<u64>
where
    E: Executor<'e, Database = Any>,
{
    let mut q = if desc.soft_delete {
        let mut q = Sql::new(format!(
            "UPDATE `{}` SET `deleted` = 1, `deleted_at` = ",
            desc.table
        ));
        q.bind(cloudpods_apis::time::now());
        q.push(", `update_version` = `update_version` + 1");
        q
    } else {
        Sql::new(format!("DELETE FROM `{}`", desc.table))
    };
    q.push(" WHERE ").ident(desc.pk()).push(" = ").bind(id);
    if desc.soft_delete {
        q.push(" AND `deleted` = 0");
    }
    Ok(q.query()?.execute(exec).await?.rows_affected())
}

/// Remove a row physically.
pub async fn purge<'e, E>(exec: E, desc: &ModelDesc, id: &str) -> Result<u64>
where
    E: Executor<'e, Database = Any>,
{
    let mut q = Sql::new(format!("DELETE FROM `{}` WHERE ", desc.table));
    q.ident(desc.pk()).push(" = ").bind(id);
    Ok(q.query()?.execute(exec).await?.rows_affected())
}

/// Equality condition on a column of `desc`.
pub fn eq(col: &str, v: impl Into<SqlValue>) -> Sql {
    let mut s = Sql::default();
    s.ident(col).push(" = ").bind(v);
    s
}

/// `col IN (…)`; an empty set matches nothing.
pub fn in_list<I, V>(col: &str, vals: I) -> Sql
where
    I: IntoIterator<Item = V>,
    V: Into<SqlValue>,
{
    let vals: Vec<SqlValue> = vals.into_iter().map(Into::into).collect();
    if vals.is_empty() {
        return Sql::new("1 = 0");
    }
    let mut s = Sql::default();
    s.ident(col).push(" IN ").bind_list(vals);
    s
}

/// Retry a closure on SQLite busy / MySQL deadlock a few times.
pub async fn with_retry<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = std::time::Duration::from_millis(5);
    for _ in 0..8 {
        match f().await {
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    f().await
}
