//! The TLS side of an `https://` upstream: the connector's rustls configuration (trust anchors,
//! the name verified and sent as SNI, an optional client certificate) and the handshake.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

use super::{certified_key, provider, roots, Fingerprint, TlsError, VERSIONS};

/// The TLS side of `[upstream]` for an `https://` URL: whom to trust, the name to verify and
/// send as SNI, and an optional client certificate.
#[derive(Clone)]
pub struct UpstreamTls {
    /// `upstream.ca`: trust anchors instead of the system's.
    pub ca: Option<PathBuf>,
    /// `upstream.client_cert` and `upstream.client_key`.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name verified in the upstream's certificate and sent as SNI: `upstream.server_name`,
    /// or the URL's host.
    pub server_name: ServerName<'static>,
    /// The connector's configuration.
    pub config: Arc<ClientConfig>,
    /// What the files held: a reload that changes them builds a new pool.
    pub fingerprint: Fingerprint,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca
            && self.client == other.client
            && self.server_name == other.server_name
            && self.fingerprint == other.fingerprint
    }
}

impl Eq for UpstreamTls {}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca", &self.ca)
            .field("client", &self.client)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Reads the files (or the system store) and builds the connector's configuration.
    pub fn load(
        server_name: ServerName<'static>,
        ca: Option<PathBuf>,
        client: Option<(PathBuf, PathBuf)>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let mut fingerprint = Fingerprint::default();
        let store = match &ca {
            Some(path) => roots(path, &mut fingerprint)?,
            None => system_roots()?,
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            provider.clone(),
        )
        .build()
        .map_err(|err| TlsError::Config(err.to_string()))?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(|err| TlsError::Config(err.to_string()))?
            .with_webpki_verifier(verifier);
        let mut config = match &client {
            Some((cert, key)) => {
                let certified = certified_key(cert, key, &provider, &mut fingerprint)?;
                builder.with_client_cert_resolver(Arc::new(AlwaysPresent(Arc::new(certified))))
            }
            None => builder.with_no_client_auth(),
        };
        // candor speaks HTTP/1.1 upstream.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            ca,
            client,
            server_name,
            config: Arc::new(config),
            fingerprint,
        })
    }

    /// The files this configuration was read from, for the reload watcher.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.ca.iter().cloned().collect();
        if let Some((cert, key)) = &self.client {
            files.push(cert.clone());
            files.push(key.clone());
        }
        files
    }

    /// Wraps an upstream TCP connection in TLS (the handshake verifies the certificate).
    pub async fn connect(
        &self,
        stream: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), stream)
            .await
    }
}

/// The client certificate, sent whatever the upstream's request names: a legacy app that asks
/// for one often lists no acceptable issuers, or lists them wrong.
#[derive(Debug)]
struct AlwaysPresent(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for AlwaysPresent {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The system's trust anchors. Unparsable entries are skipped (a store often holds a few that
/// webpki refuses); none usable is an error.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (_added, _ignored) = store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(store)
}
