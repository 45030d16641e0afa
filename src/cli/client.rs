//! The one small HTTP/1.1 client of the commands that talk to a running candor's admin listener
//! (`healthcheck`, `maintenance`, `audit`): one request on a fresh connection, bounded in time and size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// How long one exchange may take, connect included.
pub(super) const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read.
const MAX_BODY: usize = 1 << 20;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientError {
    /// Nothing answered, or the exchange broke.
    #[error("does not answer: {0}")]
    Io(#[source] tower::BoxError),
    /// No answer within the time allowed.
    #[error("did not answer within {}s", .0.as_secs())]
    Timeout(Duration),
}

/// The address to dial for `admin`: an unspecified IP (`0.0.0.0:9901`, what a container binds)
/// means this host's loopback, where the command runs.
pub(super) fn dial_address(admin: &str) -> String {
    match admin.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let loopback: IpAddr = if addr.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(loopback, addr.port()).to_string()
        }
        _ => admin.to_owned(),
    }
}

/// Sends `request` (its `Host` set to `admin`) to `admin` and reads the whole answer.
pub(super) async fn exchange(
    admin: &str,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
    exchange_limited(admin, request, MAX_BODY, TIMEOUT).await
}

/// [`exchange`] reading at most `max_body` bytes of answer within `timeout` (an audit report of
/// 1,000 routes is a few MiB).
pub(super) async fn exchange_limited(
    admin: &str,
    mut request: Request<Full<Bytes>>,
    max_body: usize,
    timeout: Duration,
) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(admin).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        request
            .headers_mut()
            .insert(HOST, http::HeaderValue::from_str(admin)?);
        let response = sender.send_request(request).await?;
        let status = response.status();
        let (head, body) = response.into_parts();
        let body = Limited::new(body, max_body).collect().await?.to_bytes();
        conn.abort();
        Ok::<_, tower::BoxError>((status, head.headers, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(ClientError::Io(err)),
        Err(_) => Err(ClientError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_dials_loopback() {
        assert_eq!(dial_address("0.0.0.0:9901"), "127.0.0.1:9901");
        assert_eq!(dial_address("[::]:9901"), "[::1]:9901");
        assert_eq!(dial_address("10.1.2.3:9901"), "10.1.2.3:9901");
        assert_eq!(dial_address("admin:9901"), "admin:9901");
    }
}
