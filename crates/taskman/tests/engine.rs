//! The task engine against a real SQLite database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cloudpods_db::{Db, crud};
use cloudpods_taskman::models::TASKS;
use cloudpods_taskman::{
    Engine, EngineOptions, NewTask, Owner, Step, StepResult, Subtasks, TaskCtx, TaskDef, TaskError,
    TestHooks, Undone,
};
use serde_json::{Value, json};

/// Records what ran, per task id, so tests can check exactly-once effects.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<String>>,
    effects: Mutex<HashMap<String, i64>>,
}

impl Log {
    fn push(&self, e: String) {
        self.events.lock().unwrap().push(e);
    }
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
    /// An idempotent effect: set, not increment.
    fn set(&self, k: String, v: i64) {
        self.effects.lock().unwrap().insert(k, v);
    }
    fn unset(&self, k: &str) {
        self.effects.lock().unwrap().remove(k);
    }
    fn effects(&self) -> HashMap<String, i64> {
        self.effects.lock().unwrap().clone()
    }
}

/// Three steps: `alloc` (local effect), `remote` (waits for a callback
/// unless params.local), `finish`.
struct Demo {
    log: Arc<Log>,
    /// Delay inside `alloc` (to test concurrent claiming).
    delay: Duration,
}

#[async_trait]
impl TaskDef for Demo {
    cloudpods_taskman::task_meta!("DemoTask", ["alloc", "remote", "finish"]);
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        self.log.push(format!("{}:run:{step}", t.obj_id));
        match step {
            "alloc" => {
                tokio::time::sleep(self.delay).await;
                self.log.set(format!("{}:alloc", t.obj_id), 1);
                t.state.insert("allocated".into(), json!(true));
                Ok(Step::Done)
            }
            "remote" => {
                if t.params["local"] == json!(true) {
                    return Ok(Step::Done);
                }
                t.state.insert("notify".into(), json!(t.notify_url()));
                Ok(Step::WaitCallback {
                    timeout: Duration::from_millis(if t.params["short"] == json!(true) {
                        300
                    } else {
                        30_000
                    }),
                })
            }
            _ => {
                if t.params["fail_finish"] == json!(true) {
                    return Err(TaskError::new("finish exploded"));
                }
                self.log.set(format!("{}:done", t.obj_id), 1);
                Ok(Step::Done)
            }
        }
    }
    async fn on_callback(&self, t: &mut TaskCtx, step: &str, data: Value) -> StepResult {
        self.log
            .push(format!("{}:callback:{step}:{data}", t.obj_id));
        t.state.insert("answer".into(), data);
        Ok(Step::Done)
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        self.log.push(format!("{}:undo:{step}", t.obj_id));
        match step {
            "alloc" => self.log.unset(&format!("{}:alloc", t.obj_id)),
            "finish" => self.log.unset(&format!("{}:done", t.obj_id)),
            _ => {}
        }
        Ok(())
    }
    async fn on_failure(&self, t: &mut TaskCtx, failed: &str, reason: &str) -> Undone {
        self.log
            .push(format!("{}:failed:{failed}:{reason}", t.obj_id));
        Ok(())
    }
}

/// A parent that spawns one Demo child per `children` entry.
struct Parent {
    log: Arc<Log>,
}

#[async_trait]
impl TaskDef for Parent {
    cloudpods_taskman::task_meta!("ParentTask", ["spawn", "after"]);
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        self.log.push(format!("parent:run:{step}"));
        if step == "spawn" {
            let children = t.params["children"].as_array().cloned().unwrap_or_default();
            for c in children {
                let obj = c["obj"].as_str().unwrap_or_default().to_string();
                t.spawn(NewTask::new(
                    "DemoTask",
                    "thing",
                    &obj,
                    &obj,
                    c,
                    Owner::default(),
                ));
            }
            return Ok(Step::WaitSubtasks);
        }
        Ok(Step::Done)
    }
    async fn on_subtasks_done(&self, _t: &mut TaskCtx, step: &str, done: Subtasks) -> StepResult {
        self.log.push(format!(
            "parent:children:{step}:{}",
            done.iter().filter(|r| r.succeeded).count()
        ));
        match done.iter().find(|r| !r.succeeded) {
            Some(r) => Err(TaskError(format!(
                "child {} failed: {}",
                r.obj_id, r.reason
            ))),
            None => Ok(Step::Done),
        }
    }
    async fn on_failure(&self, _t: &mut TaskCtx, failed: &str, reason: &str) -> Undone {
        self.log.push(format!("parent:failed:{failed}:{reason}"));
        Ok(())
    }
}

struct Env {
    db: Db,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display()))
        .await
        .unwrap();
    cloudpods_db::migrate::sync_schema(&db, &cloudpods_taskman::models::all(), &[])
        .await
        .unwrap();
    Env { db, _dir: dir }
}

fn engine(db: &Db, node: &str, log: &Arc<Log>, delay: Duration) -> Arc<Engine> {
    let e = Engine::new(
        db.clone(),
        node,
        EngineOptions {
            poll: Duration::from_millis(50),
            lease: Duration::from_secs(2),
            callback_secret: b"k".to_vec(),
            ..Default::default()
        },
    );
    e.register(Arc::new(Demo {
        log: log.clone(),
        delay,
    }));
    e.register(Arc::new(Parent { log: log.clone() }));
    e
}

fn demo(obj: &str, params: Value) -> NewTask {
    NewTask::new("DemoTask", "thing", obj, obj, params, Owner::default())
}

async fn status(e: &Engine, id: &str) -> (String, String, Value) {
    let r = e
        .wait(id, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("task finished in time");
    (
        r["status"].as_str().unwrap().to_string(),
        r["reason"].as_str().unwrap_or_default().to_string(),
        r["state"].clone(),
    )
}

async fn wait_for_status(db: &Db, id: &str, want: &str) {
    for _ in 0..400 {
        let r = crud::get(db.read(), &TASKS, id).await.unwrap().unwrap();
        if r["status"] == json!(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} never reached {want}");
}

#[tokio::test]
async fn local_steps_complete_in_order() {
    let env = env().await;
    let log = Arc::new(Log::default());
    let e = engine(&env.db, "n1", &log, Duration::ZERO);
    e.start().await.unwrap();
    let id = e.submit(demo("a", json!({"local": true}))).await.unwrap();
    let (st, _, state) = status(&e, &id).await;
    assert_eq!(st, "complete");
    assert_eq!(state["allocated"], true);
    assert_eq!(
        log.events(),
        ["a:run:alloc", "a:run:remote", "a:run:finish"]
    );
}

#[tokio::test]
async fn callback_resumes_and_stale_callbacks_are_ignored() {
    let env = env().await;
    let log = Arc::new(Log::default());
    let e = engine(&env.db, "n1", &log, Duration::ZERO);
    e.start().await.unwrap();
    let id = e.submit(demo("b", json!({}))).await.unwrap();
    wait_for_status(&env.db, &id, "waiting").await;
    let row = crud::get(env.db.read(), &TASKS, &id)
        .await
        .unwrap()
        .unwrap();
    let url = row["state"]["notify"].as_str().unwrap().to_string();
    assert!(
        url.contains(&format!("/tasks/{id}?stage=remote&key=")),
        "{url}"
    );
    let key = url.split("key=").nth(1).unwrap();
    // Wrong stage: ignored. Wrong key: refused.
    assert!(
        !e.callback(&id, Some("alloc"), Some(key), json!({"x": 0}))
            .await
            .unwrap()
    );
    assert!(
        e.callback(&id, Some("remote"), Some("bad"), json!({"x": 0}))
            .await
            .is_err()
    );
    // No key (a user token would be all a tenant has): refused too.
    assert!(
        e.callback(&id, Some("remote"), None, json!({"x": 0}))
            .await
            .is_err()
    );
    assert!(
        e.callback(&id, Some("remote"), Some(key), json!({"x": 1}))
            .await
            .unwrap()
    );
    let (st, _, state) = status(&e, &id).await;
    assert_eq!(st, "complete");
    assert_eq!(state["answer"], json!({"x": 1}));
}

#[tokio::test]
async fn failure_undoes_in_reverse_and_calls_the_failure_hook() {
    let env = env().await;
    let log = Arc::new(Log::default());
    let e = engine(&env.db, "n1", &log, Duration::ZERO);
    e.start().await.unwrap();
    let id = e
        .submit(demo("c", json!({"local": true, "fail_finish": true})))
        .await
        .unwrap();
    let (st, reason, _) = status(&e, &id).await;
    assert_eq!(st, "failed");
    assert_eq!(reason, "finish exploded");
    let ev = log.events();
    let undo: Vec<&String> = ev
        .iter()
        .filter(|x| x.contains(":undo:") || x.contains(":failed:"))
        .collect();
    assert_eq!(
        undo,
        [
            "c:undo:finish",
            "c:undo:remote",
            "c:undo:alloc",
            "c:failed:finish:finish exploded"
        ]
    );
    assert!(log.effects().is_empty(), "{:?}", log.effects());

    // An agent error dispatches the failure path too.
    let id = e.submit(demo("d", json!({}))).await.unwrap();
    wait_for_status(&env.db, &id, "waiting").await;
    let key = notify_key(&env.db, &id).await;
    e.callback(
        &id,
        None,
        Some(&key),
        json!({"__status__": "error", "__reason__": "disk full"}),
    )
    .await
    .unwrap();
    let (st, reason, _) = status(&e, &id).await;
    assert_eq!((st.as_str(), reason.as_str()), ("failed", "disk full"));
}

#[tokio::test]
async fn every_step_twice_and_injected_failures() {
    let env = env().await;
    let log = Arc::new(Log::default());
    let e = engine(&env.db, "n1", &log, Duration::ZERO);
    e.set_hooks(TestHooks {
        repeat_steps: true,
        fail_at: None,
    });
    e.start().await.unwrap();
    let id = e.submit(demo("e", json!({"local": true}))).await.unwrap();
    assert_eq!(status(&e, &id).await.0, "complete");
    assert_eq!(log.events().len(), 6);
    assert_eq!(log.effects().len(), 2);

    for step in ["alloc", "remote", "finish"] {
        let log = Arc::new(Log::default());
        let e = engine(&env.db, &format!("n-{step}"), &log, Duration::ZERO);
        e.set_hooks(TestHooks {
            repeat_steps: false,
            fail_at: Some(("DemoTask".into(), step.into())),
        });
        e.start().await.unwrap();
        let obj = format!("f-{step}");
        let id = e.submit(demo(&obj, json!({"local": true}))).await.unwrap();
        let (st, reason, _) = status(&e, &id).await;
        assert_eq!(st, "failed");
        assert!(reason.contains("injected"), "{reason}");
        assert!(log.effects().is_empty(), "{step}: {:?}", log.effects());
        e.stop();
    }
}

#[tokio::test]
async fn a_dead_nodes_task_resumes_from_its_last_committed_step() {
    let env = env().await;
    let log = Arc::new(Log::default());
    // A task a crashed node was running: step `remote` committed as current,
    // lease expired.
    let e0 = engine(&env.db, "dead", &log, Duration::ZERO);
    let id = e0.submit(demo("g", json!({"local": true}))).await.unwrap();
    let mut q = cloudpods_db::Sql::new(
        "UPDATE `tasks_tbl` SET `status` = 'running', `stage` = 'remote', `done_steps` = '[\"alloc\"]', `lease_owner` = 'dead', `lease_until` = '2000-01-01T00:00:00.000000Z' WHERE `id` = ",
    );
    q.bind(id.as_str());
    q.query().unwrap().execute(env.db.write()).await.unwrap();
    let e = engine(&env.db, "n2", &log, Duration::ZERO);
    e.start().await.unwrap();
    assert_eq!(status(&e, &id).await.0, "complete");
    assert_eq!(
        log.events(),
        ["g:run:remote", "g:run:finish"],
        "alloc must not run again"
    );
}

#[tokio::test]
async fn two_engines_run_each_task_exactly_once() {
    let env = env().await;
    let log = Arc::new(Log::default());
    let a = engine(&env.db, "a", &log, Duration::from_millis(5));
    let b = engine(&env.db, "b", &log, Duration::from_millis(5));
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(
            a.submit(demo(&format!("t{i}"), json!({"local": true})))
                .await
                .unwrap(),
        );
    }
    a.start().await.unwrap();
    b.start().await.unwrap();
    for id in &ids {
        assert_eq!(status(&a, id).await.0, "complete");
    }
    let ev = log.events();
    for i in 0..60 {
        let runs = ev
            .iter()
            .filter(|x| **x == format!("t{i}:run:alloc"))
            .count();
        assert_eq!(runs, 1, "t{i} ran alloc {runs} times");
    }
}

#[tokio::test]
async fn subtasks_and_parent_failure() {
    let env = env().await;
    let log = Arc::new(Log::default());
    let e = engine(&env.db, "n1", &log, Duration::ZERO);
    e.start().await.unwrap();
    let kids = json!({"children": [{"obj": "k1", "local": true}, {"obj": "k2", "local": true}, {"obj": "k3", "local": true}]});
    let id = e
        .submit(NewTask::new(
            "ParentTask",
            "group",
            "p",
            "p",
            kids,
            Owner::default(),
        ))
        .await
        .unwrap();
    assert_eq!(status(&e, &id).await.0, "complete");
    assert!(
        log.events()
            .contains(&"parent:children:spawn:3".to_string())
    );

    let kids = json!({"children": [{"obj": "m1", "local": true}, {"obj": "m2", "local": true, "fail_finish": true}]});
    let id = e
        .submit(NewTask::new(
            "ParentTask",
            "group",
            "q",
            "q",
            kids,
            Owner::default(),
        ))
        .await
        .unwrap();
    let (st, reason, _) = status(&e, &id).await;
    assert_eq!(st, "failed");
    assert!(reason.contains("m2"), "{reason}");
}

#[tokio::test]
async fn cancel_and_callback_timeout_resend() {
    let env = env().await;
    let log = Arc::new(Log::default());
    let e = engine(&env.db, "n1", &log, Duration::ZERO);
    e.start().await.unwrap();
    let id = e.submit(demo("h", json!({}))).await.unwrap();
    wait_for_status(&env.db, &id, "waiting").await;
    assert!(e.cancel(&id).await.unwrap());
    let (st, reason, _) = status(&e, &id).await;
    assert_eq!((st.as_str(), reason.as_str()), ("failed", "cancelled"));
    assert!(log.effects().is_empty());

    // No callback within the timeout: the step runs again (resend).
    let id = e.submit(demo("i", json!({"short": true}))).await.unwrap();
    for _ in 0..200 {
        if log.events().iter().filter(|x| *x == "i:run:remote").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(log.events().iter().filter(|x| *x == "i:run:remote").count() >= 2);
    wait_for_status(&env.db, &id, "waiting").await;
    let key = notify_key(&env.db, &id).await;
    e.callback(&id, None, Some(&key), json!({"ok": 1}))
        .await
        .unwrap();
    assert_eq!(status(&e, &id).await.0, "complete");
}

/// The signed key of a waiting task's notify URL (what the agent was given).
async fn notify_key(db: &cloudpods_db::Db, id: &str) -> String {
    let row = crud::get(db.read(), &TASKS, id).await.unwrap().unwrap();
    let url = row["state"]["notify"].as_str().unwrap().to_string();
    url.split("key=").nth(1).unwrap().to_string()
}
