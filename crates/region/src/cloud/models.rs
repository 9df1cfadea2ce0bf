//! Tables of the cloud accounts side (Cloudpods' names): accounts, their
//! providers (sub-accounts), the per-region sync state of a provider, and
//! the public cloud's images.

use std::sync::LazyLock;

use cloudpods_db::{Column, IdStyle, ModelDesc, Owner};
use cloudpods_rbac::Scope;

pub static CLOUDACCOUNTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("cloudaccount", "cloudaccounts", "cloudaccounts_tbl")
        .service("compute")
        .owner(Owner::Domain)
        .standalone()
        .unique_name()
        .status("init")
        .enabled(true)
        .col(Column::str("provider", 64).required().create().list())
        .col(Column::str("brand", 64).list())
        .col(Column::str("access_url", 512).create())
        // The access key id (shown, as Cloudpods shows it).
        .col(Column::str("account", 256).required().create().list())
        // Encrypted at rest with the operator's key; never leaves the API.
        .col(Column::text("secret").secret())
        .col(Column::str("account_id", 128).list())
        .col(Column::bool("is_public_cloud").default(true).list())
        .col(Column::bool("is_on_premise").default(false).list())
        .col(Column::str("health_status", 32).default("unknown").list())
        .col(Column::str("sync_status", 16).default("idle").list())
        .col(Column::time("last_sync"))
        .col(Column::time("last_sync_end_at"))
        .col(Column::time("last_auto_sync"))
        .col(Column::time("probe_at"))
        .col(Column::int("sync_count").default(0))
        .col(Column::int("error_count").default(0))
        .col(
            Column::int("sync_interval_seconds")
                .default(900)
                .create()
                .update(),
        )
        .col(
            Column::bool("enable_auto_sync")
                .default(true)
                .create()
                .update(),
        )
        // The project public-cloud resources of the account belong to.
        .col(Column::str("project_id", 64).list())
        .col(Column::json("options").create().update())
        // Errors of the last sync, per region and resource.
        .col(Column::json("sync_errors"))
        // Counts and timings of the last sync.
        .col(Column::json("sync_result"))
        .col(Column::bool("read_only").default(false).create().update())
        .col(Column::str("share_mode", 32).default("account_domain"))
        .extra_create(&[
            "secret",
            "project",
            "project_id",
            "tenant",
            "tenant_id",
            "auto_sync",
        ])
        .build()
});

pub static CLOUDPROVIDERS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("cloudprovider", "cloudproviders", "cloudproviders_tbl")
        .service("compute")
        .owner(Owner::Domain)
        .standalone()
        .unique_name()
        .status("init")
        .enabled(true)
        .col(Column::str("cloudaccount_id", 128).list().indexed())
        .col(Column::str("provider", 64).list())
        .col(Column::str("brand", 64).list())
        .col(Column::str("access_url", 512))
        .col(Column::str("account", 256).list())
        .col(Column::str("external_id", 256).list())
        .col(Column::bool("is_public_cloud").default(true).list())
        .col(Column::str("health_status", 32).default("unknown").list())
        .col(Column::str("sync_status", 16).default("idle").list())
        .col(Column::time("last_sync"))
        .col(Column::time("last_sync_end_at"))
        .col(Column::str("project_id", 64).list())
        .build()
});

/// Which regions a provider syncs, and how the last sync of each went
/// (Cloudpods `cloudprovider_regions`).
pub static CLOUDPROVIDER_REGIONS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new(
        "cloudproviderregion",
        "cloudproviderregions",
        "cloudprovider_regions_tbl",
    )
    .service("compute")
    .ids(IdStyle::Auto)
    .hard_delete()
    .col(Column::str("cloudprovider_id", 128).list().indexed())
    .col(Column::str("cloudregion_id", 128).list().indexed())
    .col(Column::bool("enabled").default(true).update())
    .col(Column::str("sync_status", 16).default("idle").list())
    .col(Column::time("last_sync"))
    .col(Column::time("last_sync_end_at"))
    .col(Column::text("sync_error"))
    .col(Column::json("sync_result"))
    .unique(&["cloudprovider_id", "cloudregion_id"])
    .build()
});

/// Images of public clouds (AMIs), Cloudpods `cachedimages`.
pub static CACHEDIMAGES: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("cachedimage", "cachedimages", "cachedimages_tbl")
        .service("compute")
        .owner(Owner::Project)
        // The image caches of a region are infrastructure: synced from the
        // clouds or made by the system admin, never by a tenant.
        .managed_at(Scope::System)
        .standalone()
        .status("active")
        .external()
        .col(Column::str("cloudregion_id", 128).list().indexed())
        .col(Column::bigint("size").default(0))
        .col(Column::str("os_type", 36).list())
        .col(Column::str("os_arch", 16))
        .col(Column::str("image_type", 16).default("customized").list())
        .build()
});

pub fn all() -> Vec<&'static ModelDesc> {
    vec![
        &CLOUDACCOUNTS,
        &CLOUDPROVIDERS,
        &CLOUDPROVIDER_REGIONS,
        &CACHEDIMAGES,
    ]
}
