//! Which URLs a tenant's webhook endpoint may have. Only `http` and `https`, with a host and no
//! credentials in the URL. Unless `notify.allow_private_addresses` is on, no address that is not
//! public: loopback, private (RFC 1918, unique-local), link-local (cloud metadata services
//! live there), carrier-grade NAT, documentation, multicast, unspecified. A tenant must not be
//! able to make wafleet call into the operator's network. IP literals are refused when the
//! endpoint is saved; names are checked again on every delivery, after DNS, by the webhooks
//! service's resolver (a name that resolves to a private address is refused then).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a URL is refused: a sentence for the problem's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlRefused(pub &'static str);

/// The URL, parsed, if an endpoint may have it.
pub fn check(raw: &str, allow_private: bool) -> Result<url::Url, UrlRefused> {
    if raw.len() > 2000 {
        return Err(UrlRefused("`url` is at most 2000 characters"));
    }
    let url = url::Url::parse(raw).map_err(|_| UrlRefused("`url` is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefused("`url` must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefused(
            "`url` must not carry credentials: the signature authenticates wafleet",
        ));
    }
    let Some(host) = url.host() else {
        return Err(UrlRefused("`url` has no host"));
    };
    if !allow_private {
        let refused = UrlRefused("`url` points at a private or local address");
        match host {
            url::Host::Ipv4(ip) if !is_public(IpAddr::V4(ip)) => return Err(refused),
            url::Host::Ipv6(ip) if !is_public(IpAddr::V6(ip)) => return Err(refused),
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") {
                    return Err(refused);
                }
            }
            _ => {}
        }
    }
    Ok(url)
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT; 198.18.0.0/15, benchmarking; 240.0.0.0/4, reserved.
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique-local, fe80::/10 link-local, 2001:db8::/32 documentation.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_http_urls_pass_by_default() {
        assert!(check("https://ats.example.com/hooks/wa", false).is_ok());
        assert!(
            check("http://203.0.113.9/x", false).is_err(),
            "documentation range"
        );
        for bad in [
            "ftp://ats.example.com/",
            "not a url",
            "https://user:pw@ats.example.com/",
            "http://127.0.0.1:8080/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:192.168.1.1]/",
            "http://localhost:3000/",
            "http://api.localhost/",
            "http://100.64.0.1/",
        ] {
            assert!(check(bad, false).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn private_addresses_pass_when_the_operator_allows_them() {
        assert!(check("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check("http://localhost/hook", true).is_ok());
        assert!(
            check("ftp://127.0.0.1/", true).is_err(),
            "still http(s) only"
        );
    }

    #[test]
    fn public_addresses_are_public() {
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(is_public("2a00:1450:4009::1".parse().unwrap()));
        assert!(!is_public("192.168.0.1".parse().unwrap()));
        assert!(!is_public("fe80::1".parse().unwrap()));
    }
}
