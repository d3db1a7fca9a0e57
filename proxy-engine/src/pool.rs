//! The engine's upstream connection pools and circuit breakers, per proxy: which connection an
//! attempt goes on, when to open or close one, and when a limit turns an attempt away. Drivers
//! only open and close connections when told.
//!
//! Pools are per (cluster, endpoint), as Envoy keeps one pool per host per cluster; limits are
//! per cluster (summed over its hosts), as Envoy's circuit breakers are.
//!
//! * HTTP/1.1: one request at a time per connection. An attempt takes an idle connection, or
//!   waits in the host pool's pending queue (`http1MaxPendingRequests`) while a connection is
//!   opened for it — unless the cluster is at `maxConnections`, in which case it waits for a busy
//!   connection to free up. A host with no connection always gets one (Envoy's soft limit).
//!   `maxRequestsPerConnection` closes a connection after that many requests.
//! * HTTP/2 (clusters with `h2_upgrade_policy: UPGRADE`): one shared connection per host pool
//!   carries any number of concurrent streams.
//! * `http2MaxRequests` bounds attempts in flight on connections across the cluster; an attempt
//!   that would exceed it, or a pending queue that is full, is an overflow (503 `UO`).
//! * A connect failure fails every attempt pending on that host pool (Envoy purges them).
//!
//! **Invariants** (checked by `check` in tests): a cluster's `cx`, `pending` and `active`
//! counters equal its connections, queued attempts and attempts on a connection (until reported
//! finished); `active ≤ max_requests` and `pending ≤ max_pending` always;
//! `cx ≤ max_connections + hosts with a connection` (the soft limit lets a host without a
//! connection open one, so the cluster can exceed the limit by up to its host count).

use crate::idmap::IdMap;
use crate::ids::ClusterId;
use crate::policy::Limits;
use crate::registry::EndpointId;
use crate::types::{AttemptId, ConnId};
use std::collections::VecDeque;

/// What the pool asks of its proxy, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolEvent {
    /// Open connection `conn` to `endpoint`.
    Connect {
        /// New connection.
        conn: ConnId,
        /// For which cluster.
        cluster: ClusterId,
        /// Where to.
        endpoint: EndpointId,
        /// HTTP/2.
        http2: bool,
        /// The waiting attempt the connection is opened for (the first pending one it covers);
        /// the pool serves pending attempts in order, whichever connection is ready first.
        opened_for: Option<AttemptId>,
    },
    /// Send `attempt` on `conn` now.
    Send {
        /// The attempt.
        attempt: AttemptId,
        /// Its connection.
        conn: ConnId,
    },
    /// Close `conn`.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// `attempt` overflowed a circuit breaker: 503 `UO`, never retried.
    Overflow {
        /// The attempt.
        attempt: AttemptId,
    },
    /// The connection `attempt` waited for failed to open.
    ConnectFailed {
        /// The attempt.
        attempt: AttemptId,
    },
}

type Key = u64;

fn key(cluster: ClusterId, endpoint: EndpointId) -> Key {
    (u64::from(cluster.0) << 32) | u64::from(endpoint.0)
}

#[derive(Debug)]
struct Conn {
    key: Key,
    cluster: ClusterId,
    endpoint: EndpointId,
    multiplexed: bool,
    connecting: bool,
    /// Attempts in flight on it.
    active: u32,
    /// Requests it has carried.
    served: u32,
    /// No new attempt may use it (request limit reached); closed when idle.
    retiring: bool,
}

#[derive(Debug, Default)]
struct HostPool {
    idle: Vec<ConnId>,
    shared: Option<ConnId>,
    pending: VecDeque<AttemptId>,
    conns: u32,
    connecting: u32,
}

/// Per-cluster circuit-breaker counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Connections open or opening.
    pub cx: u32,
    /// Attempts waiting for a connection.
    pub pending: u32,
    /// Attempts in flight on a connection.
    pub active: u32,
}

#[derive(Debug, Clone, Copy)]
enum Loc {
    Pending(Key),
    On(ConnId),
}

#[derive(Debug, Clone, Copy)]
struct Placed {
    cluster: ClusterId,
    loc: Loc,
}

/// The connection pools of one proxy.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    conns: IdMap<ConnId, Conn>,
    hosts: IdMap<Key, HostPool>,
    attempts: IdMap<AttemptId, Placed>,
    /// Counters per cluster (indexed by `ClusterId`), grown to the highest cluster used.
    counts: Vec<Counts>,
    /// Each cluster's limits and protocol, shared with the mesh (see `configure`).
    settings: std::sync::Arc<[(Limits, bool)]>,
    events: VecDeque<PoolEvent>,
    next: u64,
}

impl Pool {
    /// Sets each cluster's limits and protocol (indexed by `ClusterId`; the mesh's shared
    /// `CompiledMesh::pool_settings`); counters are kept.
    pub(crate) fn configure(&mut self, settings: std::sync::Arc<[(Limits, bool)]>) {
        self.settings = settings;
    }

    /// Connections open or opening.
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// A cluster's counters.
    pub(crate) fn counts(&self, cluster: ClusterId) -> Counts {
        self.counts
            .get(cluster.0 as usize)
            .copied()
            .unwrap_or_default()
    }

    /// The next thing to do, if any.
    pub(crate) fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    fn limits(&self, cluster: ClusterId) -> Limits {
        self.settings
            .get(cluster.0 as usize)
            .map(|s| s.0)
            .unwrap_or_default()
    }

    fn counts_mut(&mut self, cluster: ClusterId) -> &mut Counts {
        let i = cluster.0 as usize;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, Counts::default());
        }
        &mut self.counts[i]
    }

    /// Places a new attempt to `endpoint` of `cluster`.
    pub(crate) fn place(&mut self, cluster: ClusterId, endpoint: EndpointId, attempt: AttemptId) {
        let k = key(cluster, endpoint);
        let multiplexed = self.settings.get(cluster.0 as usize).is_some_and(|s| s.1);
        let host = self.hosts.entry(k).or_default();
        let ready = if multiplexed {
            host.shared
                .filter(|c| self.conns.get(c).is_some_and(|c| !c.connecting))
        } else {
            host.idle.pop()
        };
        if let Some(conn) = ready {
            if !self.attach(attempt, cluster, conn) && !multiplexed {
                if let Some(host) = self.hosts.get_mut(&k) {
                    host.idle.push(conn); // still free
                }
            }
            return;
        }
        let limits = self.limits(cluster);
        if self.counts(cluster).pending >= limits.max_pending {
            return self.events.push_back(PoolEvent::Overflow { attempt });
        }
        self.counts_mut(cluster).pending += 1;
        self.attempts.insert(
            attempt,
            Placed {
                cluster,
                loc: Loc::Pending(k),
            },
        );
        if let Some(host) = self.hosts.get_mut(&k) {
            host.pending.push_back(attempt);
        }
        self.maybe_open(cluster, endpoint, multiplexed);
    }

    /// Opens a connection for the host pool's pending attempts if they need one and the
    /// cluster's connection limit allows it (a host without connections always gets one).
    fn maybe_open(&mut self, cluster: ClusterId, endpoint: EndpointId, multiplexed: bool) {
        let k = key(cluster, endpoint);
        let limit = self.limits(cluster).max_connections;
        let cx = self.counts(cluster).cx;
        let Some(host) = self.hosts.get_mut(&k) else {
            return;
        };
        let needed = if multiplexed {
            !host.pending.is_empty() && host.shared.is_none()
        } else {
            host.pending.len() > host.connecting as usize
        };
        if !needed || (cx >= limit && host.conns > 0) {
            return;
        }
        let covered = if multiplexed {
            0
        } else {
            host.connecting as usize
        };
        let opened_for = host.pending.get(covered).copied();
        let conn = ConnId(self.next);
        self.next += 1;
        host.conns += 1;
        host.connecting += 1;
        if multiplexed {
            host.shared = Some(conn);
        }
        self.conns.insert(
            conn,
            Conn {
                key: k,
                cluster,
                endpoint,
                multiplexed,
                connecting: true,
                active: 0,
                served: 0,
                retiring: false,
            },
        );
        self.counts_mut(cluster).cx += 1;
        self.events.push_back(PoolEvent::Connect {
            conn,
            cluster,
            endpoint,
            http2: multiplexed,
            opened_for,
        });
    }

    /// Puts `attempt` on the ready connection `conn`, unless `max_requests` is reached (then
    /// the attempt overflows and the connection is left as it was). Returns whether it went on.
    fn attach(&mut self, attempt: AttemptId, cluster: ClusterId, conn: ConnId) -> bool {
        let limits = self.limits(cluster);
        let Some(c) = self.conns.get_mut(&conn).filter(|_| {
            self.counts
                .get(cluster.0 as usize)
                .is_none_or(|n| n.active < limits.max_requests)
        }) else {
            self.events.push_back(PoolEvent::Overflow { attempt });
            return false;
        };
        c.active += 1;
        c.served += 1;
        let max = limits.max_requests_per_connection;
        if max > 0 && c.served >= max {
            c.retiring = true;
            if let Some(host) = self.hosts.get_mut(&c.key) {
                if host.shared == Some(conn) {
                    host.shared = None;
                }
            }
        }
        self.counts_mut(cluster).active += 1;
        self.attempts.insert(
            attempt,
            Placed {
                cluster,
                loc: Loc::On(conn),
            },
        );
        self.events.push_back(PoolEvent::Send { attempt, conn });
        true
    }

    /// `conn` can take work: the host pool's pending attempts go on it (one for HTTP/1.1,
    /// all for HTTP/2), else an HTTP/1.1 connection goes idle; a retiring one closes when idle.
    fn make_available(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (k, cluster, multiplexed) = (c.key, c.cluster, c.multiplexed);
        if c.retiring {
            if c.active == 0 {
                let endpoint = c.endpoint;
                self.close(conn);
                self.maybe_open(cluster, endpoint, multiplexed);
            }
            return;
        }
        loop {
            let Some(c) = self.conns.get(&conn) else {
                return;
            };
            if c.retiring || (!c.multiplexed && c.active > 0) {
                return;
            }
            let Some(next) = self.hosts.get_mut(&k).and_then(|h| h.pending.pop_front()) else {
                break;
            };
            self.attempts.remove(&next);
            self.counts_mut(cluster).pending -= 1;
            if self.attach(next, cluster, conn) && !multiplexed {
                return;
            }
        }
        if let Some(c) = self.conns.get(&conn) {
            if !c.multiplexed && c.active == 0 && !c.retiring {
                if let Some(host) = self.hosts.get_mut(&k) {
                    host.idle.push(conn);
                }
            }
        }
    }

    /// `conn` is up.
    pub(crate) fn connected(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.connecting {
            return;
        }
        c.connecting = false;
        if let Some(host) = self.hosts.get_mut(&c.key) {
            host.connecting -= 1;
        }
        self.make_available(conn);
    }

    /// `conn` could not be opened: every attempt pending on its host pool fails.
    pub(crate) fn connect_failed(&mut self, conn: ConnId) {
        let Some(c) = self.forget(conn) else {
            return;
        };
        let pending = self
            .hosts
            .get_mut(&c.key)
            .map(|h| std::mem::take(&mut h.pending))
            .unwrap_or_default();
        for attempt in pending {
            self.attempts.remove(&attempt);
            self.counts_mut(c.cluster).pending -= 1;
            self.events.push_back(PoolEvent::ConnectFailed { attempt });
        }
    }

    /// `attempt` ended (or was abandoned). `reusable`: the response completed and the upstream
    /// keeps the connection (HTTP/1.1), or the stream alone ended (HTTP/2).
    pub(crate) fn finished(&mut self, attempt: AttemptId, reusable: bool) {
        let Some(placed) = self.attempts.remove(&attempt) else {
            return;
        };
        match placed.loc {
            Loc::Pending(k) => {
                if let Some(host) = self.hosts.get_mut(&k) {
                    host.pending.retain(|a| *a != attempt);
                }
                self.counts_mut(placed.cluster).pending -= 1;
            }
            Loc::On(conn) => {
                self.counts_mut(placed.cluster).active -= 1;
                let Some(c) = self.conns.get_mut(&conn) else {
                    return; // the connection is already gone
                };
                debug_assert!(c.active > 0, "attempt on a connection with none active");
                c.active = c.active.saturating_sub(1);
                if c.multiplexed || reusable {
                    self.make_available(conn);
                } else {
                    let (cluster, endpoint) = (c.cluster, c.endpoint);
                    self.close(conn);
                    self.maybe_open(cluster, endpoint, false);
                }
            }
        }
    }

    /// The peer closed `conn` (or it broke); it is no longer used. Attempts on it are reported
    /// through `finished`.
    pub(crate) fn closed(&mut self, conn: ConnId) {
        if let Some(c) = self.forget(conn) {
            self.maybe_open(c.cluster, c.endpoint, c.multiplexed);
        }
    }

    /// Closes an idle connection (idle timeout) if it is still idle and has served `served`
    /// requests (so a reused connection is not closed by an old timer).
    pub(crate) fn close_if_idle(&mut self, conn: ConnId, served: u32) {
        let idle = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.active == 0 && !c.connecting && c.served == served);
        if idle {
            self.close(conn);
        }
    }

    /// Whether `conn` is still being opened.
    pub(crate) fn is_connecting(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.connecting)
    }

    /// Requests `conn` has served, if it is open and idle (HTTP/1.1).
    pub(crate) fn idle_served(&self, conn: ConnId) -> Option<u32> {
        self.conns
            .get(&conn)
            .filter(|c| c.active == 0 && !c.connecting && !c.multiplexed)
            .map(|c| c.served)
    }

    fn close(&mut self, conn: ConnId) {
        if self.forget(conn).is_some() {
            self.events.push_back(PoolEvent::Close { conn });
        }
    }

    fn forget(&mut self, conn: ConnId) -> Option<Conn> {
        let c = self.conns.remove(&conn)?;
        self.counts_mut(c.cluster).cx -= 1;
        if let Some(host) = self.hosts.get_mut(&c.key) {
            host.conns -= 1;
            if c.connecting {
                host.connecting -= 1;
            }
            if host.shared == Some(conn) {
                host.shared = None;
            }
            host.idle.retain(|x| *x != conn);
        }
        Some(c)
    }

    /// Checks the invariants in the module documentation; returns the first violation.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut sums: Vec<Counts> = vec![Counts::default(); self.counts.len()];
        for c in self.conns.values() {
            sums[c.cluster.0 as usize].cx += 1;
        }
        // An attempt stays active until it is reported finished, even if its connection was
        // closed under it first.
        for p in self.attempts.values() {
            if let Loc::On(_) = p.loc {
                sums[p.cluster.0 as usize].active += 1;
            }
        }
        for (k, h) in &self.hosts {
            sums[(k >> 32) as usize].pending += h.pending.len() as u32;
        }
        for (i, (sum, counts)) in sums.iter().zip(&self.counts).enumerate() {
            if sum != counts {
                return Err(format!("cluster {i}: counters {counts:?} != sums {sum:?}"));
            }
            let l = self.limits(ClusterId(i as u32));
            if counts.active > l.max_requests || counts.pending > l.max_pending {
                return Err(format!("cluster {i}: {counts:?} over limits {l:?}"));
            }
            let hosts = self
                .hosts
                .iter()
                .filter(|(k, h)| (*k >> 32) as usize == i && h.conns > 0)
                .count() as u32;
            if counts.cx > l.max_connections.saturating_add(hosts) {
                return Err(format!(
                    "cluster {i}: {} connections over max {} ({hosts} hosts)",
                    counts.cx, l.max_connections
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(limits: Limits, http2: bool) -> Pool {
        let mut p = Pool::default();
        p.configure(std::sync::Arc::from(vec![(limits, http2)]));
        p
    }

    fn events(p: &mut Pool) -> Vec<PoolEvent> {
        std::iter::from_fn(|| p.poll_event()).collect()
    }

    const C: ClusterId = ClusterId(0);
    const E: EndpointId = EndpointId(0);

    #[test]
    fn http1_reuses_one_connection_at_a_time() {
        let mut p = pool(Limits::default(), false);
        p.place(C, E, AttemptId(1));
        p.place(C, E, AttemptId(2));
        let ev = events(&mut p);
        let conns: Vec<ConnId> = ev
            .iter()
            .filter_map(|e| match e {
                PoolEvent::Connect { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        assert_eq!(conns.len(), 2, "busy: a second connection");
        p.connected(conns[0]);
        p.connected(conns[1]);
        assert_eq!(
            events(&mut p),
            vec![
                PoolEvent::Send {
                    attempt: AttemptId(1),
                    conn: conns[0]
                },
                PoolEvent::Send {
                    attempt: AttemptId(2),
                    conn: conns[1]
                }
            ]
        );
        p.finished(AttemptId(1), true);
        p.place(C, E, AttemptId(3));
        assert_eq!(
            events(&mut p),
            vec![PoolEvent::Send {
                attempt: AttemptId(3),
                conn: conns[0]
            }]
        );
        p.finished(AttemptId(2), false);
        assert_eq!(events(&mut p), vec![PoolEvent::Close { conn: conns[1] }]);
        assert_eq!(p.len(), 1);
        p.check().expect("invariants");
    }

    #[test]
    fn http2_shares_one_connection() {
        let mut p = pool(Limits::default(), true);
        p.place(C, E, AttemptId(1));
        p.place(C, E, AttemptId(2));
        let ev = events(&mut p);
        assert_eq!(ev.len(), 1, "one connect: {ev:?}");
        let PoolEvent::Connect { conn, .. } = ev[0] else {
            panic!("{ev:?}")
        };
        p.connected(conn);
        assert_eq!(events(&mut p).len(), 2, "both sent");
        p.place(C, E, AttemptId(3));
        assert_eq!(
            events(&mut p),
            vec![PoolEvent::Send {
                attempt: AttemptId(3),
                conn
            }]
        );
        p.finished(AttemptId(2), false);
        assert!(
            events(&mut p).is_empty(),
            "a stream reset keeps the connection"
        );
        p.check().expect("invariants");
    }

    #[test]
    fn istio_circuit_breaking_limits_overflow() {
        // maxConnections 1, http1MaxPendingRequests 1: a third concurrent request overflows.
        let limits = Limits {
            max_connections: 1,
            max_pending: 1,
            ..Limits::default()
        };
        let mut p = pool(limits, false);
        p.place(C, E, AttemptId(1));
        let Some(PoolEvent::Connect { conn, .. }) = p.poll_event() else {
            panic!("connect")
        };
        p.connected(conn);
        assert_eq!(
            p.poll_event(),
            Some(PoolEvent::Send {
                attempt: AttemptId(1),
                conn
            })
        );
        p.place(C, E, AttemptId(2));
        assert_eq!(p.poll_event(), None, "queued: at maxConnections");
        p.place(C, E, AttemptId(3));
        assert_eq!(
            p.poll_event(),
            Some(PoolEvent::Overflow {
                attempt: AttemptId(3)
            })
        );
        p.check().expect("invariants");
        p.finished(AttemptId(1), true);
        assert_eq!(
            p.poll_event(),
            Some(PoolEvent::Send {
                attempt: AttemptId(2),
                conn
            }),
            "the pending attempt takes the freed connection"
        );
        p.check().expect("invariants");
    }

    #[test]
    fn max_requests_per_connection_closes() {
        let limits = Limits {
            max_requests_per_connection: 1,
            ..Limits::default()
        };
        let mut p = pool(limits, false);
        p.place(C, E, AttemptId(1));
        let Some(PoolEvent::Connect { conn, .. }) = p.poll_event() else {
            panic!("connect")
        };
        p.connected(conn);
        let _ = events(&mut p);
        p.finished(AttemptId(1), true);
        assert_eq!(events(&mut p), vec![PoolEvent::Close { conn }]);
        assert_eq!(p.len(), 0);
        p.check().expect("invariants");
    }

    #[test]
    fn connect_failure_fails_the_pending_attempts() {
        let mut p = pool(Limits::default(), false);
        p.place(C, E, AttemptId(1));
        let Some(PoolEvent::Connect { conn, .. }) = p.poll_event() else {
            panic!("connect")
        };
        p.connect_failed(conn);
        assert_eq!(
            events(&mut p),
            vec![PoolEvent::ConnectFailed {
                attempt: AttemptId(1)
            }]
        );
        assert_eq!(p.counts(C), Counts::default());
    }
}
