//! End-to-end tests: the real fleet on real RabbitMQ and PostgreSQL, Meta simulated.
//! One test binary (modules below) keeps link time down.

mod bad_input;
mod delivery;
mod notifications;
mod round_trip;
mod webhook_bench;
mod webhook_fields;
mod webhooks;
