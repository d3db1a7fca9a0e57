//! `proxy-engine`: the sans-IO heart of meshtwin.
//!
//! A `Proxy` is a pure, synchronous state machine for one sidecar or gateway. It never reads a
//! clock, never spawns, never touches a socket and never draws from a global RNG: time comes in
//! as `now` (`Time`, integer nanoseconds), randomness from the proxy's own seeded ChaCha stream,
//! and what the engine wants done comes out as `Action`s. The simulator (`sim-core`) and the
//! live runtime drive the same engine.
//!
//! Config flows `MeshConfig` (+ `Registry`) → `CompiledMesh` (validated, indexed) → `Proxy`.
//! Every request ends in exactly one `Action::Complete` carrying an `Outcome`; the `metrics`
//! crate turns outcomes into streaming statistics.

mod compile;
pub mod config;
pub mod error;
pub mod gateway;
pub mod harness;
pub mod hash;
pub mod head;
pub mod hosts;
pub mod idmap;
pub mod ids;
mod lb;
pub mod local_reply;
mod matching;
pub mod mesh;
mod outlier;
mod path;
pub mod policy;
mod pool;
pub mod proxy;
mod ratelimit;
pub mod registry;
mod rewrite;
pub mod time;
mod timers;
pub mod tls;
pub mod types;
pub mod unique;

pub use config::MeshConfig;
pub use mesh::{ClusterId, CompiledMesh, ConfigError, ConfigWarning, DestinationId, RouteId};
pub use proxy::{ApplyError, Decision, Proxy, ProxyRole};
pub use registry::{Endpoint, EndpointId, EndpointMap, Registry};
pub use time::{Nanos, Time};
pub use types::{
    Action, AttemptEnd, AttemptId, ConnId, ConnectFailure, EngineEvent, Outcome, RequestHead,
    RequestId, ResponseFlags, ResponseHead,
};
