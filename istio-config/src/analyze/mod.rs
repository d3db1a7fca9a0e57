//! `analyze`: diagnostics over a mesh config in the shape and with the codes of
//! `istioctl analyze` (`istio/istio` `pkg/config/analysis`: message catalogue `msg/messages.yaml`,
//! analyzers `analyzers/**`), for the networking checks a twin can reproduce, plus meshtwin's
//! own `MT` codes for hazards only a model of the traffic shows.
//!
//! A message reads as istioctl prints it: `Level [CODE] (Kind ns/name file:line) message`.

mod refs;
mod routes;
mod twin;

use crate::import::{Origin, Origins};
use proxy_engine::config::MeshConfig;
use serde::Serialize;
use sim_core::Scenario;
use std::fmt;

/// How serious a diagnostic is (istioctl's `diag.Level`, worst first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    /// The config is broken.
    Error,
    /// The config probably does not do what was meant.
    Warning,
    /// Worth knowing.
    Info,
}

impl Level {
    /// `Error`, `Warning` or `Info`, as istioctl spells them.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "Error",
            Level::Warning => "Warning",
            Level::Info => "Info",
        }
    }

    /// Reads a threshold (`Error`, `Warning`, `Info`; any case), as istioctl's
    /// `--failure-threshold` and `--output-threshold`.
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warning" => Some(Level::Warning),
            "info" => Some(Level::Info),
            _ => None,
        }
    }
}

/// One diagnostic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// `IST0101`, `MT0001`…
    pub code: &'static str,
    /// How serious.
    pub level: Level,
    /// The resource: `VirtualService default/reviews`.
    pub origin: String,
    /// Where it was written: `file:line`, or the scenario file; empty when unknown.
    pub reference: String,
    /// The message.
    pub message: String,
}

impl Diagnostic {
    /// The documentation page of the code: istio.io's for `IST` codes, the README section
    /// for meshtwin's.
    pub fn documentation_url(&self) -> String {
        if self.code.starts_with("IST") {
            format!(
                "https://istio.io/latest/docs/reference/config/analysis/{}/",
                self.code.to_ascii_lowercase()
            )
        } else {
            format!("README.md#{}", self.code.to_ascii_lowercase())
        }
    }

    /// The JSON object `istioctl analyze -o json` writes for a message.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code,
            "documentationUrl": self.documentation_url(),
            "level": self.level.name(),
            "message": self.message,
            "origin": self.origin,
            "reference": self.reference,
        })
    }
}

/// `Warning [IST0130] (VirtualService default/reviews x.yaml:3) VirtualService rule #1 …`
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] ({}", self.level.name(), self.code, self.origin)?;
        if !self.reference.is_empty() {
            write!(f, " {}", self.reference)?;
        }
        write!(f, ") {}", self.message)
    }
}

/// What is analyzed.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The mesh config.
    pub mesh: &'a MeshConfig,
    /// Where its objects were written (imported YAML); `None` for a scenario's own `mesh`.
    pub origins: Option<&'a Origins>,
    /// The scenario the mesh runs in: its services, instances, gateway proxies, calls and
    /// timeline. Without it, hosts are checked against ServiceEntries and the Kubernetes
    /// Services of the YAML only, and the checks that need workloads are skipped.
    pub scenario: Option<&'a Scenario>,
    /// The scenario file, named as the reference of objects without a YAML origin.
    pub file: Option<&'a str>,
    /// `namespace/name` of the Kubernetes Services found in the YAML.
    pub kubernetes_services: &'a [(String, String)],
}

/// Kinds of mesh objects, for origins.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Object {
    VirtualService(usize),
    DestinationRule(usize),
    Gateway(usize),
}

impl Input<'_> {
    /// The `(origin, reference)` of an object.
    pub(crate) fn origin(&self, object: Object) -> (String, String) {
        let found: Option<&Origin> = self.origins.and_then(|o| match object {
            Object::VirtualService(i) => o.virtual_services.get(i),
            Object::DestinationRule(i) => o.destination_rules.get(i),
            Object::Gateway(i) => o.gateways.get(i),
        });
        if let Some(o) = found {
            return (o.resource(), format!("{}:{}", o.file, o.line));
        }
        let reference = self.file.unwrap_or_default().to_owned();
        let m = self.mesh;
        let resource = match object {
            Object::VirtualService(i) => m.virtual_services.get(i).map(|vs| {
                let name = vs.name.clone().or_else(|| vs.hosts.first().cloned());
                format!(
                    "VirtualService {}/{}",
                    vs.namespace.as_deref().unwrap_or("default"),
                    name.unwrap_or_else(|| i.to_string())
                )
            }),
            Object::DestinationRule(i) => m
                .destination_rules
                .get(i)
                .map(|dr| format!("DestinationRule default/{}", dr.host)),
            Object::Gateway(i) => m.gateways.get(i).map(|g| {
                format!(
                    "Gateway {}/{}",
                    g.namespace.as_deref().unwrap_or("default"),
                    g.name
                )
            }),
        };
        (resource.unwrap_or_default(), reference)
    }

    /// The namespace of a config object (`default` when unset).
    pub(crate) fn namespace(&self, object: Object) -> String {
        if let Some(o) = self.origins.and_then(|o| match object {
            Object::VirtualService(i) => o.virtual_services.get(i),
            Object::DestinationRule(i) => o.destination_rules.get(i),
            Object::Gateway(i) => o.gateways.get(i),
        }) {
            return o.namespace.clone();
        }
        let m = self.mesh;
        let ns = match object {
            Object::VirtualService(i) => {
                m.virtual_services.get(i).and_then(|v| v.namespace.clone())
            }
            Object::DestinationRule(_) => None,
            Object::Gateway(i) => m.gateways.get(i).and_then(|g| g.namespace.clone()),
        };
        ns.unwrap_or_else(|| "default".into())
    }
}

/// Collects diagnostics.
pub(crate) struct Report<'a> {
    pub(crate) input: Input<'a>,
    pub(crate) out: Vec<Diagnostic>,
}

impl Report<'_> {
    /// Adds a diagnostic about `object`.
    pub(crate) fn add(
        &mut self,
        code: &'static str,
        level: Level,
        object: Object,
        message: String,
    ) {
        let (origin, reference) = self.input.origin(object);
        self.out.push(Diagnostic {
            code,
            level,
            origin,
            reference,
            message,
        });
    }
}

/// Every diagnostic for `input`, sorted as istioctl sorts them (by origin, then code).
pub fn analyze(input: Input<'_>) -> Vec<Diagnostic> {
    let mut report = Report {
        input,
        out: Vec::new(),
    };
    refs::check(&mut report);
    routes::check(&mut report);
    twin::check(&mut report);
    let mut out = report.out;
    out.sort_by(|a, b| {
        (a.origin.as_str(), a.code, a.message.as_str()).cmp(&(
            b.origin.as_str(),
            b.code,
            b.message.as_str(),
        ))
    });
    out.dedup();
    out
}
