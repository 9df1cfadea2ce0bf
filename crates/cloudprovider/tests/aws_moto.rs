//! The AWS driver against a real moto server on loopback: every list, the
//! operations, pagination to the last page, retries of throttled calls,
//! server errors and timeouts, and — with moto's IAM checks switched on —
//! SigV4 signatures verified by moto and wrong credentials refused.

use std::time::Duration;

use cloudpods_cloudprovider::aws::AwsProvider;
use cloudpods_cloudprovider::{
    CloudError, CreateNetwork, CreateVm, Provider, ProviderConfig, RegionDriver, SecRule,
};
use cloudpods_testkit::moto::{Fault, FaultProxy, Moto, Rule};

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A moto server; fails, naming `moto_server`, when there is none.
fn moto() -> Moto {
    cloudpods_testkit::require_moto();
    Moto::start().expect("moto")
}

fn cfg(url: &str) -> ProviderConfig {
    ProviderConfig {
        access_url: url.into(),
        account: "AKIDTEST".into(),
        secret: "test-secret-value".into(),
        page_size: 5,
        backoff: Duration::from_millis(20),
        ..Default::default()
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let i = text.find(open).map(|i| i + open.len()).unwrap_or(0);
    let j = text[i..].find(close).map(|j| i + j).unwrap_or(i);
    &text[i..j]
}

#[tokio::test]
async fn lists_and_operations() {
    init();
    let moto = moto();
    let proxy = FaultProxy::start(&moto.url).await.expect("proxy");
    let prov = AwsProvider::new(cfg(&proxy.url)).unwrap();
    assert_eq!(prov.account_id().await.unwrap(), "123456789012");
    let regions = prov.regions().await.unwrap();
    assert!(regions.iter().any(|r| r.external_id == "us-east-1"));
    let r = prov.aws_region("us-east-1");

    let zones = r.zones().await.unwrap();
    assert!(zones.len() >= 2, "{zones:?}");
    assert_eq!(r.hosts(&zones).await.unwrap().len(), zones.len());
    assert!(r.storages(&zones).await.unwrap().len() >= zones.len());
    let vpcs = r.vpcs().await.unwrap();
    let default_vpc = vpcs.iter().find(|v| v.is_default).expect("default vpc");

    // VPC, subnet, security group and rules.
    let vpc = r.create_vpc("cp-vpc", "10.9.0.0/16").await.unwrap();
    assert_eq!(vpc.name, "cp-vpc");
    let net = r
        .create_network(&CreateNetwork {
            name: "cp-net".into(),
            vpc_id: vpc.external_id.clone(),
            zone_id: zones[0].external_id.clone(),
            cidr: "10.9.1.0/24".into(),
        })
        .await
        .unwrap();
    let nets = r.networks().await.unwrap();
    let listed = nets
        .iter()
        .find(|n| n.external_id == net.external_id)
        .expect("subnet listed");
    assert_eq!(listed.name, "cp-net");
    assert_eq!(listed.vpc_id, vpc.external_id);
    let sg = r
        .create_secgroup(&vpc.external_id, "cp-sg", "test group")
        .await
        .unwrap();
    let rules = vec![
        SecRule {
            direction: "in".into(),
            protocol: "tcp".into(),
            ports: "22".into(),
            cidr: "10.0.0.0/8".into(),
            action: "allow".into(),
            priority: 1,
        },
        SecRule {
            direction: "in".into(),
            protocol: "udp".into(),
            ports: "1000-2000".into(),
            cidr: "0.0.0.0/0".into(),
            action: "allow".into(),
            priority: 1,
        },
    ];
    r.add_rules(&sg.external_id, &rules).await.unwrap();
    let groups = r.secgroups().await.unwrap();
    let g = groups
        .iter()
        .find(|g| g.external_id == sg.external_id)
        .unwrap();
    for rule in &rules {
        assert!(g.rules.contains(rule), "{rule:?} in {:?}", g.rules);
    }
    r.remove_rules(&sg.external_id, &rules[..1]).await.unwrap();
    let groups = r.secgroups().await.unwrap();
    let g = groups
        .iter()
        .find(|g| g.external_id == sg.external_id)
        .unwrap();
    assert!(!g.rules.contains(&rules[0]));

    // Pagination: 12 reservations with pages of 5 → 3 pages, every VM seen.
    let before = proxy.seen("DescribeInstances");
    for _ in 0..12 {
        r.run_instances(1, "ami-12345678", "t2.micro", "")
            .await
            .unwrap();
    }
    let vms = r.vms().await.unwrap();
    assert_eq!(vms.len(), 12);
    assert_eq!(proxy.seen("DescribeInstances") - before, 3);
    let disks = r.disks().await.unwrap();
    assert!(disks.len() >= 12);
    assert!(vms.iter().all(|v| v.vcpu == 1 && v.mem_mb == 1024));

    // One VM through its life.
    let vm = r
        .create_vm(&CreateVm {
            name: "cp-vm".into(),
            image_id: "ami-12345678".into(),
            instance_type: "t2.micro".into(),
            network_id: net.external_id.clone(),
            secgroup_ids: vec![sg.external_id.clone()],
            sys_disk_gb: 12,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(vm.name, "cp-vm");
    assert_eq!(vm.nics[0].network_id, net.external_id);
    let id = vm.external_id.clone();
    r.stop_vm(&id, false).await.unwrap();
    assert_eq!(r.vm(&id).await.unwrap().status, "ready");
    r.change_config(&id, "t2.small").await.unwrap();
    let v = r.vm(&id).await.unwrap();
    assert_eq!(v.instance_type, "t2.small");
    assert_eq!(v.mem_mb, 2048);
    r.start_vm(&id).await.unwrap();
    assert_eq!(r.vm(&id).await.unwrap().status, "running");
    r.reboot_vm(&id).await.unwrap();

    // EIP.
    let eip = r.allocate_eip("cp-eip").await.unwrap();
    r.associate_eip(&eip.external_id, &id).await.unwrap();
    let eips = r.eips().await.unwrap();
    let e = eips
        .iter()
        .find(|e| e.external_id == eip.external_id)
        .unwrap();
    assert_eq!(e.vm_id, id);
    assert_eq!(e.name, "cp-eip");
    r.dissociate_eip(&eip.external_id).await.unwrap();
    r.release_eip(&eip.external_id).await.unwrap();
    assert!(
        !r.eips()
            .await
            .unwrap()
            .iter()
            .any(|e| e.external_id == eip.external_id)
    );

    // Images and snapshots owned by the account.
    let img = r
        .raw("CreateImage", &[("InstanceId", &id), ("Name", "cp-image")])
        .await
        .unwrap();
    let ami = between(&img, "<imageId>", "</imageId>").to_string();
    let images = r.images().await.unwrap();
    assert!(
        images
            .iter()
            .any(|i| i.external_id == ami && i.name == "cp-image")
    );
    let snap = r
        .raw("CreateSnapshot", &[("VolumeId", &vm.disk_ids[0])])
        .await
        .unwrap();
    let sid = between(&snap, "<snapshotId>", "</snapshotId>").to_string();
    let snaps = r.snapshots().await.unwrap();
    assert!(snaps.iter().any(|s| s.external_id == sid));
    assert!(!r.skus().await.unwrap().is_empty());

    // Delete: the VM is gone for the driver (terminated).
    r.delete_vm(&id).await.unwrap();
    assert!(matches!(r.vm(&id).await, Err(CloudError::NotFound(_))));
    r.delete_secgroup(&sg.external_id).await.unwrap();
    r.delete_network(&net.external_id).await.unwrap();
    r.delete_vpc(&vpc.external_id).await.unwrap();
    assert!(matches!(
        r.delete_vpc(&vpc.external_id).await,
        Err(CloudError::NotFound(_))
    ));
    assert!(
        r.vpcs()
            .await
            .unwrap()
            .iter()
            .any(|v| v.external_id == default_vpc.external_id)
    );

    // S3, path style.
    reqwest::Client::new()
        .put(format!("{}/cp-bucket", moto.url))
        .send()
        .await
        .unwrap();
    let buckets = prov.buckets().await.unwrap();
    assert!(buckets.iter().any(|b| b.name == "cp-bucket"));
}

#[tokio::test]
async fn faults_are_retried_or_reported() {
    init();
    let moto = moto();
    let proxy = FaultProxy::start(&moto.url).await.expect("proxy");
    let mut c = cfg(&proxy.url);
    c.timeout = Duration::from_secs(2);
    c.max_attempts = 4;
    let prov = AwsProvider::new(c).unwrap();
    let r = prov.aws_region("us-east-1");
    // Seeded directly, without the short timeout.
    let seed = AwsProvider::new(cfg(&moto.url))
        .unwrap()
        .aws_region("us-east-1");
    for _ in 0..8 {
        seed.run_instances(1, "ami-12345678", "t2.micro", "")
            .await
            .unwrap();
    }

    // Throttled twice, then answered: the caller sees no failure.
    proxy.add(Rule::new("DescribeVpcs", Fault::Throttle).times(2));
    assert!(!r.vpcs().await.unwrap().is_empty());
    assert_eq!(proxy.faulted("DescribeVpcs"), 2);

    // Throttled beyond the attempts: Throttled.
    proxy.add(Rule::new("DescribeSubnets", Fault::Throttle));
    assert!(matches!(r.networks().await, Err(CloudError::Throttled(_))));
    proxy.clear();

    // The second page fails with 500 every time: the whole list fails (no
    // partial list reaches the caller).
    proxy.add(Rule::new("DescribeInstances", Fault::Status(500, "InternalError")).skip(1));
    assert!(matches!(
        r.vms().await,
        Err(CloudError::Server { status: 500, .. })
    ));
    proxy.clear();
    let all = r.vms().await.unwrap();
    let mut ids: Vec<&str> = all.iter().map(|v| v.external_id.as_str()).collect();
    ids.sort();
    assert_eq!(all.len(), 8, "{ids:?} {}", proxy.seen("DescribeInstances"));

    // A page that never answers: a transport error after the timeouts.
    proxy.add(Rule::new("DescribeInstances", Fault::Hang).skip(1));
    // (The read timeout ends it: a transport error, not a hang.)
    let err = r.vms().await.unwrap_err();
    assert!(matches!(err, CloudError::Transport(_)), "{err}");
    proxy.clear();

    // Not found and invalid input are told apart.
    assert!(matches!(
        r.start_vm("i-0000000000000000").await,
        Err(CloudError::NotFound(_))
    ));
}

#[tokio::test]
async fn signatures_checked_by_moto() {
    init();
    let moto = moto();
    // Make an IAM user with a key and an allow-all policy while moto does
    // not check yet, then switch checking on.
    let admin = AwsProvider::new(cfg(&moto.url)).unwrap();
    let iam = |action: &'static str, params: Vec<(String, String)>| {
        let c = admin.client().clone();
        async move {
            c.query("iam", "us-east-1", "2010-05-08", action, &params)
                .await
        }
    };
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    iam("CreateUser", vec![kv("UserName", "cp")]).await.unwrap();
    iam(
        "PutUserPolicy",
        vec![
            kv("UserName", "cp"),
            kv("PolicyName", "all"),
            kv(
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            ),
        ],
    )
    .await
    .unwrap();
    let key = iam("CreateAccessKey", vec![kv("UserName", "cp")])
        .await
        .unwrap();
    let access = between(&key, "<AccessKeyId>", "</AccessKeyId>").to_string();
    let secret = between(&key, "<SecretAccessKey>", "</SecretAccessKey>").to_string();
    moto.enable_auth_after(0).await.unwrap();

    let mut good = cfg(&moto.url);
    good.account = access.clone();
    good.secret = secret.clone();
    let prov = AwsProvider::new(good.clone()).unwrap();
    prov.account_id().await.expect("signed call accepted");
    let r = prov.aws_region("us-east-1");
    assert!(!r.vpcs().await.unwrap().is_empty());
    let sg = r
        .create_secgroup("", "signed", "with spaces & symbols")
        .await;
    assert!(sg.is_ok(), "{sg:?}");

    let mut wrong = good.clone();
    wrong.secret = "not-the-secret".into();
    let err = AwsProvider::new(wrong)
        .unwrap()
        .account_id()
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::Unauthorized(_)), "{err}");
    assert!(!err.to_string().contains("not-the-secret"));

    let mut unknown = good;
    unknown.account = "AKIDUNKNOWN".into();
    let err = AwsProvider::new(unknown)
        .unwrap()
        .aws_region("us-east-1")
        .vpcs()
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::Unauthorized(_)), "{err}");
}
