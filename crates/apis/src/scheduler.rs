//! Scheduler wire types (`pkg/apis/scheduler/api.go`): what the region asks
//! `POST /scheduler` and what it answers, one candidate per instance.

use serde::{Deserialize, Serialize};

use crate::lenient::de;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SchedDisk {
    /// MB.
    #[serde(deserialize_with = "de::i64")]
    pub size: i64,
    #[serde(deserialize_with = "de::string", alias = "storage_type")]
    pub backend: String,
    #[serde(deserialize_with = "de::string")]
    pub medium: String,
    #[serde(deserialize_with = "de::string")]
    pub storage_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SchedNet {
    #[serde(deserialize_with = "de::string")]
    pub network: String,
    #[serde(deserialize_with = "de::string")]
    pub wire: String,
    /// A requested address (the network must have it free).
    #[serde(deserialize_with = "de::string")]
    pub address: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SchedTag {
    #[serde(deserialize_with = "de::string")]
    pub id: String,
    /// require | exclude | prefer | avoid
    #[serde(deserialize_with = "de::string")]
    pub strategy: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ScheduleInput {
    #[serde(deserialize_with = "de::string")]
    pub session_id: String,
    #[serde(deserialize_with = "de::i64")]
    pub count: i64,
    #[serde(deserialize_with = "de::i64")]
    pub vcpu_count: i64,
    /// MB.
    #[serde(deserialize_with = "de::i64")]
    pub vmem_size: i64,
    pub disks: Vec<SchedDisk>,
    pub nets: Vec<SchedNet>,
    #[serde(deserialize_with = "de::string")]
    pub hypervisor: String,
    #[serde(deserialize_with = "de::string", alias = "prefer_host_id")]
    pub prefer_host: String,
    #[serde(deserialize_with = "de::string", alias = "prefer_zone_id")]
    pub prefer_zone: String,
    #[serde(deserialize_with = "de::string", alias = "prefer_region_id")]
    pub prefer_region: String,
    #[serde(deserialize_with = "de::string", alias = "prefer_wire_id")]
    pub prefer_wire: String,
    pub schedtags: Vec<SchedTag>,
    #[serde(deserialize_with = "de::string", alias = "project_id")]
    pub project: String,
    #[serde(deserialize_with = "de::string", alias = "domain_id")]
    pub project_domain: String,
    /// Hosts that must not be chosen (the current host when migrating).
    #[serde(deserialize_with = "de::vec_string")]
    pub exclude_hosts: Vec<String>,
    /// Guests being placed (their own usage is not counted twice).
    #[serde(deserialize_with = "de::vec_string")]
    pub guest_ids: Vec<String>,
    #[serde(deserialize_with = "de::string")]
    pub sku: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CandidateDisk {
    pub storage_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CandidateNet {
    pub network_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Candidate {
    pub session_id: String,
    pub host_id: String,
    pub name: String,
    pub disks: Vec<CandidateDisk>,
    pub nets: Vec<CandidateNet>,
    /// Why no host fits (empty when placed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ScheduleOutput {
    pub candidates: Vec<Candidate>,
}
