//! Placement behind one interface.
//!
//! The region asks a [`Scheduler`] where instances go. The scheduler
//! service (`POST /scheduler`) is one implementation; [`LocalScheduler`] is a
//! simple first-fit over the region database used when no scheduler service
//! is configured (and by the region's own tests).

use std::collections::HashMap;

use async_trait::async_trait;
use cloudpods_apis::scheduler::{Candidate, CandidateDisk, CandidateNet, ScheduleInput};
use cloudpods_db::{Db, Sql, TypedRow, crud};
use cloudpods_rest::HttpError;

use crate::models::*;
use crate::rows;

#[async_trait]
pub trait Scheduler: Send + Sync + 'static {
    /// One candidate per requested instance, or an error explaining why the
    /// request cannot be placed.
    async fn schedule(&self, input: &ScheduleInput) -> Result<Vec<Candidate>, HttpError>;

    /// Placements of a session were written to the database (or abandoned):
    /// forget their pending reservations.
    async fn completed(&self, _session_id: &str) {}

    /// A host's capacity, state, storages, wires or guests changed: a
    /// caching scheduler re-reads it.
    fn invalidate_host(&self, _host_id: &str) {}

    /// Something every host may depend on changed (networks, storages,
    /// schedtags, zones): a caching scheduler rebuilds.
    fn invalidate_all(&self) {}
}

/// Free capacity of one host.
#[derive(Debug, Clone)]
struct HostFree {
    id: String,
    name: String,
    cpu: f64,
    mem: f64,
    /// storage id → free MB
    storages: Vec<(String, String, String, f64)>, // (id, type, medium, free)
    wires: Vec<String>,
}

/// First-fit placement from the database, most free memory first.
pub struct LocalScheduler {
    db: Db,
}

impl LocalScheduler {
    pub fn new(db: Db) -> LocalScheduler {
        LocalScheduler { db }
    }

    async fn load(&self, input: &ScheduleInput) -> Result<(Vec<HostFree>, Vec<String>), HttpError> {
        let spec = cloudpods_db::ListSpec {
            conds: vec![Sql::new("`host_type` IN ('hypervisor', 'kvm')")],
            ..Default::default()
        };
        let hosts = rows::Host::from_rows(&crud::list(&self.db, &HOSTS, &spec).await?.0)?;
        let mut reasons = Vec::new();
        let mut out = Vec::new();
        // Usage by host and by storage, counted from live rows.
        let mut q = Sql::new(format!(
            "SELECT `host_id`, {}, {} FROM `guests_tbl` WHERE `deleted` = 0 AND {} AND `host_id` IS NOT NULL",
            self.db.dialect().sum_int("`vcpu_count`"),
            self.db.dialect().sum_int("`vmem_size`"),
            crate::store::GUEST_HOLDS_RESOURCES
        ));
        if !input.guest_ids.is_empty() {
            q.push(" AND `id` NOT IN ")
                .bind_list(input.guest_ids.iter());
        }
        q.push(" GROUP BY `host_id`");
        let rows = q
            .query()?
            .fetch_all(self.db.read())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        let mut used: HashMap<String, (i64, i64)> = HashMap::new();
        for r in &rows {
            let h = cloudpods_db::sql::raw_column(r, 0)?
                .as_str()
                .unwrap_or_default()
                .to_string();
            let c = cloudpods_db::sql::raw_column(r, 1)?.as_i64().unwrap_or(0);
            let m = cloudpods_db::sql::raw_column(r, 2)?.as_i64().unwrap_or(0);
            used.insert(h, (c, m));
        }
        let mut q = Sql::new(format!(
            "SELECT `storage_id`, {} FROM `disks_tbl` WHERE `deleted` = 0 AND `storage_id` IS NOT NULL GROUP BY `storage_id`",
            self.db.dialect().sum_int("`disk_size`")
        ));
        let _ = &mut q;
        let rows = q
            .query()?
            .fetch_all(self.db.read())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        let mut disk_used: HashMap<String, i64> = HashMap::new();
        for r in &rows {
            let sid = cloudpods_db::sql::raw_column(r, 0)?
                .as_str()
                .unwrap_or_default()
                .to_string();
            disk_used.insert(
                sid,
                cloudpods_db::sql::raw_column(r, 1)?.as_i64().unwrap_or(0),
            );
        }
        let storages = rows::Storage::from_rows(
            &crud::list(&self.db, &STORAGES, &Default::default())
                .await?
                .0,
        )?;
        let hoststorages = rows::HostStorage::from_rows(
            &crud::list(&self.db, &HOSTSTORAGES, &Default::default())
                .await?
                .0,
        )?;
        let hostwires = rows::HostWire::from_rows(
            &crud::list(&self.db, &HOSTWIRES, &Default::default())
                .await?
                .0,
        )?;

        for h in hosts {
            let (id, name) = (h.id.clone(), h.name.clone());
            if !input.prefer_host.is_empty() && input.prefer_host != id && input.prefer_host != name
            {
                continue;
            }
            if input.exclude_hosts.contains(&id) {
                reasons.push(format!("host {name}: excluded"));
                continue;
            }
            if !h.enabled {
                reasons.push(format!("host {name}: disabled"));
                continue;
            }
            if h.host_status != "online" {
                reasons.push(format!("host {name}: offline"));
                continue;
            }
            if !input.prefer_zone.is_empty() && h.zone_id != input.prefer_zone {
                reasons.push(format!("host {name}: not in zone {}", input.prefer_zone));
                continue;
            }
            let (uc, um) = used.get(&id).copied().unwrap_or((0, 0));
            let cpu = h.cpu_count as f64 * h.cpu_cmtbound - h.cpu_reserved as f64 - uc as f64;
            let mem = h.mem_size as f64 * h.mem_cmtbound - h.mem_reserved as f64 - um as f64;
            let sts = hoststorages
                .iter()
                .filter(|hs| hs.host_id == id)
                .filter_map(|hs| storages.iter().find(|st| st.id == hs.storage_id))
                .filter(|st| st.enabled)
                .map(|st| {
                    let free = st.capacity as f64 * st.cmtbound
                        - st.reserved as f64
                        - *disk_used.get(&st.id).unwrap_or(&0) as f64;
                    (
                        st.id.clone(),
                        st.storage_type.clone(),
                        st.medium_type.clone(),
                        free,
                    )
                })
                .collect();
            let wires = hostwires
                .iter()
                .filter(|hw| hw.host_id == id)
                .map(|hw| hw.wire_id.clone())
                .collect();
            out.push(HostFree {
                id,
                name,
                cpu,
                mem,
                storages: sts,
                wires,
            });
        }
        if out.is_empty() && !input.prefer_host.is_empty() && reasons.is_empty() {
            reasons.push(format!("host {} not found", input.prefer_host));
        }
        Ok((out, reasons))
    }
}

#[async_trait]
impl Scheduler for LocalScheduler {
    async fn schedule(&self, input: &ScheduleInput) -> Result<Vec<Candidate>, HttpError> {
        let (mut hosts, mut reasons) = self.load(input).await?;
        // Which wires each requested network lives on.
        let mut net_wires: Vec<(String, String)> = Vec::new();
        for n in &input.nets {
            if n.network.is_empty() {
                net_wires.push((String::new(), n.wire.clone()));
                continue;
            }
            let net: Option<rows::Network> = crate::store::typed_get(&self.db, &n.network).await?;
            net_wires.push((
                n.network.clone(),
                net.map(|r| r.wire_id).unwrap_or_default(),
            ));
        }
        let mut out = Vec::new();
        for _ in 0..input.count.max(1) {
            hosts.sort_by(|a, b| {
                b.mem
                    .partial_cmp(&a.mem)
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let mut chosen = None;
            for h in hosts.iter_mut() {
                if h.cpu < input.vcpu_count as f64 {
                    reasons.push(format!(
                        "host {}: {:.0} CPUs free < {} requested",
                        h.name,
                        h.cpu.max(0.0),
                        input.vcpu_count
                    ));
                    continue;
                }
                if h.mem < input.vmem_size as f64 {
                    reasons.push(format!(
                        "host {}: memory {:.0} MB free < {} MB requested",
                        h.name,
                        h.mem.max(0.0),
                        input.vmem_size
                    ));
                    continue;
                }
                if let Some((_, w)) = net_wires
                    .iter()
                    .find(|(_, w)| !w.is_empty() && !h.wires.contains(w))
                {
                    reasons.push(format!("host {}: not connected to wire {w}", h.name));
                    continue;
                }
                // A storage per disk, with room.
                let mut free: Vec<(String, String, String, f64)> = h.storages.clone();
                let mut picks = Vec::new();
                let mut ok = true;
                for d in &input.disks {
                    let pick = free.iter_mut().find(|(id, ty, medium, f)| {
                        (d.storage_id.is_empty() || *id == d.storage_id)
                            && (d.backend.is_empty() || *ty == d.backend)
                            && (d.medium.is_empty() || *medium == d.medium)
                            && *f >= d.size as f64
                    });
                    match pick {
                        Some(p) => {
                            p.3 -= d.size as f64;
                            picks.push(p.0.clone());
                        }
                        None => {
                            reasons.push(format!(
                                "host {}: no storage with {} MB free for a disk",
                                h.name, d.size
                            ));
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                h.cpu -= input.vcpu_count as f64;
                h.mem -= input.vmem_size as f64;
                h.storages = free;
                chosen = Some(Candidate {
                    session_id: input.session_id.clone(),
                    host_id: h.id.clone(),
                    name: h.name.clone(),
                    disks: picks
                        .into_iter()
                        .map(|id| CandidateDisk {
                            storage_ids: vec![id],
                        })
                        .collect(),
                    nets: net_wires
                        .iter()
                        .map(|(n, _)| CandidateNet {
                            network_ids: if n.is_empty() {
                                vec![]
                            } else {
                                vec![n.clone()]
                            },
                        })
                        .collect(),
                    error: String::new(),
                });
                break;
            }
            match chosen {
                Some(c) => out.push(c),
                None => {
                    reasons.sort();
                    reasons.dedup();
                    let why = if reasons.is_empty() {
                        "no host is registered".to_string()
                    } else {
                        reasons.join("; ")
                    };
                    return Err(HttpError::insufficient(format!(
                        "no host can hold instance {} of {}: {why}",
                        out.len() + 1,
                        input.count.max(1)
                    )));
                }
            }
        }
        Ok(out)
    }
}
