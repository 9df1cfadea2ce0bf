//! AWS through our API, against a real moto server on loopback: account
//! create (credentials checked), sync into the region's own tables, lists
//! filtered by brand, a server created / stopped / started / resized /
//! deleted through climc, changes made directly on the cloud picked up by
//! the next sync, and secrets never shown.

mod cloud_aws_common;
mod common;

use std::time::{Duration, Instant};

use cloud_aws_common::*;
use cloudpods_cloudprovider::RegionDriver;
use common::*;
use serde_json::json;

on_both_databases!(account_sync_and_servers_through_the_api);

const SECRET: &str = "Cp-Test-Secret/wJalrXUtnFEMI-K7MDENG";

async fn server_status(api: &Api, r: &str, id: &str) -> String {
    api.get(&format!("{r}/servers/{id}")).await.body["server"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_status(api: &Api, r: &str, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let st = server_status(api, r, id).await;
        if st == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server {id} stuck in {st}, wanted {want}: {:?}",
            api.get(&format!("{r}/servers/{id}")).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every response body seen in a test, to grep for the secret.
#[derive(Default)]
struct Seen(String);

impl Seen {
    fn add(&mut self, v: &impl std::fmt::Debug) {
        self.0.push_str(&format!("{v:?}\n"));
    }
}

async fn account_sync_and_servers_through_the_api(backend: Backend) {
    let moto = moto();
    let d = driver(&moto.url, "us-east-1");
    // The cloud before the account exists: 3 instances, a VPC with two
    // subnets, an AMI of our own.
    let seeded = d
        .run_instances(3, "ami-12345678", "t2.micro", "")
        .await
        .unwrap();
    let vpc = d
        .raw("CreateVpc", &[("CidrBlock", "10.20.0.0/16")])
        .await
        .unwrap();
    let vpc_id = between(&vpc, "<vpcId>", "</vpcId>");
    let sub1 = d
        .raw(
            "CreateSubnet",
            &[
                ("VpcId", &vpc_id),
                ("CidrBlock", "10.20.1.0/24"),
                ("AvailabilityZone", "us-east-1a"),
            ],
        )
        .await
        .unwrap();
    let subnet1 = between(&sub1, "<subnetId>", "</subnetId>");
    let sub2 = d
        .raw(
            "CreateSubnet",
            &[
                ("VpcId", &vpc_id),
                ("CidrBlock", "10.20.2.0/24"),
                ("AvailabilityZone", "us-east-1b"),
            ],
        )
        .await
        .unwrap();
    let subnet2 = between(&sub2, "<subnetId>", "</subnetId>");
    let img = d
        .raw(
            "CreateImage",
            &[("InstanceId", &seeded[0]), ("Name", "cp-golden")],
        )
        .await
        .unwrap();
    let ami = between(&img, "<imageId>", "</imageId>");

    let p = Platform::start_on(backend);
    let api = p.admin().await;
    let r = p.region_url();
    let mut seen = Seen::default();

    // Create through climc; the first sync starts by itself.
    let (ok, out, err) = p.climc(&[
        "cloud-account-create-aws",
        "aws1",
        "--access-key",
        "AKIDCP",
        "--secret",
        SECRET,
        "--access-url",
        &moto.url,
        "--region",
        "us-east-1",
    ]);
    assert!(ok, "{out}\n{err}");
    seen.add(&out);
    let acc = api.get(&format!("{r}/cloudaccounts/aws1")).await;
    seen.add(&acc);
    assert_eq!(acc.status, 200);
    let id = acc.body["cloudaccount"]["id"].as_str().unwrap().to_string();
    assert_eq!(acc.body["cloudaccount"]["account_id"], "123456789012");
    assert!(acc.body["cloudaccount"].get("secret").is_none());
    let acc = wait_synced(&api, &r, &id, 0, 120).await;
    assert_eq!(acc["error_count"], 0, "{acc}");
    assert_eq!(acc["health_status"], "normal");

    // Everything shows up in the ordinary lists, filtered by brand.
    let regions = api.get(&format!("{r}/cloudregions?brand=Aws")).await;
    seen.add(&regions);
    assert_eq!(
        regions.body["cloudregions"].as_array().unwrap().len(),
        1,
        "{regions:?}"
    );
    let region_name = regions.body["cloudregions"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(regions.body["cloudregions"][0]["external_id"], "us-east-1");
    assert!(total(&api, &format!("{r}/zones?brand=Aws")).await >= 2);
    assert_eq!(total(&api, &format!("{r}/vpcs?brand=Aws")).await, 2);
    assert!(total(&api, &format!("{r}/networks?brand=Aws")).await >= 3);
    assert!(total(&api, &format!("{r}/secgroups?brand=Aws")).await >= 2);
    assert_eq!(total(&api, &format!("{r}/servers?brand=Aws")).await, 3);
    assert_eq!(
        total(&api, &format!("{r}/servers?cloud_env=public")).await,
        3
    );
    assert_eq!(total(&api, &format!("{r}/servers?brand=OneCloud")).await, 0);
    assert_eq!(total(&api, &format!("{r}/disks?brand=Aws")).await, 3);
    assert_eq!(total(&api, &format!("{r}/cachedimages?brand=Aws")).await, 1);
    let servers = api
        .get(&format!("{r}/servers?brand=Aws&details=true"))
        .await;
    seen.add(&servers);
    let s0 = &servers.body["servers"][0];
    assert_eq!(s0["brand"], "Aws");
    assert_eq!(s0["cloud_env"], "public");
    assert_eq!(s0["hypervisor"], "aws");
    assert_eq!(s0["status"], "running");
    assert!(!s0["ips"].as_str().unwrap_or_default().is_empty(), "{s0}");
    assert_eq!(s0["disk_count"], 1);
    // The project the account maps to owns them.
    assert_eq!(s0["tenant_id"], acc["project_id"]);
    let (ok, out, _) = p.climc(&["server-list", "--brand", "Aws"]);
    assert!(ok);
    assert_eq!(out.matches("running").count(), 3, "{out}");
    let (ok, out, _) = p.climc(&["cloudprovider-list"]);
    assert!(ok && out.contains("aws1"), "{out}");
    let (ok, out, _) = p.climc(&["cloud-account-show", "aws1"]);
    assert!(
        ok && out.contains("sync_status") && !out.contains(SECRET),
        "{out}"
    );
    seen.add(&out);

    // A server on AWS through climc: create, stop, resize, start, delete.
    let net1 = api
        .get(&format!("{r}/networks?external_id={subnet1}"))
        .await;
    let net1 = net1.body["networks"][0]["id"].as_str().unwrap().to_string();
    let (ok, out, err) = p.climc(&[
        "server-create",
        "cpvm",
        "--hypervisor",
        "aws",
        "--prefer-region",
        &region_name,
        "--instance-type",
        "t2.micro",
        "--image",
        &ami,
        "--net",
        &net1,
        "--disk",
        "12g",
    ]);
    assert!(ok, "{out}\n{err}");
    let sid = api.get(&format!("{r}/servers/cpvm")).await.id_of("server");
    wait_status(&api, &r, &sid, "running").await;
    let srv = api.get(&format!("{r}/servers/{sid}")).await.body["server"].clone();
    let ext = srv["external_id"].as_str().unwrap().to_string();
    assert!(ext.starts_with("i-"), "{srv}");
    let vm = d.vm(&ext).await.unwrap();
    assert_eq!(vm.name, "cpvm");
    assert_eq!(vm.nics[0].network_id, subnet1);
    assert_eq!(srv["brand"], "Aws");
    assert_eq!(srv["ips"], json!(vm.nics[0].ip));

    let (ok, out, err) = p.climc(&["server-stop", "cpvm"]);
    assert!(ok, "{out}{err}");
    wait_status(&api, &r, &sid, "ready").await;
    assert_eq!(d.vm(&ext).await.unwrap().status, "ready");
    let resp = api
        .post(
            &format!("{r}/servers/{sid}/change-config"),
            json!({"server": {"instance_type": "t2.small"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_status(&api, &r, &sid, "ready").await;
    assert_eq!(d.vm(&ext).await.unwrap().instance_type, "t2.small");
    let srv = api.get(&format!("{r}/servers/{sid}")).await.body["server"].clone();
    assert_eq!(srv["vmem_size"], 2048);
    let (ok, out, err) = p.climc(&["server-start", "cpvm"]);
    assert!(ok, "{out}{err}");
    wait_status(&api, &r, &sid, "running").await;
    assert_eq!(d.vm(&ext).await.unwrap().status, "running");
    let resp = api
        .post(&format!("{r}/servers/{sid}/restart"), json!({}))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_status(&api, &r, &sid, "running").await;
    // Unsupported actions say so.
    let resp = api
        .post(&format!("{r}/servers/{sid}/migrate"), json!({}))
        .await;
    assert_error(&resp, 406, "NotSupportedError");
    let (ok, out, err) = p.climc(&["server-delete", "cpvm"]);
    assert!(ok, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get(&format!("{r}/servers/{sid}")).await.status != 404 {
        assert!(Instant::now() < deadline, "server not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.vm(&ext).await.is_err());

    // Bad input: an instance type the region does not offer, no image.
    let resp = api
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "bad", "hypervisor": "aws",
            "prefer_region": region_name, "instance_type": "x9.huge", "image_id": ami}}),
        )
        .await;
    assert_error(&resp, 404, "ResourceNotFoundError");
    let resp = api
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "bad", "hypervisor": "aws",
            "prefer_region": region_name}}),
        )
        .await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(total(&api, &format!("{r}/servers?name=bad")).await, 0);
    // The project's server quota holds for public-cloud servers too.
    let project = acc["project_id"].as_str().unwrap_or_default().to_string();
    let resp = api
        .post(
            &format!("{r}/quotas/projects/{project}"),
            json!({"quotas": {"server": 0}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let resp = api
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "bad", "hypervisor": "aws",
            "prefer_region": region_name, "instance_type": "t2.micro", "image_id": ami}}),
        )
        .await;
    assert_error(&resp, 400, "OutOfQuotaError");
    assert_eq!(total(&api, &format!("{r}/servers?name=bad")).await, 0);
    let resp = api
        .post(
            &format!("{r}/quotas/projects/{project}"),
            json!({"quotas": {"server": 1000}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");

    // Changes made on the cloud directly show up after the next sync.
    let fresh = d
        .run_instances(1, "ami-12345678", "t2.micro", "")
        .await
        .unwrap();
    d.raw("TerminateInstances", &[("InstanceId.1", &seeded[2])])
        .await
        .unwrap();
    d.raw("DeleteSubnet", &[("SubnetId", &subnet2)])
        .await
        .unwrap();
    // A loose volume appears (incremental runs list unattached volumes
    // every time).
    let vol = d
        .raw(
            "CreateVolume",
            &[("AvailabilityZone", "us-east-1a"), ("Size", "5")],
        )
        .await
        .unwrap();
    let vol = vol
        .split("<volumeId>")
        .nth(1)
        .and_then(|t| t.split("</volumeId>").next())
        .unwrap_or_default()
        .to_string();
    assert!(vol.starts_with("vol-"), "{vol}");
    let n = acc["sync_count"].as_i64().unwrap_or(0);
    let (ok, out, err) = p.climc(&["cloud-account-sync", "aws1", "--wait"]);
    assert!(ok, "{out}{err}");
    seen.add(&out);
    let acc = wait_synced(&api, &r, &id, n, 60).await;
    assert_eq!(acc["error_count"], 0, "{acc}");
    assert_eq!(
        total(&api, &format!("{r}/servers?external_id={}", fresh[0])).await,
        1
    );
    assert_eq!(
        total(&api, &format!("{r}/servers?external_id={}", seeded[2])).await,
        0,
        "{acc} {:?} {:?}",
        api.get(&format!("{r}/servers?external_id={}", seeded[2]))
            .await,
        d.vm(&seeded[2]).await
    );
    assert_eq!(total(&api, &format!("{r}/servers?brand=Aws")).await, 3);
    assert_eq!(
        total(&api, &format!("{r}/disks?external_id={vol}")).await,
        1,
        "{acc}"
    );
    assert_eq!(
        total(&api, &format!("{r}/networks?external_id={subnet2}")).await,
        0
    );
    assert_eq!(
        total(&api, &format!("{r}/networks?external_id={subnet1}")).await,
        1
    );
    // The incremental run touched only what changed.
    let res = &acc["sync_result"]["resources"];
    assert_eq!(res["servers"]["added"], 1, "{res}");
    assert_eq!(res["servers"]["removed"], 1, "{res}");
    assert_eq!(res["servers"]["updated"], 0, "{res}");
    assert_eq!(res["networks"]["removed"], 1, "{res}");

    // Sync of one resource kind; unknown kinds are refused.
    let resp = api
        .post(
            &format!("{r}/cloudaccounts/{id}/sync"),
            json!({"cloudaccount": {"resources": ["bogus"]}}),
        )
        .await;
    assert_error(&resp, 400, "InputParameterError");

    // The secret never appears in answers, logs or the database file.
    let list = api.get(&format!("{r}/cloudaccounts?details=true")).await;
    seen.add(&list);
    let provs = api.get(&format!("{r}/cloudproviders?details=true")).await;
    seen.add(&provs);
    let tasks = api.get(&format!("{r}/tasks?limit=100")).await;
    seen.add(&tasks);
    assert!(!seen.0.contains(SECRET), "secret in a response");
    assert!(!p.log().contains(SECRET), "secret in the log");
    let db = std::fs::read(p.data_dir().join("cloudpods.db")).unwrap_or_default();
    let db_text = String::from_utf8_lossy(&db);
    assert!(!db_text.contains(SECRET), "secret stored in clear");

    // Delete: disable first; its resources go with it.
    let resp = api.delete(&format!("{r}/cloudaccounts/{id}")).await;
    assert_error(&resp, 400, "InvalidStatusError");
    let (ok, _, err) = p.climc(&["cloud-account-disable", "aws1"]);
    assert!(ok, "{err}");
    let resp = api.delete(&format!("{r}/cloudaccounts/{id}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(total(&api, &format!("{r}/servers?brand=Aws")).await, 0);
    assert_eq!(total(&api, &format!("{r}/vpcs?brand=Aws")).await, 0);
    assert_eq!(total(&api, &format!("{r}/cloudproviders")).await, 0);
}
