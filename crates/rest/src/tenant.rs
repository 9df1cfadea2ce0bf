//! Project and domain names for ownership and details.
//!
//! Every service shares the identity tables' database (see
//! docs/ARCHITECTURE.md), so names are read from `projects` and `domains`
//! directly and cached briefly — the equivalent of Cloudpods' tenant cache
//! without a round trip to keystone for every list.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use cloudpods_db::{Db, Sql};
use serde_json::Value;

use crate::error::Result;

/// A project (or, for domains, `id == domain_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub domain: String,
}

const TTL: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct TenantCache {
    db: Db,
    projects: RwLock<HashMap<String, (Tenant, Instant)>>,
    domains: RwLock<HashMap<String, (String, Instant)>>,
}

impl TenantCache {
    pub fn new(db: Db) -> TenantCache {
        TenantCache {
            db,
            projects: RwLock::new(HashMap::new()),
            domains: RwLock::new(HashMap::new()),
        }
    }

    /// Forget cached entries (after a rename or delete in this process).
    pub fn invalidate(&self) {
        if let Ok(mut m) = self.projects.write() {
            m.clear();
        }
        if let Ok(mut m) = self.domains.write() {
            m.clear();
        }
    }

    /// Domain name by id.
    pub async fn domain_name(&self, id: &str) -> Result<Option<String>> {
        if let Ok(m) = self.domains.read()
            && let Some((n, at)) = m.get(id)
            && at.elapsed() < TTL
        {
            return Ok(Some(n.clone()));
        }
        let mut q = Sql::new("SELECT `id`, `name` FROM `domains` WHERE `deleted` = 0 AND `id` = ");
        q.bind(id);
        let rows = fetch_pairs(&self.db, &q).await?;
        let name = rows.into_iter().next().map(|(_, n)| n);
        if let (Some(n), Ok(mut m)) = (&name, self.domains.write()) {
            m.insert(id.to_string(), (n.clone(), Instant::now()));
        }
        Ok(name)
    }

    /// Find a domain by id or (case-insensitive) name.
    pub async fn find_domain(&self, ident: &str) -> Result<Option<(String, String)>> {
        let mut q = Sql::new("SELECT `id`, `name` FROM `domains` WHERE `deleted` = 0 AND (`id` = ");
        q.bind(ident).push(" OR `name` = ").bind(ident).push(")");
        let rows = fetch_pairs(&self.db, &q).await?;
        Ok(rows
            .iter()
            .find(|(id, _)| id == ident)
            .or(rows.first())
            .cloned())
    }

    /// Project by id.
    pub async fn project(&self, id: &str) -> Result<Option<Tenant>> {
        Ok(self.projects_by_id(&[id.to_string()]).await?.remove(id))
    }

    /// Find a project by id, or by name within `domain_id` (any domain when
    /// `None` and the name is unique).
    pub async fn find_project(
        &self,
        ident: &str,
        domain_id: Option<&str>,
    ) -> Result<Option<Tenant>> {
        if let Some(t) = self.project(ident).await? {
            return Ok(Some(t));
        }
        let mut q = Sql::new(
            "SELECT `id`, `name`, `domain_id` FROM `projects` WHERE `deleted` = 0 AND `name` = ",
        );
        q.bind(ident);
        if let Some(d) = domain_id {
            q.push(" AND `domain_id` = ").bind(d);
        }
        let rows = self.db_rows(&q).await?;
        if rows.len() != 1 {
            return Ok(None);
        }
        let Some(id) = rows[0].first().cloned() else {
            return Ok(None);
        };
        self.project(&id).await
    }

    /// Projects by id, batched (details of a list).
    pub async fn projects_by_id(&self, ids: &[String]) -> Result<HashMap<String, Tenant>> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        if let Ok(m) = self.projects.read() {
            for id in ids {
                match m.get(id) {
                    Some((t, at)) if at.elapsed() < TTL => {
                        out.insert(id.clone(), t.clone());
                    }
                    _ => missing.push(id.clone()),
                }
            }
        }
        missing.sort();
        missing.dedup();
        missing.retain(|s| !s.is_empty());
        for chunk in missing.chunks(500) {
            let mut q = Sql::new(
                "SELECT p.`id`, p.`name`, p.`domain_id`, d.`name` FROM `projects` p \
                 LEFT JOIN `domains` d ON d.`id` = p.`domain_id` WHERE p.`deleted` = 0 AND p.`id` IN ",
            );
            q.bind_list(chunk.iter());
            for r in self.db_rows(&q).await? {
                let t = Tenant {
                    id: r.first().cloned().unwrap_or_default(),
                    name: r.get(1).cloned().unwrap_or_default(),
                    domain_id: r.get(2).cloned().unwrap_or_default(),
                    domain: r.get(3).cloned().unwrap_or_default(),
                };
                if let Ok(mut m) = self.projects.write() {
                    m.insert(t.id.clone(), (t.clone(), Instant::now()));
                }
                out.insert(t.id.clone(), t);
            }
        }
        Ok(out)
    }

    async fn db_rows(&self, q: &Sql) -> Result<Vec<Vec<String>>> {
        let rows = q
            .query()?
            .fetch_all(self.db.read())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let n = sqlx_len(r);
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(match cloudpods_db::sql::raw_column(r, i)? {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                });
            }
            out.push(v);
        }
        Ok(out)
    }
}

fn sqlx_len(r: &sqlx::any::AnyRow) -> usize {
    use sqlx::Row;
    r.len()
}

async fn fetch_pairs(db: &Db, q: &Sql) -> Result<Vec<(String, String)>> {
    let rows = q
        .query()?
        .fetch_all(db.read())
        .await
        .map_err(cloudpods_db::DbError::from)?;
    let mut out = Vec::new();
    for r in &rows {
        let a = cloudpods_db::sql::raw_column(r, 0)?;
        let b = cloudpods_db::sql::raw_column(r, 1)?;
        out.push((
            a.as_str().unwrap_or_default().to_string(),
            b.as_str().unwrap_or_default().to_string(),
        ));
    }
    Ok(out)
}
