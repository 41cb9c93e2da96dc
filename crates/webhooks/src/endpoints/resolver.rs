//! DNS for endpoint requests: the system resolver, with every address that is not public
//! dropped unless `notify.allow_private_addresses` is on (`wafleet_core::endpoint_url`). The
//! check runs on the addresses the connection will use, after DNS, so a name that resolves
//! (or later re-resolves) to an internal address is refused, not just IP literals.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;

/// Resolves through the operating system (`getaddrinfo` on a blocking thread).
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| wafleet_core::endpoint_url::is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}
