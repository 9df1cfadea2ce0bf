//! Region (compute_v2) commands: zones, wires, networks, hosts, storages, schedtags, SKUs.

use crate::commands::CustomCmd;
use crate::spec::Resource;

pub static RESOURCES: &[Resource] = &[];

pub static COMMANDS: &[CustomCmd] = &[];
