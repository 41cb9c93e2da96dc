//! The `wafleet` binary's library half: the in-process fleet launcher shared by `wafleet all`,
//! the demo and the end-to-end tests, the admin commands, and the demo itself.

pub mod admin;
pub mod campaign_cli;
pub mod demo;
pub mod fleet;
pub mod operator;
