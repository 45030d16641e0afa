//! Phase 3: judging a deserialized [`FileSpec`] and compiling it into a [`Config`].
//!
//! Every check records a [`Problem`](super::error::Problem) and carries on, so one run reports
//! every mistake in the file; a [`Config`] is produced only when none was found. Single values
//! (durations, statuses, header names) are checked by `values.rs`, shared with `[[rules]]` and
//! `[[tests]]`.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use http::uri::Authority;
use http::Uri;

use super::error::{show_str, FieldPath, Problems};
use super::spec::{FileSpec, ServerTlsSpec, StringListSpec, UpstreamSpec};
use super::values::{duration, status, status_item, DurationKind};
use super::{
    AdminToken, Config, Failures, HtmlErrors, Inspect, Limit, Log, LogFormat, RetryAfter, Scrub,
    Server, Upstream,
};
use crate::builtin::scrub::{ScrubError, Scrubber, MAX_PATTERN_LEN};
use crate::rules::StatusMatch;
use crate::tls::{ServerTls, TlsError, UpstreamTls};

/// Largest body candor buffers to inspect.
const MAX_BODY_BYTES: i64 = 64 * 1024 * 1024;
/// Most worker threads.
const MAX_WORKERS: i64 = 1024;
/// Most client connections at once.
const MAX_CONNECTIONS: i64 = 1_000_000;
/// Largest request body limit (1 TiB: effectively none, but a number).
const MAX_REQUEST_BODY_BYTES: i64 = 1 << 40;
/// Most inspections at once.
const MAX_CONCURRENT_INSPECTIONS: i64 = 65_536;
/// Most upstream exchanges in flight, and most queued: as many as client connections.
const MAX_UPSTREAM_LIMIT: i64 = MAX_CONNECTIONS;
/// Most idle upstream connections per worker.
const MAX_POOL_IDLE: i64 = 65536;
/// Most routes audit keeps: at about 2 KiB a route its table then holds some 200 MiB.
const MAX_AUDIT_ROUTES: i64 = 100_000;

/// Checks that an integer lies in `range`.
fn int_in(
    problems: &mut Problems,
    path: &FieldPath,
    value: i64,
    range: RangeInclusive<i64>,
) -> Option<usize> {
    let ok = range.contains(&value);
    if !ok {
        let message = format!(
            "out of range (expected {}..={})",
            range.start(),
            range.end()
        );
        problems.push(path, Some(value.to_string()), message);
    }
    ok.then(|| usize::try_from(value).ok()).flatten()
}

/// Parses a listen address; names are refused because binding must not depend on DNS.
fn socket_addr(problems: &mut Problems, path: &FieldPath, text: &str) -> Option<SocketAddr> {
    let parsed = text.parse::<SocketAddr>().ok();
    if parsed.is_none() {
        problems.push(
            path,
            Some(show_str(text)),
            "invalid address (expected IP:PORT, e.g. \"127.0.0.1:8080\")",
        );
    }
    parsed
}

/// Compiles the whole config, recording every problem in `problems`.
///
/// `line_of` finds the line of a field, for messages that point at a second place.
pub(crate) fn compile(
    spec: &FileSpec,
    origin: &str,
    problems: &mut Problems,
    line_of: &dyn Fn(&FieldPath) -> Option<usize>,
) -> Option<Config> {
    // Relative TLS file paths are read from the config file's directory, so a config and its
    // certificates move together (`<demo>` and other names resolve from the working directory).
    let base = Path::new(origin).parent().unwrap_or(Path::new(""));
    let server = server(spec, problems, base);
    let upstream = upstream(&spec.upstream, problems, base);
    let limit = limit(&spec.upstream, problems);
    let failures = failures(spec, problems);
    let inspect = inspect(spec, problems);
    let retry_after = retry_after(spec, problems);
    let scrub = scrub(spec, problems);
    let log = log(spec, problems);
    let maintenance = super::maintenance::compile(&spec.maintenance, problems);
    let audit = audit(spec, problems);
    let rules = super::rules::compile(&spec.rules, problems, line_of);
    let tests = super::cases::compile(&spec.tests, &rules, problems);
    if !problems.is_empty() {
        return None;
    }
    Some(Config {
        origin: origin.to_owned(),
        server: server?,
        upstream: upstream?,
        limit: limit?,
        failures: failures?,
        inspect: inspect?,
        retry_after: retry_after?,
        html_errors: HtmlErrors {
            enabled: spec.html_errors.enabled,
        },
        scrub: scrub?,
        log: log?,
        maintenance: maintenance?,
        audit: audit?,
        rules,
        tests,
    })
}

/// Compiles the scrub patterns (also when scrubbing is off, so `check` still reports a bad
/// one): each alone first, so every bad pattern is named, then all together.
fn scrub(spec: &FileSpec, problems: &mut Problems) -> Option<Scrub> {
    let at = FieldPath::root("scrub").key("patterns");
    let patterns = &spec.scrub.patterns.0;
    let mut ok = true;
    for (index, pattern) in patterns.iter().enumerate() {
        let path = at.index(index);
        if let Err(err) = Scrubber::new(std::slice::from_ref(pattern)) {
            ok = false;
            let message = match err {
                ScrubError::TooLong { len, .. } => {
                    format!("regex too long ({len} bytes, at most {MAX_PATTERN_LEN})")
                }
                ScrubError::BadPattern { reason, .. } => format!("invalid regex: {reason}"),
                ScrubError::TooBig { reason } => format!("regex too big: {reason}"),
            };
            problems.push(&path, Some(show_str(pattern)), message);
        }
    }
    if !ok {
        return None;
    }
    let scrubber = match Scrubber::new(patterns) {
        Ok(scrubber) => scrubber,
        Err(err) => {
            problems.push(&at, None, err.to_string());
            return None;
        }
    };
    Some(Scrub {
        enabled: spec.scrub.enabled,
        scrubber: spec.scrub.enabled.then(|| std::sync::Arc::new(scrubber)),
    })
}

/// `[audit]`: `sample` a share, `max_routes` a bounded count.
fn audit(spec: &FileSpec, problems: &mut Problems) -> Option<crate::audit::Settings> {
    let a = &spec.audit;
    let at = FieldPath::root("audit");
    let sample = a.sample;
    let sample = if !sample.is_finite() {
        problems.push(
            &at.key("sample"),
            Some(sample.to_string()),
            "not a number (expected 0.0 to 1.0, the share of exchanges observed)",
        );
        None
    } else if !(0.0..=1.0).contains(&sample) {
        problems.push(
            &at.key("sample"),
            Some(sample.to_string()),
            "out of range (expected 0.0 to 1.0, the share of exchanges observed)",
        );
        None
    } else {
        Some(sample)
    };
    let max_routes = int_in(
        problems,
        &at.key("max_routes"),
        a.max_routes,
        1..=MAX_AUDIT_ROUTES,
    );
    Some(crate::audit::Settings {
        enabled: a.enabled,
        sample: sample?,
        max_routes: max_routes?,
    })
}

fn log(spec: &FileSpec, problems: &mut Problems) -> Option<Log> {
    let at = FieldPath::root("log");
    let level_ok = tracing_subscriber::EnvFilter::try_new(&spec.log.level).is_ok();
    if !level_ok {
        problems.push(
            &at.key("level"),
            Some(show_str(&spec.log.level)),
            "invalid log level (expected e.g. \"info\", \"warn,candor=debug\")",
        );
    }
    let format = LogFormat::parse(&spec.log.format);
    if format.is_none() {
        problems.push(
            &at.key("format"),
            Some(show_str(&spec.log.format)),
            "expected \"auto\", \"text\" or \"json\"",
        );
    }
    Some(Log {
        level: level_ok.then(|| spec.log.level.clone())?,
        format: format?,
        access_log: spec.log.access_log,
    })
}

fn server(spec: &FileSpec, problems: &mut Problems, base: &Path) -> Option<Server> {
    let s = &spec.server;
    let at = FieldPath::root("server");
    let listen = socket_addr(problems, &at.key("listen"), &s.listen);
    let admin_listen = socket_addr(problems, &at.key("admin_listen"), &s.admin_listen);
    if let (Some(a), Some(b)) = (listen, admin_listen) {
        // Port 0 asks the OS for a fresh port each time, so equal port-0 addresses do not clash.
        if a == b && a.port() != 0 {
            problems.push(
                &at.key("admin_listen"),
                Some(show_str(&s.admin_listen)),
                "must differ from server.listen",
            );
        }
    }
    let workers = match s.workers {
        Some(n) => int_in(problems, &at.key("workers"), n, 1..=MAX_WORKERS),
        // The cap keeps a very large machine within the range a config may ask for.
        None => Some(
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(1024),
        ),
    };
    let drain_timeout = duration(
        problems,
        &at.key("drain_timeout"),
        &s.drain_timeout,
        DurationKind::Timeout,
    );
    let shutdown_delay = duration(
        problems,
        &at.key("shutdown_delay"),
        &s.shutdown_delay,
        DurationKind::Delay,
    );
    let header_read_timeout = duration(
        problems,
        &at.key("header_read_timeout"),
        &s.header_read_timeout,
        DurationKind::Timeout,
    );
    let max_connections = int_in(
        problems,
        &at.key("max_connections"),
        s.max_connections,
        1..=MAX_CONNECTIONS,
    );
    let max_request_body_bytes = int_in(
        problems,
        &at.key("max_request_body_bytes"),
        s.max_request_body_bytes,
        1..=MAX_REQUEST_BODY_BYTES,
    );
    let body_idle_timeout = duration(
        problems,
        &at.key("body_idle_timeout"),
        &s.body_idle_timeout,
        DurationKind::Timeout,
    );
    let write_timeout = duration(
        problems,
        &at.key("write_timeout"),
        &s.write_timeout,
        DurationKind::Timeout,
    );
    let tls = match &s.tls {
        Some(tls) => server_tls(tls, problems, &at.key("tls"), base),
        None => Some(None),
    };
    let admin_token = match &s.admin_token {
        Some(token) => Some(admin_token(problems, &at.key("admin_token"), &token.0)?),
        None => None,
    };
    Some(Server {
        tls: tls?,
        admin_token,
        listen: listen?,
        admin_listen: admin_listen?,
        debug_headers: s.debug_headers,
        workers: workers?,
        drain_timeout: drain_timeout?,
        shutdown_delay: shutdown_delay?,
        header_read_timeout: header_read_timeout?,
        max_connections: max_connections?,
        max_request_body_bytes: max_request_body_bytes? as u64,
        body_idle_timeout: body_idle_timeout?,
        write_timeout: write_timeout?,
    })
}

/// A TLS file's path as written, resolved against the config file's directory.
fn tls_path(base: &Path, text: &str) -> PathBuf {
    let path = Path::new(text);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// Records `err` at the field whose file it names (`fields`: key, resolved path, as written).
fn tls_problem(problems: &mut Problems, err: &TlsError, fields: &[(FieldPath, PathBuf, &str)]) {
    let named = match err {
        TlsError::Unreadable { path, .. }
        | TlsError::NoCertificate { path }
        | TlsError::NoKey { path }
        | TlsError::BadRoots { path, .. } => Some(path),
        TlsError::Mismatch { key, .. } => Some(key),
        TlsError::NoSystemRoots | TlsError::Config(_) => None,
    };
    let field = named
        .and_then(|named| fields.iter().find(|(_, path, _)| path == named))
        .or(fields.first());
    if let Some((at, _, text)) = field {
        problems.push(at, Some(show_str(text)), err.to_string());
    }
}

/// `[server.tls]`: both files required, read and checked to be a pair. `None`: a problem was
/// recorded.
fn server_tls(
    spec: &ServerTlsSpec,
    problems: &mut Problems,
    at: &FieldPath,
    base: &Path,
) -> Option<Option<ServerTls>> {
    let mut required = |key: &str, value: &Option<String>| {
        if value.is_none() {
            problems.push(&at.key(key), None, "missing (required in [server.tls])");
        }
        value.clone()
    };
    let (cert, key) = (required("cert", &spec.cert), required("key", &spec.key));
    let (cert, key) = (cert?, key?);
    let mut fields = vec![
        (at.key("cert"), tls_path(base, &cert), cert.as_str()),
        (at.key("key"), tls_path(base, &key), key.as_str()),
    ];
    if let Some(ca) = &spec.client_ca {
        fields.push((at.key("client_ca"), tls_path(base, ca), ca.as_str()));
    }
    let client_ca = fields.get(2).map(|(_, path, _)| path.clone());
    match ServerTls::load(fields[0].1.clone(), fields[1].1.clone(), client_ca) {
        Ok(tls) => Some(Some(tls)),
        Err(err) => {
            tls_problem(problems, &err, &fields);
            None
        }
    }
}

/// `upstream.ca`, `server_name`, `client_cert`, `client_key`: only for `https://`, the client
/// pair together, all read and checked. `Some(None)`: a plaintext upstream.
fn upstream_tls(
    spec: &UpstreamSpec,
    problems: &mut Problems,
    at: &FieldPath,
    base: &Path,
    https: bool,
    host: &str,
) -> Option<Option<UpstreamTls>> {
    let keys = [
        ("ca", &spec.ca),
        ("server_name", &spec.server_name),
        ("client_cert", &spec.client_cert),
        ("client_key", &spec.client_key),
    ];
    if !https {
        let mut ok = true;
        for (key, value) in keys {
            if let Some(value) = value {
                ok = false;
                problems.push(
                    &at.key(key),
                    Some(show_str(value)),
                    "only for an https:// upstream.url",
                );
            }
        }
        return ok.then_some(None);
    }
    let name = spec.server_name.as_deref().unwrap_or(host);
    let Ok(server_name) = rustls::pki_types::ServerName::try_from(name.to_owned()) else {
        problems.push(
            &at.key("server_name"),
            Some(show_str(name)),
            "not a DNS name or IP address",
        );
        return None;
    };
    let mut fields = Vec::new();
    if let Some(ca) = &spec.ca {
        fields.push((at.key("ca"), tls_path(base, ca), ca.as_str()));
    }
    let client = match (&spec.client_cert, &spec.client_key) {
        (Some(cert), Some(key)) => {
            fields.push((at.key("client_cert"), tls_path(base, cert), cert.as_str()));
            fields.push((at.key("client_key"), tls_path(base, key), key.as_str()));
            Some((tls_path(base, cert), tls_path(base, key)))
        }
        (None, None) => None,
        (Some(_), None) => {
            problems.push(
                &at.key("client_key"),
                None,
                "missing (upstream.client_cert needs it)",
            );
            return None;
        }
        (None, Some(_)) => {
            problems.push(
                &at.key("client_cert"),
                None,
                "missing (upstream.client_key needs it)",
            );
            return None;
        }
    };
    let ca = spec.ca.as_deref().map(|ca| tls_path(base, ca));
    match UpstreamTls::load(server_name, ca, client) {
        Ok(tls) => Some(Some(tls)),
        Err(err) => {
            if fields.is_empty() || matches!(err, TlsError::NoSystemRoots) {
                problems.push(&at.key("url"), None, err.to_string());
            } else {
                tls_problem(problems, &err, &fields);
            }
            None
        }
    }
}

/// Shortest admin token accepted: a short one could be guessed over the network.
const MIN_TOKEN_CHARS: usize = 16;

/// Checks `server.admin_token`. Its problems never carry the value (and the locator shows an
/// environment variable's value as `<redacted>` for this field).
fn admin_token(problems: &mut Problems, path: &FieldPath, token: &str) -> Option<AdminToken> {
    let message = if token.len() < MIN_TOKEN_CHARS {
        format!("too short (at least {MIN_TOKEN_CHARS} characters; e.g. `openssl rand -hex 32`)")
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        // It travels in `Authorization: Bearer <token>`: a header value without spaces.
        "must be visible ASCII without spaces".to_owned()
    } else {
        return Some(AdminToken::new(token.to_owned()));
    };
    problems.push(path, None, message);
    None
}

fn upstream(spec: &UpstreamSpec, problems: &mut Problems, base: &Path) -> Option<Upstream> {
    let at = FieldPath::root("upstream");
    let target = match &spec.url {
        Some(url) => upstream_url(problems, &at.key("url"), url),
        None => {
            problems.push(
                &at.key("url"),
                None,
                "missing (required), e.g. url = \"http://127.0.0.1:3000\" under [upstream], or CANDOR__UPSTREAM__URL",
            );
            None
        }
    };
    let connect_timeout = duration(
        problems,
        &at.key("connect_timeout"),
        &spec.connect_timeout,
        DurationKind::Timeout,
    );
    let timeout = duration(
        problems,
        &at.key("timeout"),
        &spec.timeout,
        DurationKind::Timeout,
    );
    let pool_idle_timeout = duration(
        problems,
        &at.key("pool_idle_timeout"),
        &spec.pool_idle_timeout,
        DurationKind::Timeout,
    );
    let pool_max_idle = int_in(
        problems,
        &at.key("pool_max_idle"),
        spec.pool_max_idle,
        0..=MAX_POOL_IDLE,
    );
    let body_idle_timeout = duration(
        problems,
        &at.key("body_idle_timeout"),
        &spec.body_idle_timeout,
        DurationKind::Timeout,
    );
    let (url, host, port, authority) = target?;
    let https = url.scheme_str() == Some("https");
    let tls = upstream_tls(spec, problems, &at, base, https, &host)?;
    Some(Upstream {
        tls,
        url,
        host,
        port,
        authority,
        connect_timeout: connect_timeout?,
        timeout: timeout?,
        pool_idle_timeout: pool_idle_timeout?,
        pool_max_idle: pool_max_idle?,
        body_idle_timeout: body_idle_timeout?,
    })
}

/// `upstream.max_connections`, `max_queue`, `queue_timeout`, `adaptive`, `min_connections`.
fn limit(spec: &UpstreamSpec, problems: &mut Problems) -> Option<Limit> {
    let at = FieldPath::root("upstream");
    let max_connections = int_in(
        problems,
        &at.key("max_connections"),
        spec.max_connections,
        1..=MAX_UPSTREAM_LIMIT,
    );
    let max_queue = int_in(
        problems,
        &at.key("max_queue"),
        spec.max_queue,
        1..=MAX_UPSTREAM_LIMIT,
    );
    let queue_timeout = duration(
        problems,
        &at.key("queue_timeout"),
        &spec.queue_timeout,
        DurationKind::Timeout,
    );
    let min_connections = int_in(
        problems,
        &at.key("min_connections"),
        spec.min_connections,
        1..=MAX_UPSTREAM_LIMIT,
    );
    if let (Some(min), Some(max)) = (min_connections, max_connections) {
        if min > max {
            problems.push(
                &at.key("min_connections"),
                Some(min.to_string()),
                format!("above upstream.max_connections ({max})"),
            );
            return None;
        }
    }
    Some(Limit {
        max_connections: max_connections?,
        max_queue: max_queue?,
        queue_timeout: queue_timeout?,
        adaptive: spec.adaptive,
        min_connections: min_connections?,
    })
}

/// Parses `upstream.url` into (normalized URI, host, port, authority as given).
fn upstream_url(
    problems: &mut Problems,
    path: &FieldPath,
    text: &str,
) -> Option<(Uri, String, u16, Authority)> {
    let mut fail = |message: &str| {
        problems.push(path, Some(show_str(text)), message);
        None
    };
    let Ok(uri) = text.parse::<Uri>() else {
        return fail("invalid URL (expected e.g. \"http://127.0.0.1:3000\")");
    };
    let (scheme, default_port) = match uri.scheme_str() {
        Some("http") => ("http", 80),
        Some("https") => ("https", 443),
        Some(_) => return fail("unsupported scheme (expected http:// or https://)"),
        None => return fail("missing scheme (expected e.g. \"http://127.0.0.1:3000\")"),
    };
    let Some(authority) = uri.authority().cloned() else {
        return fail("missing host (expected e.g. \"http://127.0.0.1:3000\")");
    };
    if authority.as_str().contains('@') {
        return fail("credentials in the URL are not supported");
    }
    let host = authority.host();
    if host.is_empty() {
        return fail("missing host (expected e.g. \"http://127.0.0.1:3000\")");
    }
    // `Authority::port` hides an unparsable port (":99999" reads as none), so read it directly.
    let port_text = authority.as_str().get(host.len()..).unwrap_or("");
    let port = match port_text.strip_prefix(':') {
        None if port_text.is_empty() => default_port,
        Some(digits) => match digits.parse::<u16>() {
            Ok(0) | Err(_) => return fail("invalid port (expected 1..=65535)"),
            Ok(port) => port,
        },
        None => return fail("invalid URL (expected e.g. \"http://127.0.0.1:3000\")"),
    };
    // candor forwards each request's own path and query; a base path would need rewriting
    // that no one asked for, so it is refused rather than silently ignored.
    if !matches!(uri.path(), "" | "/") {
        return fail("must not have a path (candor forwards each request's path as is)");
    }
    if uri.query().is_some() || text.contains('#') {
        return fail("must not have a query or fragment");
    }
    let normalized = format!("{scheme}://{host}:{port}");
    let Ok(url) = normalized.parse::<Uri>() else {
        return fail("invalid URL (expected e.g. \"http://127.0.0.1:3000\")");
    };
    // Connecting takes a bare IPv6 address; the brackets belong to URL syntax only.
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Some((url, bare, port, authority))
}

fn failures(spec: &FileSpec, problems: &mut Problems) -> Option<Failures> {
    let f = &spec.failures;
    let at = FieldPath::root("failures");
    // These replace an answer the upstream never gave, so they must say "server error".
    let five = "a 5xx status, 500..=599";
    let connect = status(problems, &at.key("connect"), f.connect, 500..=599, five);
    let timeout = status(problems, &at.key("timeout"), f.timeout, 500..=599, five);
    let retry_after = duration(
        problems,
        &at.key("retry_after"),
        &f.retry_after,
        DurationKind::RetryAfter,
    );
    Some(Failures {
        connect: connect?,
        timeout: timeout?,
        retry_after: retry_after?,
    })
}

fn inspect(spec: &FileSpec, problems: &mut Problems) -> Option<Inspect> {
    let i = &spec.inspect;
    let at = FieldPath::root("inspect");
    let max_body_bytes = int_in(
        problems,
        &at.key("max_body_bytes"),
        i.max_body_bytes,
        1..=MAX_BODY_BYTES,
    );
    let content_types = media_types(problems, &at.key("content_types"), &i.content_types);
    let max_concurrent = int_in(
        problems,
        &at.key("max_concurrent"),
        i.max_concurrent,
        1..=MAX_CONCURRENT_INSPECTIONS,
    );
    Some(Inspect {
        max_body_bytes: max_body_bytes?,
        content_types: content_types?,
        max_concurrent: max_concurrent?,
    })
}

/// Checks a list of media types (`type/subtype`, no parameters, no wildcards) and lowercases
/// them, since media types compare case-insensitively (RFC 9110 §8.3.1).
fn media_types(
    problems: &mut Problems,
    path: &FieldPath,
    list: &StringListSpec,
) -> Option<Vec<String>> {
    let before = problems.list.len();
    let mut out: Vec<String> = Vec::with_capacity(list.0.len());
    for (i, text) in list.0.iter().enumerate() {
        let message = match text.split_once('/') {
            _ if text.is_empty() => Some("must not be empty"),
            _ if text.contains(';') => {
                Some("parameters are not supported (list the bare type/subtype)")
            }
            _ if text.contains('*') => Some("wildcards are not supported (list each media type)"),
            Some((ty, sub)) if is_token(ty) && is_token(sub) => None,
            _ => Some("invalid media type (expected type/subtype, e.g. \"application/json\")"),
        };
        match message {
            Some(message) => problems.push(&path.index(i), Some(show_str(text)), message),
            None => {
                let lower = text.to_ascii_lowercase();
                if !out.contains(&lower) {
                    out.push(lower);
                }
            }
        }
    }
    (problems.list.len() == before).then_some(out)
}

/// Whether `s` is an RFC 9110 token (§5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn retry_after(spec: &FileSpec, problems: &mut Problems) -> Option<RetryAfter> {
    let r = &spec.retry_after;
    let at = FieldPath::root("retry_after");
    let before = problems.list.len();
    let mut statuses = Vec::new();
    for (i, item) in r.statuses.0.iter().enumerate() {
        if let Some(StatusMatch::Code(code)) =
            status_item(problems, &at.key("statuses").index(i), item, false)
        {
            if !statuses.contains(&code) {
                statuses.push(code);
            }
        }
    }
    let default = duration(
        problems,
        &at.key("default"),
        &r.default,
        DurationKind::RetryAfter,
    );
    (problems.list.len() == before).then_some(())?;
    Some(RetryAfter {
        statuses,
        default: default?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::super::spec::{DurationSpec, StatusSpec};
    use super::*;

    fn one_problem<T>(
        check: impl FnOnce(&mut Problems, &FieldPath) -> Option<T>,
    ) -> (Option<T>, Vec<String>) {
        let mut problems = Problems::default();
        let out = check(&mut problems, &FieldPath::root("x"));
        let messages = problems.list.iter().map(|p| p.message.clone()).collect();
        (out, messages)
    }

    #[test]
    fn durations_by_kind() {
        let cases = [
            ("2s", DurationKind::Timeout, Some(Duration::from_secs(2))),
            (
                "500ms",
                DurationKind::Timeout,
                Some(Duration::from_millis(500)),
            ),
            (
                "1m 30s",
                DurationKind::Timeout,
                Some(Duration::from_secs(90)),
            ),
            ("0s", DurationKind::Timeout, None),
            ("0s", DurationKind::RetryAfter, Some(Duration::ZERO)),
            ("100us", DurationKind::Timeout, None),
            ("25h", DurationKind::RetryAfter, None),
            ("0s", DurationKind::Delay, Some(Duration::ZERO)),
            ("25h", DurationKind::Delay, None),
            ("soon", DurationKind::Timeout, None),
            ("5", DurationKind::Timeout, None),
            ("", DurationKind::RetryAfter, None),
        ];
        for (text, kind, want) in cases {
            let (got, messages) =
                one_problem(|p, at| duration(p, at, &DurationSpec(text.into()), kind));
            assert_eq!(got, want, "{text:?}");
            assert_eq!(
                messages.len(),
                usize::from(want.is_none()),
                "{text:?}: {messages:?}"
            );
        }
    }

    #[test]
    fn status_items() {
        let cases = [
            (
                StatusSpec::Code(404),
                true,
                Some(StatusMatch::Code(StatusCode::NOT_FOUND)),
            ),
            (StatusSpec::Code(99), true, None),
            (StatusSpec::Code(600), true, None),
            (StatusSpec::Code(-1), true, None),
            (
                StatusSpec::Text("2xx".into()),
                true,
                Some(StatusMatch::Class(2)),
            ),
            (
                StatusSpec::Text("5XX".into()),
                true,
                Some(StatusMatch::Class(5)),
            ),
            (StatusSpec::Text("6xx".into()), true, None),
            (StatusSpec::Text("2xx".into()), false, None),
            (
                StatusSpec::Text("503".into()),
                false,
                Some(StatusMatch::Code(StatusCode::SERVICE_UNAVAILABLE)),
            ),
            (StatusSpec::Text(" 503".into()), false, None),
            (StatusSpec::Text("".into()), true, None),
        ];
        for (spec, classes, want) in cases {
            let (got, _) = one_problem(|p, at| status_item(p, at, &spec, classes));
            assert_eq!(got, want, "{spec:?}");
        }
    }

    #[test]
    fn upstream_urls() {
        let ok = [
            (
                "http://127.0.0.1:3000",
                "http://127.0.0.1:3000/",
                "127.0.0.1",
                3000,
                "127.0.0.1:3000",
            ),
            (
                "http://api.internal",
                "http://api.internal:80/",
                "api.internal",
                80,
                "api.internal",
            ),
            ("HTTP://Api:81/", "http://Api:81/", "Api", 81, "Api:81"),
            (
                "https://api.internal",
                "https://api.internal:443/",
                "api.internal",
                443,
                "api.internal",
            ),
            (
                "http://[::1]:8000",
                "http://[::1]:8000/",
                "::1",
                8000,
                "[::1]:8000",
            ),
        ];
        for (text, url, host, port, authority) in ok {
            let (got, messages) = one_problem(|p, at| upstream_url(p, at, text));
            let (u, h, p, a) = got.unwrap_or_else(|| panic!("{text}: {messages:?}"));
            assert_eq!(
                (u.to_string().as_str(), h.as_str(), p, a.as_str()),
                (url, host, port, authority)
            );
        }
        let bad = [
            ("ftp://api", "unsupported scheme"),
            ("api:3000", "missing scheme"),
            ("127.0.0.1:3000", "missing scheme"),
            ("http://", "invalid URL"),
            ("http://u:p@api", "credentials"),
            ("http://api:0", "invalid port"),
            ("http://api:99999", "invalid port"),
            ("http://api:", "invalid port"),
            ("http://api/v1", "must not have a path"),
            ("http://api/?a=1", "query"),
            ("http://api/#top", "fragment"),
            ("not a url", "invalid URL"),
            ("", "invalid URL"),
        ];
        for (text, want) in bad {
            let (got, messages) = one_problem(|p, at| upstream_url(p, at, text));
            assert!(got.is_none(), "{text} accepted");
            assert!(
                messages.iter().any(|m| m.contains(want)),
                "{text}: {messages:?}"
            );
        }
    }

    #[test]
    fn media_type_lists() {
        let cases: [(&[&str], Option<&[&str]>); 7] = [
            (
                &["application/json", "Text/HTML"],
                Some(&["application/json", "text/html"]),
            ),
            (
                &["application/json", "application/JSON"],
                Some(&["application/json"]),
            ),
            (&[], Some(&[])),
            (&[""], None),
            (&["json"], None),
            (&["text/*"], None),
            (&["text/html; charset=utf-8"], None),
        ];
        for (input, want) in cases {
            let list = StringListSpec(input.iter().map(|s| s.to_string()).collect());
            let (got, _) = one_problem(|p, at| media_types(p, at, &list));
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{input:?}");
        }
    }
}
