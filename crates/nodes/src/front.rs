//! The front door of a private cluster: one loopback port that hands each new connection to a
//! node that accepts it, as a load balancer in front of a RabbitMQ cluster does. Connections go
//! to the nodes in turn; a node that refuses (it is stopped) is skipped. A connection lives as
//! long as both ends do: when its node goes down, the client sees it close and reconnects,
//! through here, to a node that is up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};

/// The running front door; dropping it stops accepting (live connections end with their node).
pub(crate) struct Front {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    /// Listens on `port` and forwards to the nodes' AMQP ports `backends`.
    pub async fn start(port: u16, backends: Vec<u16>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let (backends, next) = (backends.clone(), Arc::clone(&next));
                tokio::spawn(async move {
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    for k in 0..backends.len() {
                        let port = backends[(first + k) % backends.len()];
                        if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                    // No node is up: the client sees the connection close and retries.
                });
            }
        });
        Ok(Self { port, task })
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}
