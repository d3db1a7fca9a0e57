//! `reports`: turns `RunMetrics` into what people and CI read — a terminal summary and a JSON
//! report with a stable, documented schema (`SCHEMA.md`). The JSON holds only what the run
//! determined (no wall-clock figures), so the same scenario and seed give byte-identical JSON.

pub mod json;
pub mod text;

pub use json::{Report, RunInfo, SCHEMA_VERSION};
