//! `metrics`: what both drivers record and reports read. Outcomes and engine events of
//! `proxy-engine` go in (`Recorder`), named statistics come out (`RunMetrics`): counts by status
//! and flag, hdrhistogram latencies, per-window time series, per route, destination, cluster
//! and instance. The engine itself knows nothing of this crate.

pub mod instances;
pub mod latency;
mod record;
mod series;

pub use record::*;
pub use series::{TimeSeries, Window};
