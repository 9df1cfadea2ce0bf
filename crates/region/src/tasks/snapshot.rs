//! Snapshot and standalone disk tasks (create, resize, delete, reset).

use std::sync::{Arc, Weak};

use crate::Region;

/// Register the task types of this module.
pub fn register(_region: &Arc<Region>, _w: &Weak<Region>) {}
