//! The region's infrastructure through the real API: cloud regions, zones,
//! VPCs, wires, networks (ranges, prefixes, overlaps, reservations, range
//! changes), hosts (registration, heartbeat, offline and back, capacity,
//! maintenance), storages, schedtags, server SKUs; IPAM through server
//! creates; climc's infrastructure commands.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn region_opts(backend: Backend, env: &[(&str, &str)]) -> Opts {
    Opts {
        backend: Some(backend),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

async fn ok(resp: Resp) -> Value {
    assert_eq!(resp.status, 200, "{resp:?}");
    resp.body
}

#[tokio::test]
async fn zones_vpcs_wires_crud_details_and_refusals() {
    for backend in backends() {
        let p = Platform::start_with(region_opts(backend, &[]));
        let a = p.admin().await;
        let r = p.region_url();

        // The local region and VPC exist from the start.
        let regions = ok(a.get(&format!("{r}/cloudregions")).await).await;
        assert_eq!(regions["cloudregions"][0]["id"], "default", "{regions}");
        let vpc = ok(a.get(&format!("{r}/vpcs/default")).await).await;
        assert_eq!(vpc["vpc"]["is_default"], true);
        assert_eq!(vpc["vpc"]["cloudregion"], "Default", "{vpc}");

        // Zones.
        let z = ok(a
            .post(
                &format!("{r}/zones"),
                json!({"zone": {"name": "z1", "location": "rack 4"}}),
            )
            .await)
        .await;
        assert_eq!(z["zone"]["cloudregion_id"], "default");
        assert_eq!(z["zone"]["cloudregion"], "Default", "{z}");
        assert_eq!(z["zone"]["hosts"], 0);
        assert_error(
            &a.post(&format!("{r}/zones"), json!({"zone": {"name": "z1"}}))
                .await,
            409,
            "DuplicateNameError",
        );
        assert_error(
            &a.post(
                &format!("{r}/zones"),
                json!({"zone": {"name": "z2", "cloudregion": "nowhere"}}),
            )
            .await,
            404,
            "ResourceNotFoundError",
        );
        let z = ok(a
            .put(
                &format!("{r}/zones/z1"),
                Some(json!({"zone": {"contacts": "ops"}})),
            )
            .await)
        .await;
        assert_eq!(z["zone"]["contacts"], "ops");

        // VPCs with a CIDR block.
        assert_error(
            &a.post(
                &format!("{r}/vpcs"),
                json!({"vpc": {"name": "v-bad", "cidr_block": "10.20.0.1/16"}}),
            )
            .await,
            400,
            "InputParameterError",
        );
        ok(a.post(
            &format!("{r}/vpcs"),
            json!({"vpc": {"name": "v1", "cidr_block": "10.20.0.0/16"}}),
        )
        .await)
        .await;

        // Wires.
        for (body, code, class) in [
            (json!({"name": "w0"}), 400, "MissingParameterError"),
            (
                json!({"name": "w0", "zone": "nozone"}),
                404,
                "ResourceNotFoundError",
            ),
            (
                json!({"name": "w0", "zone": "z1", "vpc": "novpc"}),
                404,
                "ResourceNotFoundError",
            ),
            (
                json!({"name": "w0", "zone": "z1", "mtu": 10}),
                400,
                "InputParameterError",
            ),
            (
                json!({"name": "w0", "zone": "z1", "bandwidth": -1}),
                400,
                "InputParameterError",
            ),
        ] {
            assert_error(
                &a.post(&format!("{r}/wires"), json!({ "wire": body })).await,
                code,
                class,
            );
        }
        let w = ok(a
            .post(
                &format!("{r}/wires"),
                json!({"wire": {"name": "w1", "zone": "z1", "vpc": "v1", "bandwidth": 10000}}),
            )
            .await)
        .await;
        assert_eq!(w["wire"]["zone"], "z1", "{w}");
        assert_eq!(w["wire"]["vpc"], "v1");
        assert_eq!(w["wire"]["networks"], 0);
        let w = ok(a
            .put(
                &format!("{r}/wires/w1"),
                Some(json!({"wire": {"mtu": 9000}})),
            )
            .await)
        .await;
        assert_eq!(w["wire"]["mtu"], 9000);
        assert_error(
            &a.put(&format!("{r}/wires/w1"), Some(json!({"wire": {"mtu": 0}})))
                .await,
            400,
            "InputParameterError",
        );

        // A network of v1 must lie in its CIDR block.
        assert_error(
            &a.post(
                &format!("{r}/networks"),
                json!({"network": {"name": "n-out", "wire": "w1", "guest_ip_start": "10.30.0.2",
                       "guest_ip_end": "10.30.0.9", "guest_ip_mask": 24}}),
            )
            .await,
            400,
            "InputParameterError",
        );
        let n = ok(a
            .post(
                &format!("{r}/networks"),
                json!({"network": {"name": "n1", "wire": "w1", "guest_ip_start": "10.20.1.2",
                       "guest_ip_end": "10.20.1.9", "guest_ip_mask": 24, "guest_gateway": "10.20.1.1"}}),
            )
            .await)
        .await;
        assert_eq!(n["network"]["vpc"], "v1", "{n}");
        assert_eq!(n["network"]["zone"], "z1");

        // Details count what is below.
        let z = ok(a.get(&format!("{r}/zones/z1")).await).await;
        assert_eq!(
            (z["zone"]["wires"].clone(), z["zone"]["networks"].clone()),
            (json!(1), json!(1)),
            "{z}"
        );
        let v = ok(a.get(&format!("{r}/vpcs/v1")).await).await;
        assert_eq!(v["vpc"]["wire_count"], 1);
        assert_eq!(v["vpc"]["network_count"], 1);
        let cr = ok(a.get(&format!("{r}/cloudregions/default")).await).await;
        assert_eq!(cr["cloudregion"]["zone_count"], 1, "{cr}");
        assert_eq!(cr["cloudregion"]["vpc_count"], 2);
        let zl = ok(a.get(&format!("{r}/wires?zone=z1")).await).await;
        assert_eq!(zl["total"], 1, "{zl}");
        let zl = ok(a.get(&format!("{r}/networks?vpc=v1")).await).await;
        assert_eq!(zl["total"], 1, "{zl}");
        assert_error(
            &a.get(&format!("{r}/wires?zone=nozone")).await,
            404,
            "ResourceNotFoundError",
        );

        // Nothing in use can go.
        for (url, code, class) in [
            ("zones/z1", 406, "NotEmptyError"),
            ("vpcs/v1", 406, "NotEmptyError"),
            ("wires/w1", 406, "NotEmptyError"),
            ("vpcs/default", 403, "ProtectedResourceError"),
            ("cloudregions/default", 403, "ProtectedResourceError"),
        ] {
            assert_error(&a.delete(&format!("{r}/{url}")).await, code, class);
        }
        for url in ["networks/n1", "wires/w1", "vpcs/v1", "zones/z1"] {
            ok(a.delete(&format!("{r}/{url}")).await).await;
        }
        assert_eq!(a.get(&format!("{r}/zones/z1")).await.status, 404);
    }
}

#[tokio::test]
async fn networks_ranges_prefixes_overlaps_reservations() {
    for backend in backends() {
        let p = Platform::start_with(region_opts(backend, &[]));
        let a = p.admin().await;
        let r = p.region_url();
        p.basic_network(&a).await;
        let net = |body: Value| json!({ "network": body });

        // The prefix shorthand fills start, end, mask and gateway.
        let n = ok(a
            .post(
                &format!("{r}/networks"),
                net(json!({"name": "np", "wire": "wire0", "ip_prefix": "10.1.0.0/24"})),
            )
            .await)
        .await["network"]
            .clone();
        assert_eq!(
            (
                n["guest_ip_start"].clone(),
                n["guest_ip_end"].clone(),
                n["guest_ip_mask"].clone(),
                n["guest_gateway"].clone()
            ),
            (
                json!("10.1.0.2"),
                json!("10.1.0.254"),
                json!(24),
                json!("10.1.0.1")
            ),
            "{n}"
        );
        assert_eq!(n["ports"], 253);
        assert_eq!(n["ports_used"], 0);
        assert_eq!(n["exit"], false);
        assert_eq!(
            (n["wire"].clone(), n["zone"].clone(), n["vpc_id"].clone()),
            (json!("wire0"), json!("zone0"), json!("default"))
        );
        let n = ok(a
            .post(
                &format!("{r}/networks"),
                net(
                    json!({"name": "pub", "wire": "wire0", "guest_ip_prefix": "8.8.4.0/28",
                           "guest_gateway": "8.8.4.14", "alloc_policy": "stepdown"}),
                ),
            )
            .await)
        .await["network"]
            .clone();
        assert_eq!(n["guest_ip_start"], "8.8.4.1");
        assert_eq!(n["guest_ip_end"], "8.8.4.13");
        assert_eq!(n["exit"], true);

        // Bad definitions.
        let base = json!({"name": "nb", "wire": "wire0", "guest_ip_start": "10.2.0.10",
                          "guest_ip_end": "10.2.0.20", "guest_ip_mask": 24});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            net(b)
        };
        for (body, code, class) in [
            (
                with("guest_ip_end", json!("10.2.0.5")),
                400,
                "InputParameterError",
            ),
            (
                with("guest_ip_end", json!("10.2.1.20")),
                400,
                "InputParameterError",
            ),
            (with("guest_ip_mask", json!(40)), 400, "InputParameterError"),
            (
                with("guest_ip_start", json!("10.2.0.x")),
                400,
                "InputParameterError",
            ),
            (
                with("guest_gateway", json!("10.2.0.15")),
                400,
                "InputParameterError",
            ),
            (
                with("alloc_policy", json!("sideways")),
                400,
                "InputParameterError",
            ),
            (
                with("guest_dns", json!("8.8.8.8,not-an-ip")),
                400,
                "InputParameterError",
            ),
            (with("vlan_id", json!(5000)), 400, "InputParameterError"),
            (
                with("server_type", json!("toaster")),
                400,
                "InputParameterError",
            ),
            (with("wire", json!("nowire")), 404, "ResourceNotFoundError"),
            (
                net(json!({"name": "nb", "wire": "wire0", "ip_prefix": "10.3.0.0/33"})),
                400,
                "InputParameterError",
            ),
            (
                net(json!({"name": "nb", "wire": "wire0", "guest_ip_start": "10.2.0.10"})),
                400,
                "MissingParameterError",
            ),
            (
                net(
                    json!({"name": "nb", "guest_ip_start": "10.2.0.10", "guest_ip_end": "10.2.0.20",
                        "guest_ip_mask": 24}),
                ),
                400,
                "MissingParameterError",
            ),
            // Overlaps net0 (10.0.0.10-250): same wire, then another zone of
            // the same (default) VPC.
            (
                net(
                    json!({"name": "nb", "wire": "wire0", "guest_ip_start": "10.0.0.240",
                        "guest_ip_end": "10.0.0.254", "guest_ip_mask": 24}),
                ),
                409,
                "ConflictError",
            ),
        ] {
            assert_error(
                &a.post(&format!("{r}/networks"), body.clone()).await,
                code,
                class,
            );
        }
        ok(
            a.post(&format!("{r}/zones"), json!({"zone": {"name": "zone1"}}))
                .await,
        )
        .await;
        ok(a.post(
            &format!("{r}/wires"),
            json!({"wire": {"name": "wire1", "zone": "zone1"}}),
        )
        .await)
        .await;
        assert_error(
            &a.post(
                &format!("{r}/networks"),
                net(
                    json!({"name": "nb", "wire": "wire1", "guest_ip_start": "10.1.0.100",
                           "guest_ip_end": "10.1.0.110", "guest_ip_mask": 24}),
                ),
            )
            .await,
            409,
            "ConflictError",
        );
        // zone + vpc instead of the wire.
        let n = ok(a
            .post(
                &format!("{r}/networks"),
                net(json!({"name": "nz", "zone": "zone1", "vpc": "default", "guest_ip_start": "10.0.0.2",
                           "guest_ip_end": "10.0.0.9", "guest_ip_mask": 24})),
            )
            .await)
        .await;
        assert_eq!(n["network"]["wire"], "wire1", "{n}");

        // Reserved addresses.
        let rip = ok(a
            .post(
                &format!("{r}/reservedips"),
                json!({"reservedip": {"network": "net0", "ip_addr": "10.0.0.20", "notes": "router"}}),
            )
            .await)
        .await;
        assert_eq!(rip["reservedip"]["network"], "net0", "{rip}");
        for (ip, code, class) in [
            ("10.0.0.20", 409, "ConflictError"),
            ("10.0.0.251", 400, "InputParameterError"),
            ("10.0.0", 400, "InputParameterError"),
        ] {
            assert_error(
                &a.post(
                    &format!("{r}/reservedips"),
                    json!({"reservedip": {"network": "net0", "ip_addr": ip}}),
                )
                .await,
                code,
                class,
            );
        }
        assert_error(
            &a.post(
                &format!("{r}/reservedips"),
                json!({"reservedip": {"ip_addr": "10.0.0.21"}}),
            )
            .await,
            400,
            "MissingParameterError",
        );
        ok(a.post(
            &format!("{r}/networks/net0/reserve-ip"),
            json!({"network": {"ips": ["10.0.0.21", "10.0.0.22"], "notes": "lb", "duration": "1D"}}),
        )
        .await)
        .await;
        assert_error(
            &a.post(
                &format!("{r}/networks/net0/reserve-ip"),
                json!({"ips": ["10.0.0.21"]}),
            )
            .await,
            409,
            "ConflictError",
        );
        let ips = ok(a.get(&format!("{r}/networks/net0/reserved-ips")).await).await;
        assert_eq!(
            ips["network"]["reserved_ips"],
            json!(["10.0.0.20", "10.0.0.21", "10.0.0.22"]),
            "{ips}"
        );
        ok(a.post(
            &format!("{r}/networks/net0/release-reserved-ip"),
            json!({"ip": "10.0.0.22"}),
        )
        .await)
        .await;
        assert_error(
            &a.post(
                &format!("{r}/networks/net0/release-reserved-ip"),
                json!({"ip": "10.0.0.22"}),
            )
            .await,
            400,
            "InvalidStatusError",
        );
        let n = ok(a.get(&format!("{r}/networks/net0")).await).await;
        assert_eq!(n["network"]["ports"], 241);
        assert_eq!(n["network"]["ports_used"], 2, "{n}");
        assert_eq!(n["network"]["reserve_vnics"], 2);
        let l = ok(a.get(&format!("{r}/reservedips?network=net0")).await).await;
        assert_eq!(l["total"], 2, "{l}");

        // The range changes only when no address in use falls outside it.
        let upd = |body: Value| {
            let (a, url) = (a.clone(), format!("{r}/networks/net0"));
            async move { a.put(&url, Some(json!({ "network": body }))).await }
        };
        assert_error(
            &upd(json!({"guest_ip_start": "10.0.0.30"})).await,
            400,
            "InputParameterError",
        );
        assert_error(
            &upd(json!({"guest_ip_end": "10.0.0.5"})).await,
            400,
            "InputParameterError",
        );
        // Into nz's 10.0.0.2-9: overlap.
        assert_error(
            &upd(json!({"guest_ip_start": "10.0.0.8"})).await,
            409,
            "ConflictError",
        );
        let n = ok(upd(
            json!({"guest_ip_start": "10.0.0.15", "guest_ip_end": "10.0.0.100",
                             "guest_dns": "1.1.1.1", "alloc_policy": "random"}),
        )
        .await)
        .await;
        assert_eq!(n["network"]["guest_ip_start"], "10.0.0.15");
        assert_eq!(n["network"]["ports"], 86);
        assert_eq!(n["network"]["alloc_policy"], "random");
        assert_error(
            &upd(json!({"alloc_policy": "sideways"})).await,
            400,
            "InputParameterError",
        );

        // A network holding only reservations goes, with them.
        ok(a.delete(&format!("{r}/networks/net0")).await).await;
        let l = ok(a.get(&format!("{r}/reservedips")).await).await;
        assert_eq!(l["reservedips"], json!([]), "{l}");
    }
}

/// Servers created concurrently on a small network get distinct
/// addresses; a full network fails the create naming it; released
/// addresses wait for `ip_reuse_seconds`; the policy decides the order; a
/// network with NICs cannot be deleted.
#[tokio::test]
async fn ipam_through_server_creates() {
    for backend in backends() {
        ipam_through_server_creates_on(backend).await;
    }
}

async fn ipam_through_server_creates_on(backend: Backend) {
    let p = Platform::start_with(region_opts(
        backend,
        &[("CLOUDPODS_REGION__IP_REUSE_SECONDS", "4")],
    ));
    let a = p.admin().await;
    let r = p.region_url();
    p.basic_network(&a).await;
    // 30 addresses, stepping down.
    ok(a.post(
        &format!("{r}/networks"),
        json!({"network": {"name": "small", "wire": "wire0", "guest_ip_start": "10.0.1.11",
               "guest_ip_end": "10.0.1.40", "guest_ip_mask": 24, "alloc_policy": "stepdown"}}),
    )
    .await)
    .await;
    let _host = p.sim_host(SimOpts {
        cpu: 512,
        ..Default::default()
    });
    let server = |name: &str, count: u32| {
        json!({"server": {"name": name, "vcpu_count": 1, "vmem_size": 64,
                          "disks": [{"size": 16}], "nets": [{"network": "small"}]},
               "count": count})
    };
    // Six requests of five servers at once.
    let mut reqs = Vec::new();
    for k in 0..6 {
        let (a, r, body) = (a.clone(), r.clone(), server(&format!("b{k}"), 5));
        reqs.push(tokio::spawn(async move {
            a.post(&format!("{r}/servers"), body).await
        }));
    }
    for q in reqs {
        let resp = q.await.expect("join");
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    let list = wait_until(
        &a,
        &format!("{r}/servers?scope=system&limit=100"),
        120,
        |b| {
            b["servers"].as_array().is_some_and(|s| {
                s.len() == 30
                    && s.iter().all(|x| {
                        x["status"] == "ready"
                            || x["status"].as_str().is_some_and(|st| st.ends_with("fail"))
                    })
            })
        },
    )
    .await;
    let servers = list["servers"].as_array().expect("servers");
    assert!(
        servers.iter().all(|s| s["status"] == "ready"),
        "{}",
        serde_json::to_string_pretty(&list).unwrap_or_default()
    );
    let ips: HashSet<String> = servers
        .iter()
        .map(|s| s["ips"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ips.len(), 30, "{ips:?}");
    let n = ok(a.get(&format!("{r}/networks/small")).await).await;
    assert_eq!(
        (
            n["network"]["ports"].clone(),
            n["network"]["ports_used"].clone()
        ),
        (json!(30), json!(30))
    );
    assert_eq!(n["network"]["vnics"], 30);

    // Full: the scheduler refuses it (or, racing it, the network step),
    // naming the network.
    let resp = a.post(&format!("{r}/servers"), server("extra", 1)).await;
    let id = ok(resp).await["server"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let s = wait_until(&a, &format!("{r}/servers/{id}"), 30, |b| {
        b["server"]["status"] == "sched_fail" || b["server"]["status"] == "net_fail"
    })
    .await;
    let reason = s["server"]["fail_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("small")
            && (reason.contains("no free address") || reason.contains("0 free addresses")),
        "{s}"
    );
    ok(a.delete(&format!("{r}/servers/{id}")).await).await;

    // A network with NICs stays.
    assert_error(
        &a.delete(&format!("{r}/networks/small")).await,
        406,
        "NotEmptyError",
    );

    // Release two addresses: for ip_reuse_seconds they are held back.
    let freed: Vec<(String, String)> = servers[..2]
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_string(),
                s["ips"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (id, _) in &freed {
        ok(a.delete(&format!("{r}/servers/{id}")).await).await;
    }
    for (id, _) in &freed {
        wait_until(&a, &format!("{r}/servers/{id}"), 30, |b| b["code"] == 404).await;
    }
    let resp = a.post(&format!("{r}/servers"), server("early", 1)).await;
    let id = ok(resp).await["server"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let s = wait_until(&a, &format!("{r}/servers/{id}"), 30, |b| {
        b["server"]["status"] == "sched_fail" || b["server"]["status"] == "net_fail"
    })
    .await;
    assert!(
        s["server"]["fail_reason"].as_str().is_some_and(|x| {
            x.contains("released recently") || x.contains("held back after release")
        }),
        "{s}"
    );
    ok(a.delete(&format!("{r}/servers/{id}")).await).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let resp = a.post(&format!("{r}/servers"), server("later", 1)).await;
    let id = ok(resp).await["server"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let s = wait_until(&a, &format!("{r}/servers/{id}"), 30, |b| {
        b["server"]["status"] == "ready"
    })
    .await;
    let got = s["server"]["ips"].as_str().unwrap_or_default().to_string();
    assert!(
        freed.iter().any(|(_, ip)| *ip == got),
        "{got} not in {freed:?}"
    );

    // A requested address outside the range: 400 at once.
    let resp = a
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "out", "vcpu_count": 1, "vmem_size": 64, "disks": [{"size": 16}],
                              "nets": [{"network": "net0", "address": "10.0.0.251"}]}}),
        )
        .await;
    assert_error(&resp, 400, "InputParameterError");
    // The policy: net0 steps up from its start.
    let resp = a
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "up", "vcpu_count": 1, "vmem_size": 64, "disks": [{"size": 16}],
                              "nets": [{"network": "net0"}]}}),
        )
        .await;
    let id = ok(resp).await["server"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let s = wait_until(&a, &format!("{r}/servers/{id}"), 30, |b| {
        b["server"]["status"] == "ready"
    })
    .await;
    assert_eq!(s["server"]["ips"], "10.0.0.10", "{s}");
    // Asking for an address in use: refused, at once or by the create task.
    let resp = a
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "dup", "vcpu_count": 1, "vmem_size": 64, "disks": [{"size": 16}],
                              "nets": [{"network": "net0", "address": "10.0.0.10"}]}}),
        )
        .await;
    if resp.status == 200 {
        let id = resp.body["server"]["id"].as_str().expect("id").to_string();
        let s = wait_until(&a, &format!("{r}/servers/{id}"), 30, |b| {
            b["server"]["status"] == "net_fail"
        })
        .await;
        assert!(
            s["server"]["fail_reason"]
                .as_str()
                .is_some_and(|x| x.contains("10.0.0.10") && x.contains("in use")),
            "{s}"
        );
    } else {
        assert_error(&resp, 409, "ConflictError");
    }
}

/// A host registers, pings, goes offline when silent and comes back when it
/// pings again; its details show what runs on it; the validation of its
/// settings; enable/disable/maintenance; delete only when disabled and
/// empty, taking its joints and local storage along.
#[tokio::test]
async fn hosts_heartbeat_capacity_and_lifecycle() {
    let p = Platform::start_with(region_opts(
        Backend::Sqlite,
        &[("CLOUDPODS_REGION__HOST_OFFLINE_SECONDS", "2")],
    ));
    let a = p.admin().await;
    let r = p.region_url();
    p.basic_network(&a).await;
    let mut host = p.sim_host(SimOpts {
        ping_seconds: 3600,
        ..Default::default()
    });
    let url = format!("{r}/hosts/{}", host.host_id);

    let h = ok(a.get(&url).await).await["host"].clone();
    assert_eq!(h["host_status"], "online", "{h}");
    assert_eq!(h["zone"], "zone0");
    assert_eq!(h["cloudregion"], "Default");
    assert_eq!(h["storage"], 4096 * 1024, "{h}");
    assert_eq!(h["guests"], 0);

    // Silent: offline. A ping: online at once. Silent again, then the agent
    // restarts and pings: online.
    wait_until(&a, &url, 40, |b| b["host"]["host_status"] == "offline").await;
    let pong = ok(a.post(&format!("{url}/ping"), json!({})).await).await;
    assert_eq!(pong["host"]["host_status"], "online", "{pong}");
    assert_eq!(ok(a.get(&url).await).await["host"]["host_status"], "online");
    wait_until(&a, &url, 40, |b| b["host"]["host_status"] == "offline").await;
    host.restart();
    wait_until(&a, &url, 10, |b| b["host"]["host_status"] == "online").await;
    // Keep it online for the rest of the test.
    let keep = {
        let (a, url) = (a.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                a.post(&format!("{url}/ping"), json!({})).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // What runs on it shows in its details and its storage's.
    let resp = a
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "vm", "vcpu_count": 3, "vmem_size": 2048, "disks": [{"size": 10240}],
                              "nets": [{"network": "net0"}], "auto_start": true, "prefer_host": host.host_id}}),
        )
        .await;
    let sid = ok(resp).await["server"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_until(&a, &format!("{r}/servers/{sid}"), 60, |b| {
        b["server"]["status"] == "running"
    })
    .await;
    let h = ok(a.get(&url).await).await["host"].clone();
    assert_eq!(
        (
            h["guests"].clone(),
            h["running_guests"].clone(),
            h["cpu_commit"].clone(),
            h["mem_commit"].clone()
        ),
        (json!(1), json!(1), json!(3), json!(2048)),
        "{h}"
    );
    assert_eq!(h["cpu_commit_rate"], 0.05, "3 of 64 CPUs: {h}");
    assert_eq!(h["storage_used"], 10240);
    let st = ok(a.get(&format!("{r}/storages/host0-local")).await).await["storage"].clone();
    assert_eq!(st["used_capacity"], 10240, "{st}");
    assert_eq!(st["free_capacity"], 4096 * 1024 - 10240);
    assert_eq!(st["hosts"][0]["name"], "host0");
    assert_eq!(st["zone"], "zone0");
    let hs = ok(a.get(&format!("{url}/storages")).await).await;
    assert_eq!(hs["hoststorages"][0]["storage"], "host0-local", "{hs}");
    let hw = ok(a.get(&format!("{r}/hostwires")).await).await;
    assert_eq!(hw["hostwires"][0]["wire"], "wire0", "{hw}");
    let l = ok(a.get(&format!("{r}/hosts?wire=wire0")).await).await;
    assert_eq!(l["total"], 1);
    let l = ok(a.get(&format!("{r}/networks?host=host0")).await).await;
    assert_eq!(l["total"], 1, "{l}");
    let spec = ok(a.get(&format!("{url}/spec")).await).await;
    assert_eq!(spec["host"]["cpu"], 64, "{spec}");

    // Settings an operator can get wrong.
    for body in [
        json!({"cpu_cmtbound": 0}),
        json!({"mem_cmtbound": -1}),
        json!({"cpu_cmtbound": null}),
        json!({"cpu_reserved": 100}),
        json!({"mem_size": -1}),
        json!({"manager_uri": "gopher://x"}),
        json!({"access_mac": "nonsense"}),
    ] {
        let resp = a.put(&url, Some(json!({ "host": body.clone() }))).await;
        assert_eq!(resp.status, 400, "{body}: {resp:?}");
        assert_error(&resp, 400, "InputParameterError");
    }
    let h = ok(a
        .put(
            &url,
            Some(json!({"host": {"cpu_cmtbound": 4, "mem_cmtbound": 1.5}})),
        )
        .await)
    .await;
    assert_eq!(h["host"]["cpu_commit_bound"], 4.0, "{h}");

    // Maintenance and enable/disable.
    let h = ok(a.post(&format!("{url}/host-maintenance"), json!({})).await).await;
    assert_eq!(h["host"]["is_maintenance"], true);
    let h = ok(a
        .post(&format!("{url}/host-exit-maintenance"), json!({}))
        .await)
    .await;
    assert_eq!(h["host"]["is_maintenance"], false);
    assert_error(&a.delete(&url).await, 400, "InvalidStatusError");
    let h = ok(a.post(&format!("{url}/disable"), json!({})).await).await;
    assert_eq!(h["host"]["enabled"], false);
    assert_error(&a.delete(&url).await, 406, "NotEmptyError");
    ok(a.delete(&format!("{r}/servers/{sid}")).await).await;
    wait_until(&a, &format!("{r}/servers/{sid}"), 30, |b| b["code"] == 404).await;
    keep.abort();
    ok(a.delete(&url).await).await;
    assert_eq!(a.get(&url).await.status, 404);
    assert_eq!(
        a.get(&format!("{r}/storages/host0-local")).await.status,
        404
    );
    let hw = ok(a.get(&format!("{r}/hostwires")).await).await;
    assert_eq!(hw["hostwires"], json!([]), "{hw}");

    // Registration under a zone, and its refusals.
    let h = ok(a
        .post(
            &format!("{r}/zones/zone0/hosts"),
            json!({"host": {"name": "h2", "access_ip": "192.168.0.2", "cpu_count": 8, "mem_size": 16384,
                            "access_mac": "00:22:aa:bb:cc:01"}}),
        )
        .await)
    .await;
    assert_eq!(h["host"]["zone"], "zone0", "{h}");
    assert_eq!(h["host"]["host_status"], "offline");
    for (url2, body, code, class) in [
        (
            format!("{r}/zones/nozone/hosts"),
            json!({"name": "h3"}),
            404,
            "ResourceNotFoundError",
        ),
        (
            format!("{r}/zones/zone0/hosts"),
            json!({"name": "h2"}),
            409,
            "DuplicateNameError",
        ),
        (
            format!("{r}/hosts"),
            json!({"name": "h3"}),
            400,
            "MissingParameterError",
        ),
        (
            format!("{r}/hosts"),
            json!({"name": "h3", "zone": "zone0", "access_ip": "1.2.3"}),
            400,
            "InputParameterError",
        ),
        (
            format!("{r}/hosts"),
            json!({"name": "h3", "zone": "zone0", "mem_cmtbound": 0}),
            400,
            "InputParameterError",
        ),
        (
            format!("{r}/hosts"),
            json!({"name": "h3", "zone": "zone0", "host_type": "toaster"}),
            400,
            "InputParameterError",
        ),
        (
            format!("{r}/hosts"),
            json!({"name": "h3", "zone": "zone0", "access_mac": "00:22:AA:BB:CC:01"}),
            409,
            "ConflictError",
        ),
    ] {
        assert_error(&a.post(&url2, json!({ "host": body })).await, code, class);
    }
    // Pinging brings it online; `offline` takes it down.
    let h = ok(a.post(&format!("{r}/hosts/h2/ping"), json!({})).await).await;
    assert_eq!(h["host"]["host_status"], "online");
    let h = ok(a
        .post(&format!("{r}/hosts/h2/offline"), json!({"reason": "test"}))
        .await)
    .await;
    assert_eq!(h["host"]["host_status"], "offline");

    // Storages.
    for (body, code, class) in [
        (
            json!({"name": "st1", "zone": "zone0", "capacity": -5}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "st1", "zone": "zone0", "capacity": 100, "cmtbound": 0}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "st1", "zone": "zone0", "capacity": 100, "reserved": 200}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "st1", "zone": "zone0", "storage_type": "floppy"}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "st1", "zone": "zone0", "medium_type": "tape"}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "st1", "capacity": 100}),
            400,
            "MissingParameterError",
        ),
    ] {
        assert_error(
            &a.post(&format!("{r}/storages"), json!({ "storage": body }))
                .await,
            code,
            class,
        );
    }
    let st = ok(a
        .post(
            &format!("{r}/storages"),
            json!({"storage": {"name": "st1", "zone": "zone0", "capacity": 102400, "storage_type": "nfs",
                               "cmtbound": 2}}),
        )
        .await)
    .await;
    assert_eq!(st["storage"]["virtual_capacity"], 204800, "{st}");
    assert_eq!(st["storage"]["commit_bound"], 2.0);
    assert_error(
        &a.put(
            &format!("{r}/storages/st1"),
            Some(json!({"storage": {"capacity": -1}})),
        )
        .await,
        400,
        "InputParameterError",
    );
    ok(a.post(
        &format!("{r}/hosts/h2/storages/st1"),
        json!({"hoststorage": {"mount_point": "/mnt/st1"}}),
    )
    .await)
    .await;
    assert_error(
        &a.post(
            &format!("{r}/hosts/h2/storages/st1"),
            json!({"hoststorage": {}}),
        )
        .await,
        409,
        "ConflictError",
    );
    let l = ok(a.get(&format!("{r}/storages?host=h2")).await).await;
    assert_eq!(l["total"], 1, "{l}");
    assert_error(
        &a.delete(&format!("{r}/storages/st1")).await,
        406,
        "NotEmptyError",
    );
    ok(a.delete(&format!("{r}/hosts/h2/storages/st1")).await).await;
    let st = ok(a
        .post(&format!("{r}/storages/st1/offline"), json!({}))
        .await)
    .await;
    assert_eq!(st["storage"]["status"], "offline");
    ok(a.delete(&format!("{r}/storages/st1")).await).await;

    // Schedtags.
    assert_error(
        &a.post(
            &format!("{r}/schedtags"),
            json!({"schedtag": {"name": "t", "default_strategy": "maybe"}}),
        )
        .await,
        400,
        "InputParameterError",
    );
    ok(a.post(
        &format!("{r}/schedtags"),
        json!({"schedtag": {"name": "ssd", "default_strategy": "prefer"}}),
    )
    .await)
    .await;
    ok(a.post(
        &format!("{r}/schedtags/ssd/hosts/h2"),
        json!({"hostschedtag": {}}),
    )
    .await)
    .await;
    let t = ok(a.get(&format!("{r}/schedtags/ssd")).await).await;
    assert_eq!(t["schedtag"]["host_count"], 1, "{t}");
    let h = ok(a.get(&format!("{r}/hosts/h2")).await).await;
    assert_eq!(h["host"]["schedtags"][0]["name"], "ssd", "{h}");
    let l = ok(a.get(&format!("{r}/hosts?schedtag=ssd")).await).await;
    assert_eq!(l["total"], 1);
    assert_error(
        &a.delete(&format!("{r}/schedtags/ssd")).await,
        406,
        "NotEmptyError",
    );
    ok(a.delete(&format!("{r}/schedtags/ssd/hosts/h2")).await).await;
    ok(a.delete(&format!("{r}/schedtags/ssd")).await).await;

    // Server SKUs.
    for (body, code, class) in [
        (
            json!({"name": "bad", "cpu_core_count": 0, "memory_size_mb": 1024}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "bad", "cpu_core_count": 1}),
            400,
            "MissingParameterError",
        ),
        (
            json!({"name": "bad", "cpu_core_count": 1, "memory_size_mb": 1024, "zone": "nozone"}),
            404,
            "ResourceNotFoundError",
        ),
    ] {
        assert_error(
            &a.post(&format!("{r}/serverskus"), json!({ "serversku": body }))
                .await,
            code,
            class,
        );
    }
    let sku = ok(a
        .post(
            &format!("{r}/serverskus"),
            json!({"serversku": {"name": "ecs.g1.c2m4", "cpu_core_count": 2, "memory_size_mb": 4096,
                                 "instance_type_family": "g1", "zone": "zone0"}}),
        )
        .await)
    .await;
    assert_eq!(sku["serversku"]["cloudregion"], "Default", "{sku}");
    assert_eq!(sku["serversku"]["zone"], "zone0");
    let l = ok(a.get(&format!("{r}/serverskus?cpu_core_count=2")).await).await;
    assert_eq!(l["total"], 1);
    ok(a.put(
        &format!("{r}/serverskus/ecs.g1.c2m4"),
        Some(json!({"serversku": {"instance_type_category": "general_purpose"}})),
    )
    .await)
    .await;
    ok(a.delete(&format!("{r}/serverskus/ecs.g1.c2m4")).await).await;
}

#[test]
fn climc_manages_the_infrastructure() {
    let p = Platform::start();
    let run = |args: &[&str]| {
        let (ok, out, err) = p.climc(args);
        assert!(ok, "climc {args:?}: {out}{err}");
        out
    };
    let fail = |args: &[&str]| {
        let (ok, out, err) = p.climc(args);
        assert!(!ok, "climc {args:?} should fail: {out}");
        err + &out
    };
    let out = run(&["cloudregion-list"]);
    assert!(
        out.contains("Default") && out.contains("zone_count"),
        "{out}"
    );
    run(&["zone-create", "z1", "--location", "dc1"]);
    let out = run(&["zone-list"]);
    assert!(
        out.contains("z1") && out.contains("Default") && out.contains("dc1"),
        "{out}"
    );
    run(&["vpc-create", "v1", "--cidr", "10.50.0.0/16"]);
    let out = run(&["vpc-list"]);
    assert!(out.contains("10.50.0.0/16"), "{out}");
    run(&["wire-create", "w1", "--zone", "z1", "--bandwidth", "10000"]);
    let out = run(&["wire-show", "w1"]);
    assert!(out.contains("z1") && out.contains("10000"), "{out}");
    let err = fail(&["wire-create", "w2", "--zone", "nozone"]);
    assert!(err.contains("404") || err.contains("NotFound"), "{err}");

    // Both forms of network-create.
    run(&[
        "network-create",
        "n1",
        "--wire",
        "w1",
        "--ip-start",
        "10.40.0.10",
        "--ip-end",
        "10.40.0.19",
        "--mask",
        "24",
        "--gateway",
        "10.40.0.1",
        "--dns",
        "8.8.8.8",
        "--alloc-policy",
        "stepdown",
    ]);
    run(&[
        "network-create",
        "w1",
        "n2",
        "10.41.0.10",
        "10.41.0.29",
        "24",
    ]);
    run(&[
        "network-create",
        "n3",
        "--wire",
        "w1",
        "--prefix",
        "10.42.0.0/28",
    ]);
    let err = fail(&[
        "network-create",
        "w1",
        "n4",
        "10.41.0.20",
        "10.41.0.40",
        "24",
    ]);
    assert!(
        err.contains("ConflictError") || err.contains("overlaps"),
        "{err}"
    );
    let err = fail(&[
        "network-create",
        "w1",
        "n4",
        "10.43.0.20",
        "10.43.0.10",
        "24",
    ]);
    assert!(err.contains("InputParameterError"), "{err}");
    let out = run(&["network-list"]);
    assert!(
        out.contains("Ports")
            && out.contains("Ports_used")
            && out.contains("n1")
            && out.contains("n3"),
        "{out}"
    );
    run(&[
        "network-reserve-ip",
        "n1",
        "10.40.0.11",
        "10.40.0.12",
        "--notes",
        "vip",
    ]);
    run(&["reservedip-create", "n2", "10.41.0.15", "--notes", "gw2"]);
    let out = run(&["reservedip-list", "--network", "n1"]);
    assert!(
        out.contains("10.40.0.11") && out.contains("vip") && !out.contains("10.41.0.15"),
        "{out}"
    );
    let out = run(&["--output-format", "json", "network-show", "n1"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (v["ports"].clone(), v["ports_used"].clone()),
        (json!(10), json!(2)),
        "{v}"
    );
    let out = run(&["network-addresses", "n1"]);
    assert!(
        out.contains("10.40.0.12") && out.contains("reserved"),
        "{out}"
    );
    run(&["network-release-reserved-ip", "n1", "10.40.0.12"]);
    run(&["network-update", "n1", "--ip-start", "10.40.0.11"]);
    let err = fail(&["network-update", "n1", "--ip-start", "10.40.0.13"]);
    assert!(err.contains("InputParameterError"), "{err}");

    // Hosts, storages, joints, schedtags.
    run(&[
        "host-create",
        "h1",
        "--zone",
        "z1",
        "--access-ip",
        "192.168.7.1",
        "--cpu",
        "32",
        "--mem",
        "65536",
    ]);
    run(&["host-ping", "h1"]);
    let out = run(&["host-list"]);
    for col in [
        "Access_ip",
        "Host_status",
        "Status",
        "Cpu_count",
        "Mem_size",
        "Zone",
        "online",
        "z1",
    ] {
        assert!(out.contains(col), "{col}: {out}");
    }
    run(&["host-update", "h1", "--cpu-cmtbound", "4"]);
    let err = fail(&["host-update", "h1", "--cpu-cmtbound", "0"]);
    assert!(err.contains("InputParameterError"), "{err}");
    run(&["host-disable", "h1"]);
    let out = run(&["--output-format", "json", "host-show", "h1"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["enabled"], false, "{v}");
    assert_eq!(v["cpu_cmtbound"], 4.0, "{v}");
    run(&["host-enable", "h1"]);
    run(&["host-maintenance", "h1"]);
    run(&["host-exit-maintenance", "h1"]);
    run(&[
        "storage-create",
        "s1",
        "--zone",
        "z1",
        "--capacity",
        "10240",
        "--storage-type",
        "nfs",
    ]);
    let (ok, out, err) = p.climc(&["--output-format", "json", "storage-show", "s1"]);
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["free_capacity"], 10240, "{v}");
    let client_attach = p.climc(&["host-storage-list", "--host", "h1"]);
    assert!(client_attach.0, "{client_attach:?}");
    run(&["schedtag-create", "gpu", "--strategy", "require"]);
    run(&["schedtag-host-add", "gpu", "h1"]);
    let out = run(&["schedtag-list"]);
    assert!(out.contains("gpu") && out.contains("Host_count"), "{out}");
    let out = run(&["host-list", "--schedtag", "gpu"]);
    assert!(out.contains("h1"), "{out}");
    run(&["schedtag-host-remove", "gpu", "h1"]);
    run(&["schedtag-delete", "gpu"]);
    let out = run(&["host-wire-list"]);
    assert!(
        out.contains("Total") || out.trim().is_empty() || out.contains("+"),
        "{out}"
    );
    run(&[
        "server-sku-create",
        "ecs.g1.c1m1",
        "--cpu-core-count",
        "1",
        "--memory-size-mb",
        "1024",
    ]);
    let out = run(&["server-sku-list"]);
    assert!(out.contains("ecs.g1.c1m1") && out.contains("1024"), "{out}");
    run(&["server-sku-delete", "ecs.g1.c1m1"]);

    // In-use refusals come back as errors.
    let err = fail(&["zone-delete", "z1"]);
    assert!(err.contains("NotEmptyError"), "{err}");
    let err = fail(&["host-delete", "h1"]);
    assert!(err.contains("InvalidStatusError"), "{err}");
    run(&["host-disable", "h1"]);
    run(&["host-delete", "h1"]);
    run(&["storage-delete", "s1"]);
    run(&["network-delete", "n1", "n2", "n3"]);
    run(&["wire-delete", "w1"]);
    run(&["vpc-delete", "v1"]);
    run(&["zone-delete", "z1"]);
}
