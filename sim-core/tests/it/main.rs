//! The simulator's integration tests, one test binary for all.

mod bookinfo;
mod common;
mod egress_gateway;
mod gateway;
mod properties;
mod queueing_theory;
mod resilience;
mod rollout;
mod service_model;
mod settings;
mod timeline;
