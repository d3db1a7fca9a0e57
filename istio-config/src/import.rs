//! `import`: Istio networking documents (VirtualService, DestinationRule, Gateway,
//! ServiceEntry, Sidecar; API versions `networking.istio.io/v1`, `v1beta1`, `v1alpha3`) →
//! meshtwin's `MeshConfig`, with the file and line of every object kept for diagnostics.
//!
//! Short host names are expanded with the object's namespace as Istio's
//! `ResolveShortnameToFQDN` does: a host without a dot becomes
//! `<name>.<namespace>.svc.cluster.local` (`*` and hosts with a dot stay as written); the
//! namespace is the config object's, `default` when its metadata has none. Kinds outside the
//! networking group are skipped with a note; an unknown kind in the group is an error.

use crate::error::{ImportError, Level, Note};
use crate::schema::{self, Message};
use crate::walk::Walk;
use crate::yaml::{self, Node, Pos, Value};
use proxy_engine::config::{
    ClientTlsSettings, DestinationRule, Gateway, MeshConfig, OutboundTrafficPolicy, ServiceEntry,
    TrafficPolicy, VirtualService,
};
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};

/// The Istio API group of the networking kinds.
pub const NETWORKING_GROUP: &str = "networking.istio.io";
/// The API versions read (one schema: `v1` and `v1beta1` alias `v1alpha3`).
pub const API_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];
/// The Kubernetes DNS domain short names are expanded with.
pub const DOMAIN: &str = "svc.cluster.local";
/// The largest file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Where one imported object was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Its kind (`VirtualService`).
    pub kind: &'static str,
    /// Its namespace (`default` when unset).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The file.
    pub file: String,
    /// The line of its document.
    pub line: usize,
    /// For a DestinationRule whose `tls` came from `portLevelSettings`: that port.
    pub port_level_tls: Option<u16>,
}

impl Origin {
    /// `Kind namespace/name`, as `istioctl analyze` names a resource.
    pub fn resource(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Where each object of an imported `MeshConfig` came from, index for index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins {
    /// Per `MeshConfig::virtual_services` entry.
    pub virtual_services: Vec<Origin>,
    /// Per `MeshConfig::destination_rules` entry.
    pub destination_rules: Vec<Origin>,
    /// Per `MeshConfig::gateways` entry.
    pub gateways: Vec<Origin>,
    /// Per `MeshConfig::service_entries` entry.
    pub service_entries: Vec<Origin>,
    /// Every Sidecar read (only a selector-less one sets the mesh's outbound policy).
    pub sidecars: Vec<Origin>,
}

/// The result of an import.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imported {
    /// The mesh config.
    pub mesh: MeshConfig,
    /// Where its objects came from.
    pub origins: Origins,
    /// Warnings (unmodeled fields) and notes (skipped documents), in file order.
    pub notes: Vec<Note>,
    /// `(namespace, name)` of the Kubernetes Services among the skipped documents: hosts
    /// `analyze` knows.
    pub kubernetes_services: Vec<(String, String)>,
    /// The rollout of a Flagger `Canary` or Argo `Rollout` document, and where it was
    /// written.
    pub rollout: Option<(rollout::spec::RolloutSpec, Origin)>,
    /// The analysis templates read (Argo's `AnalysisTemplate` and `ClusterAnalysisTemplate`,
    /// Flagger's `MetricTemplate`), for the rollout that names them.
    pub templates: Vec<Template>,
    /// The Deployments among the skipped documents, as a starting service model
    /// (`meshtwin import --services`).
    pub deployments: Vec<Deployment>,
}

/// An analysis template document, kept whole until the rollout that names it is read.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// Where it was written (its kind is `AnalysisTemplate`, `ClusterAnalysisTemplate` or
    /// `MetricTemplate`).
    pub origin: Origin,
    /// The document.
    pub doc: Node,
}

/// A rollout document, imported once every document has been read: the templates and the
/// DestinationRule it names may come after it.
struct Deferred {
    file: String,
    doc: Node,
    origin: Origin,
}

/// What a Kubernetes Deployment says of the service model: which service and version its
/// pods are (Istio's `app` and `version` pod labels), and how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The service: the pod template's `app` label, else the Deployment's name.
    pub service: String,
    /// The version: the pod template's `version` label, else `v1`.
    pub version: String,
    /// `spec.replicas` (Kubernetes' default 1).
    pub replicas: u32,
    /// Where it was written.
    pub origin: Origin,
}

/// Import options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Fields meshtwin does not model are errors instead of warnings.
    pub strict: bool,
}

/// The YAML files named by `paths`: files as given, directories searched recursively for
/// `*.yaml` and `*.yml`, each directory's files in name order.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|reason| read_error(path, reason))?;
        if meta.is_dir() {
            walk_dir(path, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|reason| read_error(dir, reason))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|reason| read_error(dir, reason))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk_dir(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

fn read_error(path: &Path, reason: std::io::Error) -> ImportError {
    ImportError::Read {
        file: path.display().to_string(),
        reason,
    }
}

/// Imports every document of the files and directories in `paths`.
pub fn import_paths(paths: &[PathBuf], options: Options) -> Result<Imported, ImportError> {
    let mut imported = Imported::default();
    let mut deferred = Vec::new();
    for file in files(paths)? {
        let name = file.display().to_string();
        let size = std::fs::metadata(&file)
            .map_err(|r| read_error(&file, r))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(ImportError::Invalid {
                file: name,
                at: Pos { line: 1, col: 1 },
                field: String::new(),
                message: format!("the file is {size} bytes; at most {MAX_FILE_BYTES} are read"),
            });
        }
        let text = std::fs::read_to_string(&file).map_err(|r| read_error(&file, r))?;
        documents(&mut imported, &name, &text, options, &mut deferred)?;
    }
    rollouts(&mut imported, deferred, options)?;
    Ok(imported)
}

/// Imports the documents of one YAML text (named `file` in messages) into `imported`.
pub fn import_text(
    imported: &mut Imported,
    file: &str,
    text: &str,
    options: Options,
) -> Result<(), ImportError> {
    let mut deferred = Vec::new();
    documents(imported, file, text, options, &mut deferred)?;
    rollouts(imported, deferred, options)
}

fn documents(
    imported: &mut Imported,
    file: &str,
    text: &str,
    options: Options,
    deferred: &mut Vec<Deferred>,
) -> Result<(), ImportError> {
    let docs = yaml::parse(text).map_err(|e| ImportError::Invalid {
        file: file.to_owned(),
        at: e.at,
        field: String::new(),
        message: format!("YAML syntax: {}", e.message),
    })?;
    for doc in &docs {
        document(imported, file, doc, options, deferred)?;
    }
    Ok(())
}

/// The rollout documents, once the rest is read.
fn rollouts(
    imported: &mut Imported,
    deferred: Vec<Deferred>,
    options: Options,
) -> Result<(), ImportError> {
    for Deferred { file, doc, origin } in deferred {
        match origin.kind {
            "Canary" => crate::flagger::canary(imported, &file, &doc, origin, options.strict)?,
            _ => {
                let start = crate::flagger::start(&file, &doc)?;
                crate::argo::rollout(imported, &file, &doc, origin, start, options.strict)?
            }
        }
    }
    Ok(())
}

/// A string field of a document's header (`kind`, `apiVersion`, `metadata.name`).
fn header<'n>(
    file: &str,
    doc: &'n Node,
    key: &str,
    path: &str,
) -> Result<Option<&'n str>, ImportError> {
    match doc.get(key) {
        None => Ok(None),
        Some(n) if n.value == Value::Null => Ok(None),
        Some(n) => n.as_str().map(Some).ok_or_else(|| ImportError::Invalid {
            file: file.to_owned(),
            at: n.at,
            field: path.to_owned(),
            message: format!("expected a string, found {}", n.kind()),
        }),
    }
}

/// An `ImportError::Invalid` at `file:at` about `field`.
pub(crate) fn invalid(file: &str, at: Pos, field: &str, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        file: file.to_owned(),
        at,
        field: field.to_owned(),
        message: message.into(),
    }
}

fn document(
    imported: &mut Imported,
    file: &str,
    doc: &Node,
    options: Options,
    deferred: &mut Vec<Deferred>,
) -> Result<(), ImportError> {
    if !matches!(doc.value, Value::Map(_)) {
        return Err(invalid(
            file,
            doc.at,
            "",
            format!(
                "expected a Kubernetes object (a mapping), found {}",
                doc.kind()
            ),
        ));
    }
    let kind = header(file, doc, "kind", "kind")?
        .ok_or_else(|| invalid(file, doc.at, "kind", "missing field `kind`"))?;
    let api = header(file, doc, "apiVersion", "apiVersion")?
        .ok_or_else(|| invalid(file, doc.at, "apiVersion", "missing field `apiVersion`"))?;
    if kind == "List" || kind.ends_with("List") && api == "v1" {
        if let Some(Node {
            value: Value::Seq(items),
            ..
        }) = doc.get("items")
        {
            for item in items {
                document(imported, file, item, options, deferred)?;
            }
        }
        return Ok(());
    }
    let metadata = doc.get("metadata");
    let name = match metadata {
        Some(m) => header(file, m, "name", "metadata.name")?,
        None => None,
    };
    let namespace = match metadata {
        Some(m) => header(file, m, "namespace", "metadata.namespace")?,
        None => None,
    };
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    if api == "v1" && kind == "Service" {
        if let Some(name) = name {
            let ns = namespace.unwrap_or("default").to_owned();
            imported.kubernetes_services.push((ns, name.to_owned()));
        }
    }
    if api == "apps/v1" && kind == "Deployment" {
        if let Some(name) = name {
            let labels = doc
                .get("spec")
                .and_then(|s| s.get("template"))
                .and_then(|t| t.get("metadata"))
                .and_then(|m| m.get("labels"));
            let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Node::as_str);
            let replicas = match doc.get("spec").and_then(|s| s.get("replicas")) {
                None => 1,
                Some(Node {
                    value: Value::Int(n),
                    ..
                }) if (0..=i64::from(u32::MAX)).contains(n) => *n as u32,
                Some(n) => {
                    return Err(invalid(
                        file,
                        n.at,
                        "spec.replicas",
                        format!("expected a whole number ≥ 0, found {}", n.kind()),
                    ))
                }
            };
            imported.deployments.push(Deployment {
                service: label("app").unwrap_or(name).to_owned(),
                version: label("version").unwrap_or("v1").to_owned(),
                replicas,
                origin: Origin {
                    kind: "Deployment",
                    namespace: namespace.unwrap_or("default").to_owned(),
                    name: name.to_owned(),
                    file: file.to_owned(),
                    line: doc.at.line,
                    port_level_tls: None,
                },
            });
        }
    }
    let rollout_kind = match (group, kind) {
        (crate::flagger::GROUP, "Canary") => Some("Canary"),
        (crate::argo::GROUP, "Rollout") => Some("Rollout"),
        (crate::argo::GROUP, "AnalysisTemplate") => Some("AnalysisTemplate"),
        (crate::argo::GROUP, "ClusterAnalysisTemplate") => Some("ClusterAnalysisTemplate"),
        (crate::flagger::GROUP, "MetricTemplate") => Some("MetricTemplate"),
        _ => None,
    };
    if let Some(rollout_kind) = rollout_kind {
        let Some(name) = name else {
            return Err(invalid(
                file,
                doc.at,
                "metadata.name",
                "missing field `metadata.name`",
            ));
        };
        let origin = Origin {
            kind: rollout_kind,
            namespace: namespace.unwrap_or("default").to_owned(),
            name: name.to_owned(),
            file: file.to_owned(),
            line: doc.at.line,
            port_level_tls: None,
        };
        let doc = doc.clone();
        if matches!(rollout_kind, "Canary" | "Rollout") {
            deferred.push(Deferred {
                file: file.to_owned(),
                doc,
                origin,
            });
        } else {
            imported.templates.push(Template { origin, doc });
        }
        return Ok(());
    }
    if group != NETWORKING_GROUP {
        imported.notes.push(Note {
            level: Level::Info,
            file: file.to_owned(),
            at: doc.at,
            object: format!("{kind} {}", name.unwrap_or("(unnamed)")),
            field: String::new(),
            message: format!("skipped: {api} is not Istio networking config"),
        });
        return Ok(());
    }
    let version_at = doc.get("apiVersion").map_or(doc.at, |n| n.at);
    if !API_VERSIONS.contains(&version) {
        return Err(invalid(
            file,
            version_at,
            "apiVersion",
            format!("unknown version `{api}`, expected {NETWORKING_GROUP}/v1, v1beta1 or v1alpha3"),
        ));
    }
    let kind_at = doc.get("kind").map_or(doc.at, |n| n.at);
    let (kind, msg): (&'static str, &Message) = match kind {
        "VirtualService" => ("VirtualService", &schema::VIRTUAL_SERVICE),
        "DestinationRule" => ("DestinationRule", &schema::DESTINATION_RULE),
        "Gateway" => ("Gateway", &schema::GATEWAY),
        "ServiceEntry" => ("ServiceEntry", &schema::SERVICE_ENTRY),
        "Sidecar" => ("Sidecar", &schema::SIDECAR),
        "WorkloadEntry" | "WorkloadGroup" | "EnvoyFilter" | "ProxyConfig" => {
            let object = format!("{kind} {}", name.unwrap_or("(unnamed)"));
            let mut walk = Walk::new(file, object, options.strict, &mut imported.notes);
            return walk.unmodeled(kind_at, "kind", "meshtwin models routing and traffic policy; the document is skipped");
        }
        other => {
            return Err(invalid(
                file,
                kind_at,
                "kind",
                format!(
                    "unknown kind `{other}` in {NETWORKING_GROUP}, expected one of: VirtualService, \
                     DestinationRule, Gateway, ServiceEntry, Sidecar, WorkloadEntry, WorkloadGroup, \
                     EnvoyFilter, ProxyConfig"
                ),
            ))
        }
    };
    let name = name.ok_or_else(|| {
        invalid(
            file,
            doc.at,
            "metadata.name",
            "missing field `metadata.name`",
        )
    })?;
    let mut origin = Origin {
        kind,
        namespace: namespace.unwrap_or("default").to_owned(),
        name: name.to_owned(),
        file: file.to_owned(),
        line: doc.at.line,
        port_level_tls: None,
    };
    for (key, _) in match &doc.value {
        Value::Map(entries) => entries.as_slice(),
        _ => &[],
    } {
        if !matches!(
            key.name.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "status"
        ) {
            return Err(invalid(
                file,
                key.at,
                &key.name,
                format!("unknown field `{}` of {kind}, expected one of: apiVersion, kind, metadata, spec, status", key.name),
            ));
        }
    }
    let empty = Node {
        value: Value::Map(Vec::new()),
        at: doc.at,
    };
    let spec = doc.get("spec").unwrap_or(&empty);
    let mut walk = Walk::new(file, origin.resource(), options.strict, &mut imported.notes);
    let mut json = walk.object(spec, msg, "spec", "")?;
    let ns = origin.namespace.clone();
    let named = |json: &mut Map<String, Json>| {
        json.insert("name".into(), Json::String(name.to_owned()));
        if let Some(ns) = namespace {
            json.insert("namespace".into(), Json::String(ns.to_owned()));
        }
    };
    match kind {
        "VirtualService" => {
            named(&mut json);
            let mut vs: VirtualService = walk.finish(json, spec.at, kind)?;
            expand_virtual_service(&mut vs, &ns);
            imported.mesh.virtual_services.push(vs);
            imported.origins.virtual_services.push(origin);
        }
        "DestinationRule" => {
            let port_level = spec
                .get("trafficPolicy")
                .or_else(|| spec.get("traffic_policy"))
                .and_then(|p| {
                    p.get("portLevelSettings")
                        .or_else(|| p.get("port_level_settings"))
                });
            let mut dr: DestinationRule = walk.finish(json, spec.at, kind)?;
            if let Some(levels) = port_level {
                origin.port_level_tls = port_level_settings(&mut walk, levels, &mut dr)?;
            }
            for (s, subset) in dr.subsets.iter_mut().enumerate() {
                let node = spec
                    .get("subsets")
                    .and_then(|n| match &n.value {
                        Value::Seq(items) => items.get(s),
                        _ => None,
                    })
                    .and_then(|n| n.get("trafficPolicy").or_else(|| n.get("traffic_policy")))
                    .and_then(|n| {
                        n.get("portLevelSettings")
                            .or_else(|| n.get("port_level_settings"))
                    });
                if let Some(levels) = node {
                    let mut policy = subset.traffic_policy.take().unwrap_or_default();
                    let _ = port_level_into(
                        &mut walk,
                        levels,
                        &mut policy,
                        &format!("subsets[{s}].trafficPolicy"),
                    )?;
                    subset.traffic_policy = Some(policy);
                }
            }
            dr.host = expand(&dr.host, &ns);
            imported.mesh.destination_rules.push(dr);
            imported.origins.destination_rules.push(origin);
        }
        "Gateway" => {
            named(&mut json);
            let gw: Gateway = walk.finish(json, spec.at, kind)?;
            imported.mesh.gateways.push(gw);
            imported.origins.gateways.push(origin);
        }
        "ServiceEntry" => {
            named(&mut json);
            let se: ServiceEntry = walk.finish(json, spec.at, kind)?;
            imported.mesh.service_entries.push(se);
            imported.origins.service_entries.push(origin);
        }
        _ => {
            sidecar(&mut walk, spec, json, &mut imported.mesh, &origin)?;
            imported.origins.sidecars.push(origin);
        }
    }
    Ok(())
}

/// A Sidecar: its `outboundTrafficPolicy` becomes the mesh's when it has no workload selector
/// (meshtwin has one mesh-wide policy).
fn sidecar(
    walk: &mut Walk<'_>,
    spec: &Node,
    json: Map<String, Json>,
    mesh: &mut MeshConfig,
    origin: &Origin,
) -> Result<(), ImportError> {
    let Some(policy) = json.get("outbound_traffic_policy") else {
        return Ok(());
    };
    let at = spec
        .get("outboundTrafficPolicy")
        .or_else(|| spec.get("outbound_traffic_policy"))
        .map_or(spec.at, |n| n.at);
    if let Some(selector) = spec
        .get("workloadSelector")
        .or_else(|| spec.get("workload_selector"))
    {
        walk.warn(
            selector.at,
            "spec.workloadSelector",
            "a Sidecar for selected workloads is not modeled (meshtwin has one mesh-wide outbound policy); its outboundTrafficPolicy is ignored",
        );
        return Ok(());
    }
    let mut fields = Map::new();
    fields.insert(
        "mode".into(),
        policy
            .get("mode")
            .cloned()
            .unwrap_or(Json::String("REGISTRY_ONLY".into())),
    );
    let policy: OutboundTrafficPolicy = walk.finish(fields, at, "Sidecar")?;
    if let Some(old) = &mesh.outbound_traffic_policy {
        if old != &policy {
            walk.warn(
                at,
                "spec.outboundTrafficPolicy",
                format!(
                    "another Sidecar already set the mesh's outbound policy to {}; meshtwin has one mesh-wide policy, so {} of {} is ignored",
                    old.mode, policy.mode, origin.resource()
                ),
            );
        }
        return Ok(());
    }
    mesh.outbound_traffic_policy = Some(policy);
    Ok(())
}

/// `portLevelSettings` of a rule's top-level policy.
fn port_level_settings(
    walk: &mut Walk<'_>,
    levels: &Node,
    dr: &mut DestinationRule,
) -> Result<Option<u16>, ImportError> {
    let had_tls = dr.traffic_policy.as_ref().is_some_and(|p| p.tls.is_some());
    let mut policy = dr.traffic_policy.take().unwrap_or_default();
    let port = port_level_into(walk, levels, &mut policy, "trafficPolicy")?;
    dr.traffic_policy = Some(policy);
    Ok(port.filter(|_| !had_tls))
}

/// meshtwin's services have one port: a port-level `tls` is written as the policy's `tls`
/// (with a warning), and the other port-level blocks are warnings.
fn port_level_into(
    walk: &mut Walk<'_>,
    levels: &Node,
    policy: &mut TrafficPolicy,
    at: &str,
) -> Result<Option<u16>, ImportError> {
    let mut used = None;
    let Value::Seq(items) = &levels.value else {
        return Err(walk.error(
            levels.at,
            &format!("spec.{at}.portLevelSettings"),
            format!("expected a list, found {}", levels.kind()),
        ));
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("spec.{at}.portLevelSettings[{i}]");
        let json = walk.object(item, &schema::PORT_POLICY, &path, "")?;
        let port = json
            .get("port")
            .and_then(Json::as_u64)
            .map_or("?".to_owned(), |p| p.to_string());
        for (key, value) in &json {
            if key == "port" {
                continue;
            }
            let field_at = item.get(key).map_or(item.at, |n| n.at);
            if key == "tls" && policy.tls.is_none() {
                let mut fields = Map::new();
                if let Json::Object(m) = value {
                    fields.clone_from(m);
                }
                let tls: ClientTlsSettings = walk.finish(fields, field_at, "DestinationRule")?;
                policy.tls = Some(tls);
                used = json
                    .get("port")
                    .and_then(Json::as_u64)
                    .and_then(|p| u16::try_from(p).ok());
                walk.warn(
                    field_at,
                    &format!("{path}.tls"),
                    format!("meshtwin services have one port: the tls of port {port} applies to every port of the host"),
                );
            } else {
                walk.unmodeled(
                    field_at,
                    &format!("{path}.{key}"),
                    "meshtwin services have one port; only the first port-level tls is applied",
                )?;
            }
        }
    }
    Ok(used)
}

/// A host as Istio resolves a short name written in namespace `ns`.
pub fn expand(host: &str, ns: &str) -> String {
    if host.is_empty()
        || host == "*"
        || host.contains('.')
        || host.contains(':')
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        return host.to_owned();
    }
    format!("{host}.{ns}.{DOMAIN}")
}

/// Expands a virtual service's hosts and destination hosts.
fn expand_virtual_service(vs: &mut VirtualService, ns: &str) {
    for host in &mut vs.hosts {
        *host = expand(host, ns);
    }
    for route in &mut vs.http {
        for dest in &mut route.route {
            dest.destination.host = expand(&dest.destination.host, ns);
        }
        if let Some(m) = &mut route.mirror {
            m.host = expand(&m.host, ns);
        }
        for m in &mut route.mirrors {
            m.destination.host = expand(&m.destination.host, ns);
        }
    }
}
