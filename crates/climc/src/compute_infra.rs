//! Region (compute_v2) commands for the infrastructure: cloud regions,
//! zones, VPCs, wires, networks, reserved IPs, hosts, storages, schedtags,
//! server SKUs, and the host joints.
//!
//! Default list columns follow Cloudpods' `_columns` of each module; the
//! resources whose useful columns are details (counts, capacity) list with
//! `details=true`.

use clap::{Arg, ArgAction, ArgMatches};
use cloudpods_sdk::ListResult;
use cloudpods_sdk::reqwest::Method;
use cloudpods_sdk::reqwest::header::HeaderMap;
use futures::FutureExt;
use serde_json::{Map, Value};

use crate::cli::{Ctx, list_params};
use crate::commands::{CustomCmd, collect, print_list, print_object};
use crate::spec::{Action, Ops, Opt, RefTo, Resource, args_of};

/// Catalog service type of the region.
pub const COMPUTE: &str = "compute_v2";

pub const CLOUDREGION: RefTo = RefTo {
    service: COMPUTE,
    keyword: "cloudregion",
    plural: "cloudregions",
};
pub const ZONE: RefTo = RefTo {
    service: COMPUTE,
    keyword: "zone",
    plural: "zones",
};
pub const VPC: RefTo = RefTo {
    service: COMPUTE,
    keyword: "vpc",
    plural: "vpcs",
};
pub const WIRE: RefTo = RefTo {
    service: COMPUTE,
    keyword: "wire",
    plural: "wires",
};
pub const NETWORK: RefTo = RefTo {
    service: COMPUTE,
    keyword: "network",
    plural: "networks",
};
pub const HOST: RefTo = RefTo {
    service: COMPUTE,
    keyword: "host",
    plural: "hosts",
};
pub const STORAGE: RefTo = RefTo {
    service: COMPUTE,
    keyword: "storage",
    plural: "storages",
};
pub const SCHEDTAG: RefTo = RefTo {
    service: COMPUTE,
    keyword: "schedtag",
    plural: "schedtags",
};

const NEW_NAME: Opt = Opt::string("name", "name", "New name");
const DESC: Opt = Opt::string("desc", "description", "Description");
const ENABLE: Action = Action::new("enable", "enable", "Enable it", &[]);
const DISABLE: Action = Action::new("disable", "disable", "Disable it", &[]);
const ZONE_FILTER: Opt = Opt::string("zone", "zone", "Filter by zone (id or name)");
const REGION_FILTER: Opt = Opt::string(
    "region",
    "cloudregion",
    "Filter by cloud region (id or name)",
);
const ALLOC_POLICIES: &[&str] = &["none", "stepup", "stepdown", "random"];
const SERVER_TYPES: &[&str] = &[
    "guest",
    "baremetal",
    "container",
    "pxe",
    "ipmi",
    "eip",
    "hostlocal",
];
const STORAGE_TYPES: &[&str] = &[
    "local",
    "rbd",
    "nfs",
    "gpfs",
    "lvm",
    "clvm",
    "slvm",
    "nas",
    "vsan",
    "cifs",
    "baremetal",
];
const MEDIUM_TYPES: &[&str] = &["ssd", "rotate", "hybrid"];
const STRATEGIES: &[&str] = &["require", "exclude", "prefer", "avoid"];

/// `network-create` options besides the positional arguments.
const NETWORK_CREATE_OPTS: &[Opt] = &[
    Opt::string("wire", "wire", "Wire (id or name)"),
    Opt::string(
        "zone",
        "zone",
        "Zone (with --vpc, instead of --wire: the VPC's wire in that zone)",
    ),
    Opt::string("vpc", "vpc", "VPC (with --zone)"),
    Opt::string("ip-start", "guest_ip_start", "First address of the range"),
    Opt::string("ip-end", "guest_ip_end", "Last address of the range"),
    Opt::int("mask", "guest_ip_mask", "Mask length (8-30)"),
    Opt::string(
        "prefix",
        "guest_ip_prefix",
        "Subnet like 10.1.0.0/24: fills the range, mask and gateway",
    ),
    Opt::choice("server-type", "server_type", SERVER_TYPES, "Network type"),
    Opt::string("bgp-type", "bgp_type", "BGP line type (eip networks)"),
    Opt::string("project", "project_id", "Owner project (id or name)"),
    Opt::string("gateway", "guest_gateway", "Default gateway"),
    Opt::string("dns", "guest_dns", "DNS servers (comma separated)"),
    Opt::string("domain", "guest_domain", "DNS domain of the guests"),
    Opt::string("dhcp", "guest_dhcp", "DHCP relay servers (comma separated)"),
    Opt::string(
        "ntp",
        "guest_ntp",
        "NTP servers, names or addresses (comma separated)",
    ),
    Opt::choice(
        "alloc-policy",
        "alloc_policy",
        ALLOC_POLICIES,
        "Address allocation policy",
    ),
    Opt::int("vlan-id", "vlan_id", "VLAN id (1-4095)"),
    Opt::flag(
        "auto-alloc",
        "is_auto_alloc",
        true,
        "Used for guests that do not name a network",
    ),
    Opt::flag(
        "no-auto-alloc",
        "is_auto_alloc",
        false,
        "Only for guests that name it",
    ),
    DESC,
];

/// The infrastructure resources.
pub static RESOURCES: &[Resource] = &[
    Resource::new("cloudregion", "cloudregions", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Enabled",
            "Status",
            "Provider",
            "Latitude",
            "Longitude",
            "City",
            "vpc_count",
            "zone_count",
            "guest_count",
            "External_Id",
        ])
        .list_details(true)
        .create(&[
            Opt::pos("NAME", "name", "Name of the cloud region"),
            Opt::string("id", "id", "Id (default: generated)"),
            Opt::string("city", "city", "City"),
            Opt::string("latitude", "latitude", "Latitude"),
            Opt::string("longitude", "longitude", "Longitude"),
            DESC,
        ])
        .update(&[
            NEW_NAME,
            DESC,
            Opt::string("city", "city", "City"),
            Opt::string("latitude", "latitude", "Latitude"),
            Opt::string("longitude", "longitude", "Longitude"),
        ])
        .actions(&[ENABLE, DISABLE]),
    Resource::new("zone", "zones", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Name_CN",
            "Status",
            "Cloudregion_ID",
            "Cloudregion",
            "Location",
            "Hosts",
            "Wires",
            "Networks",
            "Storages",
        ])
        .list_details(true)
        .list(&[REGION_FILTER])
        .create(&[
            Opt::pos("NAME", "name", "Name of the zone"),
            Opt::string(
                "region",
                "cloudregion",
                "Cloud region (id or name; default: the local one)",
            ),
            Opt::string("location", "location", "Location"),
            Opt::string("contacts", "contacts", "Contacts"),
            Opt::string("name-cn", "name_cn", "Chinese name"),
            DESC,
        ])
        .update(&[
            NEW_NAME,
            DESC,
            Opt::string("location", "location", "Location"),
            Opt::string("contacts", "contacts", "Contacts"),
            Opt::string("name-cn", "name_cn", "Chinese name"),
        ]),
    Resource::new("vpc", "vpcs", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Enabled",
            "Status",
            "Cloudregion_Id",
            "Cloudregion",
            "Is_default",
            "Cidr_Block",
            "Wire_count",
            "Network_count",
            "Public_Scope",
            "Domain_Id",
        ])
        .list_details(true)
        .list(&[REGION_FILTER])
        .create(&[
            Opt::pos("NAME", "name", "Name of the VPC"),
            Opt::string(
                "region",
                "cloudregion",
                "Cloud region (id or name; default: the local one)",
            ),
            Opt::string(
                "cidr",
                "cidr_block",
                "CIDR blocks its networks must lie in (comma separated)",
            ),
            DESC,
        ])
        .update(&[NEW_NAME, DESC])
        .actions(&[ENABLE, DISABLE]),
    Resource::new("wire", "wires", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Bandwidth",
            "Mtu",
            "Zone_ID",
            "Zone",
            "Networks",
            "VPC",
            "VPC_ID",
            "public_scope",
            "domain_id",
        ])
        .list_details(true)
        .list(&[
            ZONE_FILTER,
            Opt::string("vpc", "vpc", "Filter by VPC (id or name)"),
            Opt::string("host", "host", "Filter by an attached host (id or name)"),
        ])
        .create(&[
            Opt::pos("NAME", "name", "Name of the wire"),
            Opt::string("zone", "zone", "Zone (id or name)").required(),
            Opt::string("vpc", "vpc", "VPC (id or name; default: the default VPC)"),
            Opt::int("bandwidth", "bandwidth", "Bandwidth in Mbps"),
            Opt::int("mtu", "mtu", "MTU"),
            DESC,
        ])
        .update(&[
            NEW_NAME,
            DESC,
            Opt::int("bandwidth", "bandwidth", "Bandwidth in Mbps"),
            Opt::int("mtu", "mtu", "MTU"),
        ]),
    Resource::new("network", "networks", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Guest_ip_start",
            "Guest_ip_end",
            "Guest_ip_mask",
            "Guest_gateway",
            "Wire",
            "Vpc",
            "Zone",
            "Ports",
            "Ports_used",
            "Vnics",
            "Reserve_vnics",
            "Server_type",
            "Alloc_policy",
            "Status",
            "is_public",
            "Exit",
        ])
        .list_details(true)
        .list(&[
            Opt::string("wire", "wire", "Filter by wire (id or name)"),
            ZONE_FILTER,
            Opt::string("vpc", "vpc", "Filter by VPC (id or name)"),
            Opt::string(
                "host",
                "host",
                "Networks reachable from a host (id or name)",
            ),
            Opt::choice("server-type", "server_type", SERVER_TYPES, "Filter by type"),
        ])
        .update(&[
            NEW_NAME,
            Opt::string("ip-start", "guest_ip_start", "First address of the range"),
            Opt::string("ip-end", "guest_ip_end", "Last address of the range"),
            Opt::int("mask", "guest_ip_mask", "Mask length"),
            Opt::string("gateway", "guest_gateway", "Default gateway"),
            Opt::string("dns", "guest_dns", "DNS servers (comma separated)"),
            Opt::string("domain", "guest_domain", "DNS domain of the guests"),
            Opt::string("dhcp", "guest_dhcp", "DHCP relay servers (comma separated)"),
            Opt::string(
                "ntp",
                "guest_ntp",
                "NTP servers, names or addresses (comma separated)",
            ),
            Opt::choice(
                "alloc-policy",
                "alloc_policy",
                ALLOC_POLICIES,
                "Address allocation policy",
            ),
            Opt::int("vlan-id", "vlan_id", "VLAN id (1-4095)"),
            Opt::flag(
                "auto-alloc",
                "is_auto_alloc",
                true,
                "Used for guests that do not name a network",
            ),
            Opt::flag(
                "no-auto-alloc",
                "is_auto_alloc",
                false,
                "Only for guests that name it",
            ),
            DESC,
        ])
        .actions(&[
            Action::new(
                "reserve-ip",
                "reserve-ip",
                "Reserve addresses of a network",
                &[
                    Opt::pos_multi("IPS", "ips", "Addresses to reserve"),
                    Opt::string("notes", "notes", "Why they are reserved"),
                    Opt::string(
                        "duration",
                        "duration",
                        "Reserve for this long (1H, 2D, 1W, 1M, 1Y)",
                    ),
                ],
            ),
            Action::new(
                "release-reserved-ip",
                "release-reserved-ip",
                "Release a reserved address",
                &[Opt::pos("IP", "ip", "The reserved address")],
            ),
        ]),
    Resource::new("reservedip", "reservedips", COMPUTE)
        .columns(&[
            "ID",
            "Network_id",
            "Network",
            "Ip_addr",
            "Notes",
            "Expired_at",
            "Expired",
            "Status",
        ])
        .list_details(true)
        .list(&[Opt::string(
            "network",
            "network",
            "Filter by network (id or name)",
        )])
        .create(&[
            Opt::pos("NETWORK", "network", "Network (id or name)"),
            Opt::pos("IP", "ip_addr", "Address to reserve"),
            Opt::string("notes", "notes", "Why it is reserved"),
            Opt::string(
                "duration",
                "duration",
                "Reserve for this long (1H, 2D, 1W, 1M, 1Y)",
            ),
        ])
        .update(&[Opt::string("notes", "notes", "Notes")]),
    Resource::new("host", "hosts", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Access_ip",
            "Manager_URI",
            "Status",
            "Host_status",
            "Enabled",
            "Is_maintenance",
            "Host_type",
            "Cpu_count",
            "Mem_size",
            "Storage_size",
            "Zone",
            "Guests",
            "Running_guests",
            "Cpu_commit",
            "Mem_commit",
            "Cpu_commit_rate",
            "Mem_commit_rate",
            "Storage",
            "Storage_free",
            "Version",
        ])
        .list_details(true)
        .list(&[
            ZONE_FILTER,
            Opt::string("wire", "wire", "Filter by attached wire (id or name)"),
            Opt::string(
                "storage",
                "storage",
                "Filter by attached storage (id or name)",
            ),
            Opt::string("schedtag", "schedtag", "Filter by schedtag (id or name)"),
            Opt::choice(
                "host-status",
                "host_status",
                &["online", "offline"],
                "Filter by agent status",
            ),
            Opt::string("host-type", "host_type", "Filter by host type"),
        ])
        .create(&[
            Opt::pos("NAME", "name", "Name of the host"),
            Opt::string("zone", "zone", "Zone (id or name)").required(),
            Opt::string("access-ip", "access_ip", "Management address"),
            Opt::string("access-mac", "access_mac", "Management MAC"),
            Opt::string("manager-uri", "manager_uri", "URL of the host agent"),
            Opt::int("cpu", "cpu_count", "CPU count"),
            Opt::int("mem", "mem_size", "Memory in MB"),
            Opt::int("storage", "storage_size", "Storage in MB"),
            Opt::string("host-type", "host_type", "Host type (hypervisor…)"),
            DESC,
        ])
        .update(&[
            NEW_NAME,
            DESC,
            Opt::string("cpu-cmtbound", "cpu_cmtbound", "CPU overcommit bound (> 0)"),
            Opt::string(
                "mem-cmtbound",
                "mem_cmtbound",
                "Memory overcommit bound (> 0)",
            ),
            Opt::int("cpu-reserved", "cpu_reserved", "CPUs kept for the host"),
            Opt::int(
                "mem-reserved",
                "mem_reserved",
                "Memory (MB) kept for the host",
            ),
            Opt::string("manager-uri", "manager_uri", "URL of the host agent"),
            Opt::string("sn", "sn", "Serial number"),
        ])
        .actions(&[
            ENABLE,
            DISABLE,
            Action::new("ping", "ping", "Send a heartbeat for the host", &[]),
            Action::new("online", "online", "Mark the host online", &[]),
            Action::new(
                "offline",
                "offline",
                "Mark the host offline",
                &[Opt::string("reason", "reason", "Why")],
            ),
            Action::new(
                "maintenance",
                "host-maintenance",
                "Put the host in maintenance",
                &[],
            ),
            Action::new(
                "exit-maintenance",
                "host-exit-maintenance",
                "Take the host out of maintenance",
                &[],
            ),
        ]),
    Resource::new("storage", "storages", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Capacity",
            "Actual_capacity_used",
            "Status",
            "Used_capacity",
            "Free_capacity",
            "Storage_type",
            "Medium_type",
            "Virtual_capacity",
            "Commit_bound",
            "Commit_rate",
            "Enabled",
            "Zone",
            "Public_scope",
        ])
        .list_details(true)
        .list(&[
            ZONE_FILTER,
            Opt::string("host", "host", "Filter by attached host (id or name)"),
            Opt::choice(
                "storage-type",
                "storage_type",
                STORAGE_TYPES,
                "Filter by type",
            ),
        ])
        .create(&[
            Opt::pos("NAME", "name", "Name of the storage"),
            Opt::string("zone", "zone", "Zone (id or name)").required(),
            Opt::int("capacity", "capacity", "Capacity in MB"),
            Opt::choice("storage-type", "storage_type", STORAGE_TYPES, "Type"),
            Opt::choice("medium-type", "medium_type", MEDIUM_TYPES, "Medium"),
            Opt::int("reserved", "reserved", "Reserved MB"),
            Opt::string("cmtbound", "cmtbound", "Overcommit bound (> 0)"),
            DESC,
        ])
        .update(&[
            NEW_NAME,
            DESC,
            Opt::int("capacity", "capacity", "Capacity in MB"),
            Opt::int("reserved", "reserved", "Reserved MB"),
            Opt::string("cmtbound", "cmtbound", "Overcommit bound (> 0)"),
            Opt::choice("medium-type", "medium_type", MEDIUM_TYPES, "Medium"),
        ])
        .actions(&[
            ENABLE,
            DISABLE,
            Action::new("online", "online", "Mark the storage online", &[]),
            Action::new("offline", "offline", "Mark the storage offline", &[]),
        ]),
    // Host image caches, reported by the agents.
    Resource::new("storagecache", "storagecaches", COMPUTE)
        .columns(&["ID", "Name", "Path", "Master_host", "Status"])
        .ops(Ops::LIST.with(Ops::SHOW)),
    Resource::new("storagecachedimage", "storagecachedimages", COMPUTE)
        .columns(&[
            "Storagecache",
            "Cachedimage",
            "Cachedimage_id",
            "Status",
            "Path",
            "Last_download",
        ])
        .list_details(true)
        .ops(Ops::LIST),
    Resource::new("schedtag", "schedtags", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Default_strategy",
            "Resource_type",
            "Host_count",
            "Domain_id",
        ])
        .list_details(true)
        .create(&[
            Opt::pos("NAME", "name", "Name of the schedtag"),
            Opt::choice(
                "strategy",
                "default_strategy",
                STRATEGIES,
                "Default scheduling strategy",
            ),
            Opt::choice(
                "resource-type",
                "resource_type",
                &["hosts", "storages", "networks"],
                "What it tags (default hosts)",
            ),
            DESC,
        ])
        .update(&[
            NEW_NAME,
            DESC,
            Opt::choice(
                "strategy",
                "default_strategy",
                STRATEGIES,
                "Default scheduling strategy",
            ),
        ]),
    Resource::new("serversku", "serverskus", COMPUTE)
        .prefix_as("server-sku")
        .columns(&[
            "ID",
            "Name",
            "Instance_type_family",
            "Instance_type_category",
            "Cpu_core_count",
            "Memory_size_mb",
            "Cloudregion",
            "Zone",
            "Provider",
            "Status",
            "Enabled",
        ])
        .list_details(true)
        .list(&[
            REGION_FILTER,
            ZONE_FILTER,
            Opt::int("cpu-core-count", "cpu_core_count", "Filter by CPU count"),
            Opt::int("memory-size-mb", "memory_size_mb", "Filter by memory (MB)"),
        ])
        .create(&[
            Opt::pos("NAME", "name", "Name of the SKU (e.g. ecs.g1.c2m4)"),
            Opt::int("cpu-core-count", "cpu_core_count", "vCPUs").required(),
            Opt::int("memory-size-mb", "memory_size_mb", "Memory in MB").required(),
            Opt::string(
                "instance-type-family",
                "instance_type_family",
                "Family (g1, c1…)",
            ),
            Opt::string(
                "instance-type-category",
                "instance_type_category",
                "Category (general_purpose…)",
            ),
            Opt::string(
                "region",
                "cloudregion",
                "Cloud region (default: the local one)",
            ),
            Opt::string("zone", "zone", "Zone"),
            DESC,
        ])
        .update(&[
            NEW_NAME,
            DESC,
            Opt::string(
                "instance-type-family",
                "instance_type_family",
                "Family (g1, c1…)",
            ),
            Opt::string(
                "instance-type-category",
                "instance_type_category",
                "Category",
            ),
        ])
        .actions(&[ENABLE, DISABLE]),
];

fn value_of(m: &ArgMatches, name: &str) -> Option<String> {
    m.try_get_one::<String>(name).ok().flatten().cloned()
}

fn network_create_args() -> Vec<Arg> {
    let mut args = vec![
        Arg::new("ARGS")
            .value_name("NAME | WIRE NAME START END MASK")
            .help("The network's name; or Cloudpods' positional form WIRE NAME START END MASK")
            .required(true)
            .num_args(1..=5)
            .action(ArgAction::Append),
    ];
    args.extend(args_of(NETWORK_CREATE_OPTS));
    args
}

async fn network_create(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let pos: Vec<String> = m
        .get_many::<String>("ARGS")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let mut body = Map::new();
    collect(ctx, NETWORK_CREATE_OPTS, m, &mut body).await?;
    match pos.as_slice() {
        [name] => {
            body.insert("name".into(), Value::String(name.clone()));
        }
        [wire, name, start, end, mask] => {
            let mask: i64 = mask
                .parse()
                .map_err(|_| anyhow::anyhow!("MASK must be a number, got {mask:?}"))?;
            for (k, v) in [
                ("wire", Value::String(wire.clone())),
                ("name", Value::String(name.clone())),
                ("guest_ip_start", Value::String(start.clone())),
                ("guest_ip_end", Value::String(end.clone())),
                ("guest_ip_mask", Value::from(mask)),
            ] {
                body.insert(k.into(), v);
            }
        }
        _ => anyhow::bail!(
            "give NAME (with --wire and the range options) or WIRE NAME START END MASK"
        ),
    }
    let mgr = ctx.client().await?.resource(COMPUTE, "network", "networks");
    let obj = mgr.create(body, None).await?.into_objects();
    for o in obj {
        print_object(ctx, &o);
    }
    Ok(())
}

/// `GET {path}` of a joint list, printed with `columns`.
async fn joint_list(
    ctx: &Ctx,
    m: &ArgMatches,
    path: &str,
    params: &Map<String, Value>,
    plural: &str,
    columns: &[&str],
) -> anyhow::Result<()> {
    let resp = ctx
        .client()
        .await?
        .raw(
            Method::GET,
            COMPUTE,
            path,
            Some(params),
            None,
            HeaderMap::new(),
        )
        .await?;
    let list = ListResult::from_body(&resp.body, plural).map_err(|e| anyhow::anyhow!(e))?;
    print_list(ctx, &list, plural, columns, m);
    Ok(())
}

fn seg(s: &str) -> String {
    cloudpods_sdk::endpoint::encode_segment(s)
}

/// `host-storage-list` / `host-wire-list`: the joint rows of a host, of
/// the other side, of both, or all of them.
async fn host_joint_list(
    ctx: &Ctx,
    m: &ArgMatches,
    slave: &str,
    joint: &str,
    columns: &[&str],
) -> anyhow::Result<()> {
    let keyword = slave.trim_end_matches('s');
    let mut params = list_params(m);
    let path = match (value_of(m, "host"), value_of(m, keyword)) {
        (Some(h), Some(o)) => {
            let id = ctx
                .client()
                .await?
                .resource(COMPUTE, keyword, slave)
                .get_id(&o, &Map::new())
                .await?;
            params.insert(format!("{keyword}_id"), Value::String(id));
            format!("/hosts/{}/{slave}", seg(&h))
        }
        (Some(h), None) => format!("/hosts/{}/{slave}", seg(&h)),
        (None, Some(o)) => format!("/{slave}/{}/hosts", seg(&o)),
        (None, None) => format!("/{joint}"),
    };
    joint_list(ctx, m, &path, &params, joint, columns).await
}

const HOSTSTORAGE_COLUMNS: &[&str] = &[
    "Host_ID",
    "Host",
    "Storage_ID",
    "Storage",
    "Mount_point",
    "Real_capacity",
];
const HOSTWIRE_COLUMNS: &[&str] = &[
    "Host_ID",
    "Host",
    "Wire_ID",
    "Wire",
    "Bridge",
    "Interface",
    "Mac_addr",
];

fn host_joint_args(other: &'static str, help: &'static str) -> Vec<Arg> {
    vec![
        Arg::new("host")
            .long("host")
            .value_name("HOST")
            .help("Host (id or name)"),
        Arg::new(other).long(other).value_name("ID").help(help),
    ]
}

fn tag_host_args() -> Vec<Arg> {
    vec![
        Arg::new("SCHEDTAG")
            .value_name("SCHEDTAG")
            .help("Schedtag (id or name)")
            .required(true),
        Arg::new("HOST")
            .value_name("HOST")
            .help("Host (id or name)")
            .required(true),
    ]
}

async fn schedtag_host(ctx: &Ctx, m: &ArgMatches, add: bool) -> anyhow::Result<()> {
    let tag = value_of(m, "SCHEDTAG").unwrap_or_default();
    let host = value_of(m, "HOST").unwrap_or_default();
    let path = format!("/schedtags/{}/hosts/{}", seg(&tag), seg(&host));
    let (method, body) = if add {
        (Method::POST, Some(serde_json::json!({"hostschedtag": {}})))
    } else {
        (Method::DELETE, None)
    };
    let resp = ctx
        .client()
        .await?
        .raw(method, COMPUTE, &path, None, body, HeaderMap::new())
        .await?;
    let obj = resp.body.get("hostschedtag").cloned().unwrap_or(resp.body);
    print_object(ctx, &obj);
    Ok(())
}

fn id_arg(name: &'static str, help: &'static str) -> Vec<Arg> {
    vec![Arg::new(name).value_name(name).help(help).required(true)]
}

async fn spec_of(
    ctx: &Ctx,
    m: &ArgMatches,
    arg: &str,
    plural: &str,
    keyword: &str,
    spec: &str,
) -> anyhow::Result<Value> {
    let id = value_of(m, arg).unwrap_or_default();
    let resp = ctx
        .client()
        .await?
        .raw(
            Method::GET,
            COMPUTE,
            &format!("/{plural}/{}/{spec}", seg(&id)),
            None,
            None,
            HeaderMap::new(),
        )
        .await?;
    Ok(resp.body.get(keyword).cloned().unwrap_or(resp.body))
}

async fn network_addresses(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let v = spec_of(ctx, m, "NETWORK", "networks", "network", "addresses").await?;
    let list = ListResult {
        items: v
            .get("addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        ..Default::default()
    };
    print_list(
        ctx,
        &list,
        "addresses",
        &["Ip_addr", "Owner_type", "Owner_id", "Mac_addr", "Notes"],
        m,
    );
    Ok(())
}

/// Hand-written infrastructure commands.
pub static COMMANDS: &[CustomCmd] = &[
    CustomCmd {
        name: "network-create",
        about: "Create a network (an IP subnet on a wire)",
        args: network_create_args,
        list_flags: false,
        run: |ctx, m| network_create(ctx, m).boxed(),
    },
    CustomCmd {
        name: "network-addresses",
        about: "Show which addresses of a network are held, and by what",
        args: || id_arg("NETWORK", "Network (id or name)"),
        list_flags: false,
        run: |ctx, m| network_addresses(ctx, m).boxed(),
    },
    CustomCmd {
        name: "host-storage-list",
        about: "List host-storage attachments",
        args: || host_joint_args("storage", "Storage (id or name)"),
        list_flags: true,
        run: |ctx, m| {
            host_joint_list(ctx, m, "storages", "hoststorages", HOSTSTORAGE_COLUMNS).boxed()
        },
    },
    CustomCmd {
        name: "host-wire-list",
        about: "List host-wire attachments",
        args: || host_joint_args("wire", "Wire (id or name)"),
        list_flags: true,
        run: |ctx, m| host_joint_list(ctx, m, "wires", "hostwires", HOSTWIRE_COLUMNS).boxed(),
    },
    CustomCmd {
        name: "host-spec",
        about: "Show the hardware spec of a host",
        args: || id_arg("ID", "Host (id or name)"),
        list_flags: false,
        run: |ctx, m| {
            async move {
                let v = spec_of(ctx, m, "ID", "hosts", "host", "spec").await?;
                print_object(ctx, &v);
                Ok(())
            }
            .boxed()
        },
    },
    CustomCmd {
        name: "schedtag-host-add",
        about: "Tag a host with a schedtag",
        args: tag_host_args,
        list_flags: false,
        run: |ctx, m| schedtag_host(ctx, m, true).boxed(),
    },
    CustomCmd {
        name: "schedtag-host-remove",
        about: "Remove a schedtag from a host",
        args: tag_host_args,
        list_flags: false,
        run: |ctx, m| schedtag_host(ctx, m, false).boxed(),
    },
];

#[cfg(test)]
mod tests {
    use crate::commands::build_cli;

    fn parse(args: &[&str]) -> Result<clap::ArgMatches, clap::Error> {
        let mut full = vec!["climc"];
        full.extend_from_slice(args);
        build_cli().try_get_matches_from(full)
    }

    #[test]
    fn network_create_takes_both_forms() {
        assert!(
            parse(&[
                "network-create",
                "net1",
                "--wire",
                "w",
                "--ip-start",
                "10.0.0.2",
                "--ip-end",
                "10.0.0.9",
                "--mask",
                "24"
            ])
            .is_ok()
        );
        assert!(parse(&["network-create", "w", "net1", "10.0.0.2", "10.0.0.9", "24"]).is_ok());
        assert!(parse(&["network-create", "a", "b", "c", "d", "e", "f"]).is_err());
        assert!(parse(&["network-create", "n", "--alloc-policy", "sideways"]).is_err());
    }

    #[test]
    fn infra_commands_exist() {
        for cmd in [
            "cloudregion-list",
            "zone-create",
            "vpc-delete",
            "wire-update",
            "network-list",
            "network-reserve-ip",
            "reservedip-create",
            "host-list",
            "host-enable",
            "host-disable",
            "host-ping",
            "host-maintenance",
            "storage-create",
            "host-storage-list",
            "host-wire-list",
            "schedtag-host-add",
            "schedtag-host-remove",
            "server-sku-create",
            "server-sku-list",
        ] {
            assert!(
                crate::commands::registry().iter().any(|e| e.name == cmd),
                "{cmd}"
            );
        }
    }
}
