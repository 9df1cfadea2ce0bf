//! The life of an image's bytes.
//!
//! ```text
//! queued ──upload / copy_from──► saving ──► probing ──► converting ──► active
//!    ▲                             │           │            │
//!    └── upload failed (PUT) ──────┤           └── not an image, backing
//!        row removed (POST) ◄──────┤               file, format mismatch
//!        killed (copy_from) ◄──────┘               ──► save_fail
//! ```
//!
//! Receiving runs in its own task, so a client that disconnects mid-upload
//! still gets its partial file removed. The upload answers once the bytes
//! are durable; md5 and sha256 are computed behind the writer meanwhile and
//! recorded during `probing`, before `active` (a declared checksum is
//! checked before answering). Probing and conversion run in the
//! background, bounded by `convert_workers`. After a restart, images left
//! in `saving` are `killed` (the sender is gone) and those in `probing` or
//! `converting` are processed again — every step rewrites its outputs, so
//! running one twice is harmless.

use std::sync::Arc;

use bytes::Bytes;
use cloudpods_apis::image as api;
use cloudpods_db::row::s;
use cloudpods_db::{Row, Sql, crud};
use futures::stream::BoxStream;
use serde_json::{Value, json};

use crate::Glance;
use crate::error::{GlanceError, Result};
use crate::models::{IMAGE_SUBFORMATS, IMAGES};
use crate::{qemu, upload};

/// What a failed receive does to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFail {
    /// Created by this very request: remove it, as if never created.
    Discard,
    /// Back to `queued` (with the reason), so the upload can be retried.
    Requeue,
    /// `killed` with the reason (imports: nobody waits for an answer).
    Kill,
}

/// An image's checksums on their way to `probing`.
pub enum Pending {
    /// Checked already (the client declared one), or recorded before a
    /// restart.
    Known(upload::Hashes),
    /// Still being computed behind the upload.
    Hashing(upload::Checksums),
    /// Lost to a restart: computed from the file.
    FromFile,
}

pub type ByteStream = BoxStream<'static, std::result::Result<Bytes, String>>;

impl Glance {
    /// Change columns of a live image.
    pub async fn set(&self, id: &str, changes: Value) -> Result<()> {
        let Value::Object(ch) = changes else {
            return Ok(());
        };
        crud::update(self.db.write(), &IMAGES, id, &ch).await?;
        Ok(())
    }

    /// Compare-and-set the status: true when the image was in one of `from`.
    pub async fn cas_status(&self, id: &str, from: &[&str], changes: Value) -> Result<bool> {
        let Value::Object(ch) = changes else {
            return Ok(false);
        };
        let mut q = crud::update_sql(&IMAGES, &ch);
        q.push(" WHERE `id` = ")
            .bind(id)
            .push(" AND `deleted` = 0 AND `status` IN ")
            .bind_list(from.iter().copied());
        let n = q
            .query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn image(&self, id: &str) -> Result<Option<Row>> {
        Ok(crud::get(self.db.read(), &IMAGES, id).await?)
    }

    /// Receive the bytes of a queued image. Returns once they are saved
    /// (probing continues in the background).
    pub async fn upload(
        self: &Arc<Self>,
        id: &str,
        stream: ByteStream,
        expect: Option<u64>,
        md5: Option<String>,
        on_fail: OnFail,
    ) -> Result<()> {
        if let Some(n) = expect
            && self.opts.max_image_bytes > 0
            && n > self.opts.max_image_bytes
        {
            let e = GlanceError::TooLarge {
                limit: self.opts.max_image_bytes,
            };
            self.receive_failed(id, on_fail, &e).await;
            return Err(e);
        }
        let ok = self
            .cas_status(
                id,
                &[api::STATUS_QUEUED],
                json!({"status": api::STATUS_SAVING, "fail_reason": null}),
            )
            .await?;
        if !ok {
            let st = self
                .image(id)
                .await?
                .map(|r| s(&r, "status"))
                .unwrap_or_default();
            return Err(cloudpods_rest::HttpError::invalid_status(format!(
                "cannot upload image in status {st}"
            ))
            .into());
        }
        let me = self.clone();
        let id = id.to_string();
        // A task of its own: if the client disconnects, the handler is
        // dropped but the cleanup below still runs.
        tokio::spawn(async move { me.receive(&id, stream, expect, md5, on_fail).await })
            .await
            .map_err(|e| GlanceError::Storage(format!("upload task: {e}")))?
    }

    async fn receive(
        self: &Arc<Self>,
        id: &str,
        stream: ByteStream,
        expect: Option<u64>,
        md5: Option<String>,
        on_fail: OnFail,
    ) -> Result<()> {
        let partial = self.store.partial(id);
        let received = async {
            let r = upload::receive(stream, &partial, expect, self.opts.max_image_bytes).await?;
            // A declared checksum is checked before the upload answers.
            let Some(m) = md5.filter(|m| !m.is_empty()) else {
                return Ok((r.size, Pending::Hashing(r.checksums)));
            };
            let h = r.checksums.wait().await?;
            if !m.eq_ignore_ascii_case(&h.md5) {
                return Err(GlanceError::Input(format!(
                    "checksum mismatch: declared {m}, received data has md5 {}",
                    h.md5
                )));
            }
            Ok((r.size, Pending::Known(h)))
        }
        .await;
        let (size, checksums) = match received {
            Ok(r) => r,
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                self.receive_failed(id, on_fail, &e).await;
                return Err(e);
            }
        };
        let local = self.store.local(id, None);
        if let Err(e) = tokio::fs::rename(&partial, &local).await {
            let _ = tokio::fs::remove_file(&partial).await;
            let e = GlanceError::io(&local, e);
            self.receive_failed(id, on_fail, &e).await;
            return Err(e);
        }
        self.set(id, json!({"status": api::STATUS_PROBING, "size": size}))
            .await?;
        self.spawn_process(id, checksums);
        Ok(())
    }

    async fn receive_failed(&self, id: &str, on_fail: OnFail, e: &GlanceError) {
        let reason = e.to_string();
        tracing::info!(image = id, reason, "image upload failed");
        let r = match on_fail {
            OnFail::Discard => self.discard(id).await,
            OnFail::Requeue => {
                self.set(
                    id,
                    json!({"status": api::STATUS_QUEUED, "fail_reason": reason, "size": 0}),
                )
                .await
            }
            OnFail::Kill => {
                self.set(
                    id,
                    json!({"status": api::STATUS_KILLED, "fail_reason": reason, "size": 0}),
                )
                .await
            }
        };
        if let Err(e) = r {
            tracing::warn!(image = id, error = %e, "recording the failed upload");
        }
    }

    /// Remove an image that never became one (its create failed).
    pub async fn discard(&self, id: &str) -> Result<()> {
        self.store.remove_local(id).await;
        let mut q = Sql::new("DELETE FROM `image_properties` WHERE `image_id` = ");
        q.bind(id);
        q.query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        cloudpods_rest::metadata::clear(&self.db, IMAGES.keyword, id)
            .await
            .map_err(|e| GlanceError::Storage(e.to_string()))?;
        crud::purge(self.db.write(), &IMAGES, id).await?;
        Ok(())
    }

    /// Import a queued image from `url` in the background.
    pub fn spawn_copy_from(self: &Arc<Self>, id: &str, url: String) {
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let fetched = crate::copy_from::fetch(&url, &me.opts.copy_from_allow).await;
            match fetched {
                Ok((stream, len)) => {
                    if let Err(e) = me.upload(&id, stream, len, None, OnFail::Kill).await {
                        tracing::info!(image = id, error = %e, "copy_from failed");
                    }
                }
                Err(e) => {
                    let _ = me
                        .cas_status(
                            &id,
                            &[api::STATUS_QUEUED],
                            json!({"status": api::STATUS_KILLED, "fail_reason": e.to_string()}),
                        )
                        .await;
                }
            }
        });
    }

    /// Probe (and convert) an image in the background, recording its
    /// checksums before it turns `active`.
    pub fn spawn_process(self: &Arc<Self>, id: &str, checksums: Pending) {
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = me.process(&id, checksums).await {
                tracing::warn!(image = id, error = %e, "image processing failed");
                let _ = me
                    .cas_status(
                        &id,
                        &[api::STATUS_PROBING, api::STATUS_CONVERTING],
                        json!({"status": api::STATUS_SAVE_FAIL, "fail_reason": e.to_string()}),
                    )
                    .await;
                me.store.remove_local(&id).await;
            }
        });
    }

    async fn process(&self, id: &str, checksums: Pending) -> Result<()> {
        let _permit = self
            .convert
            .acquire()
            .await
            .map_err(|e| GlanceError::Storage(e.to_string()))?;
        let Some(row) = self.image(id).await? else {
            return Ok(());
        };
        let status = s(&row, "status");
        if status != api::STATUS_PROBING && status != api::STATUS_CONVERTING {
            return Ok(());
        }
        let local = self.store.local(id, None);
        let size = tokio::fs::metadata(&local)
            .await
            .map_err(|e| GlanceError::io(&local, e))?
            .len();
        let declared = s(&row, "disk_format");
        let probe = match qemu::probe(&self.opts.qemu_img, &local, &declared, size).await {
            Ok(p) => p,
            Err(GlanceError::NotAnImage(reason)) => {
                tracing::info!(image = id, reason, "image refused");
                self.set(
                    id,
                    json!({"status": api::STATUS_SAVE_FAIL, "fail_reason": reason}),
                )
                .await?;
                self.store.remove_local(id).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let min_disk_mb = probe.virtual_size.div_ceil(1 << 20) as i64;
        let cur_min = row.get("min_disk").and_then(Value::as_i64).unwrap_or(0);
        let targets: Vec<String> = if probe.format == "iso" {
            Vec::new()
        } else {
            self.opts
                .target_formats
                .iter()
                .filter(|f| **f != probe.format)
                .cloned()
                .collect()
        };
        self.set(
            id,
            json!({"disk_format": probe.format, "virtual_size": probe.virtual_size,
                   "min_disk": cur_min.max(min_disk_mb),
                   "status": if targets.is_empty() { api::STATUS_PROBING } else { api::STATUS_CONVERTING }}),
        )
        .await?;
        let hashes = match checksums {
            Pending::Known(h) => h,
            Pending::Hashing(c) => c.wait().await?,
            Pending::FromFile => upload::hash_file(&local).await?.1,
        };
        self.set(
            id,
            json!({"checksum": hashes.md5, "oss_checksum": hashes.md5, "sha256": hashes.sha256}),
        )
        .await?;
        for t in &targets {
            self.convert_one(id, &local, &probe.format, t).await?;
        }
        let location = self.store.persist(&local).await?;
        self.set(
            id,
            json!({"location": location, "status": api::STATUS_ACTIVE, "fail_reason": null}),
        )
        .await?;
        tracing::info!(image = id, format = probe.format, "image active");
        Ok(())
    }

    /// Produce one sub-format. A failed conversion marks the sub-format,
    /// not the image (its own format is fine).
    async fn convert_one(
        &self,
        id: &str,
        src: &std::path::Path,
        src_fmt: &str,
        fmt: &str,
    ) -> Result<()> {
        let mut q = Sql::new("DELETE FROM `image_subformats` WHERE `image_id` = ");
        q.bind(id).push(" AND `format` = ").bind(fmt);
        q.query()?
            .execute(self.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        let mut row: Row = json!({"image_id": id, "format": fmt, "status": api::STATUS_CONVERTING})
            .as_object()
            .cloned()
            .unwrap_or_default();
        crud::prepare_insert(&IMAGE_SUBFORMATS, &mut row);
        crud::insert(self.db.write(), &IMAGE_SUBFORMATS, &row).await?;
        let dst = self.store.local(id, Some(fmt));
        let tmp = self.store.local(id, Some(&format!("{fmt}.partial")));
        let res: Result<((u64, upload::Hashes), String)> = async {
            qemu::convert(&self.opts.qemu_img, src, src_fmt, &tmp, fmt).await?;
            let h = upload::hash_file(&tmp).await?;
            tokio::fs::rename(&tmp, &dst)
                .await
                .map_err(|e| GlanceError::io(&dst, e))?;
            let loc = self.store.persist(&dst).await?;
            Ok((h, loc))
        }
        .await;
        let changes = match res {
            Ok(((size, h), loc)) => {
                json!({"status": api::STATUS_ACTIVE, "size": size, "checksum": h.md5,
                                   "sha256": h.sha256, "location": loc})
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                let _ = tokio::fs::remove_file(&dst).await;
                tracing::warn!(image = id, format = fmt, error = %e, "conversion failed");
                json!({"status": api::STATUS_SAVE_FAIL, "fail_reason": e.to_string()})
            }
        };
        if let Value::Object(ch) = changes {
            let mut q = crud::update_sql(&IMAGE_SUBFORMATS, &ch);
            q.push(" WHERE `image_id` = ")
                .bind(id)
                .push(" AND `format` = ")
                .bind(fmt);
            q.query()?
                .execute(self.db.write())
                .await
                .map_err(cloudpods_db::DbError::from)?;
        }
        Ok(())
    }

    /// Sub-format rows of images.
    pub async fn subformats(&self, ids: &[String]) -> Result<Vec<Row>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = Sql::new(format!(
            "SELECT {} FROM `image_subformats` WHERE `image_id` IN ",
            crud::column_list(&IMAGE_SUBFORMATS)
        ));
        q.bind_list(ids.iter());
        Ok(crud::fetch_rows(self.db.read(), &IMAGE_SUBFORMATS, &q).await?)
    }

    /// Delete an image for real: files, sub-formats, properties, row.
    pub async fn purge(&self, row: &Row) -> Result<()> {
        let id = s(row, "id");
        let _ = self
            .set(&id, json!({"status": api::STATUS_DEACTIVATED}))
            .await;
        let loc = s(row, "location");
        if !loc.is_empty() {
            self.store.remove(&loc).await?;
        }
        for sub in self.subformats(std::slice::from_ref(&id)).await? {
            let l = s(&sub, "location");
            if !l.is_empty() {
                self.store.remove(&l).await?;
            }
        }
        self.store.remove_local(&id).await;
        for table in ["image_subformats", "image_properties"] {
            let mut q = Sql::new(format!("DELETE FROM `{table}` WHERE `image_id` = "));
            q.bind(id.as_str());
            q.query()?
                .execute(self.db.write())
                .await
                .map_err(cloudpods_db::DbError::from)?;
        }
        let mut ch = Row::new();
        ch.insert("status".into(), json!(api::STATUS_DELETED));
        crud::update(self.db.write(), &IMAGES, &id, &ch).await?;
        crud::delete(self.db.write(), &IMAGES, &id).await?;
        cloudpods_rest::metadata::clear(&self.db, IMAGES.keyword, &id)
            .await
            .map_err(|e| GlanceError::Storage(e.to_string()))?;
        Ok(())
    }

    /// After a restart: kill interrupted uploads, resume processing.
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        let mut q = Sql::new(format!(
            "SELECT {} FROM `images` WHERE `deleted` = 0 AND `status` IN ",
            crud::column_list(&IMAGES)
        ));
        q.bind_list([
            api::STATUS_SAVING,
            api::STATUS_PROBING,
            api::STATUS_CONVERTING,
        ]);
        let rows = crud::fetch_rows(self.db.read(), &IMAGES, &q).await?;
        // Partial files are never resumed.
        if let Ok(mut rd) = tokio::fs::read_dir(self.store.dir()).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                if e.file_name().to_string_lossy().ends_with(".partial") {
                    let _ = tokio::fs::remove_file(e.path()).await;
                }
            }
        }
        for r in rows {
            let id = s(&r, "id");
            if s(&r, "status") == api::STATUS_SAVING {
                self.set(
                    &id,
                    json!({"status": api::STATUS_KILLED, "size": 0,
                           "fail_reason": "the upload was interrupted by a service restart"}),
                )
                .await?;
                self.store.remove_local(&id).await;
            } else {
                // Checksums still being computed at the restart are redone.
                let checksums = if r
                    .get("sha256")
                    .and_then(Value::as_str)
                    .is_some_and(|h| !h.is_empty())
                {
                    Pending::Known(upload::Hashes {
                        md5: s(&r, "checksum"),
                        sha256: s(&r, "sha256"),
                    })
                } else {
                    tracing::info!(image = id, "checksums lost to the restart: computed again");
                    Pending::FromFile
                };
                self.spawn_process(&id, checksums);
            }
        }
        Ok(())
    }

    /// Delete images whose time in the recycle bin is over.
    pub async fn expire_pending_deletes(&self) -> Result<()> {
        let deadline = chrono::Utc::now()
            - chrono::TimeDelta::from_std(self.opts.pending_delete_expire).unwrap_or_default();
        let mut q = Sql::new(format!(
            "SELECT {} FROM `images` WHERE `deleted` = 0 AND `pending_deleted` = 1 AND `pending_deleted_at` < ",
            crud::column_list(&IMAGES)
        ));
        q.bind(cloudpods_apis::time::format(deadline));
        for r in crud::fetch_rows(self.db.read(), &IMAGES, &q).await? {
            self.purge(&r).await?;
        }
        Ok(())
    }
}
