//! The deploy files agree with the code: the RabbitMQ definitions SREs import declare exactly
//! what the services declare (a mismatch would close the services' channels with
//! PRECONDITION_FAILED at start-up), and every alert rule uses a metric the code defines.

use lapin::ExchangeKind;
use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use serde_json::Value;
use std::time::Duration;
use wafleet_core::amqp::{self, Topology};

fn deploy_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../deploy/{path}", env!("CARGO_MANIFEST_DIR")))
        .expect("deploy file")
}

fn amqp_args(json: &Value) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in json.as_object().expect("arguments object") {
        let value = match v {
            Value::String(s) => AMQPValue::LongString(s.as_str().into()),
            Value::Bool(b) => AMQPValue::Boolean(*b),
            Value::Number(n) => AMQPValue::LongLongInt(n.as_i64().expect("integer")),
            other => panic!("unexpected argument {k}: {other}"),
        };
        table.insert(k.as_str().into(), value);
    }
    table
}

#[tokio::test]
async fn the_rabbitmq_definitions_declare_what_the_services_declare() {
    let defs: Value = serde_json::from_str(&deploy_file("rabbitmq/definitions.json")).unwrap();
    let prefix = format!(
        "wt-defs-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let rename = |name: &str| name.replacen("wafleet", &prefix, 1);
    let conn = amqp::connect(&wafleet_tests::test_amqp_url(), &format!("{prefix}/defs"))
        .await
        .expect("broker");
    let channel = conn.create_channel().await.unwrap();

    for x in defs["exchanges"].as_array().unwrap() {
        let kind = match x["type"].as_str().unwrap() {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            other => panic!("exchange type {other}"),
        };
        let options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let name = rename(x["name"].as_str().unwrap());
        channel
            .exchange_declare(name.into(), kind, options, FieldTable::default())
            .await
            .unwrap();
    }
    for q in defs["queues"].as_array().unwrap() {
        let mut args = q["arguments"].clone();
        for key in ["x-dead-letter-exchange", "x-dead-letter-routing-key"] {
            if let Some(Value::String(s)) = args.get(key).cloned() {
                args[key] = Value::String(rename(&s));
            }
        }
        let name = rename(q["name"].as_str().unwrap());
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions::durable(),
                amqp_args(&args),
            )
            .await
            .unwrap();
    }
    for b in defs["bindings"].as_array().unwrap() {
        channel
            .queue_bind(
                rename(b["destination"].as_str().unwrap()).into(),
                rename(b["source"].as_str().unwrap()).into(),
                b["routing_key"].as_str().unwrap().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    // The defaults of deploy/ (4 shards, 5s/30s/2m/10m) declared by the services' own code.
    let defaults = wafleet_core::Settings::default();
    let topology = Topology::new(
        &prefix,
        defaults.dispatch.shards,
        &defaults.dispatch.retry_tiers,
    );
    let declared = topology.declare(&channel).await;
    let cleanup = conn.create_channel().await.unwrap();
    let _ = topology.delete(&cleanup).await;
    let _ = conn.close(200, "done".into()).await;
    declared.expect("the services' topology matches deploy/rabbitmq/definitions.json");
    assert_eq!(
        defaults.dispatch.retry_tiers,
        [5, 30, 120, 600].map(Duration::from_secs)
    );
}

#[test]
fn every_alert_rule_uses_metrics_the_code_defines() {
    let rules = deploy_file("prometheus/alerts.yml");
    let metrics = std::fs::read_to_string(format!(
        "{}/../crates/core/src/metrics.rs",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("wafleet_"))
        .map(|w| w.trim_end_matches("_bucket"))
        .collect();
    used.sort();
    used.dedup();
    assert!(!used.is_empty());
    for name in used {
        assert!(
            metrics.contains(&format!("\"{name}\"")),
            "alert rule uses {name}, which crates/core/src/metrics.rs does not define"
        );
    }
}
