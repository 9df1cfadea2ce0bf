//! The S3 storage backend against a real S3 server: moto's, started on a
//! random loopback port and killed when the test ends (also on failure).
//! `moto_server` is the one on the PATH (`pip install 'moto[server]'`;
//! scripts/test-deps puts it in `target/test-venv`); missing, the test fails.

mod common;
mod glance_common;

use cloudpods_glance::s3::{S3, S3Config};
use cloudpods_testkit::moto::Moto;
use common::*;
use glance_common::*;

#[tokio::test]
async fn images_live_in_s3() {
    cloudpods_testkit::require_moto();
    let moto = Moto::start().expect("moto");
    let env = [
        ("CLOUDPODS_GLANCE__STORAGE", "s3"),
        ("CLOUDPODS_GLANCE__S3_ENDPOINT", moto.url.as_str()),
        ("CLOUDPODS_GLANCE__S3_BUCKET", "images"),
        ("CLOUDPODS_GLANCE__S3_ACCESS_KEY", "AKIDTEST"),
        ("CLOUDPODS_GLANCE__S3_SECRET_KEY", "secret-test-key"),
        ("CLOUDPODS_GLANCE__TARGET_IMAGE_FORMATS", "qcow2,raw"),
    ];
    let p = Platform::start_with(Opts {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    });
    let admin = p.admin().await;
    let g = p.glance_url();
    let dir = tempfile::tempdir().expect("tmp");
    // 24 MiB raw with data: the raw sub-format goes up in several parts.
    let (raw, qcow2) = make_images(dir.path(), 24);
    let qcow2_s = qcow2.to_string_lossy().into_owned();
    let (ok, out, err) = p.climc(&[
        "--output-format",
        "json",
        "image-upload",
        "s3img",
        &qcow2_s,
        "--unprotected",
        "--wait",
    ]);
    assert!(ok, "{out}\n{err}\n{}", p.log());
    let img: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(img["status"], "active", "{img}");
    let id = img["id"].as_str().expect("id").to_string();

    // the files are in the bucket, not on local disk
    assert!(image_files(&p).is_empty(), "{:?}", image_files(&p));
    let s3 = S3::new(S3Config {
        endpoint: moto.url.clone(),
        bucket: "images".into(),
        access_key: "AKIDTEST".into(),
        secret_key: "secret-test-key".into(),
        region: "us-east-1".into(),
    })
    .expect("s3");
    assert_eq!(
        s3.head(&id).await.expect("head"),
        Some(std::fs::metadata(&qcow2).expect("q").len())
    );
    assert_eq!(
        s3.head(&format!("{id}.raw")).await.expect("head"),
        Some(24 << 20)
    );

    // downloads stream from S3: whole, sub-format, range
    for (fmt, expect) in [(None, &qcow2), (Some("raw"), &raw)] {
        let out = dir.path().join("dl");
        let mut args = vec!["image-download", id.as_str(), "-o"];
        let o = out.to_string_lossy().into_owned();
        args.push(&o);
        if let Some(f) = fmt {
            args.extend(["--format", f]);
        }
        let (ok, so, se) = p.climc(&args);
        assert!(ok, "{so}\n{se}");
        assert_eq!(md5_file(&out), md5_file(expect), "{fmt:?}");
    }
    let r = admin
        .client
        .get(format!("{g}/images/{id}?format=raw"))
        .header("X-Auth-Token", &admin.token)
        .header("Range", "bytes=1048576-1048599")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        &r.bytes().await.expect("body")[..],
        b"cloudpods-rs test block "
    );

    // delete removes the objects
    let (ok, so, se) = p.climc(&["image-delete", &id]);
    assert!(ok, "{so}\n{se}");
    assert_eq!(s3.head(&id).await.expect("head"), None);
    assert_eq!(s3.head(&format!("{id}.raw")).await.expect("head"), None);
}
