//! Glance tables, named as Cloudpods names them (`images`,
//! `image_properties`, `image_subformats`).

use std::sync::LazyLock;

use cloudpods_db::{Column, IdStyle, ModelDesc, Owner};

pub static IMAGES: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("image", "images", "images")
        .service("image")
        .owner(Owner::Project)
        .standalone()
        .unique_name()
        .sharable()
        .pending_delete()
        .status(cloudpods_apis::image::STATUS_QUEUED)
        // Bytes stored (of the image's own format).
        .col(Column::bigint("size").default(0).list())
        .col(Column::bigint("virtual_size").default(0))
        .col(
            Column::str("disk_format", 20)
                .default("raw")
                .create()
                .list(),
        )
        .col(Column::str("container_format", 20).default("bare").create())
        // md5 of the stored bytes (Glance's `checksum`).
        .col(Column::str("checksum", 32).list())
        .col(Column::str("sha256", 64).list())
        // md5 of the bytes as uploaded or fetched, before any rewrite.
        .col(Column::str("oss_checksum", 32))
        // Where the bytes live (`file://…`, `s3://bucket/key`): internal.
        .col(Column::text("location").secret())
        .col(Column::str("owner", 64))
        .col(Column::int("min_disk").default(0).update().list())
        .col(Column::int("min_ram").default(0).update().list())
        .col(Column::bool("protected").default(true).update().list())
        .col(
            Column::bool("is_standard")
                .default(false)
                .update()
                .admin()
                .list(),
        )
        .col(Column::bool("is_guest_image").default(false).list())
        .col(Column::bool("is_data").default(false).create().list())
        .col(Column::str("os_arch", 16).update().list())
        .col(Column::text("fail_reason"))
        .extra_create(&[
            "properties",
            "copy_from",
            "is_public",
            "public_scope",
            "size",
        ])
        .extra_update(&["properties", "is_public", "public_scope"])
        .build()
});

pub static IMAGE_PROPERTIES: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("image_property", "image_properties", "image_properties")
        .service("image")
        .ids(IdStyle::Auto)
        .hard_delete()
        .col(Column::str("image_id", 128).indexed())
        .col(Column::str("name", 64))
        .col(Column::text("value"))
        .unique(&["image_id", "name"])
        .build()
});

pub static IMAGE_SUBFORMATS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("image_subformat", "image_subformats", "image_subformats")
        .service("image")
        .ids(IdStyle::Auto)
        .hard_delete()
        .col(Column::str("image_id", 128).indexed())
        .col(Column::str("format", 20))
        .col(Column::bigint("size").default(0))
        .col(Column::str("checksum", 32))
        .col(Column::str("sha256", 64))
        .col(Column::str("status", 36).default(cloudpods_apis::image::STATUS_QUEUED))
        .col(Column::text("location"))
        .col(Column::text("fail_reason"))
        .unique(&["image_id", "format"])
        .build()
});

pub fn all() -> Vec<&'static ModelDesc> {
    vec![&IMAGES, &IMAGE_PROPERTIES, &IMAGE_SUBFORMATS]
}
