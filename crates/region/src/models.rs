//! Region tables, named as Cloudpods names them (`guests_tbl`, `hosts_tbl`…)
//! so the vocabulary carries over.

use std::sync::LazyLock;

use cloudpods_db::{Column, IdStyle, ModelDesc, Owner};
use cloudpods_rbac::Scope;

fn infra(keyword: &'static str, plural: &'static str, table: &'static str) -> ModelDesc {
    ModelDesc::new(keyword, plural, table)
        .service("compute")
        .owner(Owner::Domain)
        // Infrastructure rows belong to a domain and may be shared, but only
        // the system admin manages them (Cloudpods: hosts, zones, wires,
        // storages, schedtags, cloud regions, SKUs).
        .managed_at(Scope::System)
        .standalone()
        .sharable()
        .unique_name()
}

fn virt(keyword: &'static str, plural: &'static str, table: &'static str) -> ModelDesc {
    ModelDesc::new(keyword, plural, table)
        .service("compute")
        .owner(Owner::Project)
        .standalone()
        .unique_name()
}

fn joint(keyword: &'static str, plural: &'static str, table: &'static str) -> ModelDesc {
    ModelDesc::new(keyword, plural, table)
        .service("compute")
        .ids(IdStyle::Auto)
        .hard_delete()
}

pub static CLOUDREGIONS: LazyLock<ModelDesc> = LazyLock::new(|| {
    infra("cloudregion", "cloudregions", "cloudregions_tbl")
        .ids(IdStyle::Given)
        .status("inservice")
        .enabled(true)
        .external()
        .col(Column::str("provider", 64).default("OneCloud").list())
        .col(Column::str("environment", 32).create())
        .col(Column::float("latitude").update())
        .col(Column::float("longitude").update())
        .col(Column::str("city", 64).update())
        .build()
});

pub static ZONES: LazyLock<ModelDesc> = LazyLock::new(|| {
    infra("zone", "zones", "zones_tbl")
        .status("enable")
        .external()
        .col(Column::str("cloudregion_id", 128).create().list().indexed())
        .col(Column::str("location", 256).update())
        .col(Column::str("contacts", 256).update())
        .col(Column::str("name_cn", 256).update())
        .col(Column::str("manager_uri", 256).update())
        .extra_create(&["cloudregion"])
        .build()
});

pub static VPCS: LazyLock<ModelDesc> = LazyLock::new(|| {
    infra("vpc", "vpcs", "vpcs_tbl")
        .status("available")
        .enabled(true)
        .external()
        .col(Column::str("cloudregion_id", 128).create().list().indexed())
        .col(Column::str("cidr_block", 256).create())
        .col(Column::bool("is_default").default(false).list())
        .col(
            Column::str("external_access_mode", 32)
                .default("eip")
                .create(),
        )
        .extra_create(&["cloudregion"])
        .build()
});

pub static WIRES: LazyLock<ModelDesc> = LazyLock::new(|| {
    infra("wire", "wires", "wires_tbl")
        .status("available")
        .external()
        .col(Column::str("vpc_id", 128).create().list().indexed())
        .col(Column::str("zone_id", 128).create().list().indexed())
        .col(Column::int("bandwidth").default(1000).update())
        .col(Column::int("mtu").default(1500).update())
        .col(Column::int("schedule_rank").default(0).update())
        .extra_create(&["vpc", "zone"])
        .build()
});

pub static NETWORKS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("network", "networks", "networks_tbl")
        .service("compute")
        .owner(Owner::Project)
        .standalone()
        .unique_name()
        .sharable()
        .status("available")
        .external()
        .col(Column::str("wire_id", 128).create().list().indexed())
        .col(Column::str("guest_ip_start", 16).required().update())
        .col(Column::str("guest_ip_end", 16).required().update())
        .col(Column::int("guest_ip_mask").required().update())
        .col(Column::str("guest_gateway", 16).update())
        .col(Column::str("guest_dns", 256).update())
        .col(Column::str("guest_domain", 128).update())
        .col(Column::str("guest_dhcp", 256).update())
        .col(Column::str("guest_ntp", 256).update())
        .col(Column::int("vlan_id").default(1).create())
        .col(
            Column::str("server_type", 16)
                .default("guest")
                .create()
                .list(),
        )
        .col(Column::str("alloc_policy", 16).default("none").update())
        .col(Column::bool("is_auto_alloc").default(true).update())
        .col(Column::str("bgp_type", 64).create())
        // The address allocation lock: a lease held by one region process
        // while it changes who holds the network's addresses (ipam.rs).
        .col(Column::str("alloc_lock_owner", 64).secret())
        .col(Column::time("alloc_lock_until").secret())
        .extra_create(&["wire", "vpc", "zone", "ip_prefix", "guest_ip_prefix"])
        .build()
});

pub static RESERVEDIPS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("reservedip", "reservedips", "reservedips_tbl")
        .service("compute")
        .hard_delete()
        .col(Column::str("network_id", 128).required().list().indexed())
        .col(Column::str("ip_addr", 16).required().list())
        .col(Column::str("notes", 512).update())
        .col(Column::time("expired_at").update())
        .col(Column::str("status", 36).default("available"))
        .unique(&["network_id", "ip_addr"])
        .extra_create(&["network"])
        .build()
});

pub static HOSTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    infra("host", "hosts", "hosts_tbl")
        // Agent addresses and host facts are not for project members.
        .read_at(Scope::Domain)
        .status("init")
        .enabled(true)
        .external()
        .col(Column::str("zone_id", 128).create().list().indexed())
        .col(
            Column::str("host_type", 36)
                .default("hypervisor")
                .create()
                .list(),
        )
        .col(Column::str("host_status", 36).default("offline").list())
        .col(Column::str("access_ip", 16).update().list())
        .col(Column::str("access_mac", 32).update().list())
        .col(Column::str("manager_uri", 256).update())
        // The key the region signs agent requests with (registered by the
        // agent; docs/AGENT_PROTOCOL.md "Authentication"). Never answered.
        .col(Column::str("agent_secret", 128).update().admin().secret())
        .col(Column::int("cpu_count").update())
        .col(Column::int("node_count").default(1).update())
        .col(Column::str("cpu_desc", 128).update())
        .col(Column::int("cpu_mhz").update())
        .col(Column::int("cpu_reserved").default(0).update())
        .col(Column::float("cpu_cmtbound").default(8.0).update())
        .col(Column::int("mem_size").update())
        .col(Column::int("mem_reserved").default(0).update())
        .col(Column::float("mem_cmtbound").default(1.0).update())
        .col(Column::bigint("storage_size").update())
        .col(Column::json("sys_info").update())
        .col(Column::str("sn", 128).update())
        .col(
            Column::bool("is_maintenance")
                .default(false)
                .update()
                .list(),
        )
        .col(Column::time("last_ping_at"))
        .col(Column::str("version", 128).update())
        .col(Column::str("cpu_architecture", 16).default("x86").update())
        .col(Column::str("ovn_version", 64))
        .extra_create(&["zone"])
        .build()
});

pub static STORAGES: LazyLock<ModelDesc> = LazyLock::new(|| {
    infra("storage", "storages", "storages_tbl")
        .status("online")
        .enabled(true)
        .external()
        .col(Column::str("zone_id", 128).create().list().indexed())
        .col(Column::bigint("capacity").update())
        .col(Column::bigint("actual_capacity_used").default(0).update())
        .col(Column::bigint("reserved").default(0).update())
        .col(
            Column::str("storage_type", 32)
                .default("local")
                .create()
                .list(),
        )
        .col(
            Column::str("medium_type", 32)
                .default("ssd")
                .update()
                .list(),
        )
        .col(Column::float("cmtbound").default(1.0).update())
        .col(Column::json("storage_conf").update())
        .col(Column::str("storagecache_id", 128).update())
        .col(Column::str("master_host", 128).update())
        .col(Column::bool("is_sys_disk_store").default(true).update())
        .extra_create(&["zone"])
        .build()
});

pub static HOSTSTORAGES: LazyLock<ModelDesc> = LazyLock::new(|| {
    joint("hoststorage", "hoststorages", "hoststorages_tbl")
        .col(Column::str("host_id", 128).list().indexed())
        .col(Column::str("storage_id", 128).list().indexed())
        .col(Column::str("mount_point", 256).update())
        .col(Column::str("config", 256).update())
        .col(Column::bigint("real_capacity").update())
        .unique(&["host_id", "storage_id"])
        .build()
});

/// Where a host keeps the images its disks are based on (Cloudpods
/// `storagecaches`): one per host with local storage, reported by its agent.
pub static STORAGECACHES: LazyLock<ModelDesc> = LazyLock::new(|| {
    infra("storagecache", "storagecaches", "storagecaches_tbl")
        .status("active")
        .col(Column::str("path", 512).list())
        .col(Column::str("master_host", 128).list().indexed())
        .unique(&["master_host"])
        .build()
});

/// Which images a storage cache holds (Cloudpods `storagecachedimages`):
/// status `active` once the agent has downloaded and verified the image.
pub static STORAGECACHEDIMAGES: LazyLock<ModelDesc> = LazyLock::new(|| {
    joint(
        "storagecachedimage",
        "storagecachedimages",
        "storagecachedimages_tbl",
    )
    .col(Column::str("storagecache_id", 128).list().indexed())
    .col(Column::str("cachedimage_id", 128).list().indexed())
    .col(Column::str("status", 36).default("active").list())
    .col(Column::str("path", 512).list())
    .col(Column::time("last_download").list())
    .col(Column::bigint("download_refcnt").default(0))
    .unique(&["storagecache_id", "cachedimage_id"])
    .build()
});

/// A host's attachment to a layer-2 wire (Cloudpods `hostwires`): which
/// bridge and interface carry the wire's guest traffic on that host.
pub static HOSTWIRES: LazyLock<ModelDesc> = LazyLock::new(|| {
    joint("hostwire", "hostwires", "hostwires_tbl")
        .col(Column::str("host_id", 128).list().indexed())
        .col(Column::str("wire_id", 128).list().indexed())
        .col(Column::str("bridge", 64).update())
        .col(Column::str("interface", 64).update())
        .col(Column::str("mac_addr", 32).update())
        .unique(&["host_id", "wire_id"])
        .build()
});

/// A host's own addresses on networks (management, PXE…).
pub static HOSTNETWORKS: LazyLock<ModelDesc> = LazyLock::new(|| {
    joint("hostnetwork", "hostnetworks", "hostnetworks_tbl")
        .col(Column::str("host_id", 128).list().indexed())
        .col(Column::str("network_id", 128).list().indexed())
        .col(Column::str("ip_addr", 16).list())
        .col(Column::str("mac_addr", 32).update())
        .unique(&["network_id", "ip_addr"])
        .build()
});

pub static SCHEDTAGS: LazyLock<ModelDesc> = LazyLock::new(|| {
    infra("schedtag", "schedtags", "aggregates_tbl")
        .col(Column::str("default_strategy", 16).default("").update())
        .col(
            Column::str("resource_type", 16)
                .default("hosts")
                .create()
                .list(),
        )
        .build()
});

pub static HOSTSCHEDTAGS: LazyLock<ModelDesc> = LazyLock::new(|| {
    joint("hostschedtag", "hostschedtags", "aggregate_hosts_tbl")
        .col(Column::str("host_id", 128).list().indexed())
        .col(Column::str("schedtag_id", 128).list().indexed())
        .unique(&["host_id", "schedtag_id"])
        .build()
});

pub static SERVERSKUS: LazyLock<ModelDesc> = LazyLock::new(|| {
    infra("serversku", "serverskus", "serverskus_tbl")
        .status("ready")
        .enabled(true)
        .external()
        .col(Column::str("instance_type_family", 32).update().list())
        .col(Column::str("instance_type_category", 32).update().list())
        .col(Column::int("cpu_core_count").required().list())
        .col(Column::int("memory_size_mb").required().list())
        .col(Column::str("cloudregion_id", 128).create().list())
        .col(Column::str("zone_id", 128).create().list())
        .col(Column::str("provider", 64).default("OneCloud").list())
        .col(Column::str("os_name", 32).default("Any").update())
        .col(Column::int("sys_disk_max_size_gb").default(0).update())
        .col(Column::int("data_disk_max_count").default(0).update())
        .col(Column::int("nic_max_count").default(0).update())
        .col(
            Column::str("postpaid_status", 16)
                .default("available")
                .update(),
        )
        .col(
            Column::str("prepaid_status", 16)
                .default("available")
                .update(),
        )
        .extra_create(&["cloudregion", "zone"])
        .build()
});

pub static GUESTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    virt("server", "servers", "guests_tbl")
        .status("init")
        .pending_delete()
        .external()
        .col(Column::int("vcpu_count").default(1).list())
        .col(Column::int("cpu_sockets").default(1))
        .col(Column::int("vmem_size").default(1024).list())
        .col(Column::str("hypervisor", 16).default("kvm").create().list())
        .col(Column::str("host_id", 128).list().indexed())
        .col(Column::str("backup_host_id", 128))
        .col(Column::str("os_type", 36).update().list())
        .col(Column::str("os_arch", 16).create())
        .col(Column::str("bios", 16).default("BIOS").create())
        .col(Column::str("machine", 16).create())
        .col(Column::str("vga", 36).default("std").update())
        .col(Column::str("vdi", 36).default("vnc").update())
        .col(Column::str("boot_order", 8).default("cdn").update())
        .col(
            Column::str("shutdown_behavior", 16)
                .default("stop")
                .update(),
        )
        .col(Column::str("keypair_id", 128).list())
        .col(Column::str("secgrp_id", 128).list())
        .col(Column::str("admin_secgrp_id", 128))
        .col(Column::bool("src_ip_check").default(true).update())
        .col(Column::bool("src_mac_check").default(true).update())
        .col(Column::str("flavor_id", 128))
        .col(Column::str("instance_type", 64).list())
        .col(Column::str("power_states", 16).default("off"))
        .col(Column::str("health_status", 16))
        .col(Column::str("billing_type", 16).default("postpaid"))
        .col(Column::bool("disable_delete").default(false).update())
        .col(Column::str("hostname", 64).update())
        .col(Column::time("last_start_at"))
        .col(Column::bool("rescue_mode").default(false))
        .col(Column::text("fail_reason"))
        .col(Column::json("create_params").secret())
        // Password / key of a deploy in flight (set-password, rebuild-root):
        // kept out of the task parameters, which the task API shows.
        .col(Column::json("deploy_params").secret())
        // Storage (MB) and NICs a guest will create, counted in quota usage
        // until its disks and NICs exist.
        .col(Column::int("pending_storage").default(0))
        .col(Column::int("pending_ports").default(0))
        .extra_create(&[
            "disks",
            "nets",
            "keypair",
            "keypair_id",
            "password",
            "reset_password",
            "login_account",
            "user_data",
            "deploy_configs",
            "enable_cloud_init",
            "auto_start",
            "prefer_region",
            "prefer_region_id",
            "prefer_zone",
            "prefer_zone_id",
            "prefer_wire",
            "prefer_wire_id",
            "prefer_host",
            "prefer_host_id",
            "prefer_manager",
            "prefer_manager_id",
            "provider",
            "resource_type",
            "schedtags",
            "secgroups",
            "secgroup",
            "sku",
            "instance_type",
            "image_id",
            "guest_image_id",
            "cdrom",
            "isolated_devices",
            "eip",
            "eip_bw",
            "public_ip_bw",
            "duration",
            "auto_renew",
            "baremetal_disk_configs",
            "vcpu_count",
            "vmem_size",
            "cpu_sockets",
            "backup",
            "count",
            "__count__",
            "os_type",
        ])
        .build()
});

pub static DISKS: LazyLock<ModelDesc> = LazyLock::new(|| {
    virt("disk", "disks", "disks_tbl")
        .status("init")
        .pending_delete()
        .external()
        .col(Column::str("storage_id", 128).list().indexed())
        .col(Column::str("disk_format", 16).default("qcow2").create())
        .col(Column::int("disk_size").list())
        .col(Column::str("access_path", 256))
        .col(Column::str("template_id", 128).list())
        .col(Column::str("snapshot_id", 128).list())
        .col(Column::str("fs_format", 16).create())
        .col(Column::str("disk_type", 16).default("data").list())
        .col(Column::str("preallocation", 16).default("off").create())
        .col(Column::bool("auto_reset").default(false).update())
        .col(Column::int("iops").default(0).update())
        .col(Column::int("throughput").default(0).update())
        .col(Column::str("medium_type", 16).default("ssd").create())
        .col(Column::text("fail_reason"))
        // Target size (MB) of a resize in progress: quota usage counts the
        // larger of it and `disk_size` until the resize ends.
        .col(Column::int("pending_size").default(0))
        .extra_create(&[
            "size",
            "storage",
            "backend",
            "storage_type",
            "image_id",
            "medium",
            "host",
            "prefer_host",
            "prefer_host_id",
            "zone",
            "prefer_zone",
            "prefer_zone_id",
            "snapshot",
            "format",
        ])
        .build()
});

pub static GUESTDISKS: LazyLock<ModelDesc> = LazyLock::new(|| {
    joint("guestdisk", "guestdisks", "guestdisks_tbl")
        .col(Column::str("guest_id", 128).list().indexed())
        .col(Column::str("disk_id", 128).list().indexed())
        .col(Column::int("index").default(0))
        .col(Column::int("boot_index").default(-1).update())
        .col(Column::str("driver", 16).default("virtio").update())
        .col(Column::str("cache_mode", 16).default("none").update())
        .col(Column::str("aio_mode", 16).default("native").update())
        .col(Column::int("iops").default(0).update())
        .col(Column::int("bps").default(0).update())
        .col(Column::str("mountpoint", 256))
        .unique(&["disk_id"])
        .build()
});

pub static GUESTNETWORKS: LazyLock<ModelDesc> = LazyLock::new(|| {
    joint("guestnetwork", "guestnetworks", "guestnetworks_tbl")
        .col(Column::str("guest_id", 128).list().indexed())
        .col(Column::str("network_id", 128).list().indexed())
        .col(Column::str("mac_addr", 32).list())
        .col(Column::str("ip_addr", 16).list())
        .col(Column::str("ip6_addr", 64))
        .col(Column::str("driver", 16).default("virtio").update())
        .col(Column::int("num_queues").default(1).update())
        .col(Column::int("bw_limit").default(0).update())
        .col(Column::str("ifname", 16))
        .col(Column::int("index").default(0))
        .col(Column::bool("virtual").default(false))
        .col(Column::str("eip_id", 128))
        .col(Column::bool("is_default").default(false))
        .unique(&["network_id", "ip_addr"])
        .unique(&["mac_addr"])
        .build()
});

pub static SNAPSHOTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    virt("snapshot", "snapshots", "snapshots_tbl")
        .status("creating")
        .external()
        .col(Column::str("disk_id", 128).required().list().indexed())
        .col(Column::str("storage_id", 128).list())
        .col(Column::str("created_by", 36).default("manual"))
        .col(Column::str("location", 256))
        .col(Column::int("size").default(0))
        .col(Column::int("virtual_size").default(0))
        .col(Column::bool("out_of_chain").default(false))
        .col(Column::str("disk_type", 16))
        .col(Column::str("os_type", 36))
        .col(Column::int("ref_count").default(0))
        .col(Column::text("fail_reason"))
        .extra_create(&["disk"])
        .build()
});

pub static KEYPAIRS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("keypair", "keypairs", "keypairs_tbl")
        .service("compute")
        .owner(Owner::User)
        .standalone()
        .unique_name()
        .col(Column::str("scheme", 16).default("ED25519").create())
        .col(Column::str("fingerprint", 128).list())
        .col(Column::text("public_key").create())
        .col(Column::text("private_key").secret())
        .col(Column::bool("private_key_fetched").default(false))
        .build()
});

pub static SECGROUPS: LazyLock<ModelDesc> = LazyLock::new(|| {
    virt("secgroup", "secgroups", "secgroups_tbl")
        .status("ready")
        .sharable()
        .external()
        .col(Column::str("vpc_id", 128).create().list())
        .col(Column::str("cloudregion_id", 128).create().list())
        .col(Column::bool("is_dirty").default(false))
        .extra_create(&["rules"])
        .build()
});

pub static SECGROUPRULES: LazyLock<ModelDesc> = LazyLock::new(|| {
    // Rules belong to their group's project, so that they are visible
    // (and changeable) exactly where the group is.
    ModelDesc::new("secgrouprule", "secgrouprules", "secgrouprules_tbl")
        .service("compute")
        .owner(Owner::Project)
        .col(Column::str("secgroup_id", 128).required().list().indexed())
        .col(Column::int("priority").default(50).update())
        .col(Column::str("protocol", 16).default("any").update().list())
        .col(Column::str("ports", 256).update())
        .col(Column::str("direction", 8).required().list())
        .col(Column::str("cidr", 64).update())
        .col(Column::str("action", 8).default("allow").update().list())
        .col(Column::str("description", 256).update())
        .extra_create(&["secgroup"])
        .build()
});

pub static GUESTSECGROUPS: LazyLock<ModelDesc> = LazyLock::new(|| {
    joint("guestsecgroup", "guestsecgroups", "guestsecgroups_tbl")
        .col(Column::str("guest_id", 128).list().indexed())
        .col(Column::str("secgroup_id", 128).list().indexed())
        .unique(&["guest_id", "secgroup_id"])
        .build()
});

pub static EIPS: LazyLock<ModelDesc> = LazyLock::new(|| {
    virt("eip", "eips", "elasticips_tbl")
        .status("init")
        .external()
        .col(Column::str("network_id", 128).list().indexed())
        .col(Column::str("mode", 16).default("elastic_ip").list())
        .col(Column::str("ip_addr", 16).list())
        .col(Column::str("associate_type", 32).list())
        .col(Column::str("associate_id", 128).list())
        .col(Column::int("bandwidth").default(0).update())
        .col(Column::str("bgp_type", 64).create())
        .col(Column::str("charge_type", 16).default("traffic").create())
        .col(Column::bool("auto_dellocate").default(false).update())
        .col(Column::str("cloudregion_id", 128).list())
        // An address has one live holder; released EIPs clear `ip_addr`.
        .unique(&["network_id", "ip_addr"])
        .extra_create(&["network", "network_id", "ip", "ip_addr", "cloudregion"])
        .build()
});

/// Quota limits per project or domain; usage is counted live from the
/// resource tables.
pub static QUOTAS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("quota", "quotas", "quotas_tbl")
        .service("compute")
        .hard_delete()
        .col(Column::str("scope_type", 16))
        .col(Column::str("scope_id", 128).indexed())
        .col(Column::int("cpu").default(-1))
        .col(Column::int("memory").default(-1))
        .col(Column::bigint("storage").default(-1))
        .col(Column::int("port").default(-1))
        .col(Column::int("eip").default(-1))
        .col(Column::int("snapshot").default(-1))
        .col(Column::int("keypair").default(-1))
        .col(Column::int("secgroup").default(-1))
        .col(Column::int("server").default(-1))
        .unique(&["scope_type", "scope_id"])
        .build()
});

/// Addresses released recently; IPAM avoids re-using them for a while.
pub static IP_HISTORY: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("iphistory", "iphistories", "ip_history_tbl")
        .ids(IdStyle::Auto)
        .hard_delete()
        .col(Column::str("network_id", 128).indexed())
        .col(Column::str("ip_addr", 16))
        .col(Column::time("freed_at").indexed())
        .build()
});

/// Deployment-wide settings shared by every region process (the callback
/// signing key…).
pub static SETTINGS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("setting", "settings", "region_settings_tbl")
        .ids(IdStyle::Given)
        .hard_delete()
        .col(Column::text("value").secret())
        .build()
});

/// Every region table.
pub fn all() -> Vec<&'static ModelDesc> {
    vec![
        &CLOUDREGIONS,
        &ZONES,
        &VPCS,
        &WIRES,
        &NETWORKS,
        &RESERVEDIPS,
        &HOSTS,
        &STORAGES,
        &HOSTSTORAGES,
        &STORAGECACHES,
        &STORAGECACHEDIMAGES,
        &HOSTWIRES,
        &HOSTNETWORKS,
        &SCHEDTAGS,
        &HOSTSCHEDTAGS,
        &SERVERSKUS,
        &GUESTS,
        &DISKS,
        &GUESTDISKS,
        &GUESTNETWORKS,
        &SNAPSHOTS,
        &KEYPAIRS,
        &SECGROUPS,
        &SECGROUPRULES,
        &GUESTSECGROUPS,
        &EIPS,
        &QUOTAS,
        &IP_HISTORY,
        &SETTINGS,
    ]
}
