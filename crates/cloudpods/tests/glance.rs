//! The image service end to end: climc upload/list/show/update/download/
//! delete, HEAD metadata, ranges, conversion to sub-formats, URL imports,
//! sharing, the recycle bin, and every kind of bad input leaving nothing
//! behind.

mod common;
mod glance_common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use glance_common::*;
use serde_json::{Value, json};

on_both_databases!(
    climc_upload_show_update_download_delete,
    checksums_are_recorded_before_active_even_across_a_restart,
);

fn opts(env: &[(&str, &str)]) -> Opts {
    Opts {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn climc_ok(p: &Platform, args: &[&str]) -> String {
    let (ok, out, err) = p.climc(args);
    assert!(
        ok,
        "climc {args:?} failed:\n{out}\n{err}\nserver:\n{}",
        p.log()
    );
    out
}

fn climc_json(p: &Platform, args: &[&str]) -> Value {
    let mut a = vec!["--output-format", "json"];
    a.extend_from_slice(args);
    let out = climc_ok(p, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn climc_upload_show_update_download_delete(backend: Backend) {
    let p = Platform::start_on(backend);
    let admin = p.admin().await;
    let g = p.glance_url();
    let dir = tempfile::tempdir().expect("tmp");
    let (raw, qcow2) = make_images(dir.path(), 32);
    let qcow2_s = qcow2.to_string_lossy().into_owned();

    let img = climc_json(
        &p,
        &[
            "image-upload",
            "deb12",
            &qcow2_s,
            "--format",
            "qcow2",
            "--os-type",
            "Linux",
            "--os-distribution",
            "Debian",
            "--property",
            "uefi_support=true",
            "--min-ram",
            "512",
            "--wait",
        ],
    );
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(img["properties"]["os_type"], "Linux");
    assert_eq!(img["properties"]["uefi_support"], "true");
    assert_eq!(img["min_ram"], 512);
    assert_eq!(img["min_disk"], 32, "virtual size 32 MiB");
    assert_eq!(img["virtual_size"], 32u64 << 20);
    assert_eq!(img["checksum"], md5_file(&qcow2));
    assert_eq!(img["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(img["protected"], true, "images are protected by default");
    assert!(img.get("location").is_none(), "location is internal");
    let id = img["id"].as_str().expect("id").to_string();

    // list and show
    let list = climc_json(&p, &["image-list", "--os-type", "Linux"]);
    assert_eq!(list["images"][0]["id"], id, "{list}");
    let empty = climc_json(&p, &["image-list", "--os-type", "Windows"]);
    assert_eq!(empty["images"], json!([]), "{empty}");
    let shown = climc_json(&p, &["image-show", "deb12"]);
    assert_eq!(shown["id"], id);

    // HEAD answers metadata as headers
    let h = admin.call("HEAD", &format!("{g}/images/deb12"), None).await;
    assert_eq!(h.status, 200);
    let hv = |k: &str| {
        h.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(hv("x-image-meta-id"), id);
    assert_eq!(hv("x-image-meta-disk_format"), "qcow2");
    assert_eq!(hv("x-image-meta-status"), "active");
    assert_eq!(hv("x-image-meta-property-os_distribution"), "Debian");
    assert_eq!(hv("x-image-meta-size"), img["size"].to_string());

    // update
    let up = climc_json(
        &p,
        &[
            "image-update",
            &id,
            "--name",
            "debian-12",
            "--os-version",
            "12.5",
            "--min-disk",
            "40960",
        ],
    );
    assert_eq!(up["name"], "debian-12", "{up}");
    let shown = climc_json(&p, &["image-show", "debian-12"]);
    assert_eq!(shown["properties"]["os_version"], "12.5", "{shown}");
    assert_eq!(
        shown["properties"]["os_type"], "Linux",
        "merged, not replaced"
    );
    assert_eq!(shown["min_disk"], 40960);
    let neg = admin
        .put(
            &format!("{g}/images/{id}"),
            Some(json!({"image": {"min_disk": -1}})),
        )
        .await;
    assert_error(&neg, 400, "InputParameterError");

    // download through climc, and ranges through the API
    let out = dir.path().join("copy.qcow2");
    let o = climc_json(
        &p,
        &["image-download", "debian-12", "-o", &out.to_string_lossy()],
    );
    assert_eq!(o["size"], img["size"]);
    assert_eq!(md5_file(&out), md5_file(&qcow2));
    let r = admin
        .client
        .get(format!("{g}/images/{id}"))
        .header("X-Auth-Token", &admin.token)
        .header("Range", "bytes=0-3")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-3/{}", img["size"])
    );
    assert_eq!(&r.bytes().await.expect("body")[..], b"QFI\xfb");
    let r = admin
        .client
        .get(format!("{g}/images/{id}"))
        .header("X-Auth-Token", &admin.token)
        .header("Range", "bytes=99999999999-")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status().as_u16(), 416);
    // no sub-format was configured
    let r = admin.get(&format!("{g}/images/{id}?format=vmdk")).await;
    assert_error(&r, 404, "ResourceNotFoundError");
    let _ = raw;

    // deactivated images refuse downloads
    climc_ok(&p, &["image-deactivate", &id]);
    let r = admin.get(&format!("{g}/images/{id}")).await;
    assert_error(&r, 400, "InvalidStatusError");
    climc_ok(&p, &["image-reactivate", &id]);

    // protected: delete refused until unprotected
    let (ok, _, err) = p.climc(&["image-delete", &id]);
    assert!(!ok && err.contains("ProtectedResourceError"), "{err}");
    climc_ok(&p, &["image-update", &id, "--unprotected"]);
    climc_ok(&p, &["image-delete", &id]);
    assert_eq!(count_images(&admin, &g).await, 0);
    assert!(image_files(&p).is_empty(), "{:?}", image_files(&p));
    let r = admin.call("HEAD", &format!("{g}/images/{id}"), None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn header_create_then_put_bytes_and_json_create() {
    let p = Platform::start();
    let admin = p.admin().await;
    let g = p.glance_url();
    let dir = tempfile::tempdir().expect("tmp");
    let (raw, _) = make_images(dir.path(), 4);
    let bytes = std::fs::read(&raw).expect("raw");

    // JSON create → queued, then PUT the bytes
    let r = admin
        .post(
            &format!("{g}/images"),
            json!({"image": {"name": "later", "disk_format": "raw",
                             "properties": {"os_type": "Linux"}, "protected": false}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["image"]["status"], "queued");
    let id = r.body["image"]["id"].as_str().expect("id").to_string();
    let r = admin.get(&format!("{g}/images/{id}")).await;
    assert_error(&r, 400, "InvalidStatusError");
    let md5 = md5_file(&raw);
    let r = send(
        &admin,
        "PUT",
        &format!("{g}/images/{id}"),
        &[("x-image-meta-checksum", md5.as_str())],
        bytes.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let img = wait_status(&admin, &g, &id, &["active"], 60).await;
    assert_eq!(img["size"], bytes.len());
    assert_eq!(img["checksum"], md5);
    // a second upload into an active image is refused
    let r = send(
        &admin,
        "PUT",
        &format!("{g}/images/{id}"),
        &[],
        bytes.clone(),
    )
    .await;
    assert_error(&r, 400, "InvalidStatusError");

    // header update: properties are replaced (Glance v1), fields set
    let r = send(
        &admin,
        "PUT",
        &format!("{g}/images/{id}"),
        &[
            ("x-image-meta-name", "renamed%20image"),
            ("x-image-meta-property-os_type", "Windows"),
            ("content-type", "text/plain"),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["image"]["name"], "renamed image");
    assert_eq!(r.body["image"]["properties"], json!({"os_type": "Windows"}));

    // the generic parts still work: distinct-field, status spec, metadata
    let r = admin
        .get(&format!("{g}/images/distinct-field?field=disk_format"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["disk_format"], json!(["raw"]));
    let r = admin.get(&format!("{g}/images/{id}/status")).await;
    assert_eq!(r.body["image"]["status"], "active", "{r:?}");
}

#[tokio::test]
async fn qcow2_is_converted_to_target_formats() {
    let p = Platform::start_with(opts(&[(
        "CLOUDPODS_GLANCE__TARGET_IMAGE_FORMATS",
        "qcow2,raw,vmdk",
    )]));
    let admin = p.admin().await;
    let g = p.glance_url();
    let dir = tempfile::tempdir().expect("tmp");
    let (raw, qcow2) = make_images(dir.path(), 16);
    let r = send(
        &admin,
        "POST",
        &format!("{g}/images"),
        &[
            ("x-image-meta-name", "conv"),
            ("x-image-meta-disk-format", "qcow2"),
        ],
        std::fs::read(&qcow2).expect("qcow2"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.body["image"]["id"].as_str().expect("id").to_string();
    let img = wait_status(&admin, &g, &id, &["active", "save_fail"], 120).await;
    assert_eq!(img["status"], "active", "{img}");
    let subs = img["subformats"].as_array().expect("subformats");
    let mut formats: Vec<&str> = subs.iter().filter_map(|s| s["format"].as_str()).collect();
    formats.sort();
    assert_eq!(formats, ["raw", "vmdk"], "{img}");
    assert!(subs.iter().all(|s| s["status"] == "active"), "{img}");

    for (fmt, qemu_name) in [("raw", "raw"), ("vmdk", "vmdk"), ("qcow2", "qcow2")] {
        let out = dir.path().join(format!("out.{fmt}"));
        let o = climc_json(
            &p,
            &[
                "image-download",
                &id,
                "--format",
                fmt,
                "-o",
                &out.to_string_lossy(),
            ],
        );
        assert!(o["size"].as_u64().unwrap_or(0) > 0, "{o}");
        let info = qemu_info(&out);
        assert_eq!(info["format"], qemu_name, "{info}");
        assert_eq!(info["virtual-size"], 16u64 << 20, "{info}");
        if fmt == "raw" {
            assert_eq!(md5_file(&out), md5_file(&raw), "raw content preserved");
        }
        // HEAD with ?format= describes the sub-format
        let h = admin
            .call("HEAD", &format!("{g}/images/{id}?format={fmt}"), None)
            .await;
        assert_eq!(h.headers["x-image-meta-disk_format"], fmt);
        assert_eq!(h.headers["x-image-meta-status"], "active");
    }
    // the compare: qemu-img agrees the converted raw equals the original
    qemu_img(&[
        "compare",
        &raw.to_string_lossy(),
        &dir.path().join("out.qcow2").to_string_lossy(),
    ]);
}

/// Send a request whose body stops early and close the connection.
fn truncated_upload(url: &str, token: &str, announced: usize, sent: usize) {
    let u = reqwest::Url::parse(url).expect("url");
    let addr = format!(
        "{}:{}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(80)
    );
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Type: application/octet-stream\r\n\
         X-Image-Meta-Name: cut\r\nContent-Length: {announced}\r\n\r\n",
        u.path()
    );
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(&vec![7u8; sent]).expect("body");
    s.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(300));
    let _ = s.shutdown(std::net::Shutdown::Both);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

#[tokio::test]
async fn bad_input_leaves_nothing_behind() {
    let p = Platform::start_with(opts(&[("CLOUDPODS_GLANCE__IMAGE_QUOTA", "2")]));
    let admin = p.admin().await;
    let g = p.glance_url();
    let dir = tempfile::tempdir().expect("tmp");
    let (raw, qcow2) = make_images(dir.path(), 4);
    let raw_bytes = std::fs::read(&raw).expect("raw");
    let url = format!("{g}/images");

    // unknown format: refused before a byte is stored
    let r = send(
        &admin,
        "POST",
        &url,
        &[
            ("x-image-meta-name", "f"),
            ("x-image-meta-disk-format", "floppy"),
        ],
        raw_bytes.clone(),
    )
    .await;
    assert_error(&r, 400, "InputParameterError");
    assert!(r.body["details"].as_str().unwrap_or("").contains("floppy"));

    // wrong declared size, both ways
    for declared in ["100", "99999999"] {
        let r = send(
            &admin,
            "POST",
            &url,
            &[("x-image-meta-name", "sz"), ("x-image-meta-size", declared)],
            raw_bytes.clone(),
        )
        .await;
        assert_error(&r, 400, "InputParameterError");
        cloudpods_testkit::assert_details(&r.body, "declared");
    }
    // declared checksum that does not match
    let r = send(
        &admin,
        "POST",
        &url,
        &[
            ("x-image-meta-name", "ck"),
            ("x-image-meta-checksum", "00000000000000000000000000000000"),
        ],
        raw_bytes.clone(),
    )
    .await;
    assert_error(&r, 400, "InputParameterError");

    // connection cut mid-stream
    truncated_upload(&url, &admin.token, 4 << 20, 100_000);

    // URL imports of internal addresses are refused up front
    for (u, code, class) in [
        ("http://127.0.0.1:1/x.img", 403, "ForbiddenError"),
        ("http://localhost:1/x.img", 403, "ForbiddenError"),
        (
            "http://169.254.169.254/latest/meta-data/",
            403,
            "ForbiddenError",
        ),
        ("http://[::1]:1/x", 403, "ForbiddenError"),
        ("http://10.0.0.1/x", 403, "ForbiddenError"),
        ("file:///etc/passwd", 400, "InputParameterError"),
    ] {
        let r = admin
            .post(&url, json!({"image": {"name": "imp", "copy_from": u}}))
            .await;
        assert_error(&r, code, class);
        let r = send(
            &admin,
            "POST",
            &url,
            &[("x-image-meta-name", "imp"), ("x-image-meta-copy_from", u)],
            Vec::new(),
        )
        .await;
        assert_error(&r, code, class);
    }

    // The refusals above created nothing; the cut upload is cleaned up.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count_images(&admin, &g).await > 0 || !image_files(&p).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {:?} {:?}",
            image_files(&p),
            admin.get(&format!("{url}?scope=system")).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Bytes that arrive but are not an acceptable image: save_fail with a
    // reason, the file removed.
    let base = dir.path().join("base.raw");
    std::fs::write(&base, vec![0u8; 1 << 20]).expect("base");
    let overlay = dir.path().join("overlay.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        &base.to_string_lossy(),
        "-F",
        "raw",
        &overlay.to_string_lossy(),
    ]);
    // (name, extra headers, body, expected reason)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "text",
            vec![],
            b"this is not a disk image, just some text\n".to_vec(),
            "not a disk image",
        ),
        (
            "backing",
            vec![("x-image-meta-disk-format", "qcow2")],
            std::fs::read(&overlay).expect("overlay"),
            "backing file",
        ),
        (
            "mismatch",
            vec![("x-image-meta-disk-format", "qcow2")],
            raw_bytes.clone(),
            "declared qcow2",
        ),
        (
            "empty-iso",
            vec![("x-image-meta-disk-format", "iso")],
            raw_bytes.clone(),
            "declared iso",
        ),
    ];
    for (name, extra, body, reason) in cases {
        let mut h = vec![("x-image-meta-name", name)];
        h.extend(extra);
        let r = send(&admin, "POST", &url, &h, body).await;
        assert_eq!(r.status, 200, "{name}: {r:?}");
        let id = r.body["image"]["id"].as_str().expect("id").to_string();
        let img = wait_status(&admin, &g, &id, &["save_fail", "active"], 60).await;
        assert_eq!(img["status"], "save_fail", "{name}: {img}");
        assert!(
            img["fail_reason"].as_str().unwrap_or("").contains(reason),
            "{name}: {img}"
        );
        // can't download a failed image
        let r = admin.get(&format!("{g}/images/{id}")).await;
        assert_error(&r, 400, "InvalidStatusError");
    }
    assert!(image_files(&p).is_empty(), "{:?}", image_files(&p));

    // Failed images don't count against the quota (2 here): two good
    // uploads fit, the third is refused.
    for name in ["q1", "q2"] {
        let r = send(
            &admin,
            "POST",
            &url,
            &[
                ("x-image-meta-name", name),
                ("x-image-meta-disk-format", "qcow2"),
            ],
            std::fs::read(&qcow2).expect("qcow2"),
        )
        .await;
        assert_eq!(r.status, 200, "{name}: {r:?}");
    }
    let r = send(
        &admin,
        "POST",
        &url,
        &[("x-image-meta-name", "q3")],
        raw_bytes,
    )
    .await;
    assert_error(&r, 400, "OutOfQuotaError");
}

/// A tiny HTTP server on 127.0.0.2 serving one file and a redirect to
/// 127.0.0.1 (which must not be followed).
async fn serve_files(body: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let port = listener.local_addr().expect("addr").port();
    let body = std::sync::Arc::new(body);
    let app = axum::Router::new()
        .route(
            "/disk.img",
            get(move || {
                let b = body.clone();
                async move { (*b).clone() }
            }),
        )
        .route(
            "/redirect",
            get(move || async move {
                axum::response::Redirect::temporary(&format!("http://127.0.0.1:{port}/disk.img"))
            }),
        );
    let h = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.2:{port}"), h)
}

#[tokio::test]
async fn copy_from_imports_allowed_urls_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_, qcow2) = make_images(dir.path(), 8);
    let bytes = std::fs::read(&qcow2).expect("qcow2");
    let (base, server) = serve_files(bytes).await;
    let p = Platform::start_with(opts(&[(
        "CLOUDPODS_GLANCE__COPY_FROM_ALLOW_CIDRS",
        "127.0.0.2/32",
    )]));
    let admin = p.admin().await;
    let g = p.glance_url();
    let r = admin
        .post(
            &format!("{g}/images"),
            json!({"image": {"name": "imported", "copy_from": format!("{base}/disk.img")}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.body["image"]["id"].as_str().expect("id").to_string();
    let img = wait_status(&admin, &g, &id, &["active", "killed", "save_fail"], 60).await;
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(img["checksum"], md5_file(&qcow2));

    // A redirect to an internal address is checked like the URL itself.
    let r = send(
        &admin,
        "POST",
        &format!("{g}/images"),
        &[
            ("x-image-meta-name", "redirected"),
            ("x-image-meta-copy_from", &format!("{base}/redirect")),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.body["image"]["id"].as_str().expect("id").to_string();
    let img = wait_status(&admin, &g, &id, &["active", "killed", "save_fail"], 60).await;
    assert_eq!(img["status"], "killed", "{img}");
    assert!(
        img["fail_reason"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "{img}"
    );
    // still refused: 127.0.0.1 is not in the allowed networks
    let r = admin
        .post(
            &format!("{g}/images"),
            json!({"image": {"name": "x", "copy_from": "http://127.0.0.1:9/disk.img"}}),
        )
        .await;
    assert_error(&r, 403, "ForbiddenError");
    server.abort();
}

#[tokio::test]
async fn sharing_and_recycle_bin() {
    let p = Platform::start_with(opts(&[("CLOUDPODS_GLANCE__ENABLE_PENDING_DELETE", "true")]));
    let admin = p.admin().await;
    let g = p.glance_url();
    let (dave, _) = p.member(&admin, "demo", "dave").await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_, qcow2) = make_images(dir.path(), 4);
    let body = std::fs::read(&qcow2).expect("qcow2");
    let mut ids = Vec::new();
    for (name, public) in [("shared", "true"), ("private", "false")] {
        let r = send(
            &admin,
            "POST",
            &format!("{g}/images"),
            &[
                ("x-image-meta-name", name),
                ("x-image-meta-is-public", public),
                ("x-image-meta-protected", "false"),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        let id = r.body["image"]["id"].as_str().expect("id").to_string();
        wait_status(&admin, &g, &id, &["active"], 60).await;
        ids.push(id);
    }
    // dave sees and downloads the shared image, not the private one
    let l = dave.get(&format!("{g}/images")).await;
    let names: Vec<&str> = l.body["images"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["shared"], "{l:?}");
    let r = dave.get(&format!("{g}/images/{}", ids[0])).await;
    assert_eq!(r.status, 200);
    let r = dave
        .call("HEAD", &format!("{g}/images/{}", ids[1]), None)
        .await;
    assert_eq!(r.status, 404);
    // ... but may not change or delete it
    let r = dave
        .put(
            &format!("{g}/images/{}", ids[0]),
            Some(json!({"image": {"name": "mine"}})),
        )
        .await;
    assert_error(&r, 403, "ForbiddenError");
    // a member may not share at system scope
    let r = send(
        &dave,
        "POST",
        &format!("{g}/images"),
        &[
            ("x-image-meta-name", "d"),
            ("x-image-meta-is-public", "true"),
            ("x-image-meta-public-scope", "system"),
        ],
        body.clone(),
    )
    .await;
    assert_error(&r, 403, "ForbiddenError");
    // shared images must be made private before deleting
    let r = admin.delete(&format!("{g}/images/{}", ids[0])).await;
    assert_error(&r, 403, "ForbiddenError");
    let r = admin
        .post(&format!("{g}/images/{}/private", ids[0]), json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    // recycle bin: delete → pending_delete, cancel → active, delete for good
    let r = admin.delete(&format!("{g}/images/{}", ids[1])).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["image"]["status"], "pending_delete");
    let img = image(&admin, &g, &ids[1]).await;
    assert_eq!(img["pending_deleted"], true);
    assert!(img["auto_delete_at"].is_string(), "{img}");
    let l = admin.get(&format!("{g}/images")).await;
    assert_eq!(l.body["images"].as_array().map(Vec::len), Some(1), "{l:?}");
    let r = admin
        .post(&format!("{g}/images/{}/cancel-delete", ids[1]), json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(image(&admin, &g, &ids[1]).await["status"], "active");
    let r = admin
        .delete(&format!(
            "{g}/images/{}?override_pending_delete=true",
            ids[1]
        ))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(image(&admin, &g, &ids[1]).await.is_null());
    assert!(
        !image_files(&p).iter().any(|f| f.starts_with(&ids[1])),
        "{:?}",
        image_files(&p)
    );
}

/// The upload answers before its checksums are computed; a restart that
/// loses the hasher computes them from the stored file before `active`.
async fn checksums_are_recorded_before_active_even_across_a_restart(backend: Backend) {
    let mut p = Platform::start_on(backend);
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("random.raw");
    // 96 MiB of random data, so hashing takes a while.
    let data = random_bytes(96 << 20);
    std::fs::write(&src, &data).expect("write");
    let md5 = md5_file(&src);
    let sha256 = {
        let out = std::process::Command::new("sha256sum")
            .arg(&src)
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };

    for restart in [false, true] {
        let (admin, g) = (p.admin().await, p.glance_url());
        let name = format!("hashed-{restart}");
        let r = send(
            &admin,
            "POST",
            &format!("{g}/images"),
            &[
                ("x-image-meta-name", name.as_str()),
                ("x-image-meta-disk_format", "raw"),
                ("x-image-meta-protected", "false"),
            ],
            data.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        let id = r.body["image"]["id"].as_str().expect("id").to_string();
        assert_ne!(r.body["image"]["status"], "active", "{r:?}");
        if restart {
            p.restart();
        }
        let (admin, g) = (p.admin().await, p.glance_url());
        let img = wait_status(&admin, &g, &id, &["active", "save_fail"], 120).await;
        assert_eq!(img["status"], "active", "{img}\n{}", p.log());
        assert_eq!(img["checksum"], md5.as_str(), "restart: {restart}");
        assert_eq!(img["sha256"], sha256.as_str(), "restart: {restart}");
        assert_eq!(img["size"], data.len());
    }
}

/// climc downloads a dense image with `splice` and reads a sparse one
/// (holes kept); both arrive intact, and a missing image is still reported
/// as such.
#[tokio::test]
async fn downloads_splice_dense_images_and_keep_sparse_ones_sparse() {
    use std::os::unix::fs::MetadataExt;
    let p = Platform::start();
    let dir = tempfile::tempdir().expect("tmp");
    let dense = dir.path().join("dense.raw");
    std::fs::write(&dense, random_bytes(3 << 20)).expect("write");
    let (sparse, _) = make_images(dir.path(), 64);
    for (name, src) in [("dense", &dense), ("sparse", &sparse)] {
        climc_ok(
            &p,
            &[
                "image-upload",
                name,
                &src.to_string_lossy(),
                "--format",
                "raw",
                "--unprotected",
                "--wait",
                "--no-progress",
            ],
        );
    }
    let mut env = p.climc_env();
    env.push(("RUST_LOG".into(), "cloudpods_sdk=debug".into()));
    for (name, src, spliced) in [("dense", &dense, true), ("sparse", &sparse, false)] {
        let out = dir.path().join(format!("{name}.out"));
        let (ok, stdout, stderr) = climc_with(
            &env,
            &[
                "image-download",
                name,
                "-o",
                &out.to_string_lossy(),
                "--no-progress",
            ],
        );
        assert!(ok, "{stdout}\n{stderr}");
        let how = if spliced {
            "download spliced"
        } else {
            "download read, zeros skipped"
        };
        assert!(stderr.contains(how), "{name}: {stderr}");
        assert_eq!(md5_file(&out), md5_file(src), "{name}");
        let meta = std::fs::metadata(&out).expect("out");
        assert_eq!(meta.len(), std::fs::metadata(src).expect("src").len());
        if !spliced {
            assert!(meta.blocks() * 512 < 1 << 20, "{name}: holes kept");
        }
    }
    let (ok, _, stderr) = climc_with(
        &env,
        &[
            "image-download",
            "no-such-image",
            "-o",
            "/dev/null",
            "--no-progress",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("NotFound") || stderr.contains("404"),
        "{stderr}"
    );
}
