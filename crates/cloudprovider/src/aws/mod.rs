//! The AWS driver: EC2 (query API, version 2016-11-15), STS for the
//! credential check and S3 (path style) for buckets. `access_url` points
//! every service at one custom endpoint (an AWS-compatible cloud or the
//! moto emulator).

pub mod client;
pub mod xml;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::types::*;
use crate::{CloudError, Provider, ProviderConfig, ProviderInfo, RegionDriver, Result};
use client::Client;
use xml::{name_of, parse, tags};

pub const INFO: ProviderInfo = ProviderInfo {
    provider: "Aws",
    brand: "Aws",
    cloud_env: "public",
    is_public_cloud: true,
    hypervisor: "aws",
};

const EC2_VERSION: &str = "2016-11-15";

/// Volume types a zone offers (the storages of a zone).
pub const VOLUME_TYPES: &[&str] = &["gp2", "gp3", "io1", "standard"];

type Params = Vec<(String, String)>;

fn p(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// `Tag.N.Key/Value` style parameters under `prefix`.
fn tag_params(prefix: &str, t: &Tags) -> Params {
    t.iter()
        .enumerate()
        .flat_map(|(i, (k, v))| {
            [
                p(&format!("{prefix}.{}.Key", i + 1), k.clone()),
                p(&format!("{prefix}.{}.Value", i + 1), v.clone()),
            ]
        })
        .collect()
}

pub struct AwsProvider {
    client: Client,
    account_id: Arc<OnceCell<String>>,
}

impl AwsProvider {
    pub fn new(cfg: ProviderConfig) -> Result<AwsProvider> {
        Ok(AwsProvider {
            client: Client::new(cfg)?,
            account_id: Arc::new(OnceCell::new()),
        })
    }

    /// The signed API client (tests and tools call other services with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The region driver with its concrete type (tests and tools).
    pub fn aws_region(&self, region_id: &str) -> AwsRegion {
        AwsRegion {
            client: self.client.clone(),
            region: region_id.to_string(),
            account_id: self.account_id.clone(),
        }
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn info(&self) -> &'static ProviderInfo {
        &INFO
    }

    async fn account_id(&self) -> Result<String> {
        let region = self.client.config().default_region.clone();
        let text = self
            .client
            .query("sts", &region, "2011-06-15", "GetCallerIdentity", &[])
            .await?;
        let r: xml::GetCallerIdentityResponse = parse("GetCallerIdentity", &text)?;
        let id = r.get_caller_identity_result.account;
        let _ = self.account_id.set(id.clone());
        Ok(id)
    }

    async fn regions(&self) -> Result<Vec<CloudRegion>> {
        let region = self.client.config().default_region.clone();
        let text = self
            .client
            .query("ec2", &region, EC2_VERSION, "DescribeRegions", &[])
            .await?;
        let r: xml::DescribeRegions = parse("DescribeRegions", &text)?;
        Ok(r.region_info
            .item
            .into_iter()
            .filter(|x| x.opt_in_status != "not-opted-in")
            .map(|x| CloudRegion {
                name: x.region_name.clone(),
                external_id: x.region_name,
                status: "inservice".into(),
            })
            .collect())
    }

    fn region(&self, region_id: &str) -> Result<Arc<dyn RegionDriver>> {
        if region_id.is_empty() {
            return Err(CloudError::NotFound("region \"\"".into()));
        }
        Ok(Arc::new(self.aws_region(region_id)))
    }

    async fn buckets(&self) -> Result<Vec<Bucket>> {
        let region = self.client.config().default_region.clone();
        Ok(self
            .client
            .list_buckets(&region)
            .await?
            .into_iter()
            .map(|b| Bucket {
                external_id: b.name.clone(),
                name: b.name,
                created_at: b.creation_date,
            })
            .collect())
    }
}

#[derive(Clone)]
pub struct AwsRegion {
    client: Client,
    region: String,
    account_id: Arc<OnceCell<String>>,
}

/// Instance type sizes (vCPUs, MiB) per endpoint and region. They never
/// change for a type, and the full `DescribeInstanceTypes` answer is large
/// (5 MB, many seconds on moto), so only the types in use are asked for,
/// once per process.
type TypeSizes = HashMap<String, (i64, i64)>;
static TYPE_CACHE: std::sync::LazyLock<std::sync::Mutex<HashMap<(String, String), TypeSizes>>> =
    std::sync::LazyLock::new(Default::default);

/// Values per `Filter.N` in one request (AWS allows 200).
const FILTER_CHUNK: usize = 200;

/// `Filter.1.Name=name`, `Filter.1.Value.N=values[N-1]`.
fn filter(name: &str, values: &[String]) -> Params {
    let mut ps = vec![p("Filter.1.Name", name)];
    for (i, v) in values.iter().enumerate() {
        ps.push(p(&format!("Filter.1.Value.{}", i + 1), v.clone()));
    }
    ps
}

/// Cloudpods guest status of an EC2 instance state.
pub fn vm_status(state: &str) -> &'static str {
    match state {
        "pending" => "starting",
        "running" => "running",
        "stopping" => "stopping",
        "stopped" => "ready",
        "shutting-down" | "terminated" => "deleting",
        "rebooting" => "starting",
        _ => "unknown",
    }
}

fn disk_status(state: &str) -> &'static str {
    match state {
        "creating" => "allocating",
        "available" | "in-use" => "ready",
        "deleting" | "deleted" => "deallocating",
        "error" => "alloc_failed",
        _ => "unknown",
    }
}

fn is_root_device(dev: &str) -> bool {
    matches!(dev, "/dev/sda1" | "/dev/xvda" | "/dev/sda")
}

impl AwsRegion {
    /// Any EC2 action; returns the response XML (tests, tools).
    pub async fn raw(&self, action: &str, params: &[(&str, &str)]) -> Result<String> {
        let ps: Params = params.iter().map(|(k, v)| p(k, *v)).collect();
        self.call(action, &ps).await
    }

    /// Launch `count` instances in one call (seeding emulators); returns
    /// their ids.
    pub async fn run_instances(
        &self,
        count: u32,
        image_id: &str,
        instance_type: &str,
        subnet_id: &str,
    ) -> Result<Vec<String>> {
        let mut ps = vec![
            p("ImageId", image_id),
            p("InstanceType", instance_type),
            p("MinCount", count.to_string()),
            p("MaxCount", count.to_string()),
        ];
        if !subnet_id.is_empty() {
            ps.push(p("SubnetId", subnet_id));
        }
        let text = self.call("RunInstances", &ps).await?;
        let r: xml::RunInstances = parse("RunInstances", &text)?;
        Ok(r.instances_set
            .item
            .into_iter()
            .map(|i| i.instance_id)
            .collect())
    }

    async fn call(&self, action: &str, params: &[(String, String)]) -> Result<String> {
        self.client
            .query("ec2", &self.region, EC2_VERSION, action, params)
            .await
    }

    /// Call a paginated action until it answers no `nextToken`; `page`
    /// decodes one page into items and the next token. Any failing page
    /// fails the whole list.
    async fn paged<T>(
        &self,
        action: &str,
        params: Params,
        max_results: Option<u32>,
        page: impl Fn(&str) -> Result<(Vec<T>, Option<String>)>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let mut ps = params.clone();
            if let Some(m) = max_results {
                ps.push(p("MaxResults", m.to_string()));
            }
            if let Some(t) = &token {
                ps.push(p("NextToken", t.clone()));
            }
            let text = self.call(action, &ps).await?;
            let (items, next) = page(&text)?;
            out.extend(items);
            match next.filter(|t| !t.is_empty()) {
                // A token seen before would loop forever: a broken cloud.
                Some(t) if !seen.insert(t.clone()) => {
                    return Err(CloudError::Parse(format!("{action}: repeated NextToken")));
                }
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    fn page_size(&self) -> u32 {
        self.client.config().page_size.clamp(5, 1000)
    }

    async fn account(&self) -> Result<String> {
        if let Some(id) = self.account_id.get() {
            return Ok(id.clone());
        }
        let text = self
            .client
            .query("sts", &self.region, "2011-06-15", "GetCallerIdentity", &[])
            .await?;
        let r: xml::GetCallerIdentityResponse = parse("GetCallerIdentity", &text)?;
        let id = r.get_caller_identity_result.account;
        let _ = self.account_id.set(id.clone());
        Ok(id)
    }

    fn cache_key(&self) -> (String, String) {
        (self.client.config().access_url.clone(), self.region.clone())
    }

    /// Sizes of the given instance types (cached; unknown types are left
    /// out).
    async fn type_sizes(&self, names: &[String]) -> Result<TypeSizes> {
        let key = self.cache_key();
        let mut missing: Vec<String> = {
            let cache = TYPE_CACHE
                .lock()
                .map_err(|_| CloudError::Parse("type cache".into()))?;
            let known = cache.get(&key);
            names
                .iter()
                .filter(|n| !n.is_empty() && known.is_none_or(|k| !k.contains_key(*n)))
                .cloned()
                .collect()
        };
        missing.sort();
        missing.dedup();
        for chunk in missing.chunks(50) {
            let ps: Params = chunk
                .iter()
                .enumerate()
                .map(|(i, n)| p(&format!("InstanceType.{}", i + 1), n.clone()))
                .collect();
            let list = match self
                .paged("DescribeInstanceTypes", ps, None, |t| {
                    let r: xml::DescribeInstanceTypes = parse("DescribeInstanceTypes", t)?;
                    Ok((r.instance_type_set.item, r.next_token))
                })
                .await
            {
                Ok(l) => l,
                // An unknown type among them: the others are still useful.
                Err(CloudError::Invalid { .. }) => Vec::new(),
                Err(e) => return Err(e),
            };
            let mut cache = TYPE_CACHE
                .lock()
                .map_err(|_| CloudError::Parse("type cache".into()))?;
            let entry = cache.entry(key.clone()).or_default();
            for t in list {
                let size = type_size(&t);
                entry.insert(t.instance_type, size);
            }
        }
        let cache = TYPE_CACHE
            .lock()
            .map_err(|_| CloudError::Parse("type cache".into()))?;
        Ok(cache
            .get(&key)
            .map(|k| {
                names
                    .iter()
                    .filter_map(|n| k.get(n).map(|v| (n.clone(), *v)))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn vm_of(&self, i: xml::InstanceItem, types: &TypeSizes) -> Vm {
        let t = tags(&i.tag_set);
        let (vcpu, mem) = types.get(&i.instance_type).copied().unwrap_or((1, 1024));
        let mut nics: Vec<(i64, Nic)> = i
            .network_interface_set
            .item
            .iter()
            .map(|e| {
                (
                    e.attachment.as_ref().map(|a| a.device_index).unwrap_or(0),
                    Nic {
                        external_id: e.network_interface_id.clone(),
                        network_id: e.subnet_id.clone(),
                        ip: e.private_ip_address.clone(),
                        mac: e.mac_address.clone(),
                    },
                )
            })
            .collect();
        nics.sort_by_key(|(idx, _)| *idx);
        if nics.is_empty() && !i.subnet_id.is_empty() {
            nics.push((
                0,
                Nic {
                    external_id: String::new(),
                    network_id: i.subnet_id.clone(),
                    ip: i.private_ip_address.clone(),
                    mac: String::new(),
                },
            ));
        }
        let mut disks: Vec<(bool, String)> = i
            .block_device_mapping
            .item
            .iter()
            .filter_map(|b| {
                b.ebs.as_ref().map(|e| {
                    (
                        b.device_name != i.root_device_name && !is_root_device(&b.device_name),
                        e.volume_id.clone(),
                    )
                })
            })
            .collect();
        // Root first.
        disks.sort_by_key(|d| d.0);
        Vm {
            name: name_of(&t, &i.instance_id),
            external_id: i.instance_id,
            status: vm_status(&i.instance_state.name).into(),
            instance_type: i.instance_type,
            vcpu,
            mem_mb: mem,
            zone_id: i.placement.availability_zone,
            image_id: i.image_id,
            os_type: if i.platform.eq_ignore_ascii_case("windows") {
                "Windows".into()
            } else {
                "Linux".into()
            },
            nics: nics.into_iter().map(|(_, n)| n).collect(),
            disk_ids: disks.into_iter().map(|d| d.1).collect(),
            secgroup_ids: i
                .group_set
                .item
                .into_iter()
                .map(|g| g.group_id)
                .filter(|g| !g.is_empty())
                .collect(),
            public_ip: i.ip_address,
            created_at: i.launch_time,
            tags: t,
        }
    }

    async fn volumes_by(&self, params: Params) -> Result<Vec<Disk>> {
        let items = self
            .paged("DescribeVolumes", params, Some(self.page_size()), |t| {
                let r: xml::DescribeVolumes = parse("DescribeVolumes", t)?;
                Ok((r.volume_set.item, r.next_token))
            })
            .await?;
        Ok(items
            .into_iter()
            .filter(|v| v.status != "deleted")
            .map(|v| {
                let t = tags(&v.tag_set);
                let att = v.attachment_set.item.first();
                let device = att.map(|a| a.device.clone()).unwrap_or_default();
                Disk {
                    name: name_of(&t, &v.volume_id),
                    external_id: v.volume_id,
                    size_gb: v.size,
                    zone_id: v.availability_zone,
                    storage_type: if v.volume_type.is_empty() {
                        "standard".into()
                    } else {
                        v.volume_type
                    },
                    status: disk_status(&v.status).into(),
                    vm_id: att.map(|a| a.instance_id.clone()).unwrap_or_default(),
                    disk_type: if is_root_device(&device) {
                        "sys"
                    } else {
                        "data"
                    }
                    .into(),
                    device,
                    snapshot_id: v.snapshot_id,
                    tags: t,
                }
            })
            .collect())
    }

    async fn instances_by(&self, params: Params) -> Result<Vec<Vm>> {
        let by_id = params.iter().any(|(k, _)| k.starts_with("InstanceId."));
        let items = self
            .paged(
                "DescribeInstances",
                params,
                // MaxResults may not be combined with instance ids.
                if by_id { None } else { Some(self.page_size()) },
                |t| {
                    let r: xml::DescribeInstances = parse("DescribeInstances", t)?;
                    let items: Vec<xml::InstanceItem> = r
                        .reservation_set
                        .item
                        .into_iter()
                        .flat_map(|res| res.instances_set.item)
                        .collect();
                    Ok((items, r.next_token))
                },
            )
            .await?;
        let names: Vec<String> = items.iter().map(|i| i.instance_type.clone()).collect();
        let types = self.type_sizes(&names).await?;
        Ok(items
            .into_iter()
            .filter(|i| i.instance_state.name != "terminated")
            .map(|i| self.vm_of(i, &types))
            .collect())
    }

    /// `{verb}SecurityGroupIngress` / `…Egress` for the rules of each
    /// direction (`verb`: `Authorize` or `Revoke`).
    async fn rules_call(&self, secgroup_id: &str, rules: &[SecRule], verb: &str) -> Result<()> {
        for (dir, side) in [("in", "Ingress"), ("out", "Egress")] {
            let these: Vec<SecRule> = rules
                .iter()
                .filter(|r| r.direction == dir)
                .cloned()
                .collect();
            if these.is_empty() {
                continue;
            }
            let mut ps = vec![p("GroupId", secgroup_id)];
            ps.extend(Self::rule_params(&these));
            self.call(&format!("{verb}SecurityGroup{side}"), &ps)
                .await?;
        }
        Ok(())
    }

    fn rule_params(rules: &[SecRule]) -> Params {
        let mut ps = Vec::new();
        for (n, r) in rules.iter().enumerate() {
            let k = |s: &str| format!("IpPermissions.{}.{s}", n + 1);
            let proto = match r.protocol.as_str() {
                "any" | "" => "-1",
                other => other,
            };
            ps.push(p(&k("IpProtocol"), proto));
            if proto != "-1" {
                let (from, to) = port_range(&r.ports, proto);
                ps.push(p(&k("FromPort"), from.to_string()));
                ps.push(p(&k("ToPort"), to.to_string()));
            }
            let cidr = if r.cidr.is_empty() {
                "0.0.0.0/0"
            } else {
                &r.cidr
            };
            ps.push(p(&k("IpRanges.1.CidrIp"), cidr));
        }
        ps
    }

    async fn secgroups_by(&self, params: Params) -> Result<Vec<SecGroup>> {
        let items = self
            .paged("DescribeSecurityGroups", params, None, |t| {
                let r: xml::DescribeSecurityGroups = parse("DescribeSecurityGroups", t)?;
                Ok((r.security_group_info.item, r.next_token))
            })
            .await?;
        Ok(items
            .into_iter()
            .map(|g| {
                let mut rules = Vec::new();
                for (dir, perms) in [("in", &g.ip_permissions), ("out", &g.ip_permissions_egress)] {
                    for perm in &perms.item {
                        let protocol = match perm.ip_protocol.as_str() {
                            "-1" | "" => "any".to_string(),
                            x => x.to_ascii_lowercase(),
                        };
                        let ports = match (perm.from_port, perm.to_port) {
                            _ if protocol == "any" || protocol == "icmp" => String::new(),
                            (Some(a), Some(b)) if a == b => a.to_string(),
                            (Some(0), Some(65535)) | (Some(-1), _) => String::new(),
                            (Some(a), Some(b)) => format!("{a}-{b}"),
                            _ => String::new(),
                        };
                        for r in &perm.ip_ranges.item {
                            rules.push(SecRule {
                                direction: dir.into(),
                                protocol: protocol.clone(),
                                ports: ports.clone(),
                                cidr: r.cidr_ip.clone(),
                                action: "allow".into(),
                                priority: 1,
                            });
                        }
                    }
                }
                rules.sort();
                let t = tags(&g.tag_set);
                SecGroup {
                    external_id: g.group_id,
                    name: g.group_name,
                    description: g.group_description,
                    vpc_id: g.vpc_id,
                    rules,
                    tags: t,
                }
            })
            .collect())
    }

    async fn eip_items(&self, params: Params) -> Result<Vec<xml::AddressItem>> {
        let text = self.call("DescribeAddresses", &params).await?;
        let r: xml::DescribeAddresses = parse("DescribeAddresses", &text)?;
        Ok(r.addresses_set.item)
    }
}

/// `"22"` → (22, 22); `"1-1024"` → (1, 1024); `""` → all ports.
fn port_range(ports: &str, proto: &str) -> (i64, i64) {
    if proto == "icmp" {
        return (-1, -1);
    }
    let ports = ports.trim();
    if ports.is_empty() {
        return (0, 65535);
    }
    match ports.split_once('-') {
        Some((a, b)) => (
            a.trim().parse().unwrap_or(0),
            b.trim().parse().unwrap_or(65535),
        ),
        None => {
            let v = ports.parse().unwrap_or(0);
            (v, v)
        }
    }
}

#[async_trait]
impl RegionDriver for AwsRegion {
    fn region_id(&self) -> &str {
        &self.region
    }

    async fn zones(&self) -> Result<Vec<Zone>> {
        let text = self.call("DescribeAvailabilityZones", &[]).await?;
        let r: xml::DescribeZones = parse("DescribeAvailabilityZones", &text)?;
        Ok(r.availability_zone_info
            .item
            .into_iter()
            .map(|z| Zone {
                name: z.zone_name.clone(),
                external_id: z.zone_name,
                status: if z.zone_state.is_empty() || z.zone_state == "available" {
                    "enable".into()
                } else {
                    "disable".into()
                },
            })
            .collect())
    }

    async fn vpcs(&self) -> Result<Vec<Vpc>> {
        let items = self
            .paged("DescribeVpcs", vec![], None, |t| {
                let r: xml::DescribeVpcs = parse("DescribeVpcs", t)?;
                Ok((r.vpc_set.item, r.next_token))
            })
            .await?;
        Ok(items.into_iter().map(vpc_of).collect())
    }

    async fn networks(&self) -> Result<Vec<Network>> {
        let items = self
            .paged("DescribeSubnets", vec![], None, |t| {
                let r: xml::DescribeSubnets = parse("DescribeSubnets", t)?;
                Ok((r.subnet_set.item, r.next_token))
            })
            .await?;
        Ok(items.into_iter().map(subnet_of).collect())
    }

    async fn secgroups(&self) -> Result<Vec<SecGroup>> {
        self.secgroups_by(vec![]).await
    }

    async fn hosts(&self, zones: &[Zone]) -> Result<Vec<Host>> {
        Ok(zones
            .iter()
            .map(|z| Host {
                external_id: format!("{}/host", z.external_id),
                name: format!("aws-{}", z.external_id),
                zone_id: z.external_id.clone(),
                host_type: "aws".into(),
            })
            .collect())
    }

    async fn storages(&self, zones: &[Zone]) -> Result<Vec<Storage>> {
        Ok(zones
            .iter()
            .flat_map(|z| {
                VOLUME_TYPES.iter().map(|t| Storage {
                    external_id: format!("{}/{t}", z.external_id),
                    name: format!("{}-{t}", z.external_id),
                    zone_id: z.external_id.clone(),
                    storage_type: (*t).into(),
                    medium_type: if *t == "standard" { "rotate" } else { "ssd" }.into(),
                })
            })
            .collect())
    }

    async fn vms(&self) -> Result<Vec<Vm>> {
        self.instances_by(vec![]).await
    }

    async fn disks(&self) -> Result<Vec<Disk>> {
        self.volumes_by(vec![]).await
    }

    async fn vm_states(&self) -> Result<Vec<(String, String)>> {
        let items = self
            .paged(
                "DescribeInstanceStatus",
                vec![p("IncludeAllInstances", "true")],
                Some(self.page_size()),
                |t| {
                    let r: xml::DescribeInstanceStatus = parse("DescribeInstanceStatus", t)?;
                    Ok((r.instance_status_set.item, r.next_token))
                },
            )
            .await?;
        Ok(items
            .into_iter()
            // As in vms(): terminated instances are gone.
            .filter(|i| i.instance_state.name != "terminated")
            .map(|i| (i.instance_id, vm_status(&i.instance_state.name).to_string()))
            .collect())
    }

    async fn vms_by_ids(&self, ids: &[String]) -> Result<Vec<Vm>> {
        let mut out = Vec::new();
        // A filter, not InstanceId.N: the latter fails as a whole when one
        // instance has vanished meanwhile.
        for chunk in ids.chunks(FILTER_CHUNK) {
            out.extend(self.instances_by(filter("instance-id", chunk)).await?);
        }
        Ok(out)
    }

    async fn disks_where(&self, f: &DiskFilter) -> Result<Vec<Disk>> {
        let (name, values): (&str, Vec<String>) = match f {
            DiskFilter::AttachedTo(ids) => ("attachment.instance-id", ids.clone()),
            DiskFilter::Ids(ids) => ("volume-id", ids.clone()),
            DiskFilter::Unattached => (
                "status",
                ["creating", "available", "deleting", "error"]
                    .map(String::from)
                    .to_vec(),
            ),
        };
        let mut out = Vec::new();
        for chunk in values.chunks(FILTER_CHUNK) {
            out.extend(self.volumes_by(filter(name, chunk)).await?);
        }
        Ok(out)
    }

    async fn eips(&self) -> Result<Vec<Eip>> {
        Ok(self
            .eip_items(vec![])
            .await?
            .into_iter()
            .map(|a| {
                let t = tags(&a.tag_set);
                let id = if a.allocation_id.is_empty() {
                    a.public_ip.clone()
                } else {
                    a.allocation_id
                };
                Eip {
                    name: name_of(&t, &a.public_ip),
                    external_id: id,
                    ip: a.public_ip,
                    status: "ready".into(),
                    vm_id: a.instance_id,
                    tags: t,
                }
            })
            .collect())
    }

    async fn images(&self) -> Result<Vec<Image>> {
        let items = self
            .paged("DescribeImages", vec![p("Owner.1", "self")], None, |t| {
                let r: xml::DescribeImages = parse("DescribeImages", t)?;
                Ok((r.images_set.item, r.next_token))
            })
            .await?;
        Ok(items
            .into_iter()
            .map(|i| {
                let t = tags(&i.tag_set);
                let size = i
                    .block_device_mapping
                    .item
                    .iter()
                    .filter_map(|b| b.ebs.as_ref().and_then(|e| e.volume_size))
                    .sum();
                Image {
                    name: if i.name.is_empty() {
                        i.image_id.clone()
                    } else {
                        i.name
                    },
                    external_id: i.image_id,
                    status: match i.image_state.as_str() {
                        "available" => "active",
                        "pending" => "saving",
                        "failed" => "killed",
                        _ => "deleted",
                    }
                    .into(),
                    os_type: if i.platform.eq_ignore_ascii_case("windows") {
                        "Windows".into()
                    } else {
                        "Linux".into()
                    },
                    os_arch: i.architecture,
                    size_gb: size,
                    tags: t,
                }
            })
            .collect())
    }

    async fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let account = self.account().await?;
        let items = self
            .paged(
                "DescribeSnapshots",
                vec![
                    p("Filter.1.Name", "owner-id"),
                    p("Filter.1.Value.1", account),
                ],
                None,
                |t| {
                    let r: xml::DescribeSnapshots = parse("DescribeSnapshots", t)?;
                    Ok((r.snapshot_set.item, r.next_token))
                },
            )
            .await?;
        Ok(items
            .into_iter()
            .map(|s| {
                let t = tags(&s.tag_set);
                Snapshot {
                    name: name_of(&t, &s.snapshot_id),
                    external_id: s.snapshot_id,
                    disk_id: s.volume_id,
                    size_gb: s.volume_size,
                    status: match s.status.as_str() {
                        "completed" => "ready",
                        "pending" => "creating",
                        _ => "create_failed",
                    }
                    .into(),
                    tags: t,
                }
            })
            .collect())
    }

    async fn skus(&self) -> Result<Vec<Sku>> {
        let list = self
            .paged("DescribeInstanceTypes", vec![], Some(100), |t| {
                let r: xml::DescribeInstanceTypes = parse("DescribeInstanceTypes", t)?;
                Ok((r.instance_type_set.item, r.next_token))
            })
            .await?;
        let mut v: Vec<Sku> = list
            .iter()
            .map(|t| {
                let (cpu, mem) = type_size(t);
                Sku {
                    family: t
                        .instance_type
                        .split('.')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    name: t.instance_type.clone(),
                    cpu,
                    mem_mb: mem,
                }
            })
            .collect();
        if let Ok(mut cache) = TYPE_CACHE.lock() {
            let entry = cache.entry(self.cache_key()).or_default();
            for k in &v {
                entry.insert(k.name.clone(), (k.cpu, k.mem_mb));
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    async fn sku(&self, name: &str) -> Result<Sku> {
        let sizes = self.type_sizes(&[name.to_string()]).await?;
        let (cpu, mem) = sizes
            .get(name)
            .copied()
            .ok_or_else(|| CloudError::NotFound(format!("instance type {name}")))?;
        Ok(Sku {
            family: name.split('.').next().unwrap_or_default().to_string(),
            name: name.to_string(),
            cpu,
            mem_mb: mem,
        })
    }

    async fn vm(&self, id: &str) -> Result<Vm> {
        let mut v = self.instances_by(vec![p("InstanceId.1", id)]).await?;
        v.pop()
            .ok_or_else(|| CloudError::NotFound(format!("instance {id}")))
    }

    async fn create_vm(&self, req: &CreateVm) -> Result<Vm> {
        let mut ps = vec![
            p("ImageId", req.image_id.clone()),
            p(
                "InstanceType",
                if req.instance_type.is_empty() {
                    "t2.micro".to_string()
                } else {
                    req.instance_type.clone()
                },
            ),
            p("MinCount", "1"),
            p("MaxCount", "1"),
        ];
        if !req.network_id.is_empty() {
            ps.push(p("SubnetId", req.network_id.clone()));
        }
        if !req.zone_id.is_empty() {
            ps.push(p("Placement.AvailabilityZone", req.zone_id.clone()));
        }
        for (i, g) in req.secgroup_ids.iter().enumerate() {
            ps.push(p(&format!("SecurityGroupId.{}", i + 1), g.clone()));
        }
        if !req.keypair.is_empty() {
            ps.push(p("KeyName", req.keypair.clone()));
        }
        if !req.user_data.is_empty() {
            use base64_lite::encode;
            ps.push(p("UserData", encode(req.user_data.as_bytes())));
        }
        if !req.private_ip.is_empty() {
            ps.push(p("PrivateIpAddress", req.private_ip.clone()));
        }
        if !req.client_token.is_empty() {
            ps.push(p("ClientToken", req.client_token.clone()));
        }
        if req.sys_disk_gb > 0 {
            ps.push(p("BlockDeviceMapping.1.DeviceName", "/dev/sda1"));
            ps.push(p(
                "BlockDeviceMapping.1.Ebs.VolumeSize",
                req.sys_disk_gb.to_string(),
            ));
            if !req.sys_disk_type.is_empty() {
                ps.push(p(
                    "BlockDeviceMapping.1.Ebs.VolumeType",
                    req.sys_disk_type.clone(),
                ));
            }
            ps.push(p("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true"));
        }
        for (i, gb) in req.data_disks_gb.iter().enumerate() {
            let n = i + 2;
            let dev = format!("/dev/sd{}", (b'b' + i as u8) as char);
            ps.push(p(&format!("BlockDeviceMapping.{n}.DeviceName"), dev));
            ps.push(p(
                &format!("BlockDeviceMapping.{n}.Ebs.VolumeSize"),
                gb.to_string(),
            ));
            ps.push(p(
                &format!("BlockDeviceMapping.{n}.Ebs.DeleteOnTermination"),
                "true",
            ));
        }
        let mut t = req.tags.clone();
        t.insert("Name".into(), req.name.clone());
        ps.push(p("TagSpecification.1.ResourceType", "instance"));
        ps.extend(tag_params("TagSpecification.1.Tag", &t));
        let text = self.call("RunInstances", &ps).await?;
        let r: xml::RunInstances = parse("RunInstances", &text)?;
        let item = r
            .instances_set
            .item
            .into_iter()
            .next()
            .ok_or_else(|| CloudError::Parse("RunInstances returned no instance".into()))?;
        let types = self
            .type_sizes(std::slice::from_ref(&item.instance_type))
            .await?;
        Ok(self.vm_of(item, &types))
    }

    async fn start_vm(&self, id: &str) -> Result<()> {
        self.call("StartInstances", &[p("InstanceId.1", id)])
            .await
            .map(drop)
    }

    async fn stop_vm(&self, id: &str, force: bool) -> Result<()> {
        let mut ps = vec![p("InstanceId.1", id)];
        if force {
            ps.push(p("Force", "true"));
        }
        self.call("StopInstances", &ps).await.map(drop)
    }

    async fn reboot_vm(&self, id: &str) -> Result<()> {
        self.call("RebootInstances", &[p("InstanceId.1", id)])
            .await
            .map(drop)
    }

    async fn delete_vm(&self, id: &str) -> Result<()> {
        self.call("TerminateInstances", &[p("InstanceId.1", id)])
            .await
            .map(drop)
    }

    async fn change_config(&self, id: &str, instance_type: &str) -> Result<()> {
        self.call(
            "ModifyInstanceAttribute",
            &[p("InstanceId", id), p("InstanceType.Value", instance_type)],
        )
        .await
        .map(drop)
    }

    async fn create_vpc(&self, name: &str, cidr: &str) -> Result<Vpc> {
        let mut ps = vec![p("CidrBlock", cidr)];
        ps.push(p("TagSpecification.1.ResourceType", "vpc"));
        ps.extend(tag_params(
            "TagSpecification.1.Tag",
            &Tags::from([("Name".to_string(), name.to_string())]),
        ));
        let text = self.call("CreateVpc", &ps).await?;
        let r: xml::CreateVpc = parse("CreateVpc", &text)?;
        let mut v = vpc_of(r.vpc);
        v.name = name.to_string();
        Ok(v)
    }

    async fn delete_vpc(&self, id: &str) -> Result<()> {
        self.call("DeleteVpc", &[p("VpcId", id)]).await.map(drop)
    }

    async fn create_network(&self, req: &CreateNetwork) -> Result<Network> {
        let mut ps = vec![
            p("VpcId", req.vpc_id.clone()),
            p("CidrBlock", req.cidr.clone()),
        ];
        if !req.zone_id.is_empty() {
            ps.push(p("AvailabilityZone", req.zone_id.clone()));
        }
        ps.push(p("TagSpecification.1.ResourceType", "subnet"));
        ps.extend(tag_params(
            "TagSpecification.1.Tag",
            &Tags::from([("Name".to_string(), req.name.clone())]),
        ));
        let text = self.call("CreateSubnet", &ps).await?;
        let r: xml::CreateSubnet = parse("CreateSubnet", &text)?;
        let mut n = subnet_of(r.subnet);
        n.name = req.name.clone();
        Ok(n)
    }

    async fn delete_network(&self, id: &str) -> Result<()> {
        self.call("DeleteSubnet", &[p("SubnetId", id)])
            .await
            .map(drop)
    }

    async fn create_secgroup(&self, vpc_id: &str, name: &str, desc: &str) -> Result<SecGroup> {
        let mut ps = vec![
            p("GroupName", name),
            p(
                "GroupDescription",
                if desc.is_empty() { name } else { desc },
            ),
        ];
        if !vpc_id.is_empty() {
            ps.push(p("VpcId", vpc_id));
        }
        let text = self.call("CreateSecurityGroup", &ps).await?;
        let r: xml::CreateSecurityGroup = parse("CreateSecurityGroup", &text)?;
        let mut v = self
            .secgroups_by(vec![p("GroupId.1", r.group_id.clone())])
            .await?;
        v.pop()
            .ok_or_else(|| CloudError::NotFound(format!("security group {}", r.group_id)))
    }

    async fn delete_secgroup(&self, id: &str) -> Result<()> {
        self.call("DeleteSecurityGroup", &[p("GroupId", id)])
            .await
            .map(drop)
    }

    async fn add_rules(&self, secgroup_id: &str, rules: &[SecRule]) -> Result<()> {
        self.rules_call(secgroup_id, rules, "Authorize").await
    }

    async fn remove_rules(&self, secgroup_id: &str, rules: &[SecRule]) -> Result<()> {
        self.rules_call(secgroup_id, rules, "Revoke").await
    }

    async fn allocate_eip(&self, name: &str) -> Result<Eip> {
        let text = self.call("AllocateAddress", &[p("Domain", "vpc")]).await?;
        let r: xml::AllocateAddress = parse("AllocateAddress", &text)?;
        if !name.is_empty() && !r.allocation_id.is_empty() {
            let mut ps = vec![p("ResourceId.1", r.allocation_id.clone())];
            ps.extend(tag_params(
                "Tag",
                &Tags::from([("Name".to_string(), name.to_string())]),
            ));
            self.call("CreateTags", &ps).await?;
        }
        Ok(Eip {
            external_id: r.allocation_id,
            name: name.to_string(),
            ip: r.public_ip,
            vm_id: String::new(),
            status: "ready".into(),
            tags: Tags::new(),
        })
    }

    async fn release_eip(&self, id: &str) -> Result<()> {
        self.call("ReleaseAddress", &[p("AllocationId", id)])
            .await
            .map(drop)
    }

    async fn associate_eip(&self, eip_id: &str, vm_id: &str) -> Result<()> {
        self.call(
            "AssociateAddress",
            &[p("AllocationId", eip_id), p("InstanceId", vm_id)],
        )
        .await
        .map(drop)
    }

    async fn dissociate_eip(&self, eip_id: &str) -> Result<()> {
        let items = self.eip_items(vec![p("AllocationId.1", eip_id)]).await?;
        let Some(a) = items.into_iter().next() else {
            return Err(CloudError::NotFound(format!("eip {eip_id}")));
        };
        if a.association_id.is_empty() {
            return Ok(());
        }
        self.call(
            "DisassociateAddress",
            &[p("AssociationId", a.association_id)],
        )
        .await
        .map(drop)
    }
}

fn type_size(t: &xml::InstanceTypeItem) -> (i64, i64) {
    (
        t.v_cpu_info.as_ref().map(|v| v.default_v_cpus).unwrap_or(1),
        t.memory_info
            .as_ref()
            .map(|m| m.size_in_mi_b)
            .unwrap_or(1024),
    )
}

fn vpc_of(v: xml::VpcItem) -> Vpc {
    let t = tags(&v.tag_set);
    Vpc {
        name: name_of(&t, &v.vpc_id),
        external_id: v.vpc_id,
        cidr: v.cidr_block,
        is_default: v.is_default,
        status: if v.state == "pending" {
            "pending"
        } else {
            "available"
        }
        .into(),
        tags: t,
    }
}

fn subnet_of(s: xml::SubnetItem) -> Network {
    let t = tags(&s.tag_set);
    Network {
        name: name_of(&t, &s.subnet_id),
        external_id: s.subnet_id,
        vpc_id: s.vpc_id,
        zone_id: s.availability_zone,
        cidr: s.cidr_block,
        status: if s.state == "pending" {
            "pending"
        } else {
            "available"
        }
        .into(),
        tags: t,
    }
}

/// Base64 for `UserData` without another dependency.
mod base64_lite {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for c in data.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    #[test]
    fn encodes() {
        assert_eq!(encode(b"hello"), "aGVsbG8=");
        assert_eq!(encode(b"hi"), "aGk=");
        assert_eq!(encode(b"abc"), "YWJj");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_describe_instances() {
        let text = r#"<?xml version="1.0" encoding="utf-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><reservationSet><item><reservationId>r-1</reservationId><groupSet/><instancesSet><item><blockDeviceMapping><item><deviceName>/dev/sda1</deviceName><ebs><volumeId>vol-1</volumeId></ebs></item></blockDeviceMapping><networkInterfaceSet><item><attachment><deviceIndex>0</deviceIndex></attachment><macAddress>02:00:00:44:c9:b9</macAddress><networkInterfaceId>eni-1</networkInterfaceId><privateIpAddress>10.0.0.5</privateIpAddress><subnetId>subnet-1</subnetId></item></networkInterfaceSet><rootDeviceName>/dev/sda1</rootDeviceName><groupSet><item><groupId>sg-1</groupId></item></groupSet><stateReason><code/><message/></stateReason><instanceId>i-1</instanceId><imageId>ami-1</imageId><instanceState><code>16</code><name>stopped</name></instanceState><instanceType>t2.micro</instanceType><placement><availabilityZone>us-east-1a</availabilityZone></placement><tagSet><item><key>Name</key><value>web</value></item></tagSet></item></instancesSet></item></reservationSet><nextToken>r-1</nextToken></DescribeInstancesResponse>"#;
        let r: xml::DescribeInstances = parse("DescribeInstances", text).unwrap();
        assert_eq!(r.next_token.as_deref(), Some("r-1"));
        let item = r
            .reservation_set
            .item
            .into_iter()
            .next()
            .unwrap()
            .instances_set
            .item
            .into_iter()
            .next()
            .unwrap();
        let types = HashMap::from([("t2.micro".to_string(), (1, 1024))]);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let drv = AwsProvider::new(ProviderConfig {
            account: "a".into(),
            secret: "b".into(),
            ..Default::default()
        })
        .unwrap()
        .aws_region("us-east-1");
        let vm = drv.vm_of(item, &types);
        assert_eq!(vm.name, "web");
        assert_eq!(vm.status, "ready");
        assert_eq!(vm.disk_ids, vec!["vol-1"]);
        assert_eq!(vm.nics[0].network_id, "subnet-1");
        assert_eq!(vm.secgroup_ids, vec!["sg-1"]);
        assert_eq!(vm.zone_id, "us-east-1a");
    }

    #[test]
    fn ports() {
        assert_eq!(port_range("22", "tcp"), (22, 22));
        assert_eq!(port_range("1-1024", "tcp"), (1, 1024));
        assert_eq!(port_range("", "udp"), (0, 65535));
        assert_eq!(port_range("", "icmp"), (-1, -1));
    }
}
