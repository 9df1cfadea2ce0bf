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
    /// Objects `{"id", "strategy"}` or legacy `"ssd:require"` strings.
    #[serde(deserialize_with = "de_schedtags")]
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
    /// Isolated devices (GPUs, USB…) the guest asks for.
    #[serde(deserialize_with = "de_values")]
    pub isolated_devices: Vec<serde_json::Value>,
    #[serde(deserialize_with = "de::string", alias = "image")]
    pub image_id: String,
}

impl ScheduleInput {
    /// Parse a request body as Cloudpods sends it: the input itself or
    /// wrapped as `{"scheduler": {...}}`, with legacy `schedtag.N` keys
    /// (`"schedtag.0": "ssd:require"`) folded into `schedtags`.
    pub fn from_json(body: serde_json::Value) -> Result<ScheduleInput, String> {
        use serde_json::Value;
        let mut obj = match body {
            Value::Object(mut o) if o.len() == 1 && o.contains_key("scheduler") => {
                match o.remove("scheduler") {
                    Some(Value::Object(inner)) => inner,
                    _ => return Err("scheduler must be an object".into()),
                }
            }
            Value::Object(o) => o,
            Value::Null => serde_json::Map::new(),
            _ => return Err("the body must be a JSON object".into()),
        };
        let mut legacy: Vec<(u32, Value)> = Vec::new();
        let keys: Vec<String> = obj
            .keys()
            .filter(|k| k.starts_with("schedtag."))
            .cloned()
            .collect();
        for k in keys {
            let idx: u32 = k["schedtag.".len()..]
                .parse()
                .map_err(|_| format!("bad legacy key {k:?}: expected schedtag.<index>"))?;
            if let Some(v) = obj.remove(&k) {
                legacy.push((idx, v));
            }
        }
        if !legacy.is_empty() {
            legacy.sort_by_key(|(i, _)| *i);
            let list = obj
                .entry("schedtags")
                .or_insert_with(|| Value::Array(Vec::new()));
            if list.is_null() {
                *list = Value::Array(Vec::new());
            }
            let Value::Array(a) = list else {
                return Err("schedtags must be a list".into());
            };
            a.extend(legacy.into_iter().map(|(_, v)| v));
        }
        serde_json::from_value(Value::Object(obj)).map_err(|e| e.to_string())
    }
}

/// Parse a legacy schedtag string: `ssd:require`, or `ssd` (strategy left
/// empty: the tag's default applies).
pub fn parse_schedtag(s: &str) -> SchedTag {
    let s = s.trim();
    match s.rsplit_once(':') {
        Some((id, strategy)) => SchedTag {
            id: id.trim().to_string(),
            strategy: strategy.trim().to_ascii_lowercase(),
        },
        None => SchedTag {
            id: s.to_string(),
            strategy: String::new(),
        },
    }
}

fn de_schedtags<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SchedTag>, D::Error> {
    use serde::de::Error;
    use serde_json::Value;
    let one = |v: Value| -> Result<Option<SchedTag>, D::Error> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(parse_schedtag(&s))),
            o @ Value::Object(_) => serde_json::from_value(o)
                .map(Some)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "a schedtag must be an object or an \"id:strategy\" string, got {other}"
            ))),
        }
    };
    match Value::deserialize(d)? {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for v in items {
                out.extend(one(v)?);
            }
            Ok(out)
        }
        v => Ok(one(v)?.into_iter().collect()),
    }
}

fn de_values<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<serde_json::Value>, D::Error> {
    use serde_json::Value;
    Ok(match Value::deserialize(d)? {
        Value::Null => Vec::new(),
        Value::Array(a) => a.into_iter().filter(|v| !v.is_null()).collect(),
        v => vec![v],
    })
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

/// One host left out by a filter (Cloudpods `FilteredCandidate`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FilteredCandidate {
    pub id: String,
    pub name: String,
    /// The first filter that rejected the host.
    pub filter_name: String,
    pub reasons: Vec<String>,
}

/// `POST /scheduler/forecast` (Cloudpods `SchedForecastResult`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ForecastOutput {
    pub can_create: bool,
    pub candidates: Vec<Candidate>,
    pub req_count: i64,
    /// How many of the requested instances fit now (at most `req_count`).
    pub allow_count: i64,
    /// Aggregated: `"7 hosts: not enough memory"`.
    pub not_allow_reasons: Vec<String>,
    pub filtered_candidates: Vec<FilteredCandidate>,
}

/// One line of `/scheduler/history-list` (Cloudpods `HistoryItem`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HistoryItem {
    pub time: String,
    /// Duration, e.g. `"1.234ms"`.
    pub consuming: String,
    pub session_id: String,
    /// Requested instances (a string, as Cloudpods answers it).
    pub count: String,
    pub tenants: Vec<String>,
    /// `succeed` or `failed`.
    pub status: String,
    pub guests: Vec<String>,
    pub is_suggestion: bool,
    /// Placed instances.
    pub placed: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `/scheduler/history-list` (Cloudpods `HistoryResult`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HistoryList {
    pub data: Vec<HistoryItem>,
    pub total: i64,
    pub offset: i64,
    pub limit: i64,
}

/// `/scheduler/history-detail/{session}` answers `{"history": HistoryDetail}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HistoryDetail {
    pub time: String,
    pub consuming: String,
    pub session_id: String,
    /// The request and the answer as JSON text (Cloudpods' raw fields).
    pub input: String,
    pub output: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub is_suggestion: bool,
    pub schedule_input: ScheduleInput,
    pub candidates: Vec<Candidate>,
    /// Aggregated reasons, most frequent first.
    pub not_allow_reasons: Vec<String>,
    /// Per rejected host (bounded; `filtered_total` counts them all).
    pub filtered_candidates: Vec<FilteredCandidate>,
    pub filtered_total: i64,
}

/// Free / reserved / total of one resource of a candidate (the field name
/// `reserverd` is Cloudpods' own spelling).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ResultResource {
    pub free: f64,
    #[serde(rename = "reserverd", alias = "reserved")]
    pub reserved: f64,
    pub total: f64,
}

/// One host as the scheduler's cache sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CandidateItem {
    pub id: String,
    pub name: String,
    /// vCPUs (after the overcommit bound and the host's reservation).
    pub cpu: ResultResource,
    /// MB.
    pub mem: ResultResource,
    /// MB, over the host's storages.
    pub storage: ResultResource,
    pub status: String,
    pub host_status: String,
    /// `enable` or `disable`.
    pub enable_status: String,
    pub host_type: String,
    pub is_maintenance: bool,
    pub zone_id: String,
    pub zone: String,
    pub cloudregion_id: String,
    pub domain_id: String,
    pub schedtags: Vec<String>,
    pub guests: i64,
    /// Creations in flight: guests being created plus pending placements.
    pub creating: i64,
    /// Placements held for sessions not yet written to the database.
    pub pending: i64,
}

/// `/scheduler/candidate-list` (Cloudpods `CandidateListResult`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CandidateList {
    pub data: Vec<CandidateItem>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// A storage of a candidate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CandidateStorage {
    pub id: String,
    pub name: String,
    pub storage_type: String,
    pub medium_type: String,
    pub enabled: bool,
    pub status: String,
    /// MB.
    pub capacity: ResultResource,
}

/// A network reachable from a candidate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CandidateNetwork {
    pub id: String,
    pub name: String,
    pub wire_id: String,
    pub server_type: String,
    /// Addresses.
    pub ports: ResultResource,
}

/// `/scheduler/candidate-detail/{id}` answers `{"candidate": CandidateDetail}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CandidateDetail {
    #[serde(flatten)]
    pub host: CandidateItem,
    pub storages: Vec<CandidateStorage>,
    pub networks: Vec<CandidateNetwork>,
    pub wires: Vec<String>,
    /// Sessions holding placements on this host.
    pub sessions: Vec<String>,
}
