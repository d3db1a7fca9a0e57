//! `sim-core`: the deterministic discrete-event simulator of a service mesh.
//!
//! A `Scenario` (RON) describes services, the mesh policy, and the load. `sim::run` builds one
//! `proxy_engine::Proxy` per instance sidecar and per workload client, drives them in virtual
//! time against modeled instances, and returns `RunMetrics`. Same scenario and seed ⇒ the same
//! metrics, bit for bit: the run is single-threaded, every random draw comes from a named
//! stream (`rng`), event ties break by sequence number (`queue`), and no hash-map order reaches
//! the output.

pub mod admission;
mod check;
pub mod delivery;
pub mod dist;
pub mod lifecycle;
pub mod load;
pub mod model;
mod overlay;
pub mod queue;
pub mod rng;
pub mod scenario;
pub mod setting;
pub mod sim;
pub mod timeline;
pub mod topology;
pub mod workload;

pub use load::{load, load_with, ScenarioError};
pub use scenario::Scenario;
pub use setting::Setting;
pub use sim::{run, Progress};
