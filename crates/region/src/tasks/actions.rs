//! Server actions beyond start/stop/delete (change-config, disks,
//! snapshots, rebuild, password, migrate) and the VNC spec.

use std::sync::{Arc, Weak};

use cloudpods_db::Row;
use cloudpods_rest::{Ctx, HttpError, Object, Result};
use serde_json::{Value, json};

use crate::Region;
use crate::store::s;

/// Register the task types of these actions.
pub fn register(_region: &Arc<Region>, _w: &Weak<Region>) {}

/// Handle `action` on a server; `None` when it is not one of these.
pub async fn perform(
    _region: &Arc<Region>,
    _ctx: &Ctx,
    _obj: &Row,
    _action: &str,
    _input: &Object,
) -> Result<Option<Value>> {
    Ok(None)
}

/// `GET /servers/{id}/vnc`: where the guest's console is.
pub async fn vnc(region: &Arc<Region>, obj: &Row) -> Result<Value> {
    let host = cloudpods_db::crud::get(region.db.read(), &crate::models::HOSTS, &s(obj, "host_id"))
        .await?
        .ok_or_else(|| HttpError::invalid_status("the server has no host"))?;
    let answer = region
        .agents
        .get(
            &s(&host, "manager_uri"),
            &format!("/servers/{}/vnc", s(obj, "id")),
        )
        .await
        .map_err(|e| HttpError::bad_gateway(e.0))?;
    Ok(json!({
        "id": s(obj, "id"),
        "protocol": answer.get("protocol").cloned().unwrap_or(json!("vnc")),
        "host": answer.get("host").cloned().unwrap_or(json!(s(&host, "access_ip"))),
        "port": answer.get("port").cloned().unwrap_or(Value::Null),
        "password": answer.get("password").cloned().unwrap_or(Value::Null),
        "websocket_port": answer.get("websocket_port").cloned().unwrap_or(Value::Null),
    }))
}
