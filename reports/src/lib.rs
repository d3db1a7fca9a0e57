//! `reports`: turns `RunMetrics` into what people and CI read — a terminal summary, a JSON
//! report with a stable, documented schema (`SCHEMA.md`) and a self-contained HTML report made
//! from that JSON. The JSON holds only what the run determined (no wall-clock figures), so the
//! same scenario and seed give byte-identical JSON, and so byte-identical HTML.

pub mod compare;
pub mod gate;
pub mod html;
pub mod json;
pub mod rollout;
pub mod sweep;
pub mod table;
pub mod text;

pub use json::{Report, RunInfo, SCHEMA_VERSION};
