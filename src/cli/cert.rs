//! `meshtwin cert`: a self-signed certificate and key for a TLS listener, for trying TLS on
//! loopback without an external tool.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `meshtwin cert`.
#[derive(Debug, Args)]
pub(super) struct CertArgs {
    /// Names the certificate is for (subject alternative names).
    #[arg(long = "name", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
    names: Vec<String>,
    /// Certificate file to write (PEM).
    #[arg(long, default_value = "cert.pem")]
    cert: PathBuf,
    /// Private key file to write (PEM, PKCS #8).
    #[arg(long, default_value = "key.pem")]
    key: PathBuf,
    /// Replace files that exist.
    #[arg(long)]
    force: bool,
}

/// Writes a fresh self-signed pair; refuses to overwrite without `--force`.
pub(super) fn cert(args: CertArgs) -> anyhow::Result<()> {
    for path in [&args.cert, &args.key] {
        anyhow::ensure!(
            args.force || !path.exists(),
            "{} exists: pass --force to replace it",
            path.display()
        );
    }
    let pair = rcgen::generate_simple_self_signed(args.names.clone())
        .context("cannot make a self-signed certificate")?;
    std::fs::write(&args.cert, pair.cert.pem())
        .with_context(|| format!("cannot write {}", args.cert.display()))?;
    std::fs::write(&args.key, pair.signing_key.serialize_pem())
        .with_context(|| format!("cannot write {}", args.key.display()))?;
    eprintln!(
        "wrote {} and {} (self-signed for {}; clients need -k or the certificate as CA)",
        args.cert.display(),
        args.key.display(),
        args.names.join(", ")
    );
    Ok(())
}
