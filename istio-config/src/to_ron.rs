//! A mesh config written as meshtwin RON (`Mesh(...)`), as `meshtwin import -o` writes it:
//! pretty-printed, with optional fields written bare (`implicit_some`) and the fields left at
//! their defaults (`None`, empty lists and maps, `false`) omitted, so the file reads like a
//! hand-written one and loads back to the same config.

use proxy_engine::config::MeshConfig;

/// The RON text of `mesh`.
pub fn mesh(mesh: &MeshConfig) -> Result<String, ron::Error> {
    let pretty = ron::ser::PrettyConfig::new()
        .struct_names(true)
        .indentor("    ".to_owned())
        .extensions(ron::extensions::Extensions::IMPLICIT_SOME);
    let text = ron::ser::to_string_pretty(mesh, pretty)?;
    let trimmed = without_defaults(&text);
    // Dropping a line is only right where the field's default is what was dropped (an
    // `Option<bool>` written `false` is not its default): keep the trimmed text only if it
    // reads back to the same config.
    let options = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES);
    match options.from_str::<MeshConfig>(&trimmed) {
        Ok(back) if &back == mesh => Ok(trimmed),
        _ => Ok(text),
    }
}

/// `text` without the lines that set a field to `None`, `[]`, `{}` or `false`.
fn without_defaults(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        let default = t.split_once(": ").is_some_and(|(key, value)| {
            key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && matches!(value, "None," | "[]," | "{}," | "false,")
        });
        if !default {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A starting scenario (`meshtwin import --services`): one service per Deployment `app`
/// label, one version per `version` label with its replicas as instances, and `mesh`. What
/// Kubernetes objects do not say (handler latency, calls, load) is left for the user, and the
/// header comment says so.
pub fn scenario(imported: &crate::Imported) -> Result<String, ron::Error> {
    // Deployments of one service and version (a rename in progress) add up.
    type Versions<'a> = std::collections::BTreeMap<&'a str, u32>;
    let mut services: std::collections::BTreeMap<&str, Versions> = Default::default();
    for d in &imported.deployments {
        *services
            .entry(d.service.as_str())
            .or_default()
            .entry(d.version.as_str())
            .or_default() += d.replicas;
    }
    let mut out = String::from(
        "// A starting scenario from `meshtwin import --services`: one service per Deployment\n\
         // `app` label, one version per `version` label, its replicas as instances. Kubernetes\n\
         // objects do not say how long a handler takes or which services it calls: `latency` is\n\
         // a placeholder (1 ms) and `calls` are empty. Measure and fill them in, and replace the\n\
         // placeholder `workload` with the load to rehearse.\n\
         Scenario(\n    duration: \"60s\",\n    services: {\n",
    );
    for (service, versions) in &services {
        out.push_str(&format!("        {service:?}: Service(versions: {{\n"));
        for (version, replicas) in versions {
            out.push_str(&format!(
                "            {version:?}: (instances: {replicas}, latency: Constant(\"1ms\")),\n"
            ));
        }
        out.push_str("        }),\n");
    }
    out.push_str("    },\n    mesh: ");
    let mesh_text = mesh(&imported.mesh)?;
    // A RON attribute (`#![enable(implicit_some)]`) is the file's, so it goes first.
    let (attributes, body): (Vec<&str>, Vec<&str>) =
        mesh_text.lines().partition(|l| l.starts_with("#!["));
    out.push_str(&body.join("\n    "));
    // A scenario needs load to be valid: a placeholder at the first service.
    let first = services.keys().next().copied().unwrap_or("service");
    out.push_str(&format!(
        ",\n    // A placeholder: the load to rehearse (rate, paths, headers, a gateway `via`).\n    \
         workload: [OpenLoop(host: {first:?}, rate: 10)],\n)\n"
    ));
    let mut head: String = attributes.iter().map(|a| format!("{a}\n")).collect();
    head.push_str(&out);
    Ok(head)
}
