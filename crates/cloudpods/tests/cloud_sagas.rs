//! The public-cloud guest task types, omicron style, against moto: every
//! step run twice ends as one run does (no second instance, the same
//! status), and a failure injected at every step leaves the guest in its
//! failure status with the reason — and a failed create leaves no instance
//! on the cloud.
//!
//! An in-process region (`common::saga::lab`) with an AWS account whose
//! endpoint is a moto server on loopback, synced once so that the seeded
//! instances are guests.

mod cloud_aws_common;
mod common;

use cloud_aws_common::{driver, moto};
use cloudpods_cloudprovider::RegionDriver;
use cloudpods_db::{Row, crud};
use cloudpods_region::cloud::models::CLOUDACCOUNTS;
use cloudpods_region::cloud::sync::SyncOptions;
use cloudpods_region::models::*;
use cloudpods_taskman::{NewTask, Owner};
use cloudpods_testkit::moto::Moto;
use common::saga::{self, Lab, st};
use serde_json::{Value, json};

/// Task types covered here and their steps.
const CLOUD: &[(&str, &[&str])] = &[
    ("CloudGuestCreateTask", &["create", "wait"]),
    ("CloudGuestStartTask", &["request", "wait"]),
    ("CloudGuestStopTask", &["request", "wait"]),
    ("CloudGuestRestartTask", &["request", "wait"]),
    ("CloudGuestSyncstatusTask", &["request", "wait"]),
    ("CloudGuestChangeConfigTask", &["modify"]),
    ("CloudGuestDeleteTask", &["terminate", "wait", "cleanup"]),
];

struct CloudLab {
    lab: Lab,
    _moto: Moto,
    aws: cloudpods_cloudprovider::aws::AwsRegion,
    manager_id: String,
    cloudregion_id: String,
}

fn row(v: Value) -> Row {
    v.as_object().cloned().unwrap_or_default()
}

async fn cloud_lab() -> CloudLab {
    let moto = moto();
    let aws = driver(&moto.url, "us-east-1");
    aws.run_instances(2, "ami-12345678", "t2.micro", "")
        .await
        .expect("seed");
    let lab = saga::lab(0).await;
    let region = lab.region.clone();
    let secret = region.cloud.key().encrypt("saga-secret").expect("encrypt");
    let mut acc = row(json!({
        "name": "aws-saga", "provider": "Aws", "brand": "Aws", "access_url": moto.url,
        "account": "AKIDSAGA", "secret": secret, "project_id": "p1", "domain_id": "default",
        "options": {"regions": ["us-east-1"]}, "enable_auto_sync": false,
        "status": "connected",
    }));
    crud::prepare_insert(&CLOUDACCOUNTS, &mut acc);
    crud::insert(region.db.write(), &CLOUDACCOUNTS, &acc)
        .await
        .expect("account");
    let acc_id = acc["id"].as_str().unwrap_or_default().to_string();
    cloudpods_region::cloud::sync_account(&region, &acc_id, &SyncOptions::default()).await;
    let guests = guests(&lab).await;
    assert_eq!(guests.len(), 2, "seeded instances not synced");
    let manager_id = guests[0]["manager_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let host = crud::get(
        region.db.read(),
        &HOSTS,
        guests[0]["host_id"].as_str().unwrap_or_default(),
    )
    .await
    .expect("host")
    .expect("host row");
    let zone = crud::get(
        region.db.read(),
        &ZONES,
        host["zone_id"].as_str().unwrap_or_default(),
    )
    .await
    .expect("zone")
    .expect("zone row");
    CloudLab {
        lab,
        _moto: moto,
        aws,
        manager_id,
        cloudregion_id: zone["cloudregion_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// Live public-cloud guests.
async fn guests(lab: &Lab) -> Vec<Row> {
    crud::list(
        lab.db(),
        &GUESTS,
        &cloudpods_db::ListSpec {
            conds: vec![crud::eq("hypervisor", "aws")],
            ..Default::default()
        },
    )
    .await
    .expect("guests")
    .0
}

impl CloudLab {
    /// Instances on the cloud that are not terminated.
    async fn instances(&self) -> usize {
        self.aws.vms().await.expect("vms").len()
    }

    /// A running synced guest of its own for one case.
    async fn running_guest(&self) -> (String, String) {
        let ids = self
            .aws
            .run_instances(1, "ami-12345678", "t2.micro", "")
            .await
            .expect("run");
        self.sync().await;
        let g = guests(&self.lab)
            .await
            .into_iter()
            .find(|g| g["external_id"] == ids[0].as_str())
            .expect("new instance synced");
        (
            g["id"].as_str().unwrap_or_default().to_string(),
            ids[0].clone(),
        )
    }

    /// One (incremental after the first) sync of the account.
    async fn sync(&self) {
        let region = self.lab.region.clone();
        let acc = crud::list(&region.db, &CLOUDACCOUNTS, &Default::default())
            .await
            .expect("accounts")
            .0;
        let acc_id = acc[0]["id"].as_str().unwrap_or_default().to_string();
        cloudpods_region::cloud::sync_account(&region, &acc_id, &SyncOptions::default()).await;
    }

    /// A guest row as the API prepares a public-cloud create.
    async fn new_guest(&self, name: &str) -> String {
        let mut g = row(json!({
            "name": name, "status": "init", "hypervisor": "aws", "tenant_id": "p1",
            "domain_id": "default", "vcpu_count": 1, "vmem_size": 1024,
            "manager_id": self.manager_id,
            "create_params": {"cloud": {
                "manager_id": self.manager_id, "cloudregion_id": self.cloudregion_id,
                "region": "us-east-1", "image": "ami-12345678", "instance_type": "t2.micro",
                "auto_start": true}},
        }));
        crud::prepare_insert(&GUESTS, &mut g);
        crud::insert(self.lab.db().write(), &GUESTS, &g)
            .await
            .expect("guest");
        g["id"].as_str().unwrap_or_default().to_string()
    }

    async fn case(&self, task: &str, fail: Option<&str>) {
        let what = format!("{task} failing at {fail:?}");
        let ok = fail.is_none();
        let lab = &self.lab;
        if task == "CloudGuestCreateTask" {
            let before = self.instances().await;
            let id = self
                .new_guest(&format!("saga-{}", fail.unwrap_or("ok")))
                .await;
            let t = lab.run_task(&id, None, task, json!({})).await;
            let g = lab.guest_any(&id).await;
            if ok {
                assert_eq!((st(&t), st(&g)), ("complete", "running"), "{what}");
                assert_eq!(self.instances().await, before + 1, "{what}: one instance");
            } else {
                assert_eq!((st(&t), st(&g)), ("failed", "deploy_fail"), "{what}");
                assert!(
                    g["fail_reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("injected")),
                    "{what}: {g:?}"
                );
                assert_eq!(self.instances().await, before, "{what}: instance left");
            }
            return;
        }
        let (id, ext) = self.running_guest().await;
        let (from, params, want_ok, want_fail) = match task {
            "CloudGuestStartTask" => {
                self.aws
                    .raw("StopInstances", &[("InstanceId.1", &ext)])
                    .await
                    .expect("stop");
                (Some("start_start"), json!({}), "running", "start_fail")
            }
            "CloudGuestStopTask" => (Some("start_stop"), json!({}), "ready", "stop_fail"),
            "CloudGuestRestartTask" => (Some("start_restart"), json!({}), "running", "start_fail"),
            "CloudGuestSyncstatusTask" => (None, json!({}), "running", "unknown"),
            "CloudGuestChangeConfigTask" => {
                self.aws
                    .raw("StopInstances", &[("InstanceId.1", &ext)])
                    .await
                    .expect("stop");
                // The sync's cached view now holds the stopped instance
                // with its old type.
                self.sync().await;
                (
                    Some("change_flavor"),
                    json!({"instance_type": "t2.small", "vcpu_count": 1, "vmem_size": 2048}),
                    "ready",
                    "change_flavor_fail",
                )
            }
            "CloudGuestDeleteTask" => (Some("deleting"), json!({}), "", "delete_fail"),
            other => panic!("no case for {other}"),
        };
        let t = lab.run_task(&id, from, task, params).await;
        let g = lab.guest_any(&id).await;
        if ok {
            assert_eq!(st(&t), "complete", "{what}: {t:?}");
            if task == "CloudGuestDeleteTask" {
                assert_eq!(g["deleted"], json!(true), "{what}: {g:?}");
                assert!(self.aws.vm(&ext).await.is_err(), "{what}: instance left");
            } else {
                assert_eq!(st(&g), want_ok, "{what}");
            }
            if task == "CloudGuestChangeConfigTask" {
                assert_eq!(
                    self.aws.vm(&ext).await.expect("vm").instance_type,
                    "t2.small"
                );
                // The next (incremental) sync keeps the new type: the task
                // made it re-read the instance.
                self.sync().await;
                let g = lab.guest_any(&id).await;
                assert_eq!(g["instance_type"], "t2.small", "{what}: {g:?}");
                assert_eq!(g["vmem_size"], 2048, "{what}: {g:?}");
            }
        } else if task == "CloudGuestDeleteTask" && fail == Some("cleanup") {
            // The cleanup's one transaction committed before the injected
            // failure: the delete has rolled forward, nothing is left.
            assert_eq!(st(&t), "failed", "{what}: {t:?}");
            assert_eq!(g["deleted"], json!(true), "{what}: {g:?}");
            assert!(self.aws.vm(&ext).await.is_err(), "{what}: instance left");
        } else {
            assert_eq!(st(&t), "failed", "{what}: {t:?}");
            assert_eq!(st(&g), want_fail, "{what}");
            assert!(
                g["fail_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("injected")),
                "{what}: {g:?}"
            );
            if task == "CloudGuestDeleteTask" {
                // Deleting again finishes the job.
                lab.hooks(false, None);
                let t = lab.run_task(&id, Some("deleting"), task, json!({})).await;
                assert_eq!(st(&t), "complete", "{what}: second delete");
                assert_eq!(lab.guest_any(&id).await["deleted"], json!(true), "{what}");
                assert!(self.aws.vm(&ext).await.is_err(), "{what}: instance left");
            }
        }
    }
}

impl CloudLab {
    /// VPCs / EIPs on the cloud.
    async fn on_cloud(&self, kind: &str) -> usize {
        match kind {
            "vpc" => self.aws.vpcs().await.expect("vpcs").len(),
            _ => self.aws.eips().await.expect("eips").len(),
        }
    }

    async fn resource_task(&self, kind: &str, id: &str, op: &str) -> Row {
        let t = NewTask::new(
            "CloudResourceTask",
            kind,
            id,
            id,
            json!({"op": op, "kind": kind}),
            Owner {
                tenant_id: "p1".into(),
                domain_id: "default".into(),
                ..Default::default()
            },
        );
        let engine = &self.lab.region.engine;
        let tid = engine.submit(t).await.expect("submit");
        engine
            .wait(&tid, std::time::Duration::from_secs(30))
            .await
            .expect("wait")
            .expect("CloudResourceTask finished")
    }

    /// Create then delete a VPC and an EIP through `CloudResourceTask`:
    /// a failed create leaves nothing on the cloud, a repeated one makes
    /// one resource, a delete (also when its end is interrupted) leaves
    /// nothing.
    async fn resource_cases(&self, fail: bool) {
        let what = if fail { "failing" } else { "twice" };
        for kind in ["vpc", "eip"] {
            let desc = if kind == "vpc" { &*VPCS } else { &*EIPS };
            let before = self.on_cloud(kind).await;
            let mut r = row(json!({
                "name": format!("saga-{kind}-{what}"), "cidr_block": "10.50.0.0/16",
                "manager_id": self.manager_id, "cloudregion_id": self.cloudregion_id,
                "status": "creating", "domain_id": "default", "tenant_id": "p1",
            }));
            crud::prepare_insert(desc, &mut r);
            crud::insert(self.lab.db().write(), desc, &r)
                .await
                .expect("insert");
            let id = r["id"].as_str().unwrap_or_default().to_string();
            let t = self.resource_task(kind, &id, "create").await;
            let got = crud::get(self.lab.db().read(), desc, &id)
                .await
                .expect("get")
                .expect("row");
            if fail {
                assert_eq!(
                    (st(&t), st(&got)),
                    ("failed", "create_failed"),
                    "{kind} {what}"
                );
                assert_eq!(got["external_id"], "", "{kind} {what}");
                assert_eq!(
                    self.on_cloud(kind).await,
                    before,
                    "{kind} left on the cloud"
                );
                continue;
            }
            assert_eq!(st(&t), "complete", "{kind} {what}: {t:?}");
            assert_eq!(self.on_cloud(kind).await, before + 1, "{kind}: exactly one");
            let t = self.resource_task(kind, &id, "delete").await;
            assert_eq!(st(&t), "complete", "{kind} delete: {t:?}");
            assert!(
                crud::get(self.lab.db().read(), desc, &id)
                    .await
                    .expect("get")
                    .is_none(),
                "{kind} row left"
            );
            assert_eq!(
                self.on_cloud(kind).await,
                before,
                "{kind} left on the cloud"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_resource_tasks_twice_and_failing() {
    let c = cloud_lab().await;
    c.lab.hooks(true, None);
    c.resource_cases(false).await;
    c.lab.hooks(false, Some(("CloudResourceTask", "call")));
    c.resource_cases(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cloud_step_run_twice_ends_like_once() {
    let c = cloud_lab().await;
    c.lab.hooks(true, None);
    for (task, _) in CLOUD {
        c.case(task, None).await;
    }
}

#[tokio::test]
async fn cloud_saga_step_lists_are_the_definitions() {
    let lab = saga::lab(0).await;
    for (name, steps) in CLOUD {
        assert_eq!(
            lab.region.engine.task_steps(name),
            Some(*steps),
            "the saga test of {name} drives other steps than its definition has"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_every_cloud_step_leaves_the_failure_status() {
    let c = cloud_lab().await;
    for (task, steps) in CLOUD {
        for step in *steps {
            c.lab.hooks(false, Some((task, step)));
            c.case(task, Some(step)).await;
            c.lab.hooks(false, None);
        }
    }
}
