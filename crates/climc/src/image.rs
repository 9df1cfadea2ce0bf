//! Image service (glance) commands: `image-upload` and `image-download`
//! stream files with a progress bar, `image-show` reads metadata with
//! `HEAD` as Cloudpods' clients do; list, update, delete and the actions
//! are generated from the resource table.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Arg, ArgAction, ArgMatches};
use cloudpods_sdk::image::Images;
use futures::FutureExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::cli::Ctx;
use crate::commands::{CustomCmd, print_object};
use crate::spec::{Action, Ops, Opt, Resource};

/// Catalog service type of glance.
pub const IMAGE: &str = "image";

const PROTECTED: Opt = Opt::flag("protected", "protected", true, "Refuse deletes");
const UNPROTECTED: Opt = Opt::flag("unprotected", "protected", false, "Allow deletes");

pub static RESOURCES: &[Resource] = &[Resource::new("image", "images", IMAGE)
    .ops(Ops::ALL.without(Ops::SHOW))
    .columns(&[
        "ID",
        "Name",
        "Disk_format",
        "Size",
        "Is_public",
        "Protected",
        "Status",
        "Min_disk",
        "Checksum",
        "Tenant",
    ])
    .list_details(true)
    .list(&[
        Opt::choice(
            "disk-format",
            "disk_format",
            cloudpods_apis::image::DISK_FORMATS,
            "Only images of this format",
        ),
        Opt::string("status", "status", "Only images in this status"),
        Opt::string(
            "os-type",
            "os_type",
            "Only images with this os_type property",
        ),
        Opt::flag("is-public", "is_public", true, "Only shared images"),
    ])
    .create(&[
        Opt::pos("NAME", "name", "Image name"),
        Opt::string("copy-from", "copy_from", "Import from this http(s) URL"),
        Opt::choice(
            "format",
            "disk_format",
            cloudpods_apis::image::DISK_FORMATS,
            "Disk format (probed when omitted)",
        ),
        Opt::string(
            "os-type",
            "properties.os_type",
            "os_type property (Linux, Windows)",
        ),
        Opt::int("min-disk", "min_disk", "Minimum disk size (MB)"),
        Opt::int("min-ram", "min_ram", "Minimum memory (MB)"),
        UNPROTECTED,
        Opt::string("desc", "description", "Description"),
    ])
    .update(&[
        Opt::string("name", "name", "New name"),
        Opt::string("desc", "description", "Description"),
        Opt::int("min-disk", "min_disk", "Minimum disk size (MB)"),
        Opt::int("min-ram", "min_ram", "Minimum memory (MB)"),
        PROTECTED,
        UNPROTECTED,
        Opt::string("os-type", "properties.os_type", "os_type property"),
        Opt::string(
            "os-distribution",
            "properties.os_distribution",
            "os_distribution property",
        ),
        Opt::string("os-version", "properties.os_version", "os_version property"),
        Opt::string(
            "os-arch",
            "properties.os_arch",
            "os_arch property (x86_64, aarch64)",
        ),
        Opt::choice(
            "uefi-support",
            "properties.uefi_support",
            &["true", "false"],
            "uefi_support property",
        ),
    ])
    .delete(&[Opt::flag(
        "override-pending-delete",
        "override_pending_delete",
        true,
        "Delete at once instead of moving to the recycle bin",
    )])
    .actions(&[
        Action::new(
            "public",
            "public",
            "Share an image",
            &[Opt::choice(
                "scope",
                "scope",
                &["domain", "system"],
                "Share within the domain or with everyone",
            )],
        ),
        Action::new("private", "private", "Stop sharing an image", &[]),
        Action::new(
            "cancel-delete",
            "cancel-delete",
            "Restore an image from the recycle bin",
            &[],
        ),
        Action::new(
            "deactivate",
            "deactivate",
            "Refuse downloads of an image",
            &[],
        ),
        Action::new("reactivate", "reactivate", "Allow downloads again", &[]),
    ])];

pub static COMMANDS: &[CustomCmd] = &[
    CustomCmd {
        name: "image-upload",
        about: "Upload a disk image file (streamed, with a progress bar)",
        args: || {
            vec![
                Arg::new("NAME")
                    .value_name("NAME")
                    .help("Image name")
                    .required(true),
                Arg::new("FILE")
                    .value_name("FILE")
                    .help("Image file")
                    .required(true),
                Arg::new("format")
                    .long("format")
                    .value_name("FORMAT")
                    .value_parser(clap::builder::PossibleValuesParser::new(
                        cloudpods_apis::image::DISK_FORMATS,
                    ))
                    .help("Disk format (probed when omitted)"),
                Arg::new("public")
                    .long("public")
                    .action(ArgAction::SetTrue)
                    .help("Share with everyone"),
                Arg::new("unprotected")
                    .long("unprotected")
                    .action(ArgAction::SetTrue)
                    .help("Allow deleting the image without unprotecting it first"),
                Arg::new("os-type")
                    .long("os-type")
                    .value_name("OS")
                    .help("os_type property"),
                Arg::new("os-distribution")
                    .long("os-distribution")
                    .value_name("DIST")
                    .help("os_distribution property"),
                Arg::new("os-version")
                    .long("os-version")
                    .value_name("VER")
                    .help("os_version property"),
                Arg::new("os-arch")
                    .long("os-arch")
                    .value_name("ARCH")
                    .help("os_arch property"),
                Arg::new("property")
                    .long("property")
                    .value_name("KEY=VALUE")
                    .action(ArgAction::Append)
                    .help("Any property (repeatable)"),
                Arg::new("min-disk")
                    .long("min-disk")
                    .value_name("MB")
                    .value_parser(clap::value_parser!(i64)),
                Arg::new("min-ram")
                    .long("min-ram")
                    .value_name("MB")
                    .value_parser(clap::value_parser!(i64)),
                Arg::new("desc")
                    .long("desc")
                    .value_name("TEXT")
                    .help("Description"),
                Arg::new("wait")
                    .long("wait")
                    .action(ArgAction::SetTrue)
                    .help("Wait until the image is active (probed and converted)"),
                Arg::new("no-progress")
                    .long("no-progress")
                    .action(ArgAction::SetTrue)
                    .help("No progress bar"),
            ]
        },
        list_flags: false,
        run: |ctx, m| image_upload(ctx, m).boxed(),
    },
    CustomCmd {
        name: "image-download",
        about: "Download an image (streamed, with a progress bar)",
        args: || {
            vec![
                Arg::new("ID")
                    .value_name("ID")
                    .help("ID or name")
                    .required(true),
                Arg::new("output")
                    .long("output")
                    .short('o')
                    .value_name("FILE")
                    .help("Destination file (default: the image name)"),
                Arg::new("format")
                    .long("format")
                    .value_name("FORMAT")
                    .help("A converted sub-format (qcow2, raw, vmdk, vhd)"),
                Arg::new("no-progress")
                    .long("no-progress")
                    .action(ArgAction::SetTrue)
                    .help("No progress bar"),
            ]
        },
        list_flags: false,
        run: |ctx, m| image_download(ctx, m).boxed(),
    },
    CustomCmd {
        name: "image-show",
        about: "Show details of an image",
        args: || {
            vec![
                Arg::new("ID")
                    .value_name("ID")
                    .help("ID or name")
                    .required(true),
            ]
        },
        list_flags: false,
        run: |ctx, m| image_show(ctx, m).boxed(),
    },
];

fn arg<'a>(m: &'a ArgMatches, name: &str) -> Option<&'a String> {
    m.get_one::<String>(name)
}

fn bytes_bar(total: Option<u64>, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let b = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        b.set_style(style.progress_chars("=> "));
    }
    b
}

async fn images(ctx: &Ctx) -> anyhow::Result<Images> {
    Ok(Images::new(ctx.client().await?.clone()))
}

async fn image_upload(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let name = arg(m, "NAME").cloned().unwrap_or_default();
    let path = PathBuf::from(arg(m, "FILE").cloned().unwrap_or_default());
    let size = std::fs::metadata(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .len();
    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    if let Some(f) = arg(m, "format") {
        meta.insert("disk_format".into(), json!(f));
    }
    if m.get_flag("public") {
        meta.insert("is_public".into(), json!(true));
    }
    if m.get_flag("unprotected") {
        meta.insert("protected".into(), json!(false));
    }
    for k in ["min-disk", "min-ram"] {
        if let Some(v) = m.get_one::<i64>(k) {
            meta.insert(k.replace('-', "_"), json!(v));
        }
    }
    if let Some(d) = arg(m, "desc") {
        meta.insert("description".into(), json!(d));
    }
    let mut props = Map::new();
    for k in ["os-type", "os-distribution", "os-version", "os-arch"] {
        if let Some(v) = arg(m, k) {
            props.insert(k.replace('-', "_"), json!(v));
        }
    }
    for kv in m.get_many::<String>("property").into_iter().flatten() {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--property wants KEY=VALUE, got {kv:?}"))?;
        props.insert(k.trim().to_string(), json!(v));
    }
    if !props.is_empty() {
        meta.insert("properties".into(), Value::Object(props));
    }
    let bar = bytes_bar(Some(size), m.get_flag("no-progress"));
    let b = bar.clone();
    let imgs = images(ctx).await?;
    let obj = imgs
        .upload_file(&path, &meta, move |sent| b.set_position(sent))
        .await;
    bar.finish_and_clear();
    let mut obj = obj?;
    if m.get_flag("wait") {
        let id = obj["id"].as_str().unwrap_or_default().to_string();
        obj = wait_active(&imgs, &id, Duration::from_secs(3600)).await?;
    }
    print_object(ctx, &obj);
    Ok(())
}

/// Poll until the image is active (or failed).
pub async fn wait_active(imgs: &Images, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let obj = imgs.show(id).await?;
        let status = obj["status"].as_str().unwrap_or_default().to_string();
        match status.as_str() {
            "active" => return Ok(obj),
            "save_fail" | "killed" => {
                let reason = obj["fail_reason"].as_str().unwrap_or_default();
                anyhow::bail!("image {id} is {status}: {reason}");
            }
            _ => {}
        }
        if Instant::now() > deadline {
            anyhow::bail!("image {id} still {status} after {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn image_download(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let id = arg(m, "ID").cloned().unwrap_or_default();
    let imgs = images(ctx).await?;
    let out = match arg(m, "output") {
        Some(o) => PathBuf::from(o),
        None => {
            let obj = imgs.show(&id).await?;
            let name = obj["name"].as_str().unwrap_or(&id).replace('/', "_");
            PathBuf::from(name)
        }
    };
    let bar = bytes_bar(None, m.get_flag("no-progress"));
    let b = bar.clone();
    let n = imgs
        .download_to(
            &id,
            arg(m, "format").map(String::as_str),
            &out,
            move |got, total| {
                if let Some(t) = total
                    && b.length() != Some(t)
                {
                    b.set_length(t);
                }
                b.set_position(got);
            },
        )
        .await;
    bar.finish_and_clear();
    let n = n?;
    print_object(
        ctx,
        &json!({"id": id, "file": out.display().to_string(), "size": n}),
    );
    Ok(())
}

async fn image_show(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let id = arg(m, "ID").cloned().unwrap_or_default();
    let obj = images(ctx).await?.show(&id).await?;
    print_object(ctx, &obj);
    Ok(())
}
