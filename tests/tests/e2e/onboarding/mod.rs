//! Onboarding as the recruiting products do it (issue 14), against the simulator: Embedded
//! Signup's back end, the number lifecycle (registration, display name, removal), the kept
//! connection status, what the company pastes into Meta, the module switch and the operators'
//! tenant administration.

mod connection;
mod lifecycle;
mod operators;
mod signup;
