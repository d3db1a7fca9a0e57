//! Istio networking YAML for meshtwin: `import` reads VirtualService, DestinationRule,
//! Gateway, ServiceEntry and Sidecar documents into meshtwin's `MeshConfig`, keeping where each
//! object was written and warning about the fields meshtwin does not model.

pub mod error;
pub mod import;
mod schema;
pub mod to_ron;
mod walk;
pub mod yaml;

pub use error::{ImportError, Level, Note};
pub use import::{import_paths, import_text, Imported, Options, Origin, Origins};
