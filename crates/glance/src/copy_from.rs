//! Importing an image from a URL (`copy_from`) without becoming a proxy
//! into the control plane's own network.
//!
//! The host is resolved once; every address it resolves to must be a
//! public one (not loopback, link-local — the cloud metadata service lives
//! at 169.254.169.254 —, private, shared, multicast or unspecified) unless
//! an operator allowed its network explicitly. The connection is then
//! pinned to the checked address, so a second DNS answer cannot point it
//! elsewhere, and redirects are followed by hand, each one checked again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::error::{GlanceError, Result};

/// An allowed network (`10.1.0.0/16`, `127.0.0.2/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Cidr, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = a.trim().parse().map_err(|e| format!("{s}: {e}"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.trim().parse::<u8>().map_err(|e| format!("{s}: {e}"))?
        };
        if prefix > max {
            return Err(format!("{s}: prefix longer than {max}"));
        }
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

fn v4_internal(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        // shared address space (carrier-grade NAT), 100.64.0.0/10
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        // benchmarking 198.18.0.0/15 and reserved 240.0.0.0/4
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240
}

/// Whether an address belongs to an internal network.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_internal(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_internal(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254
                || (seg0 & 0xffc0) == 0xfe80 // link local
                || v6 == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xa9fe, 0xa9fe)
        }
    }
}

/// A checked URL and the address to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: reqwest::Url,
    pub host: String,
    pub addr: SocketAddr,
}

/// Check `url` against the rules; resolve and pick the address.
pub async fn check(url: &str, allow: &[Cidr]) -> Result<Target> {
    let u = reqwest::Url::parse(url.trim())
        .map_err(|e| GlanceError::Input(format!("copy_from {url:?} is not a URL: {e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(GlanceError::Input(format!(
            "copy_from must be an http or https URL, not {}",
            u.scheme()
        )));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(GlanceError::Input(
            "copy_from must not carry credentials".into(),
        ));
    }
    let host = u
        .host_str()
        .ok_or_else(|| GlanceError::Input("copy_from has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| GlanceError::Input(format!("resolving {host} timed out")))?
        .map_err(|e| GlanceError::Input(format!("cannot resolve {host}: {e}")))?
        .collect(),
    };
    if addrs.is_empty() {
        return Err(GlanceError::Input(format!("{host} has no address")));
    }
    // Every address must pass: a name with one public and one internal
    // address could be steered to the internal one.
    for a in &addrs {
        let ip = a.ip();
        if is_internal(ip) && !allow.iter().any(|c| c.contains(ip)) {
            return Err(GlanceError::Forbidden(format!(
                "{host} resolves to the internal address {ip}"
            )));
        }
    }
    Ok(Target {
        url: u,
        host,
        addr: addrs[0],
    })
}

/// Open `url` for reading, following at most 5 redirects (each checked).
/// Returns the body stream and the announced length.
pub async fn fetch(
    url: &str,
    allow: &[Cidr],
) -> Result<(
    BoxStream<'static, std::result::Result<Bytes, String>>,
    Option<u64>,
)> {
    let mut next = url.to_string();
    for _ in 0..=5 {
        let t = check(&next, allow).await?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&t.host, t.addr)
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| GlanceError::Fetch {
                url: next.clone(),
                reason: e.to_string(),
            })?;
        let resp = client
            .get(t.url.clone())
            .send()
            .await
            .map_err(|e| GlanceError::Fetch {
                url: next.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        if status.is_redirection() {
            let loc = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| GlanceError::Fetch {
                    url: next.clone(),
                    reason: format!("{status} without a Location"),
                })?;
            next = t
                .url
                .join(loc)
                .map_err(|e| GlanceError::Fetch {
                    url: next.clone(),
                    reason: format!("bad redirect {loc:?}: {e}"),
                })?
                .to_string();
            continue;
        }
        if !status.is_success() {
            return Err(GlanceError::Fetch {
                url: next,
                reason: format!("answered {status}"),
            });
        }
        let len = resp.content_length();
        let stream = resp.bytes_stream().map_err(|e| e.to_string()).boxed();
        return Ok((stream, len));
    }
    Err(GlanceError::Fetch {
        url: url.to_string(),
        reason: "too many redirects".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "127.0.0.2/32".parse().unwrap();
        assert!(c.contains("127.0.0.2".parse().unwrap()));
        assert!(!c.contains("127.0.0.1".parse().unwrap()));
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.9.9.9".parse().unwrap()));
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains("1.2.3.4".parse().unwrap()));
        assert!("1.2.3.4/33".parse::<Cidr>().is_err());
    }

    #[tokio::test]
    async fn refuses_internal_urls() {
        for u in [
            "http://127.0.0.1:1/x",
            "http://localhost:8080/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/x",
            "http://[::ffff:7f00:1]/x",
        ] {
            let e = check(u, &[]).await.unwrap_err();
            assert!(matches!(e, GlanceError::Forbidden(_)), "{u}: {e}");
        }
        for u in [
            "file:///etc/passwd",
            "ftp://example.com/x",
            "not a url",
            "http://u:p@8.8.8.8/",
        ] {
            let e = check(u, &[]).await.unwrap_err();
            assert!(matches!(e, GlanceError::Input(_)), "{u}: {e}");
        }
        let allow: Vec<Cidr> = vec!["127.0.0.2/32".parse().unwrap()];
        assert!(check("http://127.0.0.2:9/x", &allow).await.is_ok());
    }
}
