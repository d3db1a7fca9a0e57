//! Gateways as the engine runs them: each `Gateway` object compiled into listeners (one per
//! server port), each listener into Envoy virtual hosts (a domain and its route table), and
//! the lookup a gateway proxy does for a request — which listener, which virtual host (most
//! specific domain first), whether TLS is required.
//!
//! Istio's rules, after `pilot/pkg/networking/core/gateway.go` (`buildGatewayRoutes`) and
//! `pilot/pkg/model/gateway.go`:
//! * a server host `[namespace/]dnsName` binds the virtual services of that namespace (`*/`
//!   or no prefix: any; `./`: the gateway's own) whose hosts overlap it, wildcards matching
//!   either way; each overlap becomes a virtual host named by the more specific of the two;
//! * no virtual service bound, no virtual host for the `Host`, or no route: 404 `NR`
//!   ("Empty route list will cause Envoy to 404 NR");
//! * `https_redirect` on an `HTTP` server answers 301 to `https://` whatever the routes;
//! * the port in `Host` is ignored when matching (`IgnorePortInHostMatching`).

use crate::mesh::{HostTable, RouteId};
use std::collections::BTreeMap;

/// An Envoy virtual host domain: an exact name, `*.suffix` or `*`. Lower-case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Domain {
    /// Exactly this name.
    Exact(Box<str>),
    /// `*.rest`: any name ending in `.rest` (stored with its dot), not `rest` itself.
    Suffix(Box<str>),
    /// `*`: every name.
    Any,
}

impl Domain {
    /// Parses a host as written (`foo.com`, `*.foo.com`, `*`), ignoring ASCII case.
    pub fn parse(host: &str) -> Domain {
        let h = host.to_ascii_lowercase();
        if h == "*" {
            Domain::Any
        } else if let Some(rest) = h.strip_prefix('*') {
            Domain::Suffix(rest.into())
        } else {
            Domain::Exact(h.into())
        }
    }

    /// Whether `host` (lower-case, no port) falls under this domain.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Domain::Exact(d) => d.as_ref() == host,
            Domain::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_ref()),
            Domain::Any => true,
        }
    }

    /// Whether one domain includes the other (Istio's `host.Name.Matches`, either way).
    pub fn overlaps(&self, other: &Domain) -> bool {
        self.includes(other) || other.includes(self)
    }

    /// Whether every name `other` covers is covered by `self`.
    fn includes(&self, other: &Domain) -> bool {
        match (self, other) {
            (Domain::Any, _) => true,
            (_, Domain::Any) => false,
            (Domain::Exact(a), Domain::Exact(b)) => a == b,
            (Domain::Exact(_), Domain::Suffix(_)) => false,
            (Domain::Suffix(s), Domain::Exact(b)) => b.len() > s.len() && b.ends_with(s.as_ref()),
            (Domain::Suffix(a), Domain::Suffix(b)) => b.ends_with(a.as_ref()),
        }
    }

    /// The narrower of two overlapping domains (the one the other includes).
    pub fn narrower(&self, other: &Domain) -> Domain {
        if self.includes(other) {
            other.clone()
        } else {
            self.clone()
        }
    }

    /// Envoy's order of preference among domains that match a host: exact names, then the
    /// longest suffix, then `*`. Larger is preferred.
    fn rank(&self) -> (u8, usize) {
        match self {
            Domain::Exact(_) => (2, 0),
            Domain::Suffix(s) => (1, s.len()),
            Domain::Any => (0, 0),
        }
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Domain::Exact(d) => f.write_str(d),
            Domain::Suffix(s) => write!(f, "*{s}"),
            Domain::Any => f.write_str("*"),
        }
    }
}

/// The gateway listener a request came in on, as the driver tells the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The server port (as the `Gateway` writes it, not the socket's).
    pub port: u16,
    /// The driver terminated TLS on the connection.
    pub tls: bool,
}

/// One virtual host of a gateway listener.
#[derive(Clone, Debug)]
pub struct VirtualHost {
    /// The domain it serves.
    pub domain: Domain,
    /// An `HTTP` server with `https_redirect`: every request gets a 301 to `https://`.
    pub require_tls: bool,
    /// The bound virtual services' routes, in binding order.
    pub table: HostTable,
}

/// The protocol a gateway listener speaks to its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// Plain HTTP (`HTTP`, `HTTP2`, `GRPC` servers).
    Http,
    /// HTTP over TLS the gateway terminates (`HTTPS` with `SIMPLE`).
    Https,
}

/// One port of a gateway: the servers on it merged, as Istio merges them into one listener.
#[derive(Clone, Debug)]
pub struct GatewayListener {
    /// The port.
    pub port: u16,
    /// What it speaks.
    pub protocol: ListenerProtocol,
    /// Virtual hosts, in the order they were made.
    pub vhosts: Vec<VirtualHost>,
    /// Report-only route for a request no virtual host or route takes (404 `NR`).
    pub miss: RouteId,
    /// The `https_redirect` route: a 301 to the same host and path over `https`.
    pub redirect: RouteId,
}

/// A compiled `Gateway` object.
#[derive(Clone, Debug)]
pub struct CompiledGateway {
    /// `namespace/name`.
    pub name: String,
    /// Labels a gateway proxy must carry for this to apply to it (empty: every gateway proxy).
    pub selector: BTreeMap<String, String>,
    /// Its listeners, by port.
    pub listeners: Vec<GatewayListener>,
}

impl CompiledGateway {
    /// Whether it applies to a gateway proxy labelled `labels`.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// What a gateway does with a request on a port for a host.
#[derive(Clone, Copy, Debug)]
pub enum GatewayRoute<'a> {
    /// No server listens on the port (a client's connection is refused; the engine answers
    /// 404 `NR` if it is asked anyway).
    NoListener,
    /// No virtual host serves the host: 404 `NR`, reported under `miss`.
    NoVirtualHost {
        /// The listener's report-only route.
        miss: RouteId,
    },
    /// `https_redirect`: 301 to `https://`, reported under `route`.
    RedirectToHttps {
        /// The listener's report-only redirect route.
        route: RouteId,
    },
    /// Route with this table; a miss is reported under `miss`.
    Table {
        /// The virtual host's routes.
        table: &'a HostTable,
        /// The listener's report-only route.
        miss: RouteId,
    },
}

/// The lookup of a gateway proxy selected by `gateways` (in config order): on `port`, the
/// virtual host for `host` (lower-case or not; a `:port` suffix is ignored) with the most
/// specific domain, the first gateway's on a tie. A redirect wins if any server on the port
/// asks for it for that domain, as in Istio ("mixed httpsRedirect with routes").
pub fn route<'a>(
    gateways: impl Iterator<Item = &'a CompiledGateway> + Clone,
    port: u16,
    host: &str,
    tls: bool,
) -> GatewayRoute<'a> {
    let host = host.to_ascii_lowercase();
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_owned(),
        _ => host,
    };
    let mut first_miss = None;
    let mut best: Option<(&VirtualHost, RouteId, RouteId)> = None;
    let listeners = gateways.flat_map(|g| g.listeners.iter().filter(move |l| l.port == port));
    for l in listeners.clone() {
        first_miss.get_or_insert(l.miss);
        for v in l.vhosts.iter().filter(|v| v.domain.matches(&host)) {
            let better = best.is_none_or(|(b, _, _)| v.domain.rank() > b.domain.rank());
            if better {
                best = Some((v, l.miss, l.redirect));
            }
        }
    }
    let Some(first_miss) = first_miss else {
        return GatewayRoute::NoListener;
    };
    let Some((vhost, miss, redirect_route)) = best else {
        return GatewayRoute::NoVirtualHost { miss: first_miss };
    };
    let redirect = !tls
        && listeners
            .flat_map(|l| l.vhosts.iter())
            .any(|v| v.require_tls && v.domain == vhost.domain);
    if redirect {
        return GatewayRoute::RedirectToHttps {
            route: redirect_route,
        };
    }
    GatewayRoute::Table {
        table: &vhost.table,
        miss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_as_envoy_and_istio_do() {
        let d = Domain::parse;
        assert!(d("*.com").matches("foo.com"));
        assert!(!d("*.foo.com").matches("foo.com"), "a suffix needs a label");
        assert!(d("*").matches("anything"));
        assert!(d("Foo.Bar").matches("foo.bar"));
        assert!(d("*.com").overlaps(&d("foo.com")));
        assert!(d("foo.com").overlaps(&d("*.com")));
        assert!(!d("*.foo.com").overlaps(&d("foo.com")));
        assert!(d("*.example.com").overlaps(&d("*.a.example.com")));
        assert_eq!(d("*").narrower(&d("foo.bar")), d("foo.bar"));
        assert_eq!(
            d("a.example.com").narrower(&d("*.example.com")),
            d("a.example.com")
        );
        assert!(d("a.b").rank() > d("*.b").rank());
        assert!(d("*.a.b").rank() > d("*.b").rank());
        assert_eq!(d("*.example.com").to_string(), "*.example.com");
    }
}
