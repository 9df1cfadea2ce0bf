//! The engine: claiming tasks with leases, running steps, committing
//! progress, callbacks, subtasks, undo, archiving.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use cloudpods_db::row::s;
use cloudpods_db::{Db, DbTx, Row, Sql, TypedRow, crud};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use crate::models::{ARCHIVED_TASKS, TASK_OBJECTS, TASKS, TaskRow};
use crate::{Step, StepResult, SubtaskResult, TaskCtx, TaskDef, TaskError};

/// Engine tunables.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Tasks run concurrently by this process.
    pub workers: usize,
    /// A claimed task's lease; renewed while a step runs.
    pub lease: Duration,
    /// How often the queue is polled when nothing woke the engine.
    pub poll: Duration,
    /// Base URL of this service for agent callbacks (`{base}/tasks/{id}`).
    pub callback_base: String,
    /// Key for the callback URLs' signatures.
    pub callback_secret: Vec<u8>,
    /// Finished tasks move to `archived_tasks_tbl` after this long.
    pub archive_after: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            workers: 16,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            callback_base: "http://127.0.0.1:30888".into(),
            callback_secret: Vec::new(),
            archive_after: Duration::from_secs(3600),
        }
    }
}

/// Test instrumentation (omicron's saga test helpers): run every step twice,
/// or fail at a given step.
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    pub repeat_steps: bool,
    /// `(task name, step)`: the step fails after it ran once.
    pub fail_at: Option<(String, String)>,
}

/// Who a task belongs to.
#[derive(Debug, Clone, Default)]
pub struct Owner {
    pub tenant_id: String,
    pub domain_id: String,
    pub user_id: String,
    pub user: String,
    /// Whatever the task needs to act for the user later.
    pub cred: Value,
}

/// A task to create.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub name: String,
    pub obj_type: String,
    pub obj_id: String,
    pub obj_name: String,
    pub params: Value,
    pub owner: Owner,
    /// Further objects of a multi-object task.
    pub objects: Vec<String>,
    pub request_id: String,
    pub(crate) parent: Option<(String, String)>,
}

const OPEN: &[&str] = &[
    "queued",
    "running",
    "waiting",
    "waiting_subtasks",
    "failing",
];

pub struct Engine {
    db: Db,
    node: String,
    opts: EngineOptions,
    defs: RwLock<HashMap<String, Arc<dyn TaskDef>>>,
    wake: Notify,
    active: Mutex<HashSet<String>>,
    hooks: RwLock<TestHooks>,
    stopped: AtomicBool,
    slots: Arc<Semaphore>,
    me: Weak<Engine>,
}

/// How long after a restart a task waiting for an agent callback waits
/// before its step is sent again.
const RESTART_CALLBACK_GRACE: Duration = Duration::from_secs(10);

fn now() -> String {
    cloudpods_apis::time::now()
}

fn later(d: Duration) -> String {
    cloudpods_apis::time::format(
        chrono::Utc::now() + chrono::Duration::from_std(d).unwrap_or_default(),
    )
}

/// What the driver does after one turn of a task.
enum Flow {
    /// Read the task again and take the next turn.
    Again,
    /// The task is parked (waiting, finished, or no longer ours).
    Parked,
}

impl Engine {
    /// `node` identifies this process in leases; keep it stable across
    /// restarts of the same deployment member so that a restart resumes its
    /// own tasks at once instead of waiting for the leases to expire.
    pub fn new(db: Db, node: impl Into<String>, opts: EngineOptions) -> Arc<Engine> {
        let workers = opts.workers.max(1);
        Arc::new_cyclic(|me| Engine {
            db,
            node: node.into(),
            opts,
            defs: RwLock::new(HashMap::new()),
            wake: Notify::new(),
            active: Mutex::new(HashSet::new()),
            hooks: RwLock::new(TestHooks::default()),
            stopped: AtomicBool::new(false),
            slots: Arc::new(Semaphore::new(workers)),
            me: me.clone(),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn register(&self, def: Arc<dyn TaskDef>) {
        if let Ok(mut d) = self.defs.write() {
            d.insert(def.name().to_string(), def);
        }
    }

    /// Names of the registered task types.
    pub fn task_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .defs
            .read()
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The steps of a registered task type, in order.
    pub fn task_steps(&self, name: &str) -> Option<&'static [&'static str]> {
        self.def(name).map(|d| d.steps())
    }

    pub fn set_hooks(&self, hooks: TestHooks) {
        if let Ok(mut h) = self.hooks.write() {
            *h = hooks;
        }
    }

    fn def(&self, name: &str) -> Option<Arc<dyn TaskDef>> {
        self.defs.read().ok()?.get(name).cloned()
    }

    /// Wake the dispatcher (new or resumed work).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn sign(&self, task_id: &str, stage: &str) -> String {
        // HMAC takes keys of any length; the error branch cannot happen.
        let Ok(mut mac) =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.opts.callback_secret)
        else {
            return String::new();
        };
        mac.update(task_id.as_bytes());
        mac.update(b":");
        mac.update(stage.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Whether `key` is the signature of `task_id`'s `stage` (constant-time
    /// comparison of the truncated MAC).
    fn verify(&self, task_id: &str, stage: &str, key: &str) -> bool {
        let Ok(tag) = hex::decode(key) else {
            return false;
        };
        if tag.len() != 16 {
            return false;
        }
        let Ok(mut mac) =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.opts.callback_secret)
        else {
            return false;
        };
        mac.update(task_id.as_bytes());
        mac.update(b":");
        mac.update(stage.as_bytes());
        mac.verify_truncated_left(&tag).is_ok()
    }

    /// The callback URL for a task's step, signed so that only the agent
    /// the request went to can complete it.
    pub fn notify_url(&self, task_id: &str, stage: &str) -> String {
        format!(
            "{}/tasks/{task_id}?stage={stage}&key={}",
            self.opts.callback_base.trim_end_matches('/'),
            self.sign(task_id, stage)
        )
    }

    /// Insert a task in the caller's transaction (so that an object and the
    /// task that drives it are committed together). Call [`Engine::wake`]
    /// after the commit.
    pub async fn submit_in(&self, tx: &mut DbTx, t: &NewTask) -> Result<String, TaskError> {
        let def = self
            .def(&t.name)
            .ok_or_else(|| TaskError(format!("unknown task type {}", t.name)))?;
        let (mut row, objects) = task_row(t);
        row.insert(
            "stage".into(),
            json!(def.steps().first().copied().unwrap_or("on_init")),
        );
        let id = s(&row, "id");
        crud::insert(&mut **tx, &TASKS, &row).await?;
        for o in objects {
            crud::insert(&mut **tx, &TASK_OBJECTS, &o).await?;
        }
        Ok(id)
    }

    /// Insert a task and wake the dispatcher.
    pub async fn submit(&self, t: NewTask) -> Result<String, TaskError> {
        let mut tx = self.db.begin().await?;
        let id = self.submit_in(&mut tx, &t).await?;
        tx.commit().await.map_err(cloudpods_db::DbError::from)?;
        self.wake();
        Ok(id)
    }

    /// An agent's answer for `task_id`. `stage`/`key` come from the
    /// notify URL; answers for a step the task is no longer in are ignored.
    pub async fn callback(
        &self,
        task_id: &str,
        stage: Option<&str>,
        key: Option<&str>,
        data: Value,
    ) -> Result<bool, TaskError> {
        let Some(task) = crud::get(self.db.read(), &TASKS, task_id).await? else {
            return Err(TaskError(format!("task {task_id} not found")));
        };
        let current = TaskRow::from_row(&task)?.stage;
        if let Some(st) = stage
            && st != current
        {
            tracing::info!(
                task = task_id,
                stage = st,
                current,
                "ignoring callback for another step"
            );
            return Ok(false);
        }
        // Only the agent the step's request went to holds this key; compare
        // in constant time so the key cannot be guessed byte by byte.
        let valid = key.is_some_and(|k| self.verify(task_id, &current, k));
        if !valid {
            return Err(TaskError("invalid callback signature".into()));
        }
        let mut q = Sql::new("UPDATE `tasks_tbl` SET `callback` = ");
        q.bind(data.to_string())
            .push(", `updated_at` = ")
            .bind(now())
            .push(", `wait_until` = CASE WHEN `status` = 'waiting' THEN NULL ELSE `wait_until` END")
            .push(", `status` = CASE WHEN `status` = 'waiting' THEN 'queued' ELSE `status` END WHERE `id` = ")
            .bind(task_id)
            .push(" AND `stage` = ")
            .bind(current)
            .push(" AND `status` IN ('queued', 'running', 'waiting')");
        let n = q
            .query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?
            .rows_affected();
        self.wake();
        Ok(n > 0)
    }

    /// Request cancellation: the task fails (and undoes its steps) before
    /// its next step.
    pub async fn cancel(&self, task_id: &str) -> Result<bool, TaskError> {
        let mut q = Sql::new(
            "UPDATE `tasks_tbl` SET `cancel_requested` = 1, `wait_until` = NULL, `status` = CASE WHEN `status` IN ('waiting', 'waiting_subtasks') THEN 'queued' ELSE `status` END WHERE `id` = ",
        );
        q.bind(task_id)
            .push(" AND `status` IN ('queued', 'running', 'waiting', 'waiting_subtasks')");
        let n = q
            .query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?
            .rows_affected();
        self.wake();
        Ok(n > 0)
    }

    /// Start the dispatcher and housekeeping. Tasks this node held before a
    /// restart are resumed immediately.
    pub async fn start(self: &Arc<Self>) -> Result<(), TaskError> {
        let mut q = Sql::new("UPDATE `tasks_tbl` SET `lease_until` = NULL WHERE `lease_owner` = ");
        q.bind(self.node.as_str());
        q.query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        // A callback sent while this process was down went to an address
        // that may no longer exist (a new port, a new node): resend waits
        // after a short grace instead of their full timeout. Stages are
        // idempotent, so a callback that does arrive in time wins and a
        // late duplicate is ignored.
        // A task of this node killed between sending its request and
        // committing the wait is still `running`, with the callback
        // deadline already set: it gets the same grace.
        let grace = later(RESTART_CALLBACK_GRACE);
        let mut q = Sql::new("UPDATE `tasks_tbl` SET `wait_until` = ");
        q.bind(grace.clone())
            .push(" WHERE (`status` = 'waiting' AND (`wait_until` IS NULL OR `wait_until` > ")
            .bind(grace.clone())
            .push(")) OR (`status` = 'running' AND `lease_owner` = ")
            .bind(self.node.as_str())
            .push(" AND `wait_until` > ")
            .bind(grace)
            .push(")");
        q.query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        let me = self.clone();
        tokio::spawn(async move { me.dispatch_loop().await });
        let me = self.clone();
        tokio::spawn(async move { me.housekeeping_loop().await });
        self.wake();
        Ok(())
    }

    /// Stop claiming new work (running steps finish).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake();
    }

    async fn dispatch_loop(self: Arc<Self>) {
        let mut last_sweep = std::time::Instant::now() - Duration::from_secs(60);
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            if last_sweep.elapsed() >= Duration::from_secs(2) {
                if let Err(e) = self.sweep_parents().await {
                    tracing::warn!(error = %e, "waking parents failed");
                }
                last_sweep = std::time::Instant::now();
            }
            if let Err(e) = self.dispatch_once().await {
                tracing::warn!(error = %e, "task dispatch failed");
            }
            let _ = tokio::time::timeout(self.opts.poll, self.wake.notified()).await;
        }
    }

    async fn dispatch_once(self: &Arc<Self>) -> Result<(), TaskError> {
        let t = now();
        // Waits that timed out: run the step again (resend).
        let mut q = Sql::new(
            "UPDATE `tasks_tbl` SET `status` = 'queued', `attempt` = `attempt` + 1, `wait_until` = NULL WHERE `status` = 'waiting' AND `wait_until` < ",
        );
        q.bind(t.clone());
        q.query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?;

        let mut q = Sql::new(
            "SELECT `id` FROM `tasks_tbl` WHERE `status` IN ('queued', 'running', 'failing') AND (`lease_until` IS NULL OR `lease_until` < ",
        );
        q.bind(t.clone())
            .push(") AND (`wait_until` IS NULL OR `wait_until` <= ")
            .bind(t)
            .push(") ORDER BY `created_at` LIMIT 256");
        let rows = crud::fetch_rows(self.db.read(), &TASKS, &q).await?;
        for r in rows {
            let id = s(&r, "id");
            if self.active.lock().map(|a| a.contains(&id)).unwrap_or(true) {
                continue;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                return Ok(());
            };
            if !self.claim(&id).await? {
                continue;
            }
            if let Ok(mut a) = self.active.lock() {
                a.insert(id.clone());
            }
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                me.run(&id).await;
                if let Ok(mut a) = me.active.lock() {
                    a.remove(&id);
                }
                me.wake();
            });
        }
        Ok(())
    }

    /// Take the lease of a task (compare-and-set).
    async fn claim(&self, id: &str) -> Result<bool, TaskError> {
        let t = now();
        let mut q = Sql::new("UPDATE `tasks_tbl` SET `lease_owner` = ");
        q.bind(self.node.as_str())
            .push(", `lease_until` = ")
            .bind(later(self.opts.lease))
            .push(", `status` = CASE WHEN `status` = 'queued' THEN 'running' ELSE `status` END, `start_at` = COALESCE(`start_at`, ")
            .bind(t.clone())
            .push(") WHERE `id` = ")
            .bind(id)
            .push(" AND `status` IN ('queued', 'running', 'failing') AND (`lease_until` IS NULL OR `lease_until` < ")
            .bind(t)
            .push(" OR `lease_owner` = ")
            .bind(self.node.as_str())
            .push(")");
        let n = q
            .query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?
            .rows_affected();
        Ok(n == 1)
    }

    /// Update the task while we hold its lease. Returns false when the
    /// lease was lost (another node owns the task now).
    async fn save(&self, tx: &mut DbTx, id: &str, changes: &Row) -> Result<bool, TaskError> {
        let mut q = crud::update_sql(&TASKS, changes);
        q.push(" WHERE `id` = ")
            .bind(id)
            .push(" AND `lease_owner` = ")
            .bind(self.node.as_str());
        let n = q
            .query()?
            .execute(&mut **tx)
            .await
            .map_err(cloudpods_db::DbError::from)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn run(self: &Arc<Self>, id: &str) {
        // Renew the lease while we work.
        let renew = {
            let me = self.clone();
            let id = id.to_string();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(me.opts.lease / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let mut q = Sql::new("UPDATE `tasks_tbl` SET `lease_until` = ");
                    q.bind(later(me.opts.lease))
                        .push(" WHERE `id` = ")
                        .bind(id.as_str())
                        .push(" AND `lease_owner` = ")
                        .bind(me.node.as_str());
                    if let Ok(q) = q.query() {
                        let _ = q.execute(me.db.write()).await;
                    }
                }
            })
        };
        if let Err(e) = self.drive(id).await {
            tracing::warn!(task = id, error = %e, "task run interrupted; it will be resumed");
            // Let another attempt pick it up soon.
            let mut q = Sql::new("UPDATE `tasks_tbl` SET `lease_until` = ");
            q.bind(later(Duration::from_secs(1)))
                .push(" WHERE `id` = ")
                .bind(id)
                .push(" AND `lease_owner` = ")
                .bind(self.node.as_str());
            if let Ok(q) = q.query() {
                let _ = q.execute(self.db.write()).await;
            }
        }
        renew.abort();
    }

    fn ctx(self: &Arc<Self>, row: &TaskRow) -> TaskCtx {
        TaskCtx {
            id: row.id.clone(),
            name: row.task_name.clone(),
            obj_type: row.obj_type.clone(),
            obj_id: row.obj_id.clone(),
            obj_name: row.object.clone(),
            params: row.params.clone(),
            state: row.state.clone(),
            user: row.user_cred.clone(),
            attempt: row.attempt,
            engine: self.clone(),
            children: Vec::new(),
            current_step: row.stage.clone(),
        }
    }

    /// Drive a claimed task until it parks (waits) or finishes.
    async fn drive(self: &Arc<Self>, id: &str) -> Result<(), TaskError> {
        loop {
            let row = crud::get(self.db.write(), &TASKS, id)
                .await?
                .ok_or_else(|| TaskError(format!("task {id} vanished")))?;
            let row = TaskRow::from_row(&row)?;
            if row.lease_owner != self.node {
                return Ok(());
            }
            let Some(def) = self.def(&row.task_name) else {
                return self.finish_failed(&row, "unknown task type").await;
            };
            let mut t = self.ctx(&row);
            let step = t.current_step.clone();
            let flow = if row.status == "failing" {
                self.undo_next(def.as_ref(), &row, &mut t).await?
            } else if row.cancel_requested {
                self.enter_failing(&row, &t, &step, "cancelled").await?;
                Flow::Parked
            } else {
                match self.run_current(def.as_ref(), &row, &mut t, &step).await? {
                    Some(result) => {
                        self.after_step(def.as_ref(), &row, &mut t, &step, result)
                            .await?
                    }
                    None => Flow::Parked,
                }
            };
            if matches!(flow, Flow::Parked) {
                return Ok(());
            }
        }
    }

    /// A failing task: undo the failed step, then every completed step,
    /// newest first, committing the remaining list after each undo; then
    /// the failure hook, and the task ends failed.
    async fn undo_next(
        self: &Arc<Self>,
        def: &dyn TaskDef,
        row: &TaskRow,
        t: &mut TaskCtx,
    ) -> Result<Flow, TaskError> {
        let id = row.id.as_str();
        // Undo the failed step, then every completed step, newest
        // first; the remaining list is committed after each undo.
        let mut pending: Vec<String> = t
            .state
            .get("__undo")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let failed = row.failed_step.clone();
        if !pending.is_empty() {
            let next = pending.remove(0);
            t.current_step = next.clone();
            if let Err(e) = def.undo_step(t, &next).await {
                // An undo that cannot finish is retried, never skipped.
                tracing::warn!(task = id, step = %next, error = %e, "undo failed; retrying");
                let mut ch = Row::new();
                ch.insert("state".into(), Value::Object(t.state.clone()));
                ch.insert("wait_until".into(), json!(later(Duration::from_secs(2))));
                ch.insert("lease_until".into(), Value::Null);
                let mut tx = self.db.begin().await?;
                self.save(&mut tx, id, &ch).await?;
                tx.commit().await.map_err(cloudpods_db::DbError::from)?;
                return Ok(Flow::Parked);
            }
            t.state.insert("__undo".into(), json!(pending));
            let mut ch = Row::new();
            ch.insert("state".into(), Value::Object(t.state.clone()));
            let mut tx = self.db.begin().await?;
            if !self.save(&mut tx, id, &ch).await? {
                return Ok(Flow::Parked);
            }
            tx.commit().await.map_err(cloudpods_db::DbError::from)?;
            return Ok(Flow::Again);
        }
        let reason = row.reason.clone();
        t.current_step = failed.clone();
        if let Err(e) = def.on_failure(t, &failed, &reason).await {
            tracing::warn!(task = id, error = %e, "failure hook failed; retrying");
            return Err(e);
        }
        self.finish(row, t, false, &reason).await?;
        Ok(Flow::Parked)
    }

    /// Run the current step: a pending callback, finished subtasks, or the
    /// step itself. `None`: woken early and parked again.
    async fn run_current(
        self: &Arc<Self>,
        def: &dyn TaskDef,
        row: &TaskRow,
        t: &mut TaskCtx,
        step: &str,
    ) -> Result<Option<StepResult>, TaskError> {
        let id = row.id.as_str();
        let callback = Some(row.callback.clone()).filter(|v| !v.is_null());
        let result = if let Some(data) = callback {
            if data
                .get("__status__")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.eq_ignore_ascii_case("ok"))
            {
                let reason = data
                    .get("__reason__")
                    .map(|r| match r {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "agent reported an error".into());
                Err(TaskError(reason))
            } else {
                def.on_callback(t, step, data).await
            }
        } else if t.state.get("__waiting_subtasks").and_then(Value::as_str) == Some(step) {
            let Some(results) = self.subtasks_finished(id, step).await? else {
                // Woken early: park again until the children finish.
                let mut ch = Row::new();
                ch.insert("status".into(), json!("waiting_subtasks"));
                ch.insert("lease_until".into(), Value::Null);
                let mut tx = self.db.begin().await?;
                self.save(&mut tx, id, &ch).await?;
                tx.commit().await.map_err(cloudpods_db::DbError::from)?;
                self.maybe_resume_parent(id, step).await?;
                return Ok(None);
            };
            t.state.remove("__waiting_subtasks");
            def.on_subtasks_done(t, step, results).await
        } else {
            let hooks = self.hooks.read().map(|h| h.clone()).unwrap_or_default();
            let mut r = def.run_step(t, step).await;
            if hooks.repeat_steps && r.is_ok() {
                t.children.clear();
                r = def.run_step(t, step).await;
            }
            if let Some((tn, st)) = &hooks.fail_at
                && *tn == row.task_name
                && *st == step
                && r.is_ok()
            {
                r = Err(TaskError(format!(
                    "injected failure at {}.{step}",
                    row.task_name
                )));
            }
            r
        };
        Ok(Some(result))
    }

    /// Record what the step answered: the next step, a wait, a retry, or
    /// the end of the task.
    async fn after_step(
        self: &Arc<Self>,
        def: &dyn TaskDef,
        row: &TaskRow,
        t: &mut TaskCtx,
        step: &str,
        result: StepResult,
    ) -> Result<Flow, TaskError> {
        let id = row.id.as_str();
        match result {
            Err(e) => {
                self.enter_failing(row, t, step, &e.0).await?;
                return Ok(Flow::Parked);
            }
            Ok(Step::Done) | Ok(Step::Finish) => {
                let finish = matches!(result, Ok(Step::Finish));
                let steps = def.steps();
                let next = steps
                    .iter()
                    .position(|x| *x == step)
                    .and_then(|i| steps.get(i + 1))
                    .copied();
                let mut done = row.done_steps.clone();
                if !done.iter().any(|d| d == step) {
                    done.push(step.to_string());
                }
                // Which node completed which step: shows after the fact
                // that every step completed once, and where.
                let mut trace = t
                    .state
                    .get("__trace")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                trace.push(json!({"step": step, "node": self.node}));
                t.state.insert("__trace".into(), Value::Array(trace));
                match next.filter(|_| !finish) {
                    Some(next) => {
                        let mut ch = Row::new();
                        ch.insert("stage".into(), json!(next));
                        ch.insert("state".into(), Value::Object(t.state.clone()));
                        ch.insert("done_steps".into(), json!(done));
                        ch.insert("callback".into(), Value::Null);
                        ch.insert("attempt".into(), json!(0));
                        ch.insert(
                            "progress".into(),
                            json!(100.0 * done.len() as f64 / steps.len().max(1) as f64),
                        );
                        if !self.commit_step(id, &ch, t).await? {
                            return Ok(Flow::Parked);
                        }
                    }
                    None => {
                        if let Err(e) = def.on_complete(t).await {
                            self.enter_failing(row, t, step, &e.0).await?;
                            return Ok(Flow::Parked);
                        }
                        self.finish(row, t, true, "").await?;
                        return Ok(Flow::Parked);
                    }
                }
            }
            Ok(Step::WaitCallback { timeout }) => {
                let mut ch = Row::new();
                ch.insert("state".into(), Value::Object(t.state.clone()));
                ch.insert("wait_until".into(), json!(later(timeout)));
                ch.insert("lease_until".into(), Value::Null);
                if !self.commit_step(id, &ch, t).await? {
                    return Ok(Flow::Parked);
                }
                // A callback may already have arrived while we worked.
                let mut q = Sql::new(
                    "UPDATE `tasks_tbl` SET `status` = CASE WHEN `callback` IS NULL THEN 'waiting' ELSE 'queued' END, `wait_until` = CASE WHEN `callback` IS NULL THEN `wait_until` ELSE NULL END, `lease_owner` = NULL WHERE `id` = ",
                );
                q.bind(id)
                    .push(" AND `lease_owner` = ")
                    .bind(self.node.as_str());
                q.query()?
                    .execute(self.db.write())
                    .await
                    .map_err(cloudpods_db::DbError::from)?;
                self.wake();
                return Ok(Flow::Parked);
            }
            Ok(Step::WaitSubtasks) => {
                t.state.insert("__waiting_subtasks".into(), json!(step));
                let mut ch = Row::new();
                ch.insert("state".into(), Value::Object(t.state.clone()));
                ch.insert("status".into(), json!("waiting_subtasks"));
                ch.insert("lease_until".into(), Value::Null);
                if !self.commit_step(id, &ch, t).await? {
                    return Ok(Flow::Parked);
                }
                // Children may all be done already (or there were none).
                self.maybe_resume_parent(id, step).await?;
                return Ok(Flow::Parked);
            }
            Ok(Step::Retry(d)) => {
                let mut ch = Row::new();
                ch.insert("state".into(), Value::Object(t.state.clone()));
                ch.insert("wait_until".into(), json!(later(d)));
                ch.insert("lease_until".into(), Value::Null);
                ch.insert("status".into(), json!("queued"));
                self.commit_step(id, &ch, t).await?;
                return Ok(Flow::Parked);
            }
        }
        Ok(Flow::Again)
    }

    /// Commit a step's changes and its spawned children atomically.
    async fn commit_step(&self, id: &str, ch: &Row, t: &TaskCtx) -> Result<bool, TaskError> {
        let mut tx = self.db.begin().await?;
        if !self.save(&mut tx, id, ch).await? {
            return Ok(false);
        }
        for child in &t.children {
            self.submit_in(&mut tx, child).await?;
        }
        tx.commit().await.map_err(cloudpods_db::DbError::from)?;
        if !t.children.is_empty() {
            self.wake();
        }
        Ok(true)
    }

    async fn enter_failing(
        self: &Arc<Self>,
        row: &TaskRow,
        t: &TaskCtx,
        step: &str,
        reason: &str,
    ) -> Result<(), TaskError> {
        tracing::info!(task = %t.id, name = %t.name, step, reason, "task step failed; undoing");
        let done: Vec<String> = row.done_steps.clone();
        let mut undo = vec![step.to_string()];
        undo.extend(done.into_iter().rev().filter(|d| d != step));
        let mut state = t.state.clone();
        state.remove("__waiting_subtasks");
        state.insert("__undo".into(), json!(undo));
        let mut ch = Row::new();
        ch.insert("status".into(), json!("failing"));
        ch.insert("failed_step".into(), json!(step));
        ch.insert("reason".into(), json!(reason));
        ch.insert("state".into(), Value::Object(state));
        ch.insert("callback".into(), Value::Null);
        ch.insert("wait_until".into(), Value::Null);
        let mut tx = self.db.begin().await?;
        if self.save(&mut tx, &t.id, &ch).await? {
            tx.commit().await.map_err(cloudpods_db::DbError::from)?;
            // Continue with the undo in this run.
            return Box::pin(self.drive(&t.id)).await;
        }
        Ok(())
    }

    async fn finish_failed(&self, row: &TaskRow, reason: &str) -> Result<(), TaskError> {
        let mut ch = Row::new();
        ch.insert("status".into(), json!("failed"));
        ch.insert("reason".into(), json!(reason));
        ch.insert("end_at".into(), json!(now()));
        ch.insert("lease_owner".into(), Value::Null);
        ch.insert("lease_until".into(), Value::Null);
        let mut tx = self.db.begin().await?;
        self.save(&mut tx, &row.id, &ch).await?;
        tx.commit().await.map_err(cloudpods_db::DbError::from)?;
        Ok(())
    }

    async fn finish(
        &self,
        row: &TaskRow,
        t: &TaskCtx,
        ok: bool,
        reason: &str,
    ) -> Result<(), TaskError> {
        let id = row.id.clone();
        let mut ch = Row::new();
        ch.insert(
            "status".into(),
            json!(if ok { "complete" } else { "failed" }),
        );
        ch.insert(
            "stage".into(),
            json!(if ok { "complete" } else { "failed" }),
        );
        ch.insert("state".into(), Value::Object(t.state.clone()));
        ch.insert("end_at".into(), json!(now()));
        ch.insert("lease_owner".into(), Value::Null);
        ch.insert("lease_until".into(), Value::Null);
        ch.insert("callback".into(), Value::Null);
        if ok {
            ch.insert("progress".into(), json!(100.0));
        } else {
            ch.insert("reason".into(), json!(reason));
        }
        let mut tx = self.db.begin().await?;
        if !self.save(&mut tx, &id, &ch).await? {
            return Ok(());
        }
        tx.commit().await.map_err(cloudpods_db::DbError::from)?;
        let parent = row.parent_task_id.clone();
        if !parent.is_empty() {
            self.maybe_resume_parent(&parent, &row.parent_stage).await?;
        }
        Ok(())
    }

    /// Children of `parent` spawned in `stage`, if all have finished.
    async fn subtasks_finished(
        &self,
        parent: &str,
        stage: &str,
    ) -> Result<Option<Vec<SubtaskResult>>, TaskError> {
        let mut q = Sql::new(format!(
            "SELECT {} FROM `tasks_tbl` WHERE `parent_task_id` = ",
            crud::column_list(&TASKS)
        ));
        q.bind(parent).push(" AND `parent_stage` = ").bind(stage);
        let mut rows = crud::fetch_rows(self.db.write(), &TASKS, &q).await?;
        // Archived children count too.
        let mut q = Sql::new(format!(
            "SELECT {} FROM `archived_tasks_tbl` WHERE `parent_task_id` = ",
            crud::column_list(&ARCHIVED_TASKS)
        ));
        q.bind(parent).push(" AND `parent_stage` = ").bind(stage);
        rows.extend(crud::fetch_rows(self.db.write(), &ARCHIVED_TASKS, &q).await?);
        let rows = TaskRow::from_rows(&rows)?;
        if rows.iter().any(|r| OPEN.contains(&r.status.as_str())) {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .map(|r| SubtaskResult {
                    task_id: r.id.clone(),
                    task_name: r.task_name.clone(),
                    obj_id: r.obj_id.clone(),
                    succeeded: r.status == "complete",
                    reason: r.reason.clone(),
                    state: r.state.clone(),
                })
                .collect(),
        ))
    }

    async fn maybe_resume_parent(&self, parent: &str, stage: &str) -> Result<(), TaskError> {
        if self.subtasks_finished(parent, stage).await?.is_none() {
            return Ok(());
        }
        let mut q = Sql::new(
            "UPDATE `tasks_tbl` SET `status` = 'running', `lease_until` = NULL WHERE `id` = ",
        );
        q.bind(parent)
            .push(" AND `status` = 'waiting_subtasks' AND `stage` = ")
            .bind(stage);
        q.query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        self.wake();
        Ok(())
    }

    /// Parents whose children all finished but that were never woken (a
    /// crash between a child's last commit and the parent's wake-up).
    async fn sweep_parents(&self) -> Result<(), TaskError> {
        let q = Sql::new(
            "SELECT `id`, `stage` FROM `tasks_tbl` WHERE `status` = 'waiting_subtasks' LIMIT 1000",
        );
        let rows = TaskRow::from_rows(&crud::fetch_rows(self.db.read(), &TASKS, &q).await?)?;
        for r in rows {
            self.maybe_resume_parent(&r.id, &r.stage).await?;
        }
        Ok(())
    }

    async fn housekeeping_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            if let Err(e) = self.archive().await {
                tracing::warn!(error = %e, "archiving tasks failed");
            }
        }
    }

    /// Move finished tasks older than `archive_after` to the archive.
    pub async fn archive(&self) -> Result<u64, TaskError> {
        let cutoff = cloudpods_apis::time::format(
            chrono::Utc::now()
                - chrono::Duration::from_std(self.opts.archive_after).unwrap_or_default(),
        );
        let cols = crud::column_list(&TASKS);
        let mut tx = self.db.begin().await?;
        let mut sel = Sql::new(
            "SELECT `id` FROM `tasks_tbl` WHERE `status` IN ('complete', 'failed') AND `end_at` < ",
        );
        sel.bind(cutoff).push(" LIMIT 10000");
        let ids: Vec<String> = crud::fetch_rows(&mut *tx, &TASKS, &sel)
            .await?
            .iter()
            .map(|r| s(r, "id"))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        for chunk in ids.chunks(500) {
            let mut ins = Sql::new(format!(
                "INSERT INTO `archived_tasks_tbl` ({cols}) SELECT {cols} FROM `tasks_tbl` WHERE `id` IN "
            ));
            ins.bind_list(chunk.iter());
            ins.query()?
                .execute(&mut *tx)
                .await
                .map_err(cloudpods_db::DbError::from)?;
            let mut del = Sql::new("DELETE FROM `tasks_tbl` WHERE `id` IN ");
            del.bind_list(chunk.iter());
            del.query()?
                .execute(&mut *tx)
                .await
                .map_err(cloudpods_db::DbError::from)?;
        }
        tx.commit().await.map_err(cloudpods_db::DbError::from)?;
        Ok(ids.len() as u64)
    }

    /// Wait until a task finishes (tests, CLIs); `None` on timeout.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<Row>, TaskError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = crud::get(self.db.read(), &TASKS, id).await?
                && !OPEN.contains(&s(&r, "status").as_str())
            {
                return Ok(Some(r));
            }
            if crud::get(self.db.read(), &TASKS, id).await?.is_none()
                && let Some(r) = crud::get(self.db.read(), &ARCHIVED_TASKS, id).await?
            {
                return Ok(Some(r));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A weak handle for callbacks registered elsewhere.
    pub fn handle(&self) -> Option<Arc<Engine>> {
        self.me.upgrade()
    }
}

fn task_row(t: &NewTask) -> (Row, Vec<Row>) {
    let mut row = Row::new();
    row.insert("task_name".into(), json!(t.name));
    row.insert("obj_type".into(), json!(t.obj_type));
    row.insert("obj_id".into(), json!(t.obj_id));
    row.insert("object".into(), json!(t.obj_name));
    row.insert("params".into(), t.params.clone());
    row.insert("state".into(), json!({}));
    row.insert("done_steps".into(), json!([]));
    row.insert("status".into(), json!("queued"));
    row.insert("tenant_id".into(), json!(t.owner.tenant_id));
    row.insert("domain_id".into(), json!(t.owner.domain_id));
    row.insert("user_id".into(), json!(t.owner.user_id));
    row.insert("user".into(), json!(t.owner.user));
    row.insert("user_cred".into(), t.owner.cred.clone());
    row.insert("request_id".into(), json!(t.request_id));
    if let Some((p, st)) = &t.parent {
        row.insert("parent_task_id".into(), json!(p));
        row.insert("parent_stage".into(), json!(st));
    }
    crud::prepare_insert(&TASKS, &mut row);
    let id = s(&row, "id");
    let mut objects = Vec::new();
    for o in t.objects.iter().chain(std::iter::once(&t.obj_id)) {
        let mut r = Row::new();
        r.insert("task_id".into(), json!(id));
        r.insert("obj_id".into(), json!(o));
        crud::prepare_insert(&TASK_OBJECTS, &mut r);
        objects.push(r);
    }
    objects.dedup_by(|a, b| a.get("obj_id") == b.get("obj_id"));
    (row, objects)
}

impl NewTask {
    pub fn new(
        name: &str,
        obj_type: &str,
        obj_id: &str,
        obj_name: &str,
        params: Value,
        owner: Owner,
    ) -> NewTask {
        NewTask {
            name: name.to_string(),
            obj_type: obj_type.to_string(),
            obj_id: obj_id.to_string(),
            obj_name: obj_name.to_string(),
            params,
            owner,
            ..Default::default()
        }
    }
}
