//! The engine's upstream connection pool, per proxy: which connection an attempt goes on, when
//! to open one, when one is reusable. Drivers only open and close connections when told.
//!
//! * HTTP/1.1: one request at a time per connection; finished connections wait in a per-endpoint
//!   idle list (most recently used first); a connection that ended mid-request is closed.
//! * HTTP/2 (clusters with `h2_upgrade_policy: UPGRADE`): one shared connection per endpoint
//!   carries any number of concurrent streams; a stream reset leaves the connection open; only
//!   a connection-level close (`closed`) retires it.
//!
//! **Invariant:** an attempt is on exactly one connection; a connection's `active` count is
//! the number of its attempts that were sent and have not finished.

use crate::idmap::IdMap;
use crate::registry::EndpointId;
use crate::types::{AttemptId, ConnId};

#[derive(Debug)]
struct Conn {
    endpoint: EndpointId,
    multiplexed: bool,
    /// Connect requested, not yet answered.
    connecting: bool,
    /// Attempts waiting for the connect.
    waiting: Vec<AttemptId>,
    /// Attempts sent and not finished.
    active: u32,
}

/// Where a new attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On an open connection: send now.
    Ready(ConnId),
    /// On a connection being opened: send when it is up.
    Pending(ConnId),
    /// On a new connection the driver must open (`Action::Connect`); send when it is up.
    Opened(ConnId),
}

/// The connection pool of one proxy.
#[derive(Debug, Default)]
pub struct Pool {
    conns: IdMap<ConnId, Conn>,
    /// HTTP/1.1 idle connections per endpoint (indexed by `EndpointId`).
    idle: Vec<Vec<ConnId>>,
    /// The shared HTTP/2 connection per endpoint.
    shared: Vec<Option<ConnId>>,
    next: u64,
}

impl Pool {
    /// Sizes the per-endpoint tables for `endpoints` endpoints.
    pub fn resize(&mut self, endpoints: usize) {
        self.idle.resize_with(endpoints, Vec::new);
        self.shared.resize(endpoints, None);
    }

    /// Connections open or opening.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open or opening.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Whether `conn` is an HTTP/2 connection.
    pub fn multiplexed(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.multiplexed)
    }

    fn open(&mut self, endpoint: EndpointId, attempt: AttemptId, multiplexed: bool) -> ConnId {
        let conn = ConnId(self.next);
        self.next += 1;
        self.conns.insert(
            conn,
            Conn {
                endpoint,
                multiplexed,
                connecting: true,
                waiting: vec![attempt],
                active: 0,
            },
        );
        conn
    }

    /// Places a new attempt to `endpoint`.
    pub fn place(
        &mut self,
        endpoint: EndpointId,
        attempt: AttemptId,
        multiplexed: bool,
    ) -> Placement {
        let e = endpoint.0 as usize;
        if multiplexed {
            if let Some(conn) = self.shared[e] {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if c.connecting {
                        c.waiting.push(attempt);
                        return Placement::Pending(conn);
                    }
                    c.active += 1;
                    return Placement::Ready(conn);
                }
            }
            let conn = self.open(endpoint, attempt, true);
            self.shared[e] = Some(conn);
            return Placement::Opened(conn);
        }
        while let Some(conn) = self.idle[e].pop() {
            if let Some(c) = self.conns.get_mut(&conn) {
                debug_assert_eq!(c.active, 0, "idle connection carrying a request");
                c.active = 1;
                return Placement::Ready(conn);
            }
        }
        Placement::Opened(self.open(endpoint, attempt, false))
    }

    /// `conn` is up: the attempts to send on it now.
    pub fn connected(&mut self, conn: ConnId) -> Vec<AttemptId> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        c.connecting = false;
        let ready = std::mem::take(&mut c.waiting);
        c.active += ready.len() as u32;
        if !c.multiplexed && ready.is_empty() {
            self.idle[c.endpoint.0 as usize].push(conn);
        }
        ready
    }

    /// `conn` could not be opened: the attempts that waited for it.
    pub fn connect_failed(&mut self, conn: ConnId) -> Vec<AttemptId> {
        self.forget(conn).map(|c| c.waiting).unwrap_or_default()
    }

    /// `attempt` on `conn` ended. `reusable`: the response completed and the upstream keeps
    /// the connection (HTTP/1.1), or the stream alone ended (HTTP/2). Returns true when the
    /// driver must close the connection.
    pub fn finished(&mut self, conn: ConnId, attempt: AttemptId, reusable: bool) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if let Some(i) = c.waiting.iter().position(|a| *a == attempt) {
            // Abandoned before the connection was up; the connection is kept for later.
            c.waiting.swap_remove(i);
            return false;
        }
        debug_assert!(
            c.active > 0,
            "finishing on a connection with no active attempt"
        );
        c.active = c.active.saturating_sub(1);
        if c.multiplexed || reusable {
            if !c.multiplexed {
                self.idle[c.endpoint.0 as usize].push(conn);
            }
            return false;
        }
        self.forget(conn);
        true
    }

    /// The peer closed `conn` (or it broke); it is no longer used.
    pub fn closed(&mut self, conn: ConnId) {
        self.forget(conn);
    }

    fn forget(&mut self, conn: ConnId) -> Option<Conn> {
        let c = self.conns.remove(&conn)?;
        let e = c.endpoint.0 as usize;
        if self.shared.get(e) == Some(&Some(conn)) {
            self.shared[e] = None;
        }
        if let Some(idle) = self.idle.get_mut(e) {
            idle.retain(|x| *x != conn);
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_reuses_one_connection_at_a_time() {
        let mut p = Pool::default();
        p.resize(1);
        let e = EndpointId(0);
        let Placement::Opened(c1) = p.place(e, AttemptId(1), false) else {
            panic!()
        };
        let Placement::Opened(c2) = p.place(e, AttemptId(2), false) else {
            panic!("busy: new conn")
        };
        assert_eq!(p.connected(c1), vec![AttemptId(1)]);
        assert_eq!(p.connected(c2), vec![AttemptId(2)]);
        assert!(!p.finished(c1, AttemptId(1), true));
        assert_eq!(p.place(e, AttemptId(3), false), Placement::Ready(c1));
        assert!(
            p.finished(c2, AttemptId(2), false),
            "mid-request end closes"
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn http2_shares_one_connection() {
        let mut p = Pool::default();
        p.resize(1);
        let e = EndpointId(0);
        let Placement::Opened(c) = p.place(e, AttemptId(1), true) else {
            panic!()
        };
        assert_eq!(p.place(e, AttemptId(2), true), Placement::Pending(c));
        assert_eq!(p.connected(c), vec![AttemptId(1), AttemptId(2)]);
        assert_eq!(p.place(e, AttemptId(3), true), Placement::Ready(c));
        assert!(
            !p.finished(c, AttemptId(2), false),
            "a stream reset keeps the connection"
        );
        p.closed(c);
        assert!(matches!(
            p.place(e, AttemptId(4), true),
            Placement::Opened(_)
        ));
    }
}
