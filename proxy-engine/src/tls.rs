//! TLS origination: a `DestinationRule`'s `tls` block compiled for a cluster. The engine only
//! says which connections speak TLS, to which name and with which roots (`Action::Connect`'s
//! `tls`); a driver that opens real connections performs the handshake, and reports one that
//! fails as `ConnectFailure::Tls` (503 `UF`, as Envoy answers a failed upstream handshake).

use crate::config::ClientTlsSettings;
use crate::error::ConfigError;
use std::sync::Arc;

/// The TLS a client proxy originates to a cluster's endpoints.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpstreamTls {
    /// The name sent as SNI and verified against the server's certificate.
    pub sni: Arc<str>,
    /// PEM file of the roots the server's certificate must chain to; `None`: the system's.
    pub ca_certificates: Option<Arc<str>>,
    /// Client certificate chain and key files (`MUTUAL`).
    pub client_certificate: Option<(Arc<str>, Arc<str>)>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// The modes Istio's `ClientTLSSettings.TLSmode` has.
const MODES: [&str; 4] = ["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];

/// Compiles `tls` for a destination on `host` (`field` names the block in messages): `None`
/// for plain text (`DISABLE`, and `ISTIO_MUTUAL`, whose mesh certificates the twin does not
/// model).
pub fn compile(
    field: &str,
    host: &str,
    tls: &ClientTlsSettings,
) -> Result<Option<Arc<UpstreamTls>>, ConfigError> {
    let invalid = |name: &str, message: String| ConfigError::Invalid {
        field: format!("{field}.{name}"),
        message,
    };
    let mode = tls.mode.as_deref().unwrap_or("DISABLE");
    if !MODES.contains(&mode) {
        return Err(invalid(
            "mode",
            format!("expected one of {}, found `{mode}`", MODES.join(", ")),
        ));
    }
    let client = match (&tls.client_certificate, &tls.private_key) {
        (Some(c), Some(k)) => Some((Arc::from(c.as_str()), Arc::from(k.as_str()))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "private_key",
                "`client_certificate` needs its `private_key`".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "client_certificate",
                "`private_key` needs its `client_certificate`".into(),
            ))
        }
    };
    match mode {
        "MUTUAL" if client.is_none() => {
            return Err(invalid(
                "client_certificate",
                "mode MUTUAL presents a client certificate: set `client_certificate` and \
                 `private_key`"
                    .into(),
            ))
        }
        "SIMPLE" if client.is_some() => {
            return Err(invalid(
                "client_certificate",
                "mode SIMPLE presents no client certificate (use MUTUAL)".into(),
            ))
        }
        "SIMPLE" | "MUTUAL" => {}
        _ => return Ok(None),
    }
    let sni = tls.sni.as_deref().unwrap_or(host);
    if sni.is_empty() {
        return Err(invalid("sni", "must not be empty".into()));
    }
    Ok(Some(Arc::new(UpstreamTls {
        sni: Arc::from(sni),
        ca_certificates: tls.ca_certificates.as_deref().map(Arc::from),
        client_certificate: client,
        insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: &str) -> ClientTlsSettings {
        ClientTlsSettings {
            mode: Some(mode.into()),
            ..ClientTlsSettings::default()
        }
    }

    #[test]
    fn simple_defaults_its_name_to_the_host_and_plain_modes_compile_to_none() {
        let tls = compile("f", "edition.cnn.com", &settings("SIMPLE"))
            .expect("valid")
            .expect("tls");
        assert_eq!(&*tls.sni, "edition.cnn.com");
        assert!(!tls.insecure_skip_verify && tls.ca_certificates.is_none());
        for plain in ["DISABLE", "ISTIO_MUTUAL"] {
            assert_eq!(compile("f", "h", &settings(plain)), Ok(None));
        }
    }

    #[test]
    fn bad_modes_and_half_client_certificates_are_errors() {
        let err = compile("f", "h", &settings("simple")).expect_err("lower case");
        assert!(
            err.to_string().contains("expected one of DISABLE, SIMPLE"),
            "{err}"
        );
        let err = compile("f", "h", &settings("MUTUAL")).expect_err("no certificate");
        assert!(err.to_string().contains("f.client_certificate"), "{err}");
        let half = ClientTlsSettings {
            client_certificate: Some("c.pem".into()),
            ..settings("MUTUAL")
        };
        let err = compile("f", "h", &half).expect_err("no key");
        assert!(err.to_string().contains("needs its `private_key`"), "{err}");
    }
}
