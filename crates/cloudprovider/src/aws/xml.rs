//! EC2 / STS response documents (the parts we read), decoded with
//! quick-xml's serde support (S3's are read by `cloudpods_sigv4::s3`). EC2
//! lists are `<xxxSet><item>…</item></xxxSet>`.

use serde::Deserialize;

use crate::{CloudError, Result, Tags};

pub fn parse<'de, T: Deserialize<'de>>(action: &str, text: &'de str) -> Result<T> {
    quick_xml::de::from_str(text).map_err(|e| CloudError::Parse(format!("{action}: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Items<T> {
    #[serde(default = "Vec::new")]
    pub item: Vec<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items { item: Vec::new() }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Tag {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

pub fn tags(set: &Items<Tag>) -> Tags {
    set.item
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect()
}

pub fn name_of(tags: &Tags, id: &str) -> String {
    tags.get("Name")
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| id.to_string())
}

// --- STS -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCallerIdentityResponse {
    pub get_caller_identity_result: CallerIdentity,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallerIdentity {
    #[serde(default)]
    pub account: String,
}

// --- regions and zones -----------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeRegions {
    #[serde(default)]
    pub region_info: Items<RegionItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionItem {
    pub region_name: String,
    #[serde(default)]
    pub opt_in_status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeZones {
    #[serde(default)]
    pub availability_zone_info: Items<ZoneItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneItem {
    pub zone_name: String,
    #[serde(default)]
    pub zone_state: String,
}

// --- VPCs, subnets, security groups ---------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeVpcs {
    #[serde(default)]
    pub vpc_set: Items<VpcItem>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateVpc {
    pub vpc: VpcItem,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VpcItem {
    pub vpc_id: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub cidr_block: String,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub tag_set: Items<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeSubnets {
    #[serde(default)]
    pub subnet_set: Items<SubnetItem>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSubnet {
    pub subnet: SubnetItem,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetItem {
    pub subnet_id: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub cidr_block: String,
    #[serde(default)]
    pub availability_zone: String,
    #[serde(default)]
    pub tag_set: Items<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeSecurityGroups {
    #[serde(default)]
    pub security_group_info: Items<SecGroupItem>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSecurityGroup {
    pub group_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecGroupItem {
    pub group_id: String,
    #[serde(default)]
    pub group_name: String,
    #[serde(default)]
    pub group_description: String,
    #[serde(default)]
    pub vpc_id: String,
    #[serde(default)]
    pub ip_permissions: Items<Permission>,
    #[serde(default)]
    pub ip_permissions_egress: Items<Permission>,
    #[serde(default)]
    pub tag_set: Items<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    #[serde(default)]
    pub ip_protocol: String,
    #[serde(default)]
    pub from_port: Option<i64>,
    #[serde(default)]
    pub to_port: Option<i64>,
    #[serde(default)]
    pub ip_ranges: Items<IpRange>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRange {
    #[serde(default)]
    pub cidr_ip: String,
}

// --- instances -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeInstances {
    #[serde(default)]
    pub reservation_set: Items<Reservation>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    #[serde(default)]
    pub instances_set: Items<InstanceItem>,
}

/// `RunInstances` answers one reservation at the top level.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInstances {
    #[serde(default)]
    pub instances_set: Items<InstanceItem>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Named {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    #[serde(default)]
    pub availability_zone: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRef {
    #[serde(default)]
    pub group_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDevice {
    #[serde(default)]
    pub device_name: String,
    #[serde(default)]
    pub ebs: Option<EbsRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EbsRef {
    #[serde(default)]
    pub volume_id: String,
    #[serde(default)]
    pub volume_size: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eni {
    #[serde(default)]
    pub network_interface_id: String,
    #[serde(default)]
    pub subnet_id: String,
    #[serde(default)]
    pub private_ip_address: String,
    #[serde(default)]
    pub mac_address: String,
    #[serde(default)]
    pub attachment: Option<EniAttachment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EniAttachment {
    #[serde(default)]
    pub device_index: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceItem {
    pub instance_id: String,
    #[serde(default)]
    pub image_id: String,
    #[serde(default)]
    pub instance_state: Named,
    #[serde(default)]
    pub instance_type: String,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub subnet_id: String,
    #[serde(default)]
    pub private_ip_address: String,
    #[serde(default)]
    pub ip_address: String,
    #[serde(default)]
    pub launch_time: String,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub root_device_name: String,
    #[serde(default)]
    pub group_set: Items<GroupRef>,
    #[serde(default)]
    pub block_device_mapping: Items<BlockDevice>,
    #[serde(default)]
    pub network_interface_set: Items<Eni>,
    #[serde(default)]
    pub tag_set: Items<Tag>,
}

// --- volumes, addresses, images, snapshots, instance types ----------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeVolumes {
    #[serde(default)]
    pub volume_set: Items<VolumeItem>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeItem {
    pub volume_id: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub snapshot_id: String,
    #[serde(default)]
    pub availability_zone: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub volume_type: String,
    #[serde(default)]
    pub attachment_set: Items<VolumeAttachment>,
    #[serde(default)]
    pub tag_set: Items<Tag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAttachment {
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub device: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeAddresses {
    #[serde(default)]
    pub addresses_set: Items<AddressItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressItem {
    #[serde(default)]
    pub public_ip: String,
    #[serde(default)]
    pub allocation_id: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub association_id: String,
    #[serde(default)]
    pub tag_set: Items<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocateAddress {
    pub public_ip: String,
    #[serde(default)]
    pub allocation_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImages {
    #[serde(default)]
    pub images_set: Items<ImageItem>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageItem {
    pub image_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image_state: String,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub block_device_mapping: Items<BlockDevice>,
    #[serde(default)]
    pub tag_set: Items<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeSnapshots {
    #[serde(default)]
    pub snapshot_set: Items<SnapshotItem>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotItem {
    pub snapshot_id: String,
    #[serde(default)]
    pub volume_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub volume_size: i64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tag_set: Items<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeInstanceTypes {
    #[serde(default)]
    pub instance_type_set: Items<InstanceTypeItem>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTypeItem {
    pub instance_type: String,
    #[serde(default)]
    pub v_cpu_info: Option<VCpuInfo>,
    #[serde(default)]
    pub memory_info: Option<MemoryInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VCpuInfo {
    #[serde(default)]
    pub default_v_cpus: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryInfo {
    #[serde(default)]
    pub size_in_mi_b: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeInstanceStatus {
    #[serde(default)]
    pub instance_status_set: Items<InstanceStatusItem>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatusItem {
    pub instance_id: String,
    #[serde(default)]
    pub instance_state: Named,
}
