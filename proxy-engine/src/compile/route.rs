//! A virtual service's HTTP route compiled: match blocks, the action (weighted clusters,
//! redirect, direct response), rewrites and header operations, fault injection, mirrors,
//! timeout, retries and rate limit; with the field checks they need.

use super::Builder;
use crate::config::{HeaderOps, HttpRoute};
use crate::matching::MatchBlock;
use crate::mesh::{
    CompiledRoute, ConfigError, Fault, HeaderEdit, Mirror, Redirect, RouteAction, WeightedCluster,
};
use crate::policy::{RetryPolicy, TokenBucketSpec};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Parts per million of a 0–100 percentage, as Envoy's `FractionalPercent` (value × 10 000).
fn ppm(field: String, percent: Option<f64>, default: f64) -> Result<u32, ConfigError> {
    let p = percent.unwrap_or(default);
    if !(0.0..=100.0).contains(&p) {
        return Err(ConfigError::Invalid {
            field,
            message: format!("a percentage between 0 and 100 is expected, found {p}"),
        });
    }
    Ok((p * 10_000.0).round() as u32)
}

fn status(field: String, code: u16) -> Result<u16, ConfigError> {
    if (200..=599).contains(&code) {
        Ok(code)
    } else {
        Err(ConfigError::Invalid {
            field,
            message: format!("an HTTP status 200..=599 is expected, found {code}"),
        })
    }
}

/// A redirect status Envoy can send: `RedirectAction.response_code` has 301, 302, 303, 307 and
/// 308 only, and Istio translates no other (`pilot/pkg/networking/core/route/route.go`; its
/// validation, `pkg/config/validation/validation.go`, rejects codes outside 3xx).
fn redirect_code(field: String, code: u16) -> Result<u16, ConfigError> {
    if matches!(code, 301 | 302 | 303 | 307 | 308) {
        Ok(code)
    } else {
        Err(ConfigError::Invalid {
            field,
            message: format!("a redirect code 301, 302, 303, 307 or 308 is expected, found {code}"),
        })
    }
}

/// Istio drops pseudo-headers and `host` from header operations; a `set`/`add` of `host` or
/// `:authority` becomes an authority rewrite (`set` wins).
fn header_edit(ops: &HeaderOps) -> (HeaderEdit, Option<Arc<str>>) {
    let is_host = |k: &str| k.eq_ignore_ascii_case("host") || k == ":authority";
    let keep = |k: &str| !k.starts_with(':') && !k.eq_ignore_ascii_case("host");
    let pairs = |m: &BTreeMap<String, String>| -> Vec<(Arc<str>, Arc<str>)> {
        m.iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (Arc::from(k.to_ascii_lowercase()), Arc::from(v.as_str())))
            .collect()
    };
    let host = ops
        .set
        .iter()
        .chain(ops.add.iter())
        .find(|(k, _)| is_host(k))
        .map(|(_, v)| Arc::from(v.as_str()));
    let edit = HeaderEdit {
        set: pairs(&ops.set),
        add: pairs(&ops.add),
        remove: ops
            .remove
            .iter()
            .filter(|k| keep(k))
            .map(|k| Arc::from(k.to_ascii_lowercase()))
            .collect(),
    };
    (edit, host)
}

impl Builder<'_> {
    pub(super) fn route(
        &mut self,
        at: &str,
        name: String,
        route: &HttpRoute,
    ) -> Result<CompiledRoute, ConfigError> {
        let matches = route
            .matches
            .iter()
            .enumerate()
            .map(|(m, block)| {
                MatchBlock::compile(block).map_err(|(field, e)| ConfigError::BadRegex {
                    field: format!("{at}.match[{m}].{field}"),
                    pattern: e.pattern,
                    error: e.error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let action = self.action(at, route)?;
        let (request_headers, host_rewrite) = route
            .headers
            .as_ref()
            .map(|h| header_edit(&h.request))
            .unwrap_or_default();
        let response_headers = route
            .headers
            .as_ref()
            .map(|h| header_edit(&h.response).0)
            .filter(|e| !e.is_empty())
            .map(Arc::new);
        let rewrite = route.rewrite.as_ref();
        let fault = route
            .fault
            .as_ref()
            .map(|f| self.fault(&format!("{at}.fault"), f))
            .transpose()?;
        let timeout = route.timeout.filter(|t| t.0 > 0);
        let retry =
            RetryPolicy::compile(&format!("{at}.retries"), route.retries.as_ref(), timeout)?
                .map(Arc::new);
        let rate_limit = route
            .local_rate_limit
            .as_ref()
            .map(|l| TokenBucketSpec::compile(&format!("{at}.local_rate_limit"), l))
            .transpose()?;
        Ok(CompiledRoute {
            name,
            matches,
            action,
            rewrite_uri: rewrite.and_then(|r| r.uri.as_deref()).map(Arc::from),
            rewrite_authority: rewrite
                .and_then(|r| r.authority.as_deref())
                .map(Arc::from)
                .or(host_rewrite),
            request_headers,
            response_headers,
            fault,
            mirrors: self.mirrors(at, route)?,
            timeout,
            retry,
            rate_limit,
        })
    }

    fn action(&mut self, at: &str, route: &HttpRoute) -> Result<RouteAction, ConfigError> {
        let set = [
            !route.route.is_empty(),
            route.redirect.is_some(),
            route.direct_response.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(ConfigError::Invalid {
                field: at.to_owned(),
                message: "exactly one of `route`, `redirect` and `direct_response` must be set"
                    .into(),
            });
        }
        if let Some(r) = &route.redirect {
            return Ok(RouteAction::Redirect(Redirect {
                status: redirect_code(
                    format!("{at}.redirect.redirect_code"),
                    r.redirect_code.unwrap_or(301),
                )?,
                uri: r.uri.as_deref().map(Arc::from),
                authority: r.authority.as_deref().map(Arc::from),
                port: r.port,
                scheme: r.scheme.as_deref().map(Arc::from),
            }));
        }
        if let Some(d) = &route.direct_response {
            return Ok(RouteAction::Direct {
                status: status(format!("{at}.direct_response.status"), d.status)?,
                body: d.body.as_deref().map(Arc::from),
            });
        }
        let single = route.route.len() == 1;
        let mut total: u32 = 0;
        let mut out = Vec::with_capacity(route.route.len());
        for (d, rd) in route.route.iter().enumerate() {
            let cluster =
                self.destination(&format!("{at}.route[{d}].destination"), &rd.destination)?;
            // Istio sends all of a lone destination's traffic to it whatever its weight (even 0:
            // `pilot/pkg/networking/core/route/route.go` builds a single cluster, no weights);
            // among several, weight-0 entries are dropped.
            let weight = if single { 100 } else { rd.weight.unwrap_or(0) };
            if weight == 0 {
                continue;
            }
            total = total
                .checked_add(weight)
                .ok_or_else(|| ConfigError::Invalid {
                    field: format!("{at}.route[{d}].weight"),
                    message: "weights add up to more than 4294967295".into(),
                })?;
            out.push(WeightedCluster {
                cumulative: total,
                cluster,
            });
        }
        if out.is_empty() {
            return Err(ConfigError::NoWeight {
                field: at.to_owned(),
            });
        }
        Ok(RouteAction::Forward(out))
    }

    fn fault(&self, at: &str, f: &crate::config::HttpFaultInjection) -> Result<Fault, ConfigError> {
        let delay = match &f.delay {
            Some(d) => {
                if d.fixed_delay.0 < 1_000_000 {
                    return Err(ConfigError::Invalid {
                        field: format!("{at}.delay.fixed_delay"),
                        message: format!(
                            "a delay of at least 1ms is expected, found {}",
                            d.fixed_delay
                        ),
                    });
                }
                Some((
                    d.fixed_delay,
                    ppm(format!("{at}.delay.percentage"), d.percentage, 0.0)?,
                ))
            }
            None => None,
        };
        let abort = match &f.abort {
            Some(a) => Some((
                status(format!("{at}.abort.http_status"), a.http_status)?,
                ppm(format!("{at}.abort.percentage"), a.percentage, 0.0)?,
            )),
            None => None,
        };
        Ok(Fault { delay, abort })
    }

    fn mirrors(&mut self, at: &str, route: &HttpRoute) -> Result<Vec<Mirror>, ConfigError> {
        let mut out = Vec::new();
        if let Some(dest) = &route.mirror {
            let cluster = self.destination(&format!("{at}.mirror"), dest)?;
            let ppm = ppm(
                format!("{at}.mirror_percentage"),
                route.mirror_percentage,
                100.0,
            )?;
            out.push(Mirror { cluster, ppm });
        }
        for (i, m) in route.mirrors.iter().enumerate() {
            let cluster =
                self.destination(&format!("{at}.mirrors[{i}].destination"), &m.destination)?;
            let ppm = ppm(format!("{at}.mirrors[{i}].percentage"), m.percentage, 100.0)?;
            out.push(Mirror { cluster, ppm });
        }
        Ok(out)
    }
}
