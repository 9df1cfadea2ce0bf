//! A durable task framework that survives crashes.
//!
//! Cloudpods drives every slow operation as a task persisted in `tasks_tbl`;
//! on restart it marks unfinished tasks failed. Here a task is a sequence of
//! named steps (omicron's sagas, at our scale):
//!
//! - every step is **idempotent**: after a crash the step that was running is
//!   run again, so it must tolerate having (partly) run before;
//! - every step has an **undo**: when a step fails, the failed step and every
//!   completed step are undone in reverse order, then the task's failure hook
//!   sets the object's `*_fail` status;
//! - progress is **committed after each step** (stage, accumulated state,
//!   completed steps), so a restarted process resumes from the last committed
//!   step instead of failing the task;
//! - a step may **wait for a callback** (`POST /tasks/{id}` from a host agent,
//!   Cloudpods' protocol) or **for subtasks**; a callback that never comes is
//!   resent after a timeout (the step runs again);
//! - tasks are claimed with **leases** in the database, so several region
//!   processes on one MariaDB never run the same task at once, and a dead
//!   process's tasks are picked up when its lease expires.
//!
//! See docs/ARCHITECTURE.md for the state machine.

mod engine;
pub mod models;

pub use engine::{Engine, EngineOptions, NewTask, Owner, TestHooks};

use async_trait::async_trait;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// What a step asks the engine to do next.
#[derive(Debug, Clone)]
pub enum Step {
    /// The step is complete; go on with the next one.
    Done,
    /// A request was sent; wait for `POST /tasks/{id}` (resend after
    /// `timeout` by running the step again).
    WaitCallback { timeout: Duration },
    /// Subtasks were spawned in this step; wait until they all finish, then
    /// call [`TaskDef::on_subtasks_done`].
    WaitSubtasks,
    /// Run this step again after a delay (polling).
    Retry(Duration),
    /// Skip the remaining steps and complete.
    Finish,
}

/// A step failure: the reason recorded on the task and the object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(pub String);

impl TaskError {
    pub fn new(msg: impl Into<String>) -> TaskError {
        TaskError(msg.into())
    }
}

impl From<cloudpods_db::DbError> for TaskError {
    fn from(e: cloudpods_db::DbError) -> Self {
        TaskError(format!("database error: {e}"))
    }
}

pub type StepResult = Result<Step, TaskError>;

/// What an undo or failure hook answers.
pub type Undone = Result<(), TaskError>;

/// The results of the subtasks a step waited for.
pub type Subtasks = Vec<SubtaskResult>;

/// Outcome of a finished subtask.
#[derive(Debug, Clone)]
pub struct SubtaskResult {
    pub task_id: String,
    pub task_name: String,
    pub obj_id: String,
    pub succeeded: bool,
    pub reason: String,
    pub state: Map<String, Value>,
}

/// The running task as a step sees it.
pub struct TaskCtx {
    pub id: String,
    pub name: String,
    pub obj_type: String,
    pub obj_id: String,
    pub obj_name: String,
    /// The immutable input.
    pub params: Value,
    /// Mutable state, committed with each step (allocated ids, outputs).
    pub state: Map<String, Value>,
    /// Who started the task (user id, name, project, domain…).
    pub user: Value,
    /// How many times the current step has been (re)started.
    pub attempt: i64,
    pub engine: Arc<Engine>,
    pub(crate) children: Vec<NewTask>,
    pub(crate) current_step: String,
}

impl TaskCtx {
    pub fn db(&self) -> &cloudpods_db::Db {
        self.engine.db()
    }

    /// The URL an agent posts the result of the current step to.
    pub fn notify_url(&self) -> String {
        self.engine.notify_url(&self.id, &self.current_step)
    }

    /// Queue a subtask; it is inserted when the current step commits.
    pub fn spawn(&mut self, mut t: NewTask) {
        t.parent = Some((self.id.clone(), self.current_step.clone()));
        self.children.push(t);
    }

    pub fn param_str(&self, key: &str) -> String {
        self.params
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    pub fn state_str(&self, key: &str) -> String {
        self.state
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// A task definition's name and steps, inside `impl TaskDef for …`:
/// `task_meta!("GuestAttachDiskTask", ["attach", "sync", "finish"]);`
#[macro_export]
macro_rules! task_meta {
    ($name:literal, [$($step:literal),* $(,)?]) => {
        fn name(&self) -> &'static str {
            $name
        }
        fn steps(&self) -> &'static [&'static str] {
            &[$($step),*]
        }
    };
}

/// A kind of task.
#[async_trait]
pub trait TaskDef: Send + Sync + 'static {
    /// Registered name (`GuestCreateTask`…).
    fn name(&self) -> &'static str;

    /// The ordered steps.
    fn steps(&self) -> &'static [&'static str];

    /// Run a step. Must be idempotent: it runs again after a crash or when
    /// a callback timed out.
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult;

    /// The agent answered the request sent by `step`.
    async fn on_callback(&self, _t: &mut TaskCtx, _step: &str, _data: Value) -> StepResult {
        Ok(Step::Done)
    }

    /// Every subtask spawned by `step` finished.
    /// Whether failed subtasks of `step` still leave the step done (an
    /// auto-start after the work, whose failure shows on its own object).
    fn tolerates_failed_subtasks(&self, _step: &str) -> bool {
        false
    }

    /// The subtasks `step` started have all finished: by default the step
    /// fails with the first failed subtask's reason, unless
    /// [`TaskDef::tolerates_failed_subtasks`].
    async fn on_subtasks_done(&self, _t: &mut TaskCtx, step: &str, done: Subtasks) -> StepResult {
        if self.tolerates_failed_subtasks(step) {
            return Ok(Step::Done);
        }
        match done.iter().find(|r| !r.succeeded) {
            Some(r) => Err(TaskError(format!(
                "{} {} failed: {}",
                r.task_name, r.obj_id, r.reason
            ))),
            None => Ok(Step::Done),
        }
    }

    /// Undo what `step` did (idempotent, tolerant of partial work).
    async fn undo_step(&self, _t: &mut TaskCtx, _step: &str) -> Result<(), TaskError> {
        Ok(())
    }

    /// After the undo: record the failure on the object (`*_fail` status).
    async fn on_failure(&self, t: &mut TaskCtx, failed_step: &str, reason: &str) -> Undone;

    /// The last step completed.
    async fn on_complete(&self, _t: &mut TaskCtx) -> Result<(), TaskError> {
        Ok(())
    }
}
