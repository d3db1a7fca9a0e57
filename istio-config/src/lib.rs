//! Istio networking YAML for meshtwin: `import` reads VirtualService, DestinationRule,
//! Gateway, ServiceEntry and Sidecar documents into meshtwin's `MeshConfig`, keeping where each
//! object was written and warning about the fields meshtwin does not model; `analyze` gives
//! `istioctl analyze`-style diagnostics over a mesh config (imported or a scenario's own);
//! `routetest` runs route unit tests (the istio-config-validator format) against the engine.

mod analysis;
pub mod analyze;
pub mod argo;
pub mod error;
pub mod flagger;
pub mod import;
mod promql;
pub mod routetest;
mod schema;
pub mod to_ron;
mod walk;
pub mod yaml;

pub use error::{ImportError, Level, Note};
pub use import::{
    import_paths, import_text, Deployment, Imported, Options, Origin, Origins, Template,
};
