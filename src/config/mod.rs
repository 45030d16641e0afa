//! TEMPORARY stand-in for the config module (a helper is writing the real one).
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub origin: String,
    pub server: Server,
    pub upstream: Upstream,
    pub failures: Failures,
    pub inspect: Inspect,
    pub retry_after: RetryAfter,
    pub html_errors: HtmlErrors,
    pub scrub: Scrub,
    pub rules: crate::rules::RuleSet,
}
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub debug_headers: bool,
    pub workers: usize,
    pub drain_timeout: Duration,
    pub header_read_timeout: Duration,
}
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: http::Uri,
    pub host: String,
    pub port: u16,
    pub authority: http::uri::Authority,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
}
#[derive(Debug, Clone)]
pub struct Failures {
    pub connect: http::StatusCode,
    pub timeout: http::StatusCode,
    pub retry_after: Duration,
}
#[derive(Debug, Clone)]
pub struct Inspect {
    pub max_body_bytes: usize,
    pub content_types: Vec<String>,
}
#[derive(Debug, Clone)]
pub struct RetryAfter {
    pub statuses: Vec<http::StatusCode>,
    pub default: Duration,
}
#[derive(Debug, Clone)]
pub struct HtmlErrors {
    pub enabled: bool,
}
#[derive(Debug, Clone)]
pub struct Scrub {
    pub enabled: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    pub fn for_upstream(url: &str) -> Result<Config, ConfigError> {
        let uri: http::Uri = url.parse().map_err(|e| ConfigError(format!("{e}")))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or(ConfigError("no authority".into()))?;
        Ok(Config {
            origin: "<test>".into(),
            server: Server {
                listen: "127.0.0.1:8080".parse().unwrap(),
                admin_listen: "127.0.0.1:9901".parse().unwrap(),
                debug_headers: true,
                workers: 1,
                drain_timeout: Duration::from_secs(10),
                header_read_timeout: Duration::from_secs(10),
            },
            upstream: Upstream {
                host: authority.host().to_string(),
                port: authority.port_u16().unwrap_or(80),
                authority,
                url: uri,
                connect_timeout: Duration::from_secs(2),
                timeout: Duration::from_secs(30),
                pool_idle_timeout: Duration::from_secs(4),
                pool_max_idle: 64,
            },
            failures: Failures {
                connect: http::StatusCode::BAD_GATEWAY,
                timeout: http::StatusCode::GATEWAY_TIMEOUT,
                retry_after: Duration::from_secs(5),
            },
            inspect: Inspect {
                max_body_bytes: 262144,
                content_types: vec![],
            },
            retry_after: RetryAfter {
                statuses: vec![],
                default: Duration::from_secs(30),
            },
            html_errors: HtmlErrors { enabled: true },
            scrub: Scrub { enabled: true },
            rules: crate::rules::RuleSet::default(),
        })
    }
    pub fn summary(&self) -> String {
        format!("{}: ok", self.origin)
    }
}

pub fn load(_path: &std::path::Path) -> Result<Config, ConfigError> {
    Config::for_upstream("http://127.0.0.1:3000")
}

pub fn load_with_env(
    _path: &std::path::Path,
    env: std::collections::HashMap<String, String>,
) -> Result<Config, ConfigError> {
    let mut c = Config::for_upstream(
        env.get("CANDOR__UPSTREAM__URL")
            .map(|s| s.as_str())
            .unwrap_or("http://127.0.0.1:3000"),
    )?;
    c.upstream.timeout = Duration::from_secs(1);
    Ok(c)
}
