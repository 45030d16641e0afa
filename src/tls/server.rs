//! `[server.tls]` compiled: the acceptor's rustls configuration, rebuilt by every load so that a
//! reload's new pair serves the connections accepted after it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::{certified_key, provider, roots, Fingerprint, TlsError, VERSIONS};

/// ALPN offered to clients: h2 first (what browsers and curl pick), HTTP/1.1 for the rest.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// `[server.tls]` compiled: the files, and the rustls configuration every new client
/// connection is accepted with. A reload builds a new one; connections already open keep the
/// one they started with.
#[derive(Clone)]
pub struct ServerTls {
    /// `server.tls.cert`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `server.tls.key`: the chain's private key.
    pub key: PathBuf,
    /// `server.tls.client_ca`: when set, clients must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
    /// The acceptor's configuration.
    pub config: Arc<ServerConfig>,
    /// What the files held.
    pub fingerprint: Fingerprint,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files and builds the acceptor's configuration.
    pub fn load(cert: PathBuf, key: PathBuf, client_ca: Option<PathBuf>) -> Result<Self, TlsError> {
        let provider = provider();
        let mut fingerprint = Fingerprint::default();
        let certified = certified_key(&cert, &key, &provider, &mut fingerprint)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(|err| TlsError::Config(err.to_string()))?;
        let builder = match &client_ca {
            Some(path) => {
                let store = roots(path, &mut fingerprint)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
                        .build()
                        .map_err(|err| TlsError::BadRoots {
                            path: path.clone(),
                            reason: err.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        // The server's suite order (AES-256-GCM, AES-128-GCM, ChaCha20) over the client's, so a
        // client that lists a weaker suite first still gets the strongest both have.
        config.ignore_client_order = true;
        Ok(ServerTls {
            cert,
            key,
            client_ca,
            config: Arc::new(config),
            fingerprint,
        })
    }

    /// The files this configuration was read from, for the reload watcher.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.cert.clone(), self.key.clone()];
        files.extend(self.client_ca.clone());
        files
    }

    /// An acceptor for a new connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}
