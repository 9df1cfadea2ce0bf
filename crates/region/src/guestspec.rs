//! Guest fields that reach a hypervisor's command line or the guest's
//! customisation, checked when a server is created or updated so nothing
//! else is ever stored (the host agent checks them again before use:
//! `cloudpods_host::validate`).

use cloudpods_db::Row;
use cloudpods_rest::{HttpError, Object, Result};
use serde_json::Value;

/// Machine types per hypervisor; empty = the hypervisor's default (`pc`).
pub fn machines(hypervisor: &str) -> &'static [&'static str] {
    match hypervisor {
        "kvm" | "qemu" | "" => &["pc", "q35"],
        _ => &[],
    }
}

const BIOSES: &[&str] = &["BIOS", "UEFI"];
const VGAS: &[&str] = &["std", "cirrus", "vmware", "qxl", "virtio", "none"];
const VDIS: &[&str] = &["vnc", "spice"];

fn str_field<'a>(v: Option<&'a Value>, key: &str) -> Result<&'a str> {
    match v {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(HttpError::input(format!(
            "{key} must be a string, not {other}"
        ))),
    }
}

fn one_of(key: &str, v: &str, allowed: &[&str]) -> Result<()> {
    if v.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(v)) {
        return Ok(());
    }
    Err(HttpError::input(format!(
        "invalid {key} {v:?}: one of {}",
        allowed.join(", ")
    )))
}

/// A host name: dot-separated labels of letters, digits, `-` and `_`
/// (1-63 each), at most 253 characters.
pub fn check_hostname(h: &str) -> Result<()> {
    let ok = h.is_empty()
        || (h.len() <= 253
            && h.split('.').all(|l| {
                (1..=63).contains(&l.len())
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    if ok {
        Ok(())
    } else {
        Err(HttpError::input(format!(
            "invalid hostname {h:?}: labels of letters, digits, '-' and '_' separated by dots"
        )))
    }
}

/// `machine`, `bios`, `vga`, `vdi` and `hostname` of a new server (from the
/// row the generic layer built and the raw input).
pub fn check_create(row: &Row, input: &Object, hypervisor: &str) -> Result<()> {
    let get = |k: &str| row.get(k).or_else(|| input.get(k));
    let machine = str_field(get("machine"), "machine")?;
    let allowed = machines(hypervisor);
    if !machine.is_empty() && !allowed.contains(&machine) {
        return Err(HttpError::input(format!(
            "invalid machine {machine:?} for hypervisor {hypervisor}: one of {}",
            allowed.join(", ")
        )));
    }
    one_of("bios", str_field(get("bios"), "bios")?, BIOSES)?;
    check_update(row)?;
    check_hostname(str_field(input.get("hostname"), "hostname")?)
}

/// The updatable ones (`vga`, `vdi`, `hostname`) of a change.
pub fn check_update(changes: &Row) -> Result<()> {
    one_of("vga", str_field(changes.get("vga"), "vga")?, VGAS)?;
    one_of("vdi", str_field(changes.get("vdi"), "vdi")?, VDIS)?;
    check_hostname(str_field(changes.get("hostname"), "hostname")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn machine_and_friends() {
        let empty = Object::new();
        assert!(check_create(&row(json!({})), &empty, "kvm").is_ok());
        assert!(
            check_create(
                &row(json!({"machine": "q35", "bios": "UEFI"})),
                &empty,
                "kvm"
            )
            .is_ok()
        );
        for bad in [
            json!({"machine": "pc,accel=tcg"}),
            json!({"machine": "virt"}),
            json!({"machine": 5}),
            json!({"bios": "coreboot"}),
            json!({"vga": "std -device foo"}),
            json!({"vdi": "rdp"}),
        ] {
            assert!(
                check_create(&row(bad.clone()), &empty, "kvm").is_err(),
                "{bad}"
            );
        }
        let mut input = Object::new();
        input.insert("hostname".into(), json!("a\nb"));
        assert!(check_create(&row(json!({})), &input, "kvm").is_err());
        assert!(check_hostname("vm-1.example_x").is_ok());
    }
}
