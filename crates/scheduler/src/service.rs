//! The scheduler service: the candidate cache, pending reservations per
//! session, placement, forecast and history.
//!
//! Concurrency: the static shape of the fleet is an `Arc<Fleet>` that
//! requests filter without a lock; the live numbers and the reservations
//! sit behind one mutex, taken once per request for the capacity checks,
//! the ranking and the reservation (no database access, no await). So two
//! requests never hand out the same capacity, and a batch sees its own
//! earlier placements.
//!
//! Reservations: a placement is held for its session until `completed`
//! says it was written (or `reservation_ttl` passes). A confirmed
//! placement keeps counting until a reload of its host from the database,
//! started at least `commit_grace` after the confirmation, shows it; its
//! storage and addresses keep counting while the guest is still before its
//! disk and network stages (the rows do not exist yet), at most
//! `committed_ttl`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cloudpods_apis::scheduler::{
    Candidate, CandidateDetail, CandidateDisk, CandidateItem, CandidateList, CandidateNet,
    CandidateNetwork, CandidateStorage, ForecastOutput, HistoryDetail, HistoryItem, HistoryList,
    ResultResource, ScheduleInput,
};
use cloudpods_db::Db;
use cloudpods_rest::HttpError;

use crate::filters::{Credit, Reject};
use crate::fleet::{self, Dyn, Fleet};
use crate::history::{Entry, History};
use crate::load;
use crate::options::SchedulerOptions;
use crate::place::{self, Placement};
use crate::reasons;
use crate::request::{self, Request};
use crate::score::Scorer;
use crate::snapshot::Snapshot;

/// How often a host with confirmed placements still in creation is
/// re-read.
const SETTLE_RETRY: Duration = Duration::from_secs(5);

/// Request shapes whose static filter pass is kept.
const STATIC_CACHE: usize = 256;

/// What [`SchedulerService::with_request`] hands back: the fleet and
/// request it ran with, the static pass, and the closure's result.
type Prepared<T> = (Arc<Fleet>, Request, Arc<StaticEntry>, T);

/// A resolved static request and its static filter pass.
struct StaticEntry {
    fleet: Arc<Fleet>,
    req: Request,
    pass: place::Passing,
    rejects: place::Rejects,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ItemState {
    Pending,
    Committed(Instant),
}

#[derive(Debug, Clone)]
struct Item {
    p: Placement,
    state: ItemState,
    deadline: Instant,
    /// The guests of the session (to see whether their disks and NICs are
    /// in the database yet).
    guests: Arc<[String]>,
}

struct State {
    fleet: Arc<Fleet>,
    dy: Dyn,
    sessions: HashMap<String, Vec<Item>>,
    expiry: BinaryHeap<Reverse<(Instant, String)>>,
    /// Host id → reload not before.
    dirty: HashMap<String, Instant>,
    full: bool,
    last_full: Instant,
}

/// Numbers about the cache (tests, metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub hosts: usize,
    pub generation: u64,
    pub sessions: usize,
    pub pending: usize,
    pub committed: usize,
    pub dirty: usize,
}

/// Candidate list filters.
#[derive(Debug, Clone, Default)]
pub struct CandidateQuery {
    pub zone: String,
    pub region: String,
    pub host_type: String,
    /// Only enabled, online hosts out of maintenance.
    pub available: bool,
    pub limit: usize,
    pub offset: usize,
}

pub struct SchedulerService {
    db: Option<Db>,
    opts: SchedulerOptions,
    scorer: Scorer,
    state: Mutex<State>,
    history: Mutex<History>,
    statics: Mutex<HashMap<String, Arc<StaticEntry>>>,
    wake: tokio::sync::Notify,
    reload: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    /// Bumped by every invalidation; `applied` is the value the last
    /// successful refresh started from. A request waits for a refresh only
    /// when an invalidation is newer than what has been applied.
    invalidated: AtomicU64,
    applied: AtomicU64,
}

/// A failed placement rebuilds the cache and tries again at most this often.
const RETRY_REBUILD_AFTER: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves numbers that are at worst
    // conservative; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SchedulerService {
    /// Build the cache from the region database.
    pub async fn new(db: Db, opts: SchedulerOptions) -> Result<Arc<SchedulerService>, HttpError> {
        let snap = load::full(&db, opts.ip_reuse_after).await?;
        Ok(Self::build(Some(db), snap, opts))
    }

    /// A cache over a fleet assembled in memory, with no database behind
    /// it (tests, the benchmark): confirmed placements become usage.
    pub fn from_snapshot(snap: Snapshot, opts: SchedulerOptions) -> Arc<SchedulerService> {
        Self::build(None, snap, opts)
    }

    fn build(db: Option<Db>, snap: Snapshot, opts: SchedulerOptions) -> Arc<SchedulerService> {
        let (fleet, dy) = fleet::build(&snap, 1);
        let scorer = Scorer {
            policy: opts.policy,
            weights: opts.weights(),
        };
        Arc::new(SchedulerService {
            db,
            scorer,
            history: Mutex::new(History::new(opts.history_size)),
            statics: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                fleet: Arc::new(fleet),
                dy,
                sessions: HashMap::new(),
                expiry: BinaryHeap::new(),
                dirty: HashMap::new(),
                full: false,
                last_full: Instant::now(),
            }),
            opts,
            wake: tokio::sync::Notify::new(),
            reload: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(1),
            invalidated: AtomicU64::new(0),
            applied: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &SchedulerOptions {
        &self.opts
    }

    fn credits(dy: &Dyn, req: &Request) -> Vec<(u32, Credit)> {
        req.guest_ids
            .iter()
            .filter_map(|g| dy.guests.get(g))
            .map(|g| {
                (
                    g.host,
                    Credit {
                        cpu: g.cpu,
                        mem: g.mem,
                    },
                )
            })
            .collect()
    }

    /// The request's static part and static filter pass, shared by
    /// requests of the same shape until the fleet changes.
    fn prepare(
        &self,
        fleet: &Arc<Fleet>,
        input: &ScheduleInput,
    ) -> Result<(Request, Arc<StaticEntry>), Vec<String>> {
        let key = request::static_key(input);
        let hit = lock(&self.statics)
            .get(&key)
            .filter(|e| Arc::ptr_eq(&e.fleet, fleet))
            .cloned();
        let entry = match hit {
            Some(e) => e,
            None => match request::resolve_static(fleet, input) {
                Ok(req) => {
                    let (pass, rejects) = place::static_pass(fleet, &req);
                    let e = Arc::new(StaticEntry {
                        fleet: fleet.clone(),
                        req,
                        pass,
                        rejects,
                    });
                    let mut m = lock(&self.statics);
                    if m.len() >= STATIC_CACHE || m.values().any(|x| !Arc::ptr_eq(&x.fleet, fleet))
                    {
                        m.clear();
                    }
                    m.insert(key, e.clone());
                    e
                }
                Err(mut errs) => {
                    errs.extend(request::apply_numbers(fleet, input, &self.opts, None));
                    return Err(errs);
                }
            },
        };
        let mut req = entry.req.clone();
        let errs = request::apply_numbers(fleet, input, &self.opts, Some(&mut req));
        if errs.is_empty() {
            Ok((req, entry))
        } else {
            Err(errs)
        }
    }

    /// Resolve and filter statically, then run `f` under the lock with the
    /// same fleet the request was resolved against.
    fn with_request<T>(
        &self,
        input: &ScheduleInput,
        f: impl FnOnce(&mut State, &Arc<Fleet>, &Request, &[(u32, i32)]) -> T,
    ) -> Result<Prepared<T>, Vec<String>> {
        let fleet = lock(&self.state).fleet.clone();
        let (req, entry) = self.prepare(&fleet, input)?;
        let mut st = lock(&self.state);
        self.expire(&mut st, Instant::now());
        if Arc::ptr_eq(&st.fleet, &fleet) {
            let out = f(&mut st, &fleet, &req, &entry.pass);
            return Ok((fleet, req, entry, out));
        }
        // The cache was rebuilt meanwhile: indices changed, start over
        // (rare; under the lock this time).
        let fleet = st.fleet.clone();
        let (req, entry) = self.prepare(&fleet, input)?;
        let out = f(&mut st, &fleet, &req, &entry.pass);
        Ok((fleet, req, entry, out))
    }

    fn candidate(fleet: &Fleet, session: &str, p: &Placement) -> Candidate {
        let host = &fleet.hosts[p.host as usize];
        Candidate {
            session_id: session.to_string(),
            host_id: host.id.clone(),
            name: host.name.clone(),
            disks: p
                .disks
                .iter()
                .map(|(s, _)| CandidateDisk {
                    storage_ids: vec![fleet.storages[*s as usize].id.clone()],
                })
                .collect(),
            nets: p
                .nets
                .iter()
                .map(|(n, _)| CandidateNet {
                    network_ids: vec![fleet.networks[*n as usize].id.clone()],
                })
                .collect(),
            error: String::new(),
        }
    }

    /// Place `input.count` instances: one candidate each, all or none. The
    /// placements are held for the session until [`Self::completed`].
    pub async fn schedule(&self, input: &ScheduleInput) -> Result<Vec<Candidate>, HttpError> {
        let first = self.schedule_once(input).await;
        let Err(e) = &first else {
            return first;
        };
        if e.class != cloudpods_apis::ErrorClass::InsufficientResourceError || self.db.is_none() {
            return first;
        }
        // Before saying no, make sure the answer is not an artefact of a
        // stale cache: re-read what is pending and, at most every few
        // seconds, everything.
        {
            let mut st = lock(&self.state);
            if st.last_full.elapsed() >= RETRY_REBUILD_AFTER {
                st.full = true;
            } else if st.dirty.is_empty() {
                return first;
            }
        }
        if let Err(e) = self.refresh_due(true).await {
            tracing::warn!(error = %e.details, "scheduler cache refresh failed");
            return first;
        }
        self.schedule_once(input).await
    }

    async fn schedule_once(&self, input: &ScheduleInput) -> Result<Vec<Candidate>, HttpError> {
        let t0 = Instant::now();
        // The region said something changed (a host came online, a guest
        // released its resources): read it before deciding, so that a
        // request right after the change does not see the old numbers.
        // A resize on its own host (`guest_ids` + `prefer_host`) needs the
        // guest's present usage in the cache to credit it: read the host
        // even if its last change is still within the commit grace.
        let resize = !input.guest_ids.is_empty()
            && !input.prefer_host.is_empty()
            && lock(&self.state).dirty.contains_key(&input.prefer_host);
        if (resize || self.invalidations_due())
            && let Err(e) = self.refresh_due(resize).await
        {
            tracing::warn!(error = %e.details, "scheduler cache refresh failed");
        }
        let mut input = input.clone();
        if input.session_id.is_empty() {
            input.session_id = uuid::Uuid::new_v4().to_string();
        }
        let session = input.session_id.clone();
        let ttl = self.opts.reservation_ttl;
        let res = self.with_request(&input, |st, fleet, req, pass| {
            // A retried session replaces what it held before.
            Self::release(st, &session, |i| i.state == ItemState::Pending);
            let credits = Self::credits(&st.dy, req);
            let out = place::place(fleet, &mut st.dy, req, pass, &self.scorer, credits);
            if out.placements.len() < req.count as usize {
                for p in &out.placements {
                    place::apply(&mut st.dy, p, -1);
                }
            } else {
                let deadline = Instant::now() + ttl;
                let guests: Arc<[String]> = req.guest_ids.clone().into();
                st.sessions
                    .entry(session.clone())
                    .or_default()
                    .extend(out.placements.iter().map(|p| Item {
                        p: p.clone(),
                        state: ItemState::Pending,
                        deadline,
                        guests: guests.clone(),
                    }));
                st.expiry.push(Reverse((deadline, session.clone())));
            }
            out
        });
        let (fleet, req, statics, out) = match res {
            Ok(r) => r,
            Err(errs) => {
                let msg = errs.join("; ");
                self.record(&input, None, &[], &msg, t0, false, None);
                return Err(HttpError::input(msg));
            }
        };
        // Hosts that passed the static filters first: the closest misses.
        let rejects: Vec<&(u32, Reject)> =
            out.rejects.iter().chain(statics.rejects.iter()).collect();
        let candidates: Vec<Candidate> = out
            .placements
            .iter()
            .map(|p| Self::candidate(&fleet, &session, p))
            .collect();
        if candidates.len() < req.count as usize {
            let msg = reasons::failure(&fleet, &req, candidates.len(), &rejects);
            self.record(
                &input,
                Some((&fleet, &req)),
                &[],
                &msg,
                t0,
                false,
                Some(&rejects),
            );
            return Err(HttpError::insufficient(msg));
        }
        self.record(
            &input,
            Some((&fleet, &req)),
            &candidates,
            "",
            t0,
            false,
            Some(&rejects),
        );
        Ok(candidates)
    }

    /// Could `input` be placed now, and if not, why (nothing is held).
    pub async fn try_forecast(&self, input: &ScheduleInput) -> Result<ForecastOutput, HttpError> {
        let t0 = Instant::now();
        if self.invalidations_due()
            && let Err(e) = self.refresh_due(false).await
        {
            tracing::warn!(error = %e.details, "scheduler cache refresh failed");
        }
        let mut input = input.clone();
        if input.session_id.is_empty() {
            input.session_id = uuid::Uuid::new_v4().to_string();
        }
        let res = self.with_request(&input, |st, fleet, req, pass| {
            let credits = Self::credits(&st.dy, req);
            let out = place::place(fleet, &mut st.dy, req, pass, &self.scorer, credits);
            for p in &out.placements {
                place::apply(&mut st.dy, p, -1);
            }
            out
        });
        let (fleet, req, statics, out) = match res {
            Ok(r) => r,
            Err(errs) => {
                let msg = errs.join("; ");
                self.record(&input, None, &[], &msg, t0, true, None);
                return Err(HttpError::input(msg));
            }
        };
        let rejects: Vec<&(u32, Reject)> =
            out.rejects.iter().chain(statics.rejects.iter()).collect();
        let candidates: Vec<Candidate> = out
            .placements
            .iter()
            .map(|p| Self::candidate(&fleet, &input.session_id, p))
            .collect();
        let (mut filtered, _) = reasons::filtered(&fleet, &req, &rejects, usize::MAX);
        filtered.sort_by(|a, b| a.id.cmp(&b.id));
        let can = candidates.len() >= req.count as usize;
        let mut not_allow = Vec::new();
        if !can {
            not_allow.push(format!(
                "{} of {} instances can be placed ({})",
                candidates.len(),
                req.count,
                req.describe()
            ));
        }
        not_allow.extend(reasons::aggregate(&rejects));
        let err = if can {
            String::new()
        } else {
            reasons::failure(&fleet, &req, candidates.len(), &rejects)
        };
        self.record(
            &input,
            Some((&fleet, &req)),
            &candidates,
            &err,
            t0,
            true,
            Some(&rejects),
        );
        Ok(ForecastOutput {
            can_create: can,
            req_count: req.count as i64,
            allow_count: candidates.len() as i64,
            candidates,
            not_allow_reasons: not_allow,
            filtered_candidates: filtered,
        })
    }

    /// [`Self::try_forecast`], with bad input answered as "cannot create".
    pub async fn forecast(&self, input: &ScheduleInput) -> ForecastOutput {
        match self.try_forecast(input).await {
            Ok(o) => o,
            Err(e) => ForecastOutput {
                can_create: false,
                req_count: input.count.max(1),
                not_allow_reasons: vec![e.details],
                ..Default::default()
            },
        }
    }

    /// The session's placements were written to the database (or given up):
    /// stop holding them once the database shows them.
    pub async fn completed(&self, session_id: &str) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let Some(items) = st.sessions.remove(session_id) else {
            return;
        };
        if self.db.is_none() {
            // No database will ever show them: they become usage.
            for it in items {
                place::apply(&mut st.dy, &it.p, -1);
                Self::fold_into_usage(&mut st.dy, &it.p);
            }
            return;
        }
        let deadline = now + self.opts.committed_ttl;
        let grace = now + self.opts.commit_grace;
        let mut kept = Vec::with_capacity(items.len());
        for mut it in items {
            if it.state == ItemState::Pending {
                it.state = ItemState::Committed(now);
                it.deadline = deadline;
            }
            let id = st.fleet.hosts[it.p.host as usize].id.clone();
            st.dirty
                .entry(id)
                .and_modify(|t| *t = (*t).max(grace))
                .or_insert(grace);
            kept.push(it);
        }
        st.sessions.insert(session_id.to_string(), kept);
        st.expiry.push(Reverse((deadline, session_id.to_string())));
        drop(st);
        self.wake.notify_one();
    }

    fn fold_into_usage(dy: &mut Dyn, p: &Placement) {
        let hd = &mut dy.hosts[p.host as usize];
        hd.cpu_used += p.cpu;
        hd.mem_used += p.mem;
        if p.counted {
            hd.guests += 1;
        }
        for &(s, mb) in &p.disks {
            dy.storages[s as usize].used += mb;
        }
        for &(n, addr) in &p.nets {
            let nd = &mut dy.nets[n as usize];
            match addr {
                Some(a) => {
                    nd.used.insert(a);
                }
                None => nd.extra += 1,
            }
        }
    }

    /// Drop a session's items matching `which`.
    fn release(st: &mut State, session: &str, which: impl Fn(&Item) -> bool) {
        let State { sessions, dy, .. } = st;
        if let Some(items) = sessions.get_mut(session) {
            items.retain(|it| {
                if which(it) {
                    place::apply(dy, &it.p, -1);
                    false
                } else {
                    true
                }
            });
            if items.is_empty() {
                sessions.remove(session);
            }
        }
    }

    /// Release what outlived its deadline; the hosts are re-read since the
    /// caller may have written them without saying so.
    fn expire(&self, st: &mut State, now: Instant) {
        while let Some(Reverse((t, _))) = st.expiry.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, session))) = st.expiry.pop() else {
                break;
            };
            let mut hosts = Vec::new();
            let State { sessions, dy, .. } = &mut *st;
            if let Some(items) = sessions.get_mut(&session) {
                items.retain(|it| {
                    if it.deadline <= now {
                        place::apply(dy, &it.p, -1);
                        hosts.push(it.p.host);
                        false
                    } else {
                        true
                    }
                });
                if items.is_empty() {
                    sessions.remove(&session);
                }
            }
            if self.db.is_some() {
                for h in hosts {
                    let id = st.fleet.hosts[h as usize].id.clone();
                    st.dirty.entry(id).or_insert(now);
                }
            }
        }
    }

    /// Re-read a host from the database soon (its guests, storages or
    /// state changed).
    pub fn invalidate_host(&self, host_id: &str) {
        tracing::debug!(host = host_id, "scheduler cache: host invalidated");
        let now = Instant::now();
        self.invalidated.fetch_add(1, Ordering::SeqCst);
        lock(&self.state)
            .dirty
            .entry(host_id.to_string())
            .and_modify(|t| *t = (*t).min(now))
            .or_insert(now);
        self.wake.notify_one();
    }

    /// Invalidations that are due now (not those waiting out a commit grace).
    fn invalidations_due(&self) -> bool {
        // An invalidation not applied yet — pending, or being applied by
        // the background refresh right now (then `refresh_due` waits for it).
        self.db.is_some()
            && self.invalidated.load(Ordering::SeqCst) > self.applied.load(Ordering::SeqCst)
    }

    /// Rebuild the whole cache soon.
    pub fn invalidate_all(&self) {
        self.invalidated.fetch_add(1, Ordering::SeqCst);
        lock(&self.state).full = true;
        self.wake.notify_one();
    }

    /// Do now what the invalidations asked for (the background task does
    /// it on its own; tests and `sync_clean=true` call this).
    pub async fn refresh(&self) -> Result<(), HttpError> {
        self.refresh_due(true).await
    }

    async fn refresh_due(&self, force: bool) -> Result<(), HttpError> {
        let Some(db) = self.db.clone() else {
            let mut st = lock(&self.state);
            st.dirty.clear();
            st.full = false;
            return Ok(());
        };
        let _one = self.reload.lock().await;
        let seq = self.invalidated.load(Ordering::SeqCst);
        let started = Instant::now();
        let (full, hosts) = {
            let mut st = lock(&self.state);
            let full = std::mem::take(&mut st.full);
            let due: Vec<String> = st
                .dirty
                .iter()
                .filter(|(_, t)| force || **t <= started)
                .map(|(k, _)| k.clone())
                .collect();
            for h in &due {
                st.dirty.remove(h);
            }
            (full, due)
        };
        tracing::debug!(full, hosts = hosts.len(), "refreshing the scheduler cache");
        let res = if full {
            self.rebuild(&db, started).await
        } else if hosts.is_empty() {
            Ok(())
        } else {
            match load::hosts(&db, &hosts, self.opts.ip_reuse_after).await {
                Ok(data) => {
                    let done = {
                        let mut st = lock(&self.state);
                        Self::apply_hosts(&mut st, &data, started, &self.opts)
                    };
                    if done {
                        Ok(())
                    } else {
                        self.rebuild(&db, started).await
                    }
                }
                Err(e) => Err(HttpError::from(e)),
            }
        };
        if let Err(e) = &res {
            tracing::warn!(error = %e, "scheduler cache refresh failed");
            let mut st = lock(&self.state);
            st.full |= full;
            for h in hosts {
                st.dirty.entry(h).or_insert(started);
            }
        } else {
            self.applied.fetch_max(seq, Ordering::SeqCst);
        }
        res
    }

    async fn rebuild(&self, db: &Db, started: Instant) -> Result<(), HttpError> {
        let snap = load::full(db, self.opts.ip_reuse_after).await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (fleet, mut dy) = fleet::build(&snap, generation);
        let mut st = lock(&self.state);
        let old = st.fleet.clone();
        for items in st.sessions.values_mut() {
            items.retain_mut(|it| remap(&old, &fleet, &mut it.p));
            for it in items.iter() {
                place::apply(&mut dy, &it.p, 1);
            }
        }
        st.sessions.retain(|_, v| !v.is_empty());
        st.fleet = Arc::new(fleet);
        st.dy = dy;
        st.last_full = started;
        Self::settle(&mut st, None, started, &self.opts);
        Ok(())
    }

    /// Update reloaded hosts in place; `false` when their shape changed
    /// (new storage, wire, tag, network…) and the cache must be rebuilt.
    fn apply_hosts(
        st: &mut State,
        data: &load::HostsReload,
        started: Instant,
        opts: &SchedulerOptions,
    ) -> bool {
        let fleet = st.fleet.clone();
        let mut set = HashSet::new();
        for h in &data.hosts {
            match fleet.host_ix.id(&h.id) {
                Some(ix) if fleet.host_same_shape(ix, h) => {
                    set.insert(ix);
                }
                _ => return false,
            }
        }
        for s in &data.storages {
            match fleet.storage_ix.id(&s.id) {
                Some(ix) if fleet.storage_same_shape(ix, s) => {}
                _ => return false,
            }
        }
        let mut seen_nets = HashSet::new();
        for n in &data.networks {
            match fleet.network_ix.id(&n.id) {
                Some(ix) if fleet.network_same_shape(ix, n) => {
                    seen_nets.insert(ix);
                }
                _ => return false,
            }
        }
        // A network of these wires that is gone.
        for &h in &set {
            for &w in &fleet.hosts[h as usize].wires {
                if fleet.wires[w as usize]
                    .networks
                    .iter()
                    .any(|n| !seen_nets.contains(n))
                {
                    return false;
                }
            }
        }
        let dy = &mut st.dy;
        for h in &data.hosts {
            let Some(ix) = fleet.host_ix.id(&h.id) else {
                continue;
            };
            let old = &dy.hosts[ix as usize];
            let mut nd = fleet::host_dyn(h);
            nd.res_cpu = old.res_cpu;
            nd.res_mem = old.res_mem;
            nd.res_count = old.res_count;
            dy.hosts[ix as usize] = nd;
        }
        for id in &data.missing {
            if let Some(ix) = fleet.host_ix.id(id) {
                dy.hosts[ix as usize].deleted = true;
                set.insert(ix);
            }
        }
        dy.guests.retain(|_, g| !set.contains(&g.host));
        for g in &data.guests {
            if let Some(ix) = fleet.host_ix.id(&g.host_id) {
                fleet::add_guest(dy, ix, g);
            }
        }
        for s in &data.storages {
            if let Some(ix) = fleet.storage_ix.id(&s.id) {
                let res = dy.storages[ix as usize].res;
                dy.storages[ix as usize] = fleet::storage_dyn(s);
                dy.storages[ix as usize].res = res;
            }
        }
        for n in &data.networks {
            if let Some(ix) = fleet.network_ix.id(&n.id) {
                let nd = &mut dy.nets[ix as usize];
                nd.used = fleet::net_dyn(n).used;
                nd.extra = 0;
            }
        }
        Self::settle(st, Some(&set), started, opts);
        true
    }

    /// Confirmed placements on reloaded hosts: the database shows their CPU
    /// and memory now; their storage and addresses too once the guests are
    /// past their disk and network stages.
    fn settle(
        st: &mut State,
        hosts: Option<&HashSet<u32>>,
        started: Instant,
        opts: &SchedulerOptions,
    ) {
        let State {
            sessions,
            dy,
            dirty,
            fleet,
            ..
        } = st;
        let mut again: Vec<(u32, Instant)> = Vec::new();
        for items in sessions.values_mut() {
            items.retain_mut(|it| {
                let ItemState::Committed(at) = it.state else {
                    return true;
                };
                if hosts.is_some_and(|s| !s.contains(&it.p.host)) {
                    return true;
                }
                // Within the grace the commit may not have landed yet,
                // unless the reload already shows the session's guests on
                // this host (the region writes them all before confirming).
                if at + opts.commit_grace > started
                    && !it
                        .guests
                        .iter()
                        .any(|g| dy.guests.get(g).is_some_and(|u| u.host == it.p.host))
                {
                    again.push((it.p.host, at + opts.commit_grace));
                    return true;
                }
                if it.p.cpu != 0 || it.p.mem != 0 || it.p.counted {
                    let part = Placement {
                        host: it.p.host,
                        cpu: it.p.cpu,
                        mem: it.p.mem,
                        counted: it.p.counted,
                        disks: Vec::new(),
                        nets: Vec::new(),
                    };
                    place::apply(dy, &part, -1);
                    it.p.cpu = 0;
                    it.p.mem = 0;
                    it.p.counted = false;
                }
                let creating = it.guests.iter().any(|g| {
                    dy.guests
                        .get(g)
                        .is_some_and(|u| u.host == it.p.host && u.before_resources)
                });
                if creating {
                    again.push((it.p.host, started + SETTLE_RETRY));
                    true
                } else {
                    place::apply(dy, &it.p, -1);
                    false
                }
            });
        }
        sessions.retain(|_, v| !v.is_empty());
        for (h, t) in again {
            let id = fleet.hosts[h as usize].id.clone();
            dirty
                .entry(id)
                .and_modify(|x| *x = (*x).min(t))
                .or_insert(t);
        }
    }

    /// Periodic rebuild, reloads on invalidation, expiry of reservations.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = me.wake.notified() => {
                        // Let a burst of invalidations arrive together.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                {
                    let mut st = lock(&me.state);
                    me.expire(&mut st, Instant::now());
                    if st.last_full.elapsed() >= me.opts.refresh_interval {
                        st.full = true;
                    }
                }
                // Errors are logged and the work stays queued.
                let _ = me.refresh_due(false).await;
            }
        })
    }

    pub fn stats(&self) -> Stats {
        let st = lock(&self.state);
        let mut s = Stats {
            hosts: st.fleet.hosts.len(),
            generation: st.fleet.generation,
            sessions: st.sessions.len(),
            dirty: st.dirty.len(),
            ..Default::default()
        };
        for it in st.sessions.values().flatten() {
            match it.state {
                ItemState::Pending => s.pending += 1,
                ItemState::Committed(_) => s.committed += 1,
            }
        }
        s
    }

    fn item(fleet: &Fleet, dy: &Dyn, h: u32) -> CandidateItem {
        let host = &fleet.hosts[h as usize];
        let hd = &dy.hosts[h as usize];
        let (mut sf, mut sr, mut stot) = (0.0, 0.0, 0.0);
        for &s in &host.storages {
            let sd = &dy.storages[s as usize];
            sf += sd.free().max(0.0);
            sr += sd.res as f64;
            stot += sd.total;
        }
        CandidateItem {
            id: host.id.clone(),
            name: host.name.clone(),
            cpu: ResultResource {
                free: hd.cpu_free(),
                reserved: hd.res_cpu as f64,
                total: hd.cpu_total,
            },
            mem: ResultResource {
                free: hd.mem_free(),
                reserved: hd.res_mem as f64,
                total: hd.mem_total,
            },
            storage: ResultResource {
                free: sf,
                reserved: sr,
                total: stot,
            },
            status: hd.status.to_string(),
            host_status: hd.host_status.to_string(),
            enable_status: if hd.enabled { "enable" } else { "disable" }.into(),
            host_type: host.host_type.clone(),
            is_maintenance: hd.maintenance,
            zone_id: host.zone_id.clone(),
            zone: host
                .zone
                .map(|z| fleet.zones[z as usize].name.clone())
                .unwrap_or_default(),
            cloudregion_id: host
                .region
                .map(|r| fleet.regions[r as usize].id.clone())
                .unwrap_or_default(),
            domain_id: host.domain_id.clone(),
            schedtags: host
                .tags
                .iter()
                .map(|t| fleet.tags[*t as usize].name.clone())
                .collect(),
            guests: hd.guests as i64,
            creating: hd.in_flight() as i64,
            pending: hd.res_count as i64,
        }
    }

    pub fn candidate_list(&self, q: &CandidateQuery) -> CandidateList {
        let st = lock(&self.state);
        let fleet = &st.fleet;
        let limit = if q.limit == 0 { 20 } else { q.limit };
        let matches: Vec<u32> = (0..fleet.hosts.len() as u32)
            .filter(|&h| {
                let host = &fleet.hosts[h as usize];
                let hd = &st.dy.hosts[h as usize];
                (q.zone.is_empty()
                    || host.zone_id == q.zone
                    || host
                        .zone
                        .is_some_and(|z| fleet.zones[z as usize].name == q.zone))
                    && (q.region.is_empty()
                        || host.region.is_some_and(|r| {
                            fleet.regions[r as usize].id == q.region
                                || fleet.regions[r as usize].name == q.region
                        }))
                    && (q.host_type.is_empty()
                        || q.host_type == "all"
                        || host.host_type == q.host_type
                        || (q.host_type == "host"
                            && request::host_type_runs("kvm", &host.host_type)))
                    && (!q.available || crate::filters::status(hd).is_none())
            })
            .collect();
        CandidateList {
            total: matches.len() as i64,
            data: matches
                .iter()
                .skip(q.offset)
                .take(limit)
                .map(|&h| Self::item(fleet, &st.dy, h))
                .collect(),
            limit: limit as i64,
            offset: q.offset as i64,
        }
    }

    pub fn candidate_detail(&self, id: &str) -> Option<CandidateDetail> {
        let st = lock(&self.state);
        let fleet = &st.fleet;
        let h = fleet.host_ix.find(id)?;
        let host = &fleet.hosts[h as usize];
        let storages = host
            .storages
            .iter()
            .map(|&s| {
                let (sp, sd) = (&fleet.storages[s as usize], &st.dy.storages[s as usize]);
                CandidateStorage {
                    id: sp.id.clone(),
                    name: sp.name.clone(),
                    storage_type: sp.storage_type.clone(),
                    medium_type: sp.medium_type.clone(),
                    enabled: sd.enabled,
                    status: sd.status.to_string(),
                    capacity: ResultResource {
                        free: sd.free(),
                        reserved: sd.res as f64,
                        total: sd.total,
                    },
                }
            })
            .collect();
        let networks = host
            .wires
            .iter()
            .flat_map(|&w| fleet.wires[w as usize].networks.iter().copied())
            .map(|n| {
                let net = &fleet.networks[n as usize];
                let nd = &st.dy.nets[n as usize];
                CandidateNetwork {
                    id: net.id.clone(),
                    name: net.name.clone(),
                    wire_id: net.wire_id.clone(),
                    server_type: net.server_type.clone(),
                    ports: ResultResource {
                        free: st.dy.net_free(fleet, n) as f64,
                        reserved: (nd.res + nd.res_addrs.values().sum::<u32>()) as f64,
                        total: net.size() as f64,
                    },
                }
            })
            .collect();
        let mut sessions: Vec<String> = st
            .sessions
            .iter()
            .filter(|(_, items)| items.iter().any(|i| i.p.host == h))
            .map(|(s, _)| s.clone())
            .collect();
        sessions.sort();
        Some(CandidateDetail {
            host: Self::item(fleet, &st.dy, h),
            storages,
            networks,
            wires: host
                .wires
                .iter()
                .map(|w| fleet.wires[*w as usize].id.clone())
                .collect(),
            sessions,
        })
    }

    pub fn history_list(&self, offset: usize, limit: usize) -> HistoryList {
        lock(&self.history).list(offset, if limit == 0 { 20 } else { limit })
    }

    pub fn history_detail(&self, session: &str) -> Option<HistoryDetail> {
        lock(&self.history).get(session).map(|e| e.detail.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        input: &ScheduleInput,
        ctx: Option<(&Fleet, &Request)>,
        candidates: &[Candidate],
        error: &str,
        t0: Instant,
        suggestion: bool,
        rejects: Option<&[&(u32, Reject)]>,
    ) {
        let (not_allow, filtered, total) = match (ctx, rejects) {
            (Some((fleet, req)), Some(rs)) => {
                let (f, total) = reasons::filtered(fleet, req, rs, self.opts.history_hosts);
                (reasons::aggregate(rs), f, total)
            }
            _ => (Vec::new(), Vec::new(), 0),
        };
        let time = cloudpods_apis::time::now();
        let consuming = format!("{:?}", t0.elapsed());
        let output = serde_json::json!({"candidates": candidates}).to_string();
        let item = HistoryItem {
            time: time.clone(),
            consuming: consuming.clone(),
            session_id: input.session_id.clone(),
            count: input.count.max(1).to_string(),
            tenants: if input.project.is_empty() {
                Vec::new()
            } else {
                vec![input.project.clone()]
            },
            status: if error.is_empty() {
                "succeed"
            } else {
                "failed"
            }
            .into(),
            guests: input.guest_ids.clone(),
            is_suggestion: suggestion,
            placed: candidates.len() as i64,
            error: error.to_string(),
        };
        let detail = HistoryDetail {
            time,
            consuming,
            session_id: input.session_id.clone(),
            input: serde_json::to_string(input).unwrap_or_default(),
            output,
            error: error.to_string(),
            is_suggestion: suggestion,
            schedule_input: input.clone(),
            candidates: candidates.to_vec(),
            not_allow_reasons: not_allow,
            filtered_candidates: filtered,
            filtered_total: total as i64,
        };
        lock(&self.history).push(Entry { item, detail });
    }
}

/// Re-point a placement from one fleet's indices to another's; `false`
/// when its host is gone.
fn remap(old: &Fleet, new: &Fleet, p: &mut Placement) -> bool {
    let Some(h) = new.host_ix.id(&old.hosts[p.host as usize].id) else {
        return false;
    };
    p.host = h;
    p.disks = p
        .disks
        .iter()
        .filter_map(|&(s, mb)| Some((new.storage_ix.id(&old.storages[s as usize].id)?, mb)))
        .collect();
    p.nets = p
        .nets
        .iter()
        .filter_map(|&(n, a)| Some((new.network_ix.id(&old.networks[n as usize].id)?, a)))
        .collect();
    true
}

#[async_trait]
impl cloudpods_region::Scheduler for SchedulerService {
    async fn schedule(&self, input: &ScheduleInput) -> Result<Vec<Candidate>, HttpError> {
        SchedulerService::schedule(self, input).await
    }

    async fn completed(&self, session_id: &str) {
        SchedulerService::completed(self, session_id).await
    }

    fn invalidate_host(&self, host_id: &str) {
        if !host_id.is_empty() {
            SchedulerService::invalidate_host(self, host_id)
        }
    }

    fn invalidate_all(&self) {
        SchedulerService::invalidate_all(self)
    }
}
