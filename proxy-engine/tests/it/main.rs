//! The engine's integration tests, one test binary for all.

mod common;
mod consistent_hash;
mod egress;
mod gateway;
mod reload;
mod retry_and_outlier;
mod routing_table;
