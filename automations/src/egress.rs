//! Where webhooks may go: anywhere public, never to this machine or the
//! networks behind it unless the operator allows it. A webhook's URL is
//! written by whoever holds `automations:write`; without this an automation
//! could POST to the cloud's metadata service, a database's HTTP port or
//! an admin interface on localhost (the server-side request forgery the
//! systems Herald replaces had a whole service to refuse).
//!
//! Refused: loopback (127.0.0.0/8, ::1), private (10/8, 172.16/12,
//! 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10, the metadata
//! services), carrier-grade NAT (100.64/10), unspecified, broadcast,
//! multicast and documentation ranges, and IPv4 inside IPv6 of those. The
//! check is made on the addresses a name resolves to, by the resolver the
//! HTTP client connects with (so a name that changes its answer between a
//! check and the connection cannot slip through), on IP literals before
//! sending, and again on every redirect. `HERALD_WEBHOOK_ALLOW` lists
//! networks (CIDR or single addresses) that are allowed all the same.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Networks allowed although internal.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    allow: Vec<IpNet>,
}

impl Egress {
    /// Parses `HERALD_WEBHOOK_ALLOW`'s value: networks or addresses,
    /// separated by commas or spaces.
    pub fn parse(text: &str) -> Result<Self, String> {
        let allow = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not a network (10.0.0.0/8) or an address"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allow })
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allow.iter().any(|net| net.contains(&canonical(ip)))
    }

    /// The resolver webhooks connect through.
    pub fn resolver(self: &Arc<Self>) -> GuardedResolver {
        GuardedResolver {
            egress: Arc::clone(self),
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Whether `ip` is on this machine or a network not reachable from the
/// internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || ip
            .to_ipv4()
            .is_some_and(|v4| ip.segments()[..6] == [0; 6] && internal_v4(v4))
}

/// Checks a URL before anything is sent: `http` or `https`, a host, and
/// an allowed address when the host is an IP literal (names are checked
/// when they resolve).
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?}: a webhook is http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{url:?}: credentials in a webhook URL would be stored in the log; use headers and secret_env"));
    }
    Ok(parsed)
}

/// Refuses an IP-literal host that is not allowed.
pub fn check_literal(egress: &Egress, url: &reqwest::Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if egress.allows(ip) {
        Ok(())
    } else {
        Err(refusal(&ip.to_string(), &[ip]))
    }
}

fn refusal(host: &str, ips: &[IpAddr]) -> String {
    format!(
        "refused: {host} is an internal address ({}); allow it with HERALD_WEBHOOK_ALLOW",
        ips.iter()
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A resolver that drops internal addresses (unless allowed) and fails
/// when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    egress: Arc<Egress>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = Arc::clone(&self.egress);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?
                .collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| egress.allows(a.ip()))
                .collect();
            if allowed.is_empty() {
                let ips: Vec<IpAddr> = found.iter().map(|a| a.ip()).collect();
                return Err(refusal(&host, &ips).into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_networks_are_refused_and_public_ones_allowed() {
        let e = Egress::default();
        for ip in [
            "127.0.0.1",
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!e.allows(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1"] {
            assert!(e.allows(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_its_networks() {
        let e = Egress::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        assert!(e.allows("127.0.0.1".parse().unwrap()));
        assert!(e.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!e.allows("127.0.0.2".parse().unwrap()));
        assert!(e.allows("10.9.9.9".parse().unwrap()));
        assert!(!e.allows("192.168.0.1".parse().unwrap()));
        assert!(Egress::parse("nonsense").is_err());
    }

    #[test]
    fn urls_are_checked_before_sending() {
        assert!(check_url("ftp://example.com/").is_err());
        assert!(check_url("http://user:pw@example.com/").is_err());
        let e = Egress::default();
        assert!(check_literal(&e, &check_url("http://169.254.169.254/latest").unwrap()).is_err());
        assert!(check_literal(&e, &check_url("http://[::1]:8080/").unwrap()).is_err());
        assert!(check_literal(&e, &check_url("https://example.com/hook").unwrap()).is_ok());
    }
}
