//! The recycle bin (`enable_pending_delete`). Its switch is process-wide,
//! so these tests live in their own binary with the switch on.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn pending_delete_flow() {
    cloudpods_rest::generic::set_pending_delete_enabled(true);
    let env = Env::new().await;
    let id = env.server(ALICE, "pd", json!({})).await;
    env.server(ALICE, "live", json!({})).await;

    let r = env
        .call("DELETE", &format!("/servers/{id}"), Some(ALICE), None)
        .await;
    let s = &r.ok()["server"];
    assert_eq!(s["pending_deleted"], json!(true));
    assert_eq!(s["deleted"], json!(false));
    assert!(s["pending_deleted_at"].is_string());

    assert_eq!(
        names(env.get("/servers", ALICE).await.ok(), "servers"),
        ["live"]
    );
    let r = env.get("/servers?pending_delete=true", ALICE).await;
    assert_eq!(names(r.ok(), "servers"), ["pd"]);
    let r = env.get("/servers?pending_delete_all=True", ALICE).await;
    assert_eq!(names(r.ok(), "servers"), ["live", "pd"]);
    // Still addressable (cancel-delete, purge).
    env.get(&format!("/servers/{id}"), ALICE).await.ok();
    // Values of recycled rows are not offered by distinct-field.
    env.call(
        "PUT",
        &format!("/servers/{id}"),
        Some(ALICE),
        Some(json!({"vcpu_count": 7})),
    )
    .await
    .ok();
    let r = env
        .get("/servers/distinct-field?field=vcpu_count", ALICE)
        .await;
    assert_eq!(r.ok(), &json!({"vcpu_count": []}));

    let r = env
        .post(&format!("/servers/{id}/cancel-delete"), ALICE, json!({}))
        .await;
    assert_eq!(r.ok()["server"]["pending_deleted"], json!(false));
    assert_eq!(
        names(env.get("/servers", ALICE).await.ok(), "servers"),
        ["live", "pd"]
    );
    env.post(&format!("/servers/{id}/cancel-delete"), ALICE, json!({}))
        .await
        .assert_error(400, "InvalidStatusError");

    // Overriding the recycle bin deletes for real.
    for q in ["override_pending_delete=true", "purge=1"] {
        let id = env.server(ALICE, "gone", json!({})).await;
        let r = env
            .call("DELETE", &format!("/servers/{id}?{q}"), Some(ALICE), None)
            .await;
        assert_eq!(r.ok()["server"]["deleted"], json!(true), "{q}");
        env.get(&format!("/servers/{id}"), ALICE)
            .await
            .assert_error(404, "ResourceNotFoundError");
    }
    // The body works as well as the query.
    let id = env.server(ALICE, "gone2", json!({})).await;
    let r = env
        .call(
            "DELETE",
            &format!("/servers/{id}"),
            Some(ALICE),
            Some(json!({"server": {"OverridePendingDelete": true}})),
        )
        .await;
    assert_eq!(r.ok()["server"]["deleted"], json!(true));
}
