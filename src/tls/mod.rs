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
//!
//! | file | owns |
//! | --- | --- |
//! | `mod.rs` | the policy, reading PEM files, [`TlsError`], [`handshake_failure`] |
//! | `server.rs` | [`ServerTls`]: `[server.tls]` and the acceptor's configuration |
//! | `upstream.rs` | [`UpstreamTls`]: an `https://` upstream's trust, name and client pair |

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod server;
mod upstream;

pub use server::ServerTls;
pub use upstream::UpstreamTls;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SupportedProtocolVersion};

/// TLS 1.3 first, then 1.2; nothing older (RFC 8996 deprecates 1.0 and 1.1).
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

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

/// What a failed upstream TLS handshake (or a TLS record after it) was, as RFC 9209 §2.3 names
/// it.
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

/// Reads an error `tokio-rustls` returned, from the handshake or a later read: rustls errors
/// travel inside the `io::Error`.
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
