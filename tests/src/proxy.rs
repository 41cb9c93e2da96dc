//! A TCP proxy a test can cut and restore: the way to make the broker unreachable for one fleet
//! without touching the broker the other tests share.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards connections to `upstream` while up; when cut, drops every open connection and
/// closes new ones at once.
pub struct FaultProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl FaultProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (up2, gen2, stop2) = (up.clone(), generation.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = stop2.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let cut = gen2.lock().expect("proxy state").clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self {
            addr,
            up,
            generation,
            stop,
        }
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut generation = self.generation.lock().expect("proxy state");
        generation.cancel();
        *generation = CancellationToken::new();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// A proxy in front of the server of `url` (`scheme://user:pass@host:port/path`), and `url`
    /// rewritten to go through it.
    pub async fn in_front_of(url: &str) -> (Self, String) {
        let (scheme_auth, rest) = url.split_once('@').expect("url has credentials");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let proxy = Self::start(authority.to_owned()).await;
        let routed = format!("{scheme_auth}@{}/{path}", proxy.addr);
        (proxy, routed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
