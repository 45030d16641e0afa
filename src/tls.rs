//! TLS material and policy, on both sides of the proxy: reading PEM files into rustls
//! configurations (at load, so `candor check` and a reload refuse a bad or mismatched pair
//! before anything serves it), the upstream connector, and reading a failed upstream handshake
//! into its RFC 9209 error type.
//!
//! One policy for both sides: rustls with the *ring* provider (see `provider`), TLS 1.3 and 1.2
//! only, rustls's default cipher suites (AEAD with forward secrecy only: no CBC, RSA key
//! exchange, RC4 or 3DES to disable).
//!
//! Upstream trust is the system's roots (`rustls-native-certs`: Debian's `ca-certificates`,
//! the image's `/etc/ssl/certs`) unless `upstream.ca` names a PEM bundle. The system store over
//! a compiled-in Mozilla list (`webpki-roots`) because a legacy API behind candor is most often
//! signed by a company CA that operators add to the system store, and because the store follows
//! OS security updates without a new candor release.
//!
//! A leaf of the module graph: `config` calls it to compile, `proxy` and `upstream` to serve.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::net::TcpStream;

/// TLS 1.3 first, then 1.2; nothing older (RFC 8996 deprecates 1.0 and 1.1).
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// ALPN offered to clients: h2 first (what browsers and curl pick), HTTP/1.1 for the rest.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The crypto provider both sides use.
///
/// rustls 0.23.48 marks ring's provider deprecated because it lacks the post-quantum hybrid key
/// exchange (X25519MLKEM768) that aws-lc-rs has; candor keeps ring for now (aws-lc-sys builds a
/// whole C crypto library, minutes on a two-core CI machine) and offers X25519, P-256 and
/// P-384. Moving to aws-lc-rs is this function and the Cargo features.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS material could not be loaded: each names the file and the reason, for `check` and
/// the reload log.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file holds no PEM certificate (or a malformed one).
    #[error("no PEM certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("no PEM private key in {}", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not the certificate's, or is of a kind rustls cannot sign with.
    #[error("the key in {} does not match the certificate in {}: {reason}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
    /// A CA file's certificates could not be used as trust anchors.
    #[error("cannot use the certificates in {} as trust anchors: {reason}", path.display())]
    BadRoots {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The system's certificate store holds no usable root.
    #[error(
        "no CA certificates in the system store (install ca-certificates, or set upstream.ca)"
    )]
    NoSystemRoots,
    /// rustls refused the assembled configuration.
    #[error("{0}")]
    Config(String),
}

/// The largest PEM file read: a long chain or a system-sized CA bundle is some 200 KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Reads a PEM file: a regular file (a symlink to one, as Kubernetes mounts it) of at most
/// [`MAX_PEM_BYTES`], so a path such as `/dev/zero` or a FIFO cannot hang or exhaust a load.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let unreadable = |source| TlsError::Unreadable {
        path: path.to_owned(),
        source,
    };
    // Looked at before opening: opening a FIFO would block until a writer came.
    if !std::fs::metadata(path).map_err(unreadable)?.is_file() {
        return Err(unreadable(io::Error::other("not a regular file")));
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(unreadable(io::Error::other("larger than 1 MiB")));
    }
    Ok(bytes)
}

/// What a set of files held when read: compared to tell whether a reload changed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl Fingerprint {
    fn add(&mut self, bytes: &[u8]) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut hasher);
        bytes.hash(&mut hasher);
        self.0 = hasher.finish();
    }
}

fn chain(
    path: &Path,
    fingerprint: &mut Fingerprint,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    fingerprint.add(&pem);
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err(TlsError::NoCertificate {
            path: path.to_owned(),
        }),
    }
}

fn private_key(
    path: &Path,
    fingerprint: &mut Fingerprint,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    fingerprint.add(&pem);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey {
        path: path.to_owned(),
    })
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    fingerprint: &mut Fingerprint,
) -> Result<CertifiedKey, TlsError> {
    let certs = chain(cert, fingerprint)?;
    let der = private_key(key, fingerprint)?;
    CertifiedKey::from_der(certs, der, provider).map_err(|err| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: err.to_string(),
    })
}

fn roots(path: &Path, fingerprint: &mut Fingerprint) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in chain(path, fingerprint)? {
        store.add(cert).map_err(|err| TlsError::BadRoots {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    }
    Ok(store)
}

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

/// What a failed upstream TLS handshake was, as RFC 9209 §2.3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The upstream's certificate was refused: expired, another name, an untrusted issuer.
    Certificate,
    /// The upstream sent a fatal alert (it refused candor's certificate, or any offer).
    AlertReceived,
    /// Anything else that is not TLS as rustls speaks it (a plaintext server, a bad message).
    Protocol,
    /// No TLS error at all: the connection closed or reset during the handshake.
    Closed,
}

/// Reads the error `tokio-rustls` returned for a handshake: rustls errors travel inside the
/// `io::Error`.
pub fn handshake_failure(err: &io::Error) -> HandshakeFailure {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return HandshakeFailure::Closed;
    };
    match tls {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType => HandshakeFailure::Certificate,
        rustls::Error::AlertReceived(_) => HandshakeFailure::AlertReceived,
        _ => HandshakeFailure::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_error_inside_io_is_read_as_such() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        assert_eq!(
            handshake_failure(&wrap(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired
            ))),
            HandshakeFailure::Certificate
        );
        assert_eq!(
            handshake_failure(&wrap(rustls::Error::AlertReceived(
                rustls::AlertDescription::HandshakeFailure
            ))),
            HandshakeFailure::AlertReceived
        );
        assert_eq!(
            handshake_failure(&wrap(rustls::Error::DecryptError)),
            HandshakeFailure::Protocol
        );
        assert_eq!(
            handshake_failure(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            HandshakeFailure::Closed
        );
    }

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        for path in ["/dev/zero", "/dev/null", "/"] {
            let err = read(Path::new(path)).unwrap_err().to_string();
            assert!(err.contains(path), "{err}");
        }
    }

    #[test]
    fn missing_files_are_named() {
        let err = ServerTls::load(
            "/nonexistent/c.pem".into(),
            "/nonexistent/k.pem".into(),
            None,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");
    }
}
