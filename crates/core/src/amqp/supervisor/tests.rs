//! The supervisor against the machine's RabbitMQ (never restarted here: a connection is
//! replaced by reporting it broken, as a failed channel open does) and against addresses where
//! nothing, or something that is not a broker, listens.

use super::*;
use crate::amqp::{Outgoing, Publisher};
use lapin::{
    BasicProperties,
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};

fn settings(stuck_after: Duration) -> BrokerSettings {
    BrokerSettings {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        publish_timeout: Duration::from_secs(10),
        recovery_stuck_after: stuck_after,
    }
}

fn shared_broker_url() -> String {
    std::env::var("WAFLEET_TEST_AMQP_URL").unwrap_or_else(|_| crate::Settings::default().amqp_url)
}

/// A supervised connection to `port` on loopback, `recovery_stuck_after` = `stuck_after`.
fn on_port(port: u16, stuck_after: Duration) -> Broker {
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    start(&url, stuck_after)
}

fn start(url: &str, stuck_after: Duration) -> Broker {
    Broker::start(
        url,
        "wafleet-core-test",
        "core-test",
        None,
        &settings(stuck_after),
    )
}

async fn connected(url: &str) -> Broker {
    let broker = start(url, Duration::from_secs(60));
    let forever = CancellationToken::new();
    let up = tokio::time::timeout(Duration::from_secs(20), broker.wait_up(&forever));
    assert!(
        up.await.unwrap_or(false),
        "RabbitMQ is up at {url} (just services)"
    );
    broker
}

/// A port on which nothing listens (bound, then released).
fn silent_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn a_connection_reported_broken_is_replaced_and_its_leases_learn_they_are_lost() {
    let broker = connected(&shared_broker_url()).await;
    let first = broker.lease().await;

    broker.report_broken(first.generation, "test");
    tokio::time::timeout(Duration::from_secs(5), first.lost())
        .await
        .expect("the lease learns its connection is gone");
    let second = tokio::time::timeout(Duration::from_secs(10), broker.lease())
        .await
        .expect("a new connection");

    assert!(!first.is_current());
    assert!(second.is_current());
    assert_eq!(second.generation, first.generation + 1);
    assert!(broker.is_up());
    broker.close().await;
    assert!(!broker.is_up());
}

#[tokio::test]
async fn a_publish_after_its_channel_was_lost_is_confirmed_on_the_next_connection() {
    let broker = connected(&shared_broker_url()).await;
    let queue = format!("wafleet-core-test-{}", uuid::Uuid::new_v4().simple());
    let setup = broker.lease().await;
    setup
        .channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let publisher = Publisher::new(&broker);
    let publish = || {
        publisher.publish(Outgoing {
            exchange: "",
            routing_key: &queue,
            body: b"hello",
            properties: BasicProperties::default(),
            mandatory: true,
        })
    };
    publish().await.expect("first publish");

    broker.report_broken(setup.generation, "test");
    let again = publish().await;

    again.expect("published on the new connection");
    let check = broker.lease().await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let depth = check
        .channel
        .queue_declare(queue.as_str().into(), passive, FieldTable::default())
        .await
        .expect("queue still there")
        .message_count();
    assert_eq!(depth, 2);
    let _ = check
        .channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    broker.close().await;
}

#[tokio::test]
async fn a_broker_that_is_down_keeps_the_service_live_but_not_ready() {
    let broker = on_port(silent_port(), Duration::from_millis(50));

    let first = broker.liveness().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = broker.liveness().await;

    assert!(!broker.is_up());
    assert_eq!((first, later), (Ok(()), Ok(())));
}

#[tokio::test]
async fn liveness_fails_once_the_brokers_port_answers_but_the_connection_stays_down_past_the_bound()
{
    // Something accepts TCP there but never speaks AMQP: our handshakes never complete.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let broker = on_port(port, Duration::from_millis(100));

    let first = broker.liveness().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = broker.liveness().await;

    assert!(!broker.is_up());
    assert_eq!(first, Ok(()), "within the bound");
    let why = later.expect_err("stuck past the bound");
    assert!(
        why.contains("core-test") && why.contains("not recovered"),
        "{why}"
    );
    hold.abort();
}
