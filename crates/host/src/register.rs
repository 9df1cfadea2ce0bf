//! Registering a host with the region and keeping it alive.

use std::time::Duration;

use cloudpods_sdk::{Client, SdkError};
use serde_json::{Map, Value, json};

/// What a host tells the region about itself.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    pub zone: String,
    /// `(wire, bridge)` pairs the host is connected to.
    pub wires: Vec<(String, String)>,
    pub cpu_count: i64,
    pub cpu_desc: String,
    pub mem_mb: i64,
    pub storage_mb: i64,
    pub storage_path: String,
    pub manager_uri: String,
    pub access_ip: String,
    /// The key the region signs this agent's requests with (hex; sent with
    /// the host create/update, never returned by the region).
    pub agent_secret: String,
    /// Create the zone and wires when missing (a single-node all-in-one
    /// cloud on its first start); otherwise they must exist.
    pub create_topology: bool,
    /// What runs the guests: `simulated` (`--simulate`) or `qemu/<accel>`;
    /// registered as `sys_info.driver` (the region refuses what only the
    /// simulated hypervisor can do, such as cold migrate).
    pub driver: String,
}

#[derive(Debug, Clone)]
pub struct Registered {
    pub host_id: String,
    pub storage_id: String,
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Create or update the host, its local storage and its wire attachments.
pub async fn register(client: &Client, spec: &HostSpec) -> Result<Registered, SdkError> {
    if spec.create_topology {
        ensure_named(client, "zone", "zones", obj(json!({"name": spec.zone}))).await?;
        for (wire, _) in &spec.wires {
            ensure_named(
                client,
                "wire",
                "wires",
                obj(json!({"name": wire, "zone": spec.zone})),
            )
            .await?;
        }
    }
    let hosts = client.resource("compute_v2", "host", "hosts");
    let body = obj(json!({
        "name": spec.name,
        "access_ip": spec.access_ip,
        "manager_uri": spec.manager_uri,
        "agent_secret": spec.agent_secret,
        "cpu_count": spec.cpu_count,
        "cpu_desc": spec.cpu_desc,
        "mem_size": spec.mem_mb,
        "storage_size": spec.storage_mb,
        "host_type": "hypervisor",
        "sys_info": {"driver": spec.driver},
    }));
    let host = match hosts.get(&spec.name, &Map::new()).await {
        Ok(h) => {
            let id = h["id"].as_str().unwrap_or_default().to_string();
            let mut update = body.clone();
            update.remove("name");
            update.remove("host_type");
            update.remove("access_ip");
            hosts.update(&id, update).await?
        }
        Err(e) if e.is_not_found() => hosts
            .create_in_context("zones", &spec.zone, body, None)
            .await?
            .into_objects()
            .into_iter()
            .next()
            .unwrap_or_default(),
        Err(e) => return Err(e),
    };
    let host_id = host["id"].as_str().unwrap_or_default().to_string();

    let storages = client.resource("compute_v2", "storage", "storages");
    let storage_name = format!("{}-local", spec.name);
    let storage = match storages.get(&storage_name, &Map::new()).await {
        Ok(s) => {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            storages
                .update(&id, obj(json!({"capacity": spec.storage_mb})))
                .await?
        }
        Err(e) if e.is_not_found() => storages
            .create(
                obj(
                    json!({"name": storage_name, "zone": spec.zone, "capacity": spec.storage_mb,
                           "storage_type": "local", "medium_type": "ssd"}),
                ),
                None,
            )
            .await?
            .into_objects()
            .into_iter()
            .next()
            .unwrap_or_default(),
        Err(e) => return Err(e),
    };
    let storage_id = storage["id"].as_str().unwrap_or_default().to_string();
    attach(
        client,
        &format!("/hosts/{host_id}/storages/{storage_id}"),
        json!({"hoststorage": {"mount_point": spec.storage_path}}),
    )
    .await?;
    for (wire, bridge) in &spec.wires {
        attach(
            client,
            &format!("/hosts/{host_id}/wires/{wire}"),
            json!({"hostwire": {"bridge": bridge, "interface": bridge}}),
        )
        .await?;
    }
    ping(client, &host_id).await?;
    Ok(Registered {
        host_id,
        storage_id,
    })
}

/// Create a resource by name unless it exists.
async fn ensure_named(
    client: &Client,
    keyword: &str,
    plural: &str,
    body: Map<String, Value>,
) -> Result<(), SdkError> {
    let mgr = client.resource("compute_v2", keyword, plural);
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match mgr.get(&name, &Map::new()).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => match mgr.create(body, None).await {
            Ok(_) => Ok(()),
            // Created meanwhile by someone else.
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Attach a joint; already attached is fine.
async fn attach(client: &Client, path: &str, body: Value) -> Result<(), SdkError> {
    match client
        .raw(
            reqwest::Method::POST,
            "compute_v2",
            path,
            None,
            Some(body),
            Default::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn ping(client: &Client, host_id: &str) -> Result<(), SdkError> {
    client
        .resource("compute_v2", "host", "hosts")
        .perform_action(host_id, "ping", Map::new())
        .await
        .map(|_| ())
}

/// Ping the region every `every`.
pub fn spawn_heartbeat(
    client: Client,
    host_id: String,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = ping(&client, &host_id).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
    })
}
