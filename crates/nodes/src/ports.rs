//! Free ports for the private servers.

use std::net::TcpListener;

/// `count` free ports between 20000 and 32000: below the ephemeral range (32768+), so an
/// outgoing connection never takes one while a server is down between a stop and a start, and
/// away from the RabbitMQ CLI tools' own distribution ports (35672–35682, which `rabbitmqctl
/// wait` holds while a node boots); never the shared servers' 5432, 5672 or 25672.
pub(crate) fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let seed = uuid::Uuid::new_v4().as_u128();
    let mut found = Vec::with_capacity(count);
    let mut candidate = 20_000 + (seed % 12_000) as u16;
    for _ in 0..12_000 {
        candidate = if candidate >= 31_999 {
            20_000
        } else {
            candidate + 1
        };
        let taken = [5432, 5672, 25672].contains(&candidate)
            || found.contains(&candidate)
            || TcpListener::bind(("127.0.0.1", candidate)).is_err()
            || TcpListener::bind(("0.0.0.0", candidate)).is_err();
        if !taken {
            found.push(candidate);
            if found.len() == count {
                return Ok(found);
            }
        }
    }
    anyhow::bail!("no {count} free ports between 20000 and 32000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_in_range() {
        let ports = free_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        for (i, p) in ports.iter().enumerate() {
            assert!((20_000..32_000).contains(p), "{p}");
            assert!(!ports[..i].contains(p), "{ports:?}");
            TcpListener::bind(("127.0.0.1", *p)).unwrap();
        }
    }
}
