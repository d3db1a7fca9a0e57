//! The engine's ids: requests, attempts and connections (per proxy), routes, clusters and
//! destinations (per compiled mesh lineage). A leaf module: everything may name them.

/// A downstream request, identified by the driver; unique among the proxy's open requests.
///
/// **Invariant:** drivers number their requests below `RequestId::MIRROR_COPY` (2^63); the
/// ids from there up name the engine's mirrored copies (see `Action::Mirror`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl RequestId {
    /// The first id of the engine's mirrored copies; every id at or above it is one.
    pub const MIRROR_COPY: u64 = 1 << 63;

    /// Whether this id names a mirrored copy made by the engine (not a driver's request).
    pub fn is_mirror_copy(self) -> bool {
        self.0 >= Self::MIRROR_COPY
    }
}

/// One upstream try of a request, identified by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId(pub u64);

/// An upstream connection, identified by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Index of a route in the `CompiledMesh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId(pub u32);

/// Index of a cluster (a service, or a subset of one) in the `CompiledMesh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u32);

/// Index of a destination (service, version) in the `CompiledMesh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestinationId(pub u32);
