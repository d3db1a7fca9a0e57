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
