//! rustls configs built from `backendTLS` and listener `tls` settings.

use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::raw::{RawBackendTls, RawListenerTls};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A PEM error as the config reports it; `missing` names what was looked for.
fn pem_error(path: &str, e: pem::Error, missing: &str) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot open {path:?}: {e}"),
        pem::Error::NoItemsFound => format!("no {missing} found in {path:?}"),
        other => format!("invalid PEM in {path:?}: {other}"),
    }
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e, "certificate"))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, e, "certificate"))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {path:?}"));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e, "private key"))
}

/// Default client config: webpki roots, HTTP/2 and HTTP/1.1 via ALPN.
pub fn default_client() -> Arc<rustls::ClientConfig> {
    client(&RawBackendTls::default()).unwrap_or_else(|_| {
        // Only reachable if ring rejects its own default protocol versions, which it does not.
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(webpki_store())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(webpki_store())
                        .with_no_client_auth()
                }),
        )
    })
}

fn webpki_store() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Client config for one backend.
pub fn client(raw: &RawBackendTls) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if raw.insecure || raw.insecure_host {
        let roots = match &raw.root {
            Some(root) => custom_roots(root)?,
            None => webpki_store(),
        };
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LaxVerifier {
                inner,
                skip_trust: raw.insecure,
            }))
    } else {
        let roots = match &raw.root {
            Some(root) => custom_roots(root)?,
            None => webpki_store(),
        };
        builder.with_root_certificates(roots)
    };
    let mut cfg = match (&raw.cert, &raw.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| format!("client certificate: {e}"))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("`cert` and `key` must be set together".into()),
    };
    cfg.alpn_protocols = match &raw.alpn {
        Some(list) => list.iter().map(|p| p.as_bytes().to_vec()).collect(),
        None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(Arc::new(cfg))
}

fn custom_roots(path: &str) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    for cert in read_certs(path)? {
        store
            .add(cert)
            .map_err(|e| format!("invalid CA certificate in {path:?}: {e}"))?;
    }
    Ok(store)
}

/// Server config for an HTTPS listener.
pub fn server(raw: &RawListenerTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(read_certs(&raw.cert)?, read_key(&raw.key)?)
        .map_err(|e| format!("server certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// `insecure` (no trust check) or `insecureHost` (no name check), as the user asked.
#[derive(Debug)]
struct LaxVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    skip_trust: bool,
}

impl rustls::client::danger::ServerCertVerifier for LaxVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.skip_trust {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
