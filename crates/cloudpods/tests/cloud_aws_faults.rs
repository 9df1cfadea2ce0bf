//! Faults between us and the cloud: wrong credentials (moto with its IAM
//! checks on, so our SigV4 signatures are verified too), a cloud answering
//! 500 or never answering in the middle of a paginated list, throttling,
//! and a server deleted on the cloud while we act on it. A failed page never
//! deletes rows; the next sync resumes.

mod cloud_aws_common;
mod common;

use std::time::{Duration, Instant};

use cloud_aws_common::*;
use cloudpods_cloudprovider::ProviderConfig;
use cloudpods_cloudprovider::aws::AwsProvider;
use cloudpods_testkit::moto::{Fault, FaultProxy, Rule};
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn wrong_credentials_are_refused_with_the_clouds_message() {
    init_tls();
    let moto = moto();
    // An IAM user with an allow-all policy, then moto checks every request.
    let admin = AwsProvider::new(ProviderConfig {
        access_url: moto.url.clone(),
        account: "AKIDSEED".into(),
        secret: "seed".into(),
        ..Default::default()
    })
    .unwrap();
    let iam = |action: &'static str, params: Vec<(&str, &str)>| {
        let c = admin.client().clone();
        let ps: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        async move { c.query("iam", "us-east-1", "2010-05-08", action, &ps).await }
    };
    iam("CreateUser", vec![("UserName", "cp")]).await.unwrap();
    iam(
        "PutUserPolicy",
        vec![
            ("UserName", "cp"),
            ("PolicyName", "all"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            ),
        ],
    )
    .await
    .unwrap();
    let key = iam("CreateAccessKey", vec![("UserName", "cp")])
        .await
        .unwrap();
    let access = between(&key, "<AccessKeyId>", "</AccessKeyId>");
    let secret = between(&key, "<SecretAccessKey>", "</SecretAccessKey>");
    moto.enable_auth_after(0).await.unwrap();

    let p = Platform::start();
    let api = p.admin().await;
    let r = p.region_url();
    let body = |name: &str, key: &str, sec: &str| {
        json!({"cloudaccount": {"name": name, "provider": "Aws", "account": key, "secret": sec,
                                "access_url": moto.url, "options": {"regions": ["us-east-1"]}}})
    };
    let wrong = "Wrong-Secret-Value-1234567890";
    let resp = api
        .post(&format!("{r}/cloudaccounts"), body("bad", &access, wrong))
        .await;
    assert_error(&resp, 400, "InputParameterError");
    let details = resp.body["details"].as_str().unwrap_or_default();
    assert!(details.contains("SignatureDoesNotMatch"), "{details}");
    assert!(!details.contains(wrong));
    let resp = api
        .post(
            &format!("{r}/cloudaccounts"),
            body("bad", "AKIDUNKNOWN", wrong),
        )
        .await;
    assert_error(&resp, 400, "InputParameterError");
    cloudpods_testkit::assert_details(&resp.body, "InvalidClientTokenId");
    let resp = api
        .post(
            &format!("{r}/cloudaccounts"),
            json!({"cloudaccount": {"name": "bad", "provider": "Azure",
            "account": "a", "secret": "b"}}),
        )
        .await;
    assert_error(&resp, 400, "InputParameterError");
    let resp = api
        .post(
            &format!("{r}/cloudaccounts"),
            json!({"cloudaccount": {"name": "bad", "provider": "Aws",
            "account": "a", "secret": "b", "access_url": "ftp://nowhere"}}),
        )
        .await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(total(&api, &format!("{r}/cloudaccounts")).await, 0);

    // The right key: every call of the sync is signed and checked by moto.
    let resp = api
        .post(
            &format!("{r}/cloudaccounts"),
            body("good", &access, &secret),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.id_of("cloudaccount");
    let acc = wait_synced(&api, &r, &id, 0, 120).await;
    assert_eq!(acc["error_count"], 0, "{acc}");
    assert!(total(&api, &format!("{r}/vpcs?brand=Aws")).await >= 1);
    // A duplicate of the same cloud account is refused.
    let resp = api
        .post(
            &format!("{r}/cloudaccounts"),
            body("again", &access, &secret),
        )
        .await;
    assert_error(&resp, 409, "ConflictError");
    // Credential update checks the new key first.
    let resp = api
        .post(
            &format!("{r}/cloudaccounts/{id}/update-credential"),
            json!({"cloudaccount": {"secret": wrong}}),
        )
        .await;
    assert_error(&resp, 400, "InputParameterError");
    assert!(!p.log().contains(wrong) && !p.log().contains(&secret));
}

/// The run recorded the 500 of a servers list.
fn assert_servers_failed_with_500(acc: &Value) {
    let errors = acc["sync_errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.iter().any(|e| e["resource"] == "servers"
            && e["error"].as_str().unwrap_or_default().contains("500")),
        "{acc}"
    );
}

fn faulty_options() -> Value {
    json!({"regions": ["us-east-1"], "page_size": 5, "timeout_seconds": 5, "max_attempts": 2})
}

#[tokio::test]
async fn faults_mid_sync_delete_nothing_and_resume() {
    init_tls();
    let moto = moto();
    let proxy = FaultProxy::start(&moto.url).await.expect("proxy");
    let d = driver(&moto.url, "us-east-1");
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.extend(
            d.run_instances(1, "ami-12345678", "t2.micro", "")
                .await
                .unwrap(),
        );
    }
    let p = Platform::start();
    let api = p.admin().await;
    let r = p.region_url();
    let secret = "Faults-Secret-0987654321";
    let resp = api
        .post(&format!("{r}/cloudaccounts"), json!({"cloudaccount": {"name": "aws", "provider": "Aws",
            "account": "AKIDF", "secret": secret, "access_url": proxy.url, "options": faulty_options()}}))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.id_of("cloudaccount");
    let acc = wait_synced(&api, &r, &id, 0, 120).await;
    assert_eq!(acc["error_count"], 0, "{acc}");
    assert_eq!(total(&api, &format!("{r}/servers?brand=Aws")).await, 12);
    let sync = |n: i64| {
        let api = api.clone();
        let r = r.clone();
        let id = id.clone();
        async move {
            let resp = api
                .post(&format!("{r}/cloudaccounts/{id}/sync"), json!({}))
                .await;
            assert_eq!(resp.status, 200, "{resp:?}");
            wait_synced(&api, &r, &id, n, 120).await
        }
    };

    // An instance terminated on the cloud, a VPC made there; then page 2 of
    // DescribeInstances answers 500 every time.
    d.raw("TerminateInstances", &[("InstanceId.1", &ids[0])])
        .await
        .unwrap();
    d.raw("CreateVpc", &[("CidrBlock", "10.30.0.0/16")])
        .await
        .unwrap();
    // An incremental run first: the cheap state list fails.
    proxy.add(Rule::new(
        "DescribeInstanceStatus",
        Fault::Status(500, "InternalError"),
    ));
    let acc = sync(acc["sync_count"].as_i64().unwrap()).await;
    assert_servers_failed_with_500(&acc);
    assert_eq!(total(&api, &format!("{r}/servers?brand=Aws")).await, 12);
    assert!(proxy.faulted("DescribeInstanceStatus") >= 1);
    proxy.clear();
    // After a failed call the next run lists in full: its page 2 fails.
    proxy.add(Rule::new("DescribeInstances", Fault::Status(500, "InternalError")).skip(1));
    let acc = sync(acc["sync_count"].as_i64().unwrap()).await;
    assert_servers_failed_with_500(&acc);
    // Nothing deleted because a page failed; the other kinds still synced.
    assert_eq!(total(&api, &format!("{r}/servers?brand=Aws")).await, 12);
    assert_eq!(
        total(&api, &format!("{r}/servers?external_id={}", ids[0])).await,
        1
    );
    assert_eq!(total(&api, &format!("{r}/vpcs?brand=Aws")).await, 2);
    assert!(proxy.faulted("DescribeInstances") >= 2);
    let (ok, out, _) = p.climc(&["cloud-account-show", "aws"]);
    assert!(ok && out.contains("InternalError"), "{out}");

    // Throttled (once per call kind): backed off, no failure.
    proxy.clear();
    proxy.add(Rule::new("DescribeVolumes", Fault::Throttle).times(1));
    proxy.add(Rule::new("DescribeInstances", Fault::Throttle).times(1));
    let acc = sync(acc["sync_count"].as_i64().unwrap()).await;
    assert_eq!(acc["error_count"], 0, "{acc}");
    assert_eq!(proxy.faulted("DescribeVolumes"), 1);
    // Resumed: the terminated instance is gone now.
    assert_eq!(total(&api, &format!("{r}/servers?brand=Aws")).await, 11);
    assert_eq!(
        total(&api, &format!("{r}/servers?external_id={}", ids[0])).await,
        0
    );

    // A list that never answers: recorded after the timeouts, then resumed.
    let nets = total(&api, &format!("{r}/networks?brand=Aws")).await;
    proxy.add(Rule::new("DescribeSubnets", Fault::Hang));
    let acc = sync(acc["sync_count"].as_i64().unwrap()).await;
    let errors = acc["sync_errors"].as_array().cloned().unwrap_or_default();
    assert!(errors.iter().any(|e| e["resource"] == "networks"), "{acc}");
    assert_eq!(total(&api, &format!("{r}/networks?brand=Aws")).await, nets);
    proxy.clear();
    let acc = sync(acc["sync_count"].as_i64().unwrap()).await;
    assert_eq!(acc["error_count"], 0, "{acc}");

    // The whole cloud unreachable: the account says so, rows stay.
    proxy.add(Rule::new("", Fault::Status(503, "ServiceUnavailable")));
    let acc = sync(acc["sync_count"].as_i64().unwrap()).await;
    assert_eq!(acc["status"], "disconnected", "{acc}");
    assert_eq!(total(&api, &format!("{r}/servers?brand=Aws")).await, 11);
    proxy.clear();

    // A server deleted on the cloud while we act on it.
    let victim = ids[1].clone();
    let sid = api
        .first_id(&format!("{r}/servers?external_id={victim}"), "servers")
        .await;
    d.raw("TerminateInstances", &[("InstanceId.1", &victim)])
        .await
        .unwrap();
    let resp = api
        .post(&format!("{r}/servers/{sid}/stop"), json!({}))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let srv = loop {
        let s = api.get(&format!("{r}/servers/{sid}")).await.body["server"].clone();
        let st = s["status"].as_str().unwrap_or_default().to_string();
        if !["start_stop", "stopping"].contains(&st.as_str()) {
            break s;
        }
        assert!(Instant::now() < deadline, "stuck: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Either the stop reached a vanished instance (unknown / stop_fail
    // with the cloud's reason) or it raced the termination.
    assert!(
        ["unknown", "stop_fail", "ready"].contains(&srv["status"].as_str().unwrap_or_default()),
        "{srv}"
    );
    // Deleting it works although it is gone on the cloud.
    let resp = api.delete(&format!("{r}/servers/{sid}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get(&format!("{r}/servers/{sid}")).await.status != 404 {
        assert!(Instant::now() < deadline, "not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(total(&api, &format!("{r}/servers?brand=Aws")).await, 10);
    assert!(!p.log().contains(secret));
}
