//! A RabbitMQ cluster of a run's own: `n` [`PrivateBroker`] nodes sharing an Erlang cookie,
//! joined into one cluster (`join_cluster`), behind a front door ([`Front`]) that clients
//! connect to as they would to a load balancer. Quorum queues declared on it are replicated on
//! every node, so a node can be stopped (the one leading the queues, say) while the others keep
//! the queues available. With `n = 1` it is a single node, with no front door.

use crate::broker::PrivateBroker;
use crate::front::Front;
use crate::ports::free_ports;
use anyhow::Context;

/// A private cluster; see the module docs. Dropping it kills every node.
pub struct PrivateCluster {
    nodes: Vec<PrivateBroker>,
    front: Option<Front>,
}

impl PrivateCluster {
    /// Starts `n` nodes (at least one), clusters them, and opens the front door.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        let cookie = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let mut nodes = Vec::new();
        for _ in 0..n.max(1) {
            nodes.push(PrivateBroker::start_node(Some(&cookie)).await?);
        }
        let first = nodes[0].node().to_owned();
        for node in &nodes[1..] {
            for args in [&["stop_app"][..], &["join_cluster", &first], &["start_app"]] {
                node.ctl(args)
                    .await
                    .with_context(|| format!("joining {} to {first}", node.node()))?;
            }
        }
        let front = if nodes.len() > 1 {
            let backends = nodes.iter().map(PrivateBroker::port).collect();
            Some(Front::start(free_ports(1)?[0], backends).await?)
        } else {
            None
        };
        Ok(Self { nodes, front })
    }

    /// The URL clients use: the front door's, or the single node's.
    pub fn amqp_url(&self) -> String {
        match &self.front {
            Some(front) => format!("amqp://guest:guest@127.0.0.1:{}/%2f", front.port),
            None => self.nodes[0].amqp_url(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node (index) leading most of the quorum queues whose names start with `prefix`
    /// (`rabbitmqctl list_queues name leader`); the first node when none is found.
    pub async fn leader_of(&self, prefix: &str) -> anyhow::Result<usize> {
        if self.nodes.len() == 1 {
            return Ok(0);
        }
        let running = self.running().context("no node is running")?;
        let listing = running
            .ctl(&[
                "list_queues",
                "name",
                "leader",
                "--quiet",
                "--no-table-headers",
            ])
            .await?;
        let mut led = vec![0usize; self.nodes.len()];
        for line in listing.lines() {
            let mut fields = line.split_whitespace();
            let (Some(name), Some(leader)) = (fields.next(), fields.next()) else {
                continue;
            };
            if name.starts_with(prefix)
                && let Some(i) = self.nodes.iter().position(|n| n.node() == leader)
            {
                led[i] += 1;
            }
        }
        Ok((0..led.len()).max_by_key(|i| led[*i]).unwrap_or(0))
    }

    /// Stops node `i` (`rabbitmqctl stop`).
    pub async fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        self.node_mut(i)?.stop().await
    }

    /// Starts node `i` again on its data; a clustered node rejoins its cluster.
    pub async fn start_again(&mut self, i: usize) -> anyhow::Result<()> {
        self.node_mut(i)?.start_again().await
    }

    /// The Erlang name of node `i`.
    pub fn node_name(&self, i: usize) -> Option<&str> {
        self.nodes.get(i).map(PrivateBroker::node)
    }

    fn node_mut(&mut self, i: usize) -> anyhow::Result<&mut PrivateBroker> {
        self.nodes
            .get_mut(i)
            .with_context(|| format!("no node {i}"))
    }

    fn running(&self) -> Option<&PrivateBroker> {
        self.nodes.iter().find(|n| n.is_running())
    }
}
