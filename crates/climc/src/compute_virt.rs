//! Region (compute_v2) commands: disks, snapshots, keypairs, secgroups, EIPs, quotas, tasks.

use crate::commands::CustomCmd;
use crate::spec::Resource;

pub static RESOURCES: &[Resource] = &[];

pub static COMMANDS: &[CustomCmd] = &[];
