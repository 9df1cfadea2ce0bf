//! In-browser consoles of a real QEMU guest, through the API gateway:
//! `POST /api/v1/webconsole/server/{id}` → a ticket → `GET /websockify`
//! (WebSocket) → the host agent (signed ticket from the region) → QEMU's
//! VNC server on loopback, or the guest's serial port (a QEMU socket
//! chardev the agent fans out to every viewer).
//!
//! Shown here over the wire: the RFB handshake to a real framebuffer size,
//! the serial boot log and a typed line echoed by the guest to two viewers
//! at once, reconnecting with the same ticket, and every refusal before
//! the upgrade (a forged ticket, another tenant, a foreign origin, a
//! logged-out session, a stopped guest) — plus the viewers in Chromium
//! (web/e2e/vm-console.mjs): noVNC's canvas shows the guest's screen, the
//! xterm terminal its serial console.

mod common;

use std::time::{Duration, Instant};

use common::gateway::*;
use common::qemu::*;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connect to the gateway's console socket; the HTTP status of a refusal.
async fn connect(b: &Browser, ws_path: &str, origin: Option<&str>) -> Result<Socket, u16> {
    let url = format!("{}{ws_path}", b.base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().expect("ws request");
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", o.parse().expect("origin header"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((s, _)) => Ok(s),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("console socket {ws_path}: {e}"),
    }
}

/// Read binary frames until `pred` holds on what came so far.
async fn read_until(
    s: &mut Socket,
    secs: u64,
    what: &str,
    pred: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    while !pred(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "waiting for {what}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        match tokio::time::timeout(left, s.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => got.extend_from_slice(&b),
            Ok(Some(Ok(Message::Close(f)))) => {
                panic!(
                    "closed ({f:?}) waiting for {what}; got {:?}",
                    String::from_utf8_lossy(&got)
                )
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("socket error waiting for {what}: {e}"),
            Ok(None) => panic!("socket ended waiting for {what}"),
            Err(_) => {}
        }
    }
    got
}

fn contains(hay: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(hay).contains(needle)
}

/// Open a console and return the answer's socket path.
async fn open(b: &Browser, id: &str, protocol: &str) -> String {
    let a = b
        .post(
            &format!("/api/v1/webconsole/server/{id}"),
            json!({"protocol": protocol}),
        )
        .await;
    assert_eq!(a.status, 200, "open {protocol} console: {:?}", a.body);
    assert_eq!(a.body["protocol"], protocol);
    assert!(
        a.body["access_url"]
            .as_str()
            .is_some_and(|u| u.contains(id)),
        "{:?}",
        a.body
    );
    assert!(
        a.body.get("password").is_none(),
        "no VNC password is handed out"
    );
    a.body["websocket"].as_str().expect("websocket").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vnc_and_serial_consoles_of_a_real_guest_through_the_gateway() {
    cloudpods_testkit::require_qemu();
    let (c, h) = single_node(2).await;
    let (ok, out, err) = create(&c, "vm-console", &format!("1g:{}", c.image_id), true);
    assert!(ok, "server-create: {out} {err}");
    let id = c.server_id("vm-console").await;
    c.wait_status(&id, "running", 120).await;
    h.wait_serial(&id, "CLOUDPODS-READY", 180).await;

    let mut b = Browser::new(&c.p.gateway_url());
    assert_eq!(b.login("sysadmin", "Test-Admin-Pw1").await.status, 200);

    // VNC: the gateway relays RFB from QEMU; no password (security None).
    let vnc = open(&b, &id, "vnc").await;
    let mut s = connect(&b, &vnc, None).await.expect("vnc socket");
    let banner = read_until(&mut s, 30, "the RFB banner", |g| g.len() >= 12).await;
    assert!(banner.starts_with(b"RFB 003.008\n"), "{banner:?}");
    s.send(Message::Binary(b"RFB 003.008\n".to_vec().into()))
        .await
        .unwrap();
    let types = read_until(&mut s, 10, "security types", |g| {
        !g.is_empty() && g.len() > g[0] as usize
    })
    .await;
    assert!(
        types[1..=types[0] as usize].contains(&1),
        "security None offered: {types:?}"
    );
    s.send(Message::Binary(vec![1u8].into())).await.unwrap();
    let result = read_until(&mut s, 10, "the security result", |g| g.len() >= 4).await;
    assert_eq!(&result[..4], &[0, 0, 0, 0], "security handshake");
    s.send(Message::Binary(vec![1u8].into())).await.unwrap(); // ClientInit, shared
    let init = read_until(&mut s, 10, "ServerInit", |g| {
        g.len() >= 24 && g.len() >= 24 + u32::from_be_bytes([g[20], g[21], g[22], g[23]]) as usize
    })
    .await;
    let (w, hgt) = (
        u16::from_be_bytes([init[0], init[1]]),
        u16::from_be_bytes([init[2], init[3]]),
    );
    assert!(w >= 320 && hgt >= 200, "framebuffer {w}x{hgt}");
    let name = String::from_utf8_lossy(&init[24..]).to_string();
    assert!(
        name.contains(&id) || name.contains("QEMU"),
        "desktop name {name:?}"
    );
    drop(s);

    // Serial: two viewers; the first gets the boot log, a typed line is
    // echoed by the guest to both.
    let serial = open(&b, &id, "serial").await;
    let mut v1 = connect(&b, &serial, Some(&b.base))
        .await
        .expect("serial socket");
    read_until(&mut v1, 20, "the serial log tail", |g| {
        contains(g, "CLOUDPODS-READY")
    })
    .await;
    let mut v2 = connect(&b, &serial, None).await.expect("second viewer");
    read_until(&mut v2, 20, "the second viewer's tail", |g| {
        contains(g, "CLOUDPODS-READY")
    })
    .await;
    v1.send(Message::Binary(b"hello-ws\r".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut v1, 30, "the echo", |g| {
        contains(g, "CLOUDPODS-ECHO=hello-ws")
    })
    .await;
    read_until(&mut v2, 30, "the echo on the other viewer", |g| {
        contains(g, "CLOUDPODS-ECHO=hello-ws")
    })
    .await;
    // Text frames count as keystrokes too.
    v2.send(Message::Text("again\r".into())).await.unwrap();
    read_until(&mut v1, 30, "the second echo", |g| {
        contains(g, "CLOUDPODS-ECHO=again")
    })
    .await;
    drop(v2);

    // The browser's viewers (noVNC, xterm) on the same guest.
    run_browser(&c, &id).await;

    // Refusals, each before the upgrade.
    let forged = serial.replace("access_token=", "access_token=x");
    assert_eq!(
        connect(&b, &forged, None).await.err(),
        Some(401),
        "forged ticket"
    );
    assert_eq!(
        connect(&b, "/websockify", None).await.err(),
        Some(401),
        "no ticket"
    );
    assert_eq!(
        connect(&b, &serial, Some("http://evil.example"))
            .await
            .err(),
        Some(403),
        "a foreign origin"
    );
    let a = b
        .post(
            &format!("/api/v1/webconsole/server/{id}"),
            json!({"protocol": "spice"}),
        )
        .await;
    assert_eq!(a.status, 400, "{:?}", a.body);
    let (_, _) =
        c.p.member(&c.admin, "console-other", "console-outsider")
            .await;
    let mut outsider = Browser::new(&c.p.gateway_url());
    assert_eq!(
        outsider
            .login("console-outsider", "Member-Pw-123")
            .await
            .status,
        200
    );
    let a = outsider
        .post(&format!("/api/v1/webconsole/server/{id}"), json!({}))
        .await;
    assert_eq!(a.status, 404, "another tenant's console: {:?}", a.body);

    // Stopping the guest ends the open console; a new one is refused.
    let (ok, out, err) = c.p.climc(&["server-stop", &id]);
    assert!(ok, "{out} {err}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match tokio::time::timeout(Duration::from_secs(1), v1.next()).await {
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) => break,
            _ => assert!(
                Instant::now() < deadline,
                "the console stayed open after the guest stopped"
            ),
        }
    }
    c.wait_status(&id, "ready", 60).await;
    let a = b
        .post(&format!("/api/v1/webconsole/server/{id}"), json!({}))
        .await;
    assert_eq!(a.status, 400, "{:?}", a.body);
    assert_eq!(a.body["class"], "InvalidStatusError", "{:?}", a.body);
    assert_eq!(
        connect(&b, &serial, None).await.err(),
        Some(400),
        "a stopped guest"
    );

    // A logged-out session's tickets open nothing.
    let out = b.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(out.status, 200, "{:?}", out.body);
    assert_eq!(
        connect(&b, &vnc, None).await.err(),
        Some(401),
        "after logout"
    );

    delete_and_wait(&c, &id).await;
}

/// web/e2e/vm-console.mjs in Chromium against this guest.
async fn run_browser(c: &Cloud, id: &str) {
    let web = browser_test_web_dir();
    let scratch = tempfile::tempdir().expect("tempdir");
    let shots = std::env::var("CONSOLE_SCREENSHOTS")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| scratch.path().display().to_string());
    let url = c.p.gateway_url();
    let id = id.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(web.join("e2e/vm-console.mjs"))
            .current_dir(&web)
            .env("CONSOLE_URL", url)
            .env("ADMIN_USER", "sysadmin")
            .env("ADMIN_PASSWORD", "Test-Admin-Pw1")
            .env("SERVER_ID", id)
            .env("SCREENSHOT_DIR", shots)
            .env("CHROMIUM", "/usr/bin/chromium")
            .output()
    })
    .await
    .expect("join")
    .expect("run node web/e2e/vm-console.mjs");
    assert_browser_passed(out, &tail(&c.p.log(), 60));
}
