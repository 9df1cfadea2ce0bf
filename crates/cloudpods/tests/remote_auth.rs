//! A service in another process validates tokens with keystone over HTTP:
//! the remote verifier, its policy reconstruction and the revocation feed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cloudpods_rbac::{Request, Scope};
use cloudpods_rest::TokenVerifier;
use cloudpods_rest::auth::CachedVerifier;
use cloudpods_rest::remote::RemoteVerifier;
use common::*;
use serde_json::json;

#[tokio::test]
async fn remote_verifier_matches_keystone() {
    let p = Platform::start();
    let cfg = cloudpods_sdk::Config::new(p.auth_url.clone())
        .with_password("sysadmin", &p.admin_password)
        .with_project("system")
        .with_endpoint_type("public");
    let remote = RemoteVerifier::connect(cfg).await.expect("service login");
    let cached = Arc::new(CachedVerifier::new(
        remote.clone(),
        Duration::from_secs(300),
        1000,
    ));
    let _poller = remote.spawn_revocation_poller(cached.clone(), Duration::from_millis(200));

    let admin = p.admin().await;
    let id = cached.verify(&admin.token).await.expect("admin token");
    assert_eq!(id.user, "sysadmin");
    assert_eq!(id.project, "system");
    assert_eq!(
        id.policies
            .max_allowed_scope(&Request::new("compute", "servers", "create")),
        Some(Scope::System)
    );

    // A member: project-scope policies only.
    let url = &p.auth_url;
    let r = admin
        .post(
            &format!("{url}/users"),
            json!({"user": {"name": "erin", "password": "erin-pw-1"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    admin
        .put(
            &format!("{url}/projects/system/users/erin/roles/member"),
            None,
        )
        .await;
    let erin = Api::login(url, "erin", "erin-pw-1", "system", None)
        .await
        .expect("erin");
    let id = cached.verify(&erin.token).await.expect("member token");
    assert_eq!(id.policy_names.project, ["member"]);
    assert_eq!(
        id.policies
            .max_allowed_scope(&Request::new("identity", "users", "create")),
        None
    );
    assert_eq!(
        id.policies
            .max_allowed_scope(&Request::new("compute", "servers", "create")),
        Some(Scope::Project)
    );

    // Garbage is refused; a revoked token disappears from the cache.
    assert!(cached.verify("gAAAAA-garbage").await.is_err());
    let r = admin
        .client
        .delete(format!("{url}/auth/tokens"))
        .header("X-Auth-Token", &admin.token)
        .header("X-Subject-Token", &erin.token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 204);
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if cached.verify(&erin.token).await.is_err() {
            gone = true;
            break;
        }
    }
    assert!(gone, "revoked token still accepted from the cache");
}
