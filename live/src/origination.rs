//! TLS origination to upstreams: the client side of rustls for a cluster whose
//! `DestinationRule` sets `tls` (`proxy_engine::tls::UpstreamTls`), and the upstream byte
//! stream that is either plain TCP or TLS over it.
//!
//! The server's certificate is verified against the configured roots (`ca_certificates`, else
//! the system's bundle) for the SNI name, as Envoy's `UpstreamTlsContext` does with Istio's
//! automatic SAN check; `insecure_skip_verify` accepts any certificate. A handshake that fails
//! is a connect failure (`ConnectFailure::Tls`: 503 `UF`).

use proxy_engine::tls::UpstreamTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Where the system's certificate authorities are (Debian's and Ubuntu's bundle), used when a
/// `tls` block names no `ca_certificates`.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client TLS setup, ready for handshakes: the rustls configuration and the server name.
#[derive(Clone, Debug)]
pub struct Originate {
    /// rustls' client configuration (roots, client certificate, ALPN).
    pub config: Arc<rustls::ClientConfig>,
    /// The SNI name, which the certificate is verified for.
    pub name: ServerName<'static>,
}

/// Why a TLS origination setup cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum OriginationError {
    /// A PEM file is unreadable or holds nothing of the kind.
    #[error("{path}: cannot read {what}: {why}")]
    Pem {
        /// The file.
        path: String,
        /// What it should hold.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// The SNI is not a valid DNS name or IP address.
    #[error("sni `{0}` is not a valid server name")]
    Name(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn pem_certs(
    path: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, OriginationError> {
    let error = |why: String| OriginationError::Pem {
        path: path.to_owned(),
        what,
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The client setup for `tls`, offering `h2` when `http2` (else `http/1.1`) by ALPN.
pub fn originate(tls: &UpstreamTls, http2: bool) -> Result<Originate, OriginationError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    } else {
        let path = tls.ca_certificates.as_deref().unwrap_or(SYSTEM_ROOTS);
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certs(path, "CA certificates")? {
            roots.add(cert)?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &tls.client_certificate {
        Some((cert, key)) => {
            let chain = pem_certs(cert, "a client certificate chain")?;
            let key = PrivateKeyDer::from_pem_file(&**key).map_err(|e| OriginationError::Pem {
                path: key.to_string(),
                what: "a private key",
                why: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![if http2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let name = ServerName::try_from(tls.sni.to_string())
        .map_err(|_| OriginationError::Name(tls.sni.to_string()))?;
    Ok(Originate {
        config: Arc::new(config),
        name,
    })
}

/// `insecure_skip_verify`: any certificate is accepted; signatures are still checked, so the
/// handshake itself stays sound.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An upstream connection's bytes: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    /// Plain text.
    Plain(TcpStream),
    /// Originated TLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether an idle connection is still open: nothing to read and no end of stream (a
    /// server that closed it, or sent something unasked, makes it unusable). Does not wait.
    pub fn is_idle_open(&mut self) -> bool {
        match self {
            Stream::Plain(s) => {
                let mut probe = [0u8; 1];
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(s) => {
                // A TLS read may consume records that carry no data (session tickets) and
                // still be pending: only that is an open, idle connection.
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                matches!(
                    Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }

    /// Runs the client handshake of `tls` over `tcp`.
    pub async fn handshake(tcp: TcpStream, tls: &Originate) -> io::Result<Stream> {
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let stream = connector.connect(tls.name.clone(), tcp).await?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Builds every TLS origination setup `mesh` asks for, so a missing or bad PEM file is an
/// error when the config is loaded (`cluster: file: why`) rather than a failed connection.
pub fn check(mesh: &proxy_engine::CompiledMesh) -> Result<(), String> {
    for cluster in mesh.clusters() {
        if let Some(tls) = &cluster.tls {
            originate(tls, cluster.http2)
                .map_err(|e| format!("cluster `{}`: TLS origination: {e}", cluster.name))?;
        }
    }
    Ok(())
}
