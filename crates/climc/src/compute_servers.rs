//! Region (compute_v2) commands: servers.

use crate::commands::CustomCmd;
use crate::spec::Resource;

pub static RESOURCES: &[Resource] = &[];

pub static COMMANDS: &[CustomCmd] = &[];
