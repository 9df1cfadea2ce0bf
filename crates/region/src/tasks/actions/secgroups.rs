//! `purge` and the security-group actions.

use super::*;

pub(super) async fn purge(region: &Arc<Region>, ctx: &Ctx, obj: &Row) -> Result<()> {
    if ctx.max_scope("servers", "perform", Some("purge")) != Some(Scope::System) {
        return Err(HttpError::forbidden("only system admins may purge servers"));
    }
    // Purge forgets the records whatever the guest is doing (the operator's
    // way out of a host that is gone).
    let cur = s(obj, "status");
    let mut tx = region.db.begin().await?;
    guest_cas(
        region,
        &mut tx,
        obj,
        "purge",
        &[cur.as_str()],
        status::START_DELETE,
    )
    .await?;
    let params = json!({"purge": true, "pending": false, "prev_status": cur});
    commit_with_task(region, tx, new_task(ctx, obj, "GuestDeleteTask", params)).await
}

pub(super) async fn secgroups(call: Call<'_>) -> Result<()> {
    let (region, ctx, obj, action, input) =
        (call.region, call.ctx, call.obj, call.action, call.input);
    let from = [status::READY, status::RUNNING];
    require_status(obj, action, &from)?;
    let gid = s(obj, "id");
    let mut names: Vec<String> = Vec::new();
    for key in [
        "secgroup_ids",
        "secgroups",
        "secgrp_ids",
        "secgroup_id",
        "secgroup",
        "secgrp",
    ] {
        names.extend(get_strs(input, key));
    }
    names.dedup();
    if names.is_empty() && action != "set-secgroup" {
        return Err(HttpError::missing("secgroup_ids is required"));
    }
    let mut wanted = Vec::new();
    for n in &names {
        let g = find_visible(region, ctx, &SECGROUPS, n)
            .await
            .map_err(|_| HttpError::not_found(format!("secgroup {n} not found")))?;
        if !wanted.iter().any(|w: &Row| s(w, "id") == s(&g, "id")) {
            wanted.push(g);
        }
    }
    let mut current: Vec<String> = store::rows_in(
        &region.db,
        &GUESTSECGROUPS,
        "guest_id",
        std::slice::from_ref(&gid),
    )
    .await?
    .iter()
    .map(|j| s(j, "secgroup_id"))
    .collect();
    // The primary group first.
    current.sort_by_key(|g| *g != s(obj, "secgrp_id"));
    let ids: Vec<String> = wanted.iter().map(|g| s(g, "id")).collect();
    let mut result: Vec<String> = match action {
        "add-secgroup" => {
            if let Some(g) = wanted.iter().find(|g| current.contains(&s(g, "id"))) {
                return Err(HttpError::input(format!(
                    "secgroup {} is already assigned to server {}",
                    s(g, "name"),
                    s(obj, "name")
                )));
            }
            current.iter().cloned().chain(ids).collect()
        }
        "del-secgroup" | "revoke-secgroup" => {
            if let Some(g) = wanted.iter().find(|g| !current.contains(&s(g, "id"))) {
                return Err(HttpError::input(format!(
                    "secgroup {} is not assigned to server {}",
                    s(g, "name"),
                    s(obj, "name")
                )));
            }
            current
                .iter()
                .filter(|c| !ids.contains(c))
                .cloned()
                .collect()
        }
        _ => ids,
    };
    result.dedup();
    if result.len() > 10 {
        return Err(HttpError::input("a server has at most 10 security groups"));
    }
    let running = s(obj, "status") == status::RUNNING;
    let mut tx = region.db.begin().await?;
    let to = if running {
        status::SYNC_CONFIG
    } else {
        status::READY
    };
    guest_cas(
        region,
        &mut tx,
        obj,
        action,
        &[s(obj, "status").as_str()],
        to,
    )
    .await?;
    set_secgroups(&mut tx, &gid, &result).await?;
    if !running {
        tx.commit().await.map_err(DbError::from)?;
        return Ok(());
    }
    commit_with_task(
        region,
        tx,
        new_task(
            ctx,
            obj,
            "GuestSyncConfigTask",
            json!({"prev_status": status::RUNNING, "prev_secgroups": current}),
        ),
    )
    .await
}

/// Make `groups` the guest's security groups (the first is its primary).
pub(super) async fn set_secgroups(
    tx: &mut DbTx,
    gid: &str,
    groups: &[String],
) -> std::result::Result<(), DbError> {
    let mut q = Sql::new("DELETE FROM `guestsecgroups_tbl` WHERE `guest_id` = ");
    q.bind(gid);
    q.query()?.execute(&mut **tx).await.map_err(DbError::from)?;
    for sg in groups {
        let mut row = Row::new();
        row.insert("guest_id".into(), json!(gid));
        row.insert("secgroup_id".into(), json!(sg));
        crud::prepare_insert(&GUESTSECGROUPS, &mut row);
        crud::insert(&mut **tx, &GUESTSECGROUPS, &row).await?;
    }
    let mut ch = Row::new();
    ch.insert(
        "secgrp_id".into(),
        groups.first().map(|v| json!(v)).unwrap_or(Value::Null),
    );
    crud::update(&mut **tx, &GUESTS, gid, &ch).await?;
    Ok(())
}
