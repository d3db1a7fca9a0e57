//! The process's open-file limit (`RLIMIT_NOFILE`), which bounds the connections a proxy can
//! hold: each accepted connection is a descriptor, and so is each upstream connection it
//! opens. Many systems start processes with a soft limit of 1,024 under a hard limit of
//! hundreds of thousands; Envoy's edge guidance assumes the limit has been raised, so the
//! proxy raises its soft limit to the hard one at start and says when `max_connections` can
//! still exceed it (an exhausted limit shows as `EMFILE` on accept, which the listeners survive
//! by backing off, but the connections beyond it wait).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The open-file limits after [`raise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit now (the hard limit, unless the kernel refused).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft open-file limit as far as the hard limit allows (a refused raise, as
/// for a hard limit above the kernel's `nr_open`, leaves it where it was).
pub fn raise() -> Result<FdLimit, nix::Error> {
    let (was, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if was < hard {
        let _refused = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(FdLimit { was, soft, hard })
}

/// Descriptors kept aside for what is not a connection (the binary, logs, the admin
/// endpoint, config files, the runtime's own).
pub const RESERVE: u64 = 64;

/// The descriptors `listeners` listeners of `max_connections` each may need at most: a client
/// connection and an upstream one per slot, plus [`RESERVE`].
pub fn needed(max_connections: usize, listeners: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(2)
        .saturating_mul(listeners as u64)
        .saturating_add(RESERVE)
}

/// The warning to give when `needed` exceeds the soft limit, if it does.
pub fn warning(limit: &FdLimit, max_connections: usize, listeners: usize) -> Option<String> {
    let need = needed(max_connections, listeners);
    (need > limit.soft).then(|| {
        format!(
            "limits.max_connections {max_connections} on {listeners} listener(s) may need {need} \
             file descriptors (a client and an upstream connection each), over the open-file \
             limit {} (hard limit {}): raise it (`ulimit -n`, systemd `LimitNOFILE`) or lower \
             max_connections; connections past it wait in the kernel's accept queue",
            limit.soft, limit.hard
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_to_the_hard_one() {
        let limit = raise().expect("getrlimit works");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit works");
        assert_eq!((limit.soft, limit.hard), (soft, hard));
        assert!(
            limit.soft >= limit.was && limit.soft <= limit.hard,
            "{limit:?}"
        );
    }

    #[test]
    fn the_warning_names_what_is_needed_and_the_limit() {
        let limit = FdLimit {
            was: 1024,
            soft: 1024,
            hard: 4096,
        };
        assert_eq!(needed(10_000, 2), 40_064);
        let w = warning(&limit, 10_000, 2).expect("over the limit");
        assert!(w.contains("may need 40064 file descriptors"), "{w}");
        assert!(w.contains("open-file limit 1024 (hard limit 4096)"), "{w}");
        assert_eq!(warning(&limit, 400, 1), None, "864 fit in 1024");
    }
}
