//! End-to-end tests: the real fleet on real RabbitMQ and PostgreSQL, Meta simulated.
//! One test binary (modules below) keeps link time down.

mod bad_input;
mod delivery;
mod round_trip;
mod webhooks;
mod notifications;
mod webhook_fields;
