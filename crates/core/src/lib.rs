//! wafleet-core: the plumbing every service shares — configuration, telemetry, shutdown, the
//! database pool and the one embedded `MIGRATOR`, the AMQP topology and confirmed publishing,
//! the wire contracts between services, and the domain newtypes parsed once at the edge.

pub mod amqp;
pub mod campaign;
pub mod clock;
pub mod config;
pub mod connection;
pub mod consume;
pub mod contract;
pub mod conversation;
pub mod db;
pub mod dead_letters;
pub mod domain;
pub mod endpoint_url;
pub mod health;
pub mod http;
pub mod limit_holds;
pub mod metrics;
pub mod monitor;
pub mod policy;
pub mod rate_card;
pub mod secrets;
pub mod service;
pub mod shutdown;
pub mod standard_webhooks;
pub mod telemetry;
pub mod tenant;

pub use clock::{Clock, SystemClock};
pub use config::Settings;
