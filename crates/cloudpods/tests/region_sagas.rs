//! The lifecycle task types, omicron style: every step run twice ends as
//! one run does, and a failure injected at every step is undone and leaves
//! the guest in its `*_fail` status holding nothing. A last test fails when
//! a task type is registered that no saga test covers.

mod common;

use common::saga::{self, Lab, st};
use serde_json::json;

/// Task types and steps covered here.
const CORE: &[(&str, &[&str])] = &[
    ("GuestBatchCreateTask", &["schedule", "spawn"]),
    ("GuestCreateTask", &["network", "disk", "deploy", "finish"]),
    ("DiskCreateTask", &["allocate"]),
    ("GuestStartTask", &["start"]),
    ("GuestStopTask", &["stop"]),
    ("GuestRestartTask", &["stop", "start"]),
    ("GuestResetTask", &["reset"]),
    ("GuestSyncstatusTask", &["sync"]),
    ("GuestDeleteTask", &["stop", "remove", "disks", "cleanup"]),
    ("DiskDeleteTask", &["delete"]),
];

/// Covered by `region_servers.rs` (server actions) and
/// `crates/region/tests/virt_tasks.rs` (disks and snapshots).
const ELSEWHERE: &[&str] = &[
    "GuestChangeConfigTask",
    "GuestAttachDiskTask",
    "GuestDetachDiskTask",
    "GuestDiskSnapshotTask",
    "GuestRebuildRootTask",
    "GuestDeployTask",
    "GuestMigrateTask",
    "GuestLiveMigrateTask",
    "GuestSyncConfigTask",
    "AgentRequestTask",
    "SnapshotCreateTask",
    "SnapshotDeleteTask",
    "DiskResizeTask",
    "DiskResetTask",
];

/// Public-cloud tasks: step-twice and failure-injection runs against moto
/// in `cloud_sagas.rs`.
const CLOUD_SAGAS: &[&str] = &[
    "CloudResourceTask",
    "CloudGuestCreateTask",
    "CloudGuestStartTask",
    "CloudGuestStopTask",
    "CloudGuestRestartTask",
    "CloudGuestSyncstatusTask",
    "CloudGuestDeleteTask",
    "CloudGuestChangeConfigTask",
];

/// Nothing of a failed create remains: no NIC, no disk (in the database or
/// on a host), no guest on a hypervisor.
async fn holds_nothing(lab: &Lab, id: &str, what: &str) {
    assert_eq!(lab.nics(id).await, 0, "{what}: NICs left");
    assert!(lab.disks(id).await.is_empty(), "{what}: disks left");
    lab.no_leak(what).await;
}

async fn case(lab: &Lab, task: &str, fail: Option<&str>) {
    let what = format!("{task} failing at {fail:?}");
    let ok = fail.is_none();
    match task {
        "GuestBatchCreateTask" | "GuestCreateTask" | "DiskCreateTask" => {
            let sims_before = lab.sim_guests().await;
            let (id, t) = lab.try_create("h1", &[512, 256], false).await;
            let g = lab.guest(&id).await;
            if ok {
                assert_eq!((st(&t), st(&g)), ("complete", "ready"), "{what}");
                assert_eq!(lab.nics(&id).await, 1, "{what}");
                assert_eq!(lab.disks(&id).await.len(), 2, "{what}");
                lab.no_leak(&what).await;
                return;
            }
            let want = match (task, fail) {
                ("GuestBatchCreateTask", _) => "sched_fail",
                ("GuestCreateTask", Some("network")) => "net_fail",
                ("GuestCreateTask", Some("disk")) | ("DiskCreateTask", _) => "disk_fail",
                _ => "deploy_fail",
            };
            assert_eq!(st(&g), want, "{what}");
            assert!(
                g["fail_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("injected")),
                "{what}: {g:?}"
            );
            assert_eq!(g["pending_storage"], json!(0), "{what}");
            holds_nothing(lab, &id, &what).await;
            assert_eq!(
                lab.sim_guests().await,
                sims_before,
                "{what}: guest left on a hypervisor"
            );
        }
        "GuestStartTask" => {
            let id = lab.create("h1", &[256], false).await;
            let t = lab
                .run_task(&id, Some("start_start"), task, json!({}))
                .await;
            let want = if ok {
                ("complete", "running")
            } else {
                ("failed", "start_fail")
            };
            assert_eq!((st(&t), st(&lab.guest(&id).await)), want, "{what}");
        }
        "GuestStopTask" => {
            let id = lab.create("h1", &[256], true).await;
            let t = lab
                .run_task(&id, Some("start_stop"), task, json!({"timeout": 5}))
                .await;
            let want = if ok {
                ("complete", "ready")
            } else {
                ("failed", "stop_fail")
            };
            assert_eq!((st(&t), st(&lab.guest(&id).await)), want, "{what}");
        }
        "GuestRestartTask" => {
            let id = lab.create("h1", &[256], true).await;
            let t = lab.run_task(&id, Some("start_stop"), task, json!({})).await;
            let want = match fail {
                None => ("complete", "running"),
                Some("stop") => ("failed", "stop_fail"),
                _ => ("failed", "start_fail"),
            };
            assert_eq!((st(&t), st(&lab.guest(&id).await)), want, "{what}");
        }
        "GuestResetTask" => {
            let id = lab.create("h1", &[256], true).await;
            let t = lab.run_task(&id, Some("starting"), task, json!({})).await;
            let want = if ok {
                ("complete", "running")
            } else {
                ("failed", "start_fail")
            };
            assert_eq!((st(&t), st(&lab.guest(&id).await)), want, "{what}");
        }
        "GuestSyncstatusTask" => {
            let id = lab.create("h1", &[256], true).await;
            let t = lab.run_task(&id, None, task, json!({})).await;
            let want = if ok {
                ("complete", "running")
            } else {
                ("failed", "unknown")
            };
            assert_eq!((st(&t), st(&lab.guest(&id).await)), want, "{what}");
        }
        "GuestDeleteTask" | "DiskDeleteTask" => {
            let id = lab.create("h1", &[256, 128], true).await;
            let t = lab
                .run_task(&id, Some("start_delete"), "GuestDeleteTask", json!({}))
                .await;
            let g = lab.guest_any(&id).await;
            if ok {
                assert_eq!(st(&t), "complete", "{what}");
                assert_eq!(g["deleted"], json!(true), "{what}");
                holds_nothing(lab, &id, &what).await;
                return;
            }
            // Deletion rolls forward: the guest stays, in delete_fail, and
            // deleting again finishes the job.
            assert_eq!((st(&t), st(&g)), ("failed", "delete_fail"), "{what}");
            assert_eq!(g["deleted"], json!(false), "{what}");
            lab.hooks(false, None);
            let t = lab
                .run_task(&id, Some("start_delete"), "GuestDeleteTask", json!({}))
                .await;
            assert_eq!(st(&t), "complete", "{what}: second delete");
            holds_nothing(lab, &id, &what).await;
        }
        other => panic!("no case for {other}"),
    }
    lab.no_leak(&what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lifecycle_step_run_twice_ends_like_once() {
    let lab = saga::lab(1).await;
    lab.hooks(true, None);
    for (task, _) in CORE {
        case(&lab, task, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_every_lifecycle_step_is_undone() {
    let lab = saga::lab(1).await;
    for (task, steps) in CORE {
        for step in *steps {
            lab.hooks(false, Some((task, step)));
            case(&lab, task, Some(step)).await;
            lab.hooks(false, None);
        }
    }
}

#[tokio::test]
async fn every_task_type_has_saga_tests() {
    let lab = saga::lab(1).await;
    let engine = &lab.region.engine;
    for name in engine.task_names() {
        let covered = CORE.iter().any(|(n, _)| *n == name)
            || ELSEWHERE.contains(&name.as_str())
            || CLOUD_SAGAS.contains(&name.as_str());
        assert!(
            covered,
            "task type {name} has no step-twice / failure-injection test"
        );
    }
    // And the step lists driven here are the definitions' own.
    for (name, steps) in CORE {
        assert_eq!(
            engine.task_steps(name),
            Some(*steps),
            "the saga test of {name} drives other steps than its definition has"
        );
    }
}
