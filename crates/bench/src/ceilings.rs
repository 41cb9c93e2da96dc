//! The raw ceilings under the fleet, measured in the same run on the same broker and database:
//! - RabbitMQ: lapin confirmed publishes (window 1000, `mandatory`) of 200-byte persistent
//!   messages into a quorum queue, consumed at the same time with manual acks (prefetch 1000,
//!   `multiple` acks every 100), end to end;
//! - PostgreSQL: 1,000-row `INSERT … SELECT FROM unnest(…)` and `UPDATE … FROM unnest(…)` into a
//!   scratch table, and, for scale, one row per statement.
//!
//! The fleet's throughput is reported as a share of the broker's figure.

use crate::confirms::ConfirmWindow;
use anyhow::bail;
use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use std::time::{Duration, Instant};

/// Outstanding confirms while publishing, and unacked deliveries while consuming.
const WINDOW: usize = 1000;
/// Acks go out (with `multiple`) every this many deliveries: 10 % of the prefetch.
const ACK_EVERY: u64 = 100;
/// Rows per batched statement.
const BATCH: usize = 1000;
/// Rows written one per statement (enough for a stable rate, short enough to be cheap).
const SINGLE_ROWS: usize = 3000;
/// An upper bound on either measurement.
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Ceilings {
    pub broker_messages: u64,
    /// Publish start → last delivery acked.
    pub broker_end_to_end_per_s: f64,
    /// Publish start → last confirm.
    pub broker_publish_per_s: f64,
    pub db_rows: u64,
    pub db_batched_insert_rows_per_s: f64,
    pub db_batched_update_rows_per_s: f64,
    pub db_single_row_insert_rows_per_s: f64,
}

/// Publishes and consumes `n` messages through a quorum queue named `<prefix>.bench.ceiling`
/// (deleted afterwards).
pub async fn broker(amqp_url: &str, prefix: &str, n: u64) -> anyhow::Result<(f64, f64)> {
    let queue = format!("{prefix}.bench.ceiling");
    // Publishing and consuming on separate connections, as the services do.
    let pub_conn = wafleet_core::amqp::connect(amqp_url, "wafleet-bench/ceiling-pub").await?;
    let sub_conn = wafleet_core::amqp::connect(amqp_url, "wafleet-bench/ceiling-sub").await?;
    let sub = sub_conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    sub.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
        .await?;
    sub.basic_qos(WINDOW as u16, BasicQosOptions::default())
        .await?;
    let mut consumer = sub
        .basic_consume(
            queue.as_str().into(),
            "wafleet-bench-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consume = tokio::spawn(async move {
        let mut seen = 0u64;
        while seen < n {
            let Some(delivery) = consumer.next().await else {
                break;
            };
            let delivery = delivery?;
            seen += 1;
            if seen.is_multiple_of(ACK_EVERY) || seen == n {
                delivery
                    .acker
                    .ack(BasicAckOptions { multiple: true })
                    .await?;
            }
        }
        Ok::<_, lapin::Error>((seen, Instant::now()))
    });

    let started = Instant::now();
    let mut window = ConfirmWindow::open(pub_conn.create_channel().await?, WINDOW).await?;
    let body = [b'x'; 200];
    let publish = async {
        for _ in 0..n {
            let props = BasicProperties::default().with_delivery_mode(2);
            window.publish("", &queue, &body, props).await?;
        }
        window.finish().await;
        Ok::<_, lapin::Error>(started.elapsed())
    };
    let published = tokio::time::timeout(TIMEOUT, publish).await;
    let consumed = tokio::time::timeout(TIMEOUT, consume).await;
    let cleanup = sub
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    wafleet_core::amqp::close(&pub_conn).await;
    wafleet_core::amqp::close(&sub_conn).await;
    let publish_time =
        published.map_err(|_| anyhow::anyhow!("publishing took over {TIMEOUT:?}"))??;
    let (seen, last) =
        consumed.map_err(|_| anyhow::anyhow!("consuming took over {TIMEOUT:?}"))???;
    cleanup?;
    if window.failed > 0 || seen < n {
        bail!(
            "broker ceiling: {} of {n} confirmed, {seen} consumed ({})",
            window.confirmed,
            window.first_failure.unwrap_or_default()
        );
    }
    let end_to_end = n as f64 / last.duration_since(started).as_secs_f64();
    Ok((end_to_end, n as f64 / publish_time.as_secs_f64()))
}

/// Batched inserts and updates, and single-row inserts, into a scratch table (dropped after).
pub async fn database(pool: &sqlx::PgPool, rows: usize) -> anyhow::Result<(f64, f64, f64)> {
    sqlx::query(
        "CREATE TABLE bench_scratch (
            id bigint PRIMARY KEY, tenant_id uuid NOT NULL, state text NOT NULL,
            body text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(pool)
    .await?;
    let tenant = uuid::Uuid::new_v4();
    let body = "x".repeat(200);
    let run = async {
        let started = Instant::now();
        for chunk in (0..rows as i64).collect::<Vec<_>>().chunks(BATCH) {
            sqlx::query(
                "INSERT INTO bench_scratch (id, tenant_id, state, body)
                 SELECT id, $2, 'accepted', $3 FROM unnest($1::bigint[]) AS t(id)",
            )
            .bind(chunk)
            .bind(tenant)
            .bind(&body)
            .execute(pool)
            .await?;
        }
        let insert = rows as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        for chunk in (0..rows as i64).collect::<Vec<_>>().chunks(BATCH) {
            let states = vec!["sent"; chunk.len()];
            sqlx::query(
                "UPDATE bench_scratch AS b SET state = u.state, updated_at = now()
                 FROM unnest($1::bigint[], $2::text[]) AS u(id, state) WHERE b.id = u.id",
            )
            .bind(chunk)
            .bind(&states)
            .execute(pool)
            .await?;
        }
        let update = rows as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        for id in 0..SINGLE_ROWS as i64 {
            sqlx::query(
                "INSERT INTO bench_scratch (id, tenant_id, state, body) VALUES ($1, $2, 'accepted', $3)",
            )
            .bind(rows as i64 + id)
            .bind(tenant)
            .bind(&body)
            .execute(pool)
            .await?;
        }
        let single = SINGLE_ROWS as f64 / started.elapsed().as_secs_f64();
        Ok::<_, anyhow::Error>((insert, update, single))
    };
    let result = tokio::time::timeout(TIMEOUT, run).await;
    sqlx::query("DROP TABLE bench_scratch")
        .execute(pool)
        .await?;
    result.map_err(|_| anyhow::anyhow!("the database ceiling took over {TIMEOUT:?}"))?
}
