//! The real `climc` binary against the real server.

mod common;

use common::*;

#[test]
fn climc_manages_identity() {
    let p = Platform::start();
    let (ok, out, err) = p.climc(&["user-list"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("sysadmin"), "{out}");
    assert!(out.contains("***  Total: 1"), "{out}");

    let (ok, out, err) = p.climc(&[
        "user-create",
        "alice",
        "--password",
        "alice-pw-1",
        "--email",
        "a@example.com",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("a@example.com"), "{out}");
    let (ok, out, err) = p.climc(&["project-create", "demo"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = p.climc(&["project-add-user", "demo", "alice", "member"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = p.climc(&[
        "--output-format",
        "json",
        "role-assignment-list",
        "--user",
        "alice",
        "--include-names",
    ]);
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["role_assignments"][0]["role"]["name"], "member", "{v}");

    // Lists with the Cloudpods flags.
    let (ok, out, err) = p.climc(&[
        "user-list",
        "--filter",
        "name.startswith(ali)",
        "--limit",
        "5",
        "--details",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("alice") && !out.contains("sysadmin"), "{out}");

    // The new user logs in with climc too.
    let mut env = p.climc_env();
    for (k, v) in env.iter_mut() {
        match k.as_str() {
            "OS_USERNAME" => *v = "alice".into(),
            "OS_PASSWORD" => *v = "alice-pw-1".into(),
            "OS_PROJECT_NAME" => *v = "demo".into(),
            _ => {}
        }
    }
    let (ok, out, err) = climc_with(&env, &["token-issue"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("demo"), "{out}");
    // A member may not create users: a clear error and a non-zero exit.
    let (ok, out, err) = climc_with(
        &env,
        &["user-create", "mallory", "--password", "mallory-pw"],
    );
    assert!(!ok, "{out}");
    assert!(err.contains("ForbiddenError"), "{err}");

    let (ok, _, err) = p.climc(&["user-delete", "alice"]);
    assert!(ok, "{err}");
    let (ok, _, err) = p.climc(&["user-show", "alice"]);
    assert!(!ok);
    assert!(err.contains("404") || err.contains("NotFound"), "{err}");
}
