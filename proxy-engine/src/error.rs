//! Why a mesh configuration cannot be used (`ConfigError`) or may not do what its author meant
//! (`ConfigWarning`). A leaf module: the parsers of every config part report through it.

use thiserror::Error;

/// A mesh configuration that cannot be used. `field` is the path of the offending field inside
/// the mesh config, e.g. `virtual_services[0].http[1].route[0].destination.host`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A destination or rule names a service the registry does not have.
    #[error("{field}: unknown service `{host}` (known services: {known})")]
    UnknownHost {
        /// Path of the field.
        field: String,
        /// The host as written.
        host: String,
        /// Comma-separated known services.
        known: String,
    },
    /// A route has no destination with a weight above 0.
    #[error("{field}: route has no destination with a weight above 0")]
    NoWeight {
        /// Path of the field.
        field: String,
    },
    /// Two rules of one kind claim the same host.
    #[error("{field}: host `{host}` already has a {kind}")]
    DuplicateHost {
        /// Path of the field.
        field: String,
        /// The host.
        host: String,
        /// `virtual service` or `destination rule`.
        kind: &'static str,
    },
    /// A virtual service lists no host.
    #[error("{field}: a virtual service needs at least one host")]
    NoHosts {
        /// Path of the field.
        field: String,
    },
    /// A regular expression does not compile.
    #[error("{field}: regex `{pattern}` does not compile: {error}")]
    BadRegex {
        /// Path of the field.
        field: String,
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        error: String,
    },
    /// Any other value out of range or combination not allowed; `message` says which.
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the field.
        field: String,
        /// What was expected and what was found.
        message: String,
    },
}

impl ConfigError {
    /// The path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::UnknownHost { field, .. }
            | ConfigError::NoWeight { field }
            | ConfigError::DuplicateHost { field, .. }
            | ConfigError::NoHosts { field }
            | ConfigError::BadRegex { field, .. }
            | ConfigError::Invalid { field, .. } => field,
        }
    }
}

/// Something that compiles but will not do what its author likely meant. The engine handles it
/// at run time (an undefined subset answers 503 `NC`, as Envoy does for a missing cluster);
/// tools such as `meshtwin validate` report it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigWarning {
    /// A destination names a subset no destination rule defines for its host.
    #[error("{field}: subset `{subset}` is not defined for host `{host}` by any destination rule (requests routed to it get 503 NC)")]
    UndefinedSubset {
        /// Path of the field.
        field: String,
        /// Destination host.
        host: String,
        /// Subset as written.
        subset: String,
    },
    /// A virtual service binds to a gateway no `Gateway` object defines (Istio's analyzer
    /// reports it as IST0101); those routes apply nowhere.
    #[error(
        "{field}: gateway `{gateway}` is not defined by any Gateway (its routes apply nowhere)"
    )]
    UnknownGateway {
        /// Path of the field.
        field: String,
        /// The gateway as resolved (`namespace/name`).
        gateway: String,
    },
    /// A virtual service host no server of the gateways it binds to serves: no request can
    /// reach those routes there (Istio's IST0132).
    #[error("{field}: host `{host}` is not served by any server of gateway `{gateway}`")]
    HostNotInGateway {
        /// Path of the field.
        field: String,
        /// The host.
        host: String,
        /// The gateway (`namespace/name`).
        gateway: String,
    },
}
