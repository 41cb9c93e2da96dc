//! End-to-end tests: the real fleet on real RabbitMQ and PostgreSQL, Meta simulated.
//! One test binary (modules below) keeps link time down.

mod admin_cli;
mod admin_keys;
mod admin_senders;
mod admin_settings;
mod bad_input;
mod broker_restart;
mod campaign_bench;
mod campaign_flow;
mod campaign_pools;
mod campaigns;
mod cap_proof;
mod consent;
mod conversations;
mod delivery;
mod deploy_files;
mod dispatcher_crash;
mod endpoints;
mod faults;
mod group_commit;
mod limit_raise;
mod lost_answers;
mod notifications;
mod observability;
mod onboarding;
mod openapi;
mod policies;
mod rate_bench;
mod read_receipts;
mod retry_persistence;
mod rich_messages;
mod round_trip;
mod usage;
mod webhook_bench;
mod webhook_fields;
mod webhooks;
