//! The `meshtwin` binary end to end, one test binary for all (one link, not one per file).

mod circuit_breaking_task;
mod cli;
mod common;
mod compare;
mod fuzz_scenarios;
mod gates;
mod hop_visibility;
mod html_report;
mod istio_import;
mod proxy_cli;
mod rollouts;
mod route_tests;
mod scenario_library;
mod sweep;
mod traffic_management;
