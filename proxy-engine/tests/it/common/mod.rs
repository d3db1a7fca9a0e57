//! Helpers shared by the engine's integration tests.

use proxy_engine::MeshConfig;

/// A mesh config from RON text, with the extensions scenario files use.
pub(crate) fn mesh(text: &str) -> MeshConfig {
    let options = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES);
    options.from_str(text).unwrap_or_else(|e| panic!("{e}"))
}
