//! Scheduler commands: forecast a placement, and read the history of past
//! decisions with the reasons each host was left out.

use clap::{Arg, ArgAction, ArgMatches};
use cloudpods_sdk::reqwest::Method;
use cloudpods_sdk::reqwest::header::HeaderMap;
use futures::FutureExt;
use serde_json::{Map, Value, json};

use crate::cli::Ctx;
use crate::commands::CustomCmd;
use crate::output::Format;

const SERVICE: &str = "scheduler";

/// `2g`, `512m`, `1t` or plain MB.
fn size_mb(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last() {
        Some('g') => (&t[..t.len() - 1], 1024),
        Some('t') => (&t[..t.len() - 1], 1024 * 1024),
        Some('m') => (&t[..t.len() - 1], 1),
        _ => (t.as_str(), 1),
    };
    let n: i64 = num
        .trim_end_matches('b')
        .parse()
        .map_err(|_| anyhow::anyhow!("bad size {s:?}: expected e.g. 2048, 512m, 2g"))?;
    Ok(n * mult)
}

fn forecast_args() -> Vec<Arg> {
    vec![
        Arg::new("ncpu")
            .long("ncpu")
            .help("vCPUs per server")
            .default_value("1"),
        Arg::new("mem")
            .long("mem")
            .help("Memory per server, e.g. 2g or 2048 (MB)")
            .default_value("512"),
        Arg::new("disk")
            .long("disk")
            .action(ArgAction::Append)
            .help("Disk size, e.g. 10g (repeatable; the first is the system disk)"),
        Arg::new("net")
            .long("net")
            .action(ArgAction::Append)
            .help("Network id or name, optionally NETWORK:ADDRESS (repeatable)"),
        Arg::new("count")
            .long("count")
            .help("How many servers")
            .default_value("1"),
        Arg::new("hypervisor").long("hypervisor").help("e.g. kvm"),
        Arg::new("host")
            .long("host")
            .help("Only this host (prefer_host)"),
        Arg::new("zone")
            .long("zone")
            .help("Only this zone (prefer_zone)"),
        Arg::new("schedtag")
            .long("schedtag")
            .action(ArgAction::Append)
            .help("TAG:require|exclude|prefer|avoid (repeatable)"),
        Arg::new("project").long("project").help("Owner project"),
    ]
}

fn forecast_body(m: &ArgMatches) -> anyhow::Result<Value> {
    let get = |k: &str| m.get_one::<String>(k).cloned().unwrap_or_default();
    let int = |k: &str| -> anyhow::Result<i64> {
        get(k)
            .parse()
            .map_err(|_| anyhow::anyhow!("--{k} must be a whole number"))
    };
    let disks = m
        .get_many::<String>("disk")
        .into_iter()
        .flatten()
        .map(|d| size_mb(d).map(|mb| json!({"size": mb})))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let nets: Vec<Value> = m
        .get_many::<String>("net")
        .into_iter()
        .flatten()
        .map(|n| match n.split_once(':') {
            Some((net, addr)) => json!({"network": net, "address": addr}),
            None => json!({"network": n}),
        })
        .collect();
    let tags = m
        .get_many::<String>("schedtag")
        .into_iter()
        .flatten()
        .map(|t| match t.split_once(':') {
            Some((id, strategy)) => Ok(json!({"id": id, "strategy": strategy})),
            None => Err(anyhow::anyhow!(
                "--schedtag {t:?}: expected TAG:require|exclude|prefer|avoid"
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(json!({"scheduler": {
        "vcpu_count": int("ncpu")?,
        "vmem_size": size_mb(&get("mem"))?,
        "disks": disks,
        "nets": nets,
        "count": int("count")?,
        "hypervisor": get("hypervisor"),
        "prefer_host": get("host"),
        "prefer_zone": get("zone"),
        "schedtags": tags,
        "project": get("project"),
    }}))
}

async fn call(ctx: &Ctx, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let r = ctx
        .client()
        .await?
        .raw(method, SERVICE, path, None, body, HeaderMap::new())
        .await?;
    Ok(r.body)
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The reasons, then up to `limit` rejected hosts, as text.
fn explain(v: &Value, limit: usize) -> String {
    let mut out = String::new();
    let reasons = str_list(&v["not_allow_reasons"]);
    if !reasons.is_empty() {
        out.push_str("Why not:\n");
        for r in &reasons {
            out.push_str(&format!("  {r}\n"));
        }
    }
    let filtered = v["filtered_candidates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !filtered.is_empty() {
        out.push_str("Hosts left out:\n");
        for f in filtered.iter().take(limit) {
            let name = f["name"].as_str().unwrap_or_default();
            let filter = f["filter_name"].as_str().unwrap_or_default();
            let why = str_list(&f["reasons"]).join("; ");
            out.push_str(&format!("  {name} [{filter}]: {why}\n"));
        }
        let total = v["filtered_total"]
            .as_u64()
            .unwrap_or(filtered.len() as u64) as usize;
        if total > limit.min(filtered.len()) {
            out.push_str(&format!(
                "  … and {} more\n",
                total - limit.min(filtered.len())
            ));
        }
    }
    out
}

async fn forecast(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let body = forecast_body(m)?;
    let v = call(ctx, Method::POST, "/scheduler/forecast", Some(body)).await?;
    if ctx.opts.format == Format::Json {
        ctx.print(&crate::output::render_object(&v, Format::Json));
        return Ok(());
    }
    let can = v["can_create"].as_bool().unwrap_or(false);
    let mut text = format!(
        "Can create: {} ({} of {} requested fit)\n",
        if can { "yes" } else { "no" },
        v["allow_count"].as_i64().unwrap_or(0),
        v["req_count"].as_i64().unwrap_or(0)
    );
    text.push_str(&explain(&v, 20));
    ctx.print(text.trim_end());
    Ok(())
}

async fn history_list(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let mut q = Map::new();
    if let Some(l) = m.get_one::<String>("limit") {
        q.insert("limit".into(), json!(l));
    }
    let r = ctx
        .client()
        .await?
        .raw(
            Method::GET,
            SERVICE,
            "/scheduler/history-list",
            Some(&q),
            None,
            HeaderMap::new(),
        )
        .await?;
    let list = cloudpods_sdk::ListResult::from_body(&r.body, "data").map_err(anyhow::Error::msg)?;
    crate::commands::print_list(
        ctx,
        &list,
        "data",
        &[
            "Session_id",
            "Time",
            "Consuming",
            "Count",
            "Placed",
            "Status",
            "Error",
        ],
        m,
    );
    Ok(())
}

async fn history_show(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let session = m
        .get_one::<String>("SESSION")
        .ok_or_else(|| anyhow::anyhow!("missing SESSION"))?;
    let v = call(
        ctx,
        Method::GET,
        &format!("/scheduler/history-detail/{session}"),
        None,
    )
    .await?;
    let h = v.get("history").cloned().unwrap_or(v);
    if ctx.opts.format == Format::Json {
        ctx.print(&crate::output::render_object(&h, Format::Json));
        return Ok(());
    }
    let mut text = format!(
        "Session:  {}\nTime:     {}\nTook:     {}\n",
        h["session_id"].as_str().unwrap_or_default(),
        h["time"].as_str().unwrap_or_default(),
        h["consuming"].as_str().unwrap_or_default()
    );
    let placed: Vec<String> = h["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["error"].as_str().unwrap_or_default().is_empty())
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect();
    text.push_str(&format!(
        "Placed:   {}\n",
        if placed.is_empty() {
            "nothing".to_string()
        } else {
            placed.join(", ")
        }
    ));
    if let Some(e) = h["error"].as_str().filter(|e| !e.is_empty()) {
        text.push_str(&format!("Error:    {e}\n"));
    }
    text.push_str(&explain(&h, 50));
    ctx.print(text.trim_end());
    Ok(())
}

fn history_list_args() -> Vec<Arg> {
    vec![
        Arg::new("limit")
            .long("limit")
            .help("How many sessions")
            .default_value("20"),
    ]
}

fn history_show_args() -> Vec<Arg> {
    vec![
        Arg::new("SESSION")
            .required(true)
            .help("Session id (a task id)"),
    ]
}

pub static COMMANDS: &[CustomCmd] = &[
    CustomCmd {
        name: "scheduler-forecast",
        about: "Can these servers be created now, and if not, why",
        args: forecast_args,
        list_flags: false,
        run: |ctx, m| forecast(ctx, m).boxed(),
    },
    CustomCmd {
        name: "scheduler-history-list",
        about: "Recent scheduling decisions",
        args: history_list_args,
        list_flags: false,
        run: |ctx, m| history_list(ctx, m).boxed(),
    },
    CustomCmd {
        name: "scheduler-history-show",
        about: "One scheduling decision with the reason each host was left out",
        args: history_show_args,
        list_flags: false,
        run: |ctx, m| history_show(ctx, m).boxed(),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size_mb("2g").ok(), Some(2048));
        assert_eq!(size_mb("512").ok(), Some(512));
        assert_eq!(size_mb("512M").ok(), Some(512));
        assert!(size_mb("lots").is_err());
    }
}
