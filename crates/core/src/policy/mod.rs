//! The dispatcher's rules (SPEC §4) as pure functions of (request, settings, now), plus the one
//! read of the portfolio cap's state that both the dispatcher and campaign ETAs need.

pub mod cap;
pub mod quiet_time;
