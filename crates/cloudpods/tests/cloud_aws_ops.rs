//! VPCs, subnets, security groups and rules, and EIPs on AWS through the
//! ordinary APIs, each as a task; checked on moto.

mod cloud_aws_common;
mod common;

use std::time::{Duration, Instant};

use cloud_aws_common::*;
use cloudpods_cloudprovider::RegionDriver;
use common::*;
use serde_json::{Value, json};

async fn wait_field(api: &Api, url: &str, key: &str, field: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.get(url).await;
        let v = r.body[key].clone();
        if v[field] == want {
            return v;
        }
        assert!(Instant::now() < deadline, "{url}: {field} != {want}: {v}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn wait_gone(api: &Api, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get(url).await.status != 404 {
        assert!(Instant::now() < deadline, "{url} still there");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test]
async fn vpc_subnet_secgroup_eip_through_the_api() {
    init_tls();
    let moto = moto();
    let d = driver(&moto.url, "us-east-1");
    let vm = d
        .run_instances(1, "ami-12345678", "t2.micro", "")
        .await
        .unwrap();
    let p = Platform::start();
    let api = p.admin().await;
    let r = p.region_url();
    let resp = api
        .post(
            &format!("{r}/cloudaccounts"),
            json!({"cloudaccount": {"name": "aws", "provider": "Aws",
            "account": "AKIDOPS", "secret": "ops-secret", "access_url": moto.url,
            "options": {"regions": ["us-east-1"]}}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.id_of("cloudaccount");
    wait_synced(&api, &r, &id, 0, 120).await;
    let cr = api
        .first_id(
            &format!("{r}/cloudregions?external_id=us-east-1"),
            "cloudregions",
        )
        .await;
    let zone = api
        .first_id(&format!("{r}/zones?external_id=us-east-1a"), "zones")
        .await;

    // VPC.
    let resp = api
        .post(
            &format!("{r}/vpcs"),
            json!({"vpc": {"name": "cp-vpc", "cloudregion": cr, "cidr_block": "10.50.0.0/16"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let vpc_id = resp.body["vpc"]["id"].as_str().unwrap().to_string();
    let vpc = wait_field(
        &api,
        &format!("{r}/vpcs/{vpc_id}"),
        "vpc",
        "status",
        "available",
    )
    .await;
    let vpc_ext = vpc["external_id"].as_str().unwrap().to_string();
    assert!(
        d.vpcs()
            .await
            .unwrap()
            .iter()
            .any(|v| v.external_id == vpc_ext)
    );
    assert_eq!(vpc["brand"], "Aws");

    // Subnet.
    let resp = api
        .post(
            &format!("{r}/networks"),
            json!({"network": {"name": "cp-net", "vpc": vpc_id, "zone": zone,
            "guest_ip_prefix": "10.50.1.0/24"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let net_id = resp.body["network"]["id"].as_str().unwrap().to_string();
    let net = wait_field(
        &api,
        &format!("{r}/networks/{net_id}"),
        "network",
        "status",
        "available",
    )
    .await;
    let net_ext = net["external_id"].as_str().unwrap().to_string();
    let subnets = d.networks().await.unwrap();
    let sn = subnets
        .iter()
        .find(|n| n.external_id == net_ext)
        .expect("subnet on moto");
    assert_eq!(sn.cidr, "10.50.1.0/24");
    assert_eq!(net["guest_ip_start"], "10.50.1.4");

    // Security group and rules.
    let resp = api
        .post(
            &format!("{r}/secgroups"),
            json!({"secgroup": {"name": "cp-sg", "vpc_id": vpc_id, "description": "web"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let sg_id = resp.body["secgroup"]["id"].as_str().unwrap().to_string();
    let sg = wait_field(
        &api,
        &format!("{r}/secgroups/{sg_id}"),
        "secgroup",
        "status",
        "ready",
    )
    .await;
    let sg_ext = sg["external_id"].as_str().unwrap().to_string();
    let resp = api
        .post(
            &format!("{r}/secgrouprules"),
            json!({"secgrouprule": {"secgroup_id": sg_id, "direction": "in",
            "protocol": "tcp", "ports": "443", "cidr": "10.0.0.0/8", "action": "allow"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let rule_id = resp.id_of("secgrouprule");
    let has_rule = || async {
        d.secgroups()
            .await
            .unwrap()
            .into_iter()
            .find(|g| g.external_id == sg_ext)
            .map(|g| {
                g.rules
                    .iter()
                    .any(|x| x.ports == "443" && x.cidr == "10.0.0.0/8")
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_rule().await {
        assert!(Instant::now() < deadline, "rule not on the cloud");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resp = api.delete(&format!("{r}/secgrouprules/{rule_id}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while has_rule().await {
        assert!(Instant::now() < deadline, "rule still on the cloud");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Cloudpods' `secgroup-add-rule` (a rule through the group) reaches
    // the cloud as well.
    let resp = api
        .post(
            &format!("{r}/secgroups/{sg_id}/add-rule"),
            json!({"secgroup": {"direction": "in", "protocol": "tcp", "ports": "443",
                   "cidr": "10.0.0.0/8", "action": "allow"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_rule().await {
        assert!(
            Instant::now() < deadline,
            "add-rule did not reach the cloud"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // EIP: allocate, associate with a synced instance, dissociate, release.
    let sid = api
        .first_id(&format!("{r}/servers?external_id={}", vm[0]), "servers")
        .await;
    let resp = api
        .post(
            &format!("{r}/eips"),
            json!({"eip": {"name": "cp-eip", "cloudregion": cr}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let eip_id = resp.body["eip"]["id"].as_str().unwrap().to_string();
    let eip = wait_field(
        &api,
        &format!("{r}/eips/{eip_id}"),
        "eip",
        "status",
        "ready",
    )
    .await;
    let eip_ext = eip["external_id"].as_str().unwrap().to_string();
    assert!(!eip["ip_addr"].as_str().unwrap_or_default().is_empty());
    let resp = api
        .post(
            &format!("{r}/eips/{eip_id}/associate"),
            json!({"eip": {"instance_id": sid}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let eip = wait_field(
        &api,
        &format!("{r}/eips/{eip_id}"),
        "eip",
        "associate_id",
        &sid,
    )
    .await;
    assert_eq!(eip["status"], "ready");
    let on_cloud = d
        .eips()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.external_id == eip_ext)
        .unwrap();
    assert_eq!(on_cloud.vm_id, vm[0]);
    let resp = api
        .post(&format!("{r}/eips/{eip_id}/dissociate"), json!({}))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_field(
        &api,
        &format!("{r}/eips/{eip_id}"),
        "eip",
        "associate_id",
        "",
    )
    .await;
    let resp = api.delete(&format!("{r}/eips/{eip_id}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_gone(&api, &format!("{r}/eips/{eip_id}")).await;
    assert!(
        !d.eips()
            .await
            .unwrap()
            .iter()
            .any(|e| e.external_id == eip_ext)
    );

    // Deletes, innermost first; each also goes away on the cloud.
    let resp = api.delete(&format!("{r}/secgroups/{sg_id}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_gone(&api, &format!("{r}/secgroups/{sg_id}")).await;
    assert!(
        !d.secgroups()
            .await
            .unwrap()
            .iter()
            .any(|g| g.external_id == sg_ext)
    );
    let resp = api.delete(&format!("{r}/networks/{net_id}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_gone(&api, &format!("{r}/networks/{net_id}")).await;
    assert!(
        !d.networks()
            .await
            .unwrap()
            .iter()
            .any(|n| n.external_id == net_ext)
    );

    // The wire the subnet needed is left to the next sync, which also
    // removes it; then the VPC can go.
    let n = api.get(&format!("{r}/cloudaccounts/{id}")).await.body["cloudaccount"]["sync_count"]
        .as_i64()
        .unwrap();
    api.post(&format!("{r}/cloudaccounts/{id}/sync"), json!({}))
        .await;
    wait_synced(&api, &r, &id, n, 60).await;
    let resp = api.delete(&format!("{r}/vpcs/{vpc_id}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_gone(&api, &format!("{r}/vpcs/{vpc_id}")).await;
    assert!(
        !d.vpcs()
            .await
            .unwrap()
            .iter()
            .any(|v| v.external_id == vpc_ext)
    );

    // Bad input: a cloud subnet without a zone, a CIDR out of range.
    let resp = api
        .post(
            &format!("{r}/networks"),
            json!({"network": {"name": "x", "vpc": vpc_ext, "guest_ip_prefix": "10.9.0.0/24"}}),
        )
        .await;
    assert!(resp.status == 400 || resp.status == 404, "{resp:?}");
    let resp = api
        .post(
            &format!("{r}/vpcs"),
            json!({"vpc": {"name": "bad", "cloudregion": cr, "cidr_block": "10.0.0.0/8"}}),
        )
        .await;
    assert_error(&resp, 400, "InputParameterError");
}
