//! What a hypervisor tells the region about itself: CPUs, CPU model,
//! memory and the capacity of its local storage.

use std::path::Path;

#[derive(Debug, Clone)]
pub struct HostFacts {
    pub cpu_count: i64,
    pub cpu_model: String,
    pub mem_mb: i64,
    /// Size of the filesystem holding the storage path.
    pub storage_mb: i64,
}

pub fn collect(storage: &Path) -> HostFacts {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_count = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
        .max(1) as i64;
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_mb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    HostFacts {
        cpu_count,
        cpu_model,
        mem_mb,
        storage_mb: fs_size_mb(storage),
    }
}

/// Total size of the filesystem holding `path` (0 when unknown).
pub fn fs_size_mb(path: &Path) -> i64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid
    // NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return 0;
        }
        (st.f_blocks as u128 * st.f_frsize as u128 / (1024 * 1024)) as i64
    }
}
