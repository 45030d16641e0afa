//! The config file's shape as serde structs (`…Spec`), before any validation.
//!
//! The same [`FileSpec`] is deserialized twice: by `toml` straight from the file text (phase 1,
//! which gives line and column for syntax errors, unknown keys and wrong types), and by the
//! `config` crate after layering `CANDOR__…` environment overrides on top (phase 2). So these
//! types must work through both deserializers:
//!
//! - every struct is `deny_unknown_fields` and uses neither `flatten` nor `untagged`, which would
//!   make toml report errors at the wrong place;
//! - values that are checked for meaning (addresses, URLs, durations, ranges) stay raw strings and
//!   `i64`s here and are judged in phase 3, where a problem can name its field and value; a
//!   custom `Deserialize` error inside the `config` crate loses its key;
//! - mixed-type fields (`[200, "2xx"]`, `equals = <any value>`) use small hand-written visitors
//!   that only ask for `deserialize_any`, which both deserializers implement.
//!
//! Defaults live here (`#[serde(default)]`), so a two-line config fills in the rest.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSpec {
    /// `[server]`: candor's own listeners and process settings.
    pub server: ServerSpec,
    /// `[upstream]`: the legacy API candor fronts.
    pub upstream: UpstreamSpec,
    /// `[failures]`: statuses for upstream failures.
    pub failures: FailuresSpec,
    /// `[inspect]`: which responses have their bodies read.
    pub inspect: InspectSpec,
    /// `[retry_after]`: the `Retry-After` policy.
    pub retry_after: RetryAfterSpec,
    /// `[html_errors]`: handling of HTML error pages.
    pub html_errors: HtmlErrorsSpec,
    /// `[scrub]`: scrubbing of internal details from error bodies.
    pub scrub: ScrubSpec,
    /// `[log]`: what candor logs and how.
    pub log: LogSpec,
    /// `[maintenance]`: candor answering 503 itself instead of forwarding.
    pub maintenance: MaintenanceSpec,
    /// `[audit]`: observing live traffic for responses that lie about their status.
    pub audit: AuditSpec,
    /// `[[rules]]`: the rewrite rules, in evaluation order.
    pub rules: Vec<RuleSpec>,
    /// `[[tests]]`: canned exchanges and what candor must make of them (`candor test`).
    pub tests: Vec<TestSpec>,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSpec {
    /// A tracing filter directive (`info`, `warn,candor=debug`); `RUST_LOG` wins when set.
    pub level: String,
    /// `auto` (text on a terminal, JSON lines otherwise), `text` or `json`.
    pub format: String,
    /// One line per request.
    pub access_log: bool,
}

impl Default for LogSpec {
    fn default() -> Self {
        LogSpec {
            level: "info".to_owned(),
            format: "auto".to_owned(),
            access_log: false,
        }
    }
}

/// One `[[tests]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestSpec {
    /// Required; optional here so its absence is reported with a line.
    pub name: Option<String>,
    /// The request the response answers.
    pub request: TestRequestSpec,
    /// The upstream's response.
    pub response: TestResponseSpec,
    /// What candor must send instead.
    pub expect: ExpectSpec,
}

/// `[[tests]].request`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestRequestSpec {
    /// Method, default `GET`.
    pub method: String,
    /// Path and query, default `/`.
    pub path: String,
    /// Request headers (`accept` matters to the HTML built-in).
    pub headers: std::collections::BTreeMap<String, String>,
}

impl Default for TestRequestSpec {
    fn default() -> Self {
        TestRequestSpec {
            method: "GET".to_owned(),
            path: "/".to_owned(),
            headers: Default::default(),
        }
    }
}

/// `[[tests]].response`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestResponseSpec {
    /// Upstream status, default 200.
    pub status: i64,
    /// Upstream headers; without `content-type`, `application/json` is assumed.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Upstream body (identity-encoded).
    pub body: String,
}

impl Default for TestResponseSpec {
    fn default() -> Self {
        TestResponseSpec {
            status: 200,
            headers: Default::default(),
            body: String::new(),
        }
    }
}

/// `[[tests]].expect`: every field given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpectSpec {
    /// The rule (or built-in) that must apply, or `"none"`.
    pub rule: Option<String>,
    /// A shadow rule that must match (it is counted, the response is unchanged).
    pub shadow: Option<String>,
    /// The status sent.
    pub status: Option<i64>,
    /// `"keep"`, `"problem"` or `"empty"`.
    pub body: Option<String>,
    /// Exact values of headers candor sends; `"<absent>"` for one that must not be there.
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Tests on the JSON body candor sends, written as in `when.json`.
    pub json: Option<Vec<JsonConditionSpec>>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSpec {
    /// Proxy listen address, `IP:PORT`.
    pub listen: String,
    /// Admin (metrics, health) listen address, `IP:PORT`.
    pub admin_listen: String,
    /// Whether responses carry `x-candor-*` debug headers.
    pub debug_headers: bool,
    /// Worker threads; `None` means one per available CPU.
    pub workers: Option<i64>,
    /// Graceful shutdown drain window.
    pub drain_timeout: DurationSpec,
    /// How long to keep serving after SIGTERM, with `/readyz` failing, before the drain.
    pub shutdown_delay: DurationSpec,
    /// Time a client has to send a full request head.
    pub header_read_timeout: DurationSpec,
    /// Client connections open at once, across workers.
    pub max_connections: i64,
    /// Largest request body forwarded.
    pub max_request_body_bytes: i64,
    /// Longest pause between two pieces of a request body.
    pub body_idle_timeout: DurationSpec,
    /// Longest a response write to a client may wait (a client that stops reading).
    pub write_timeout: DurationSpec,
    /// Bearer token the admin API's writes need; without one only loopback peers may write.
    pub admin_token: Option<SecretSpec>,
    /// `[server.tls]`: TLS on the proxy listener; absent, it speaks plaintext (and h2c).
    pub tls: Option<ServerTlsSpec>,
}

/// `[server.tls]`: PEM files, relative to the config file's directory unless absolute.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTlsSpec {
    /// The certificate chain, leaf first; required.
    pub cert: Option<String>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1); required.
    pub key: Option<String>,
    /// CA certificates client certificates must chain to; set, a client without one is refused.
    pub client_ca: Option<String>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9901".into(),
            debug_headers: true,
            workers: None,
            drain_timeout: DurationSpec::new("10s"),
            shutdown_delay: DurationSpec::new("0s"),
            header_read_timeout: DurationSpec::new("10s"),
            max_connections: 10_000,
            max_request_body_bytes: 100 * 1024 * 1024,
            body_idle_timeout: DurationSpec::new("30s"),
            write_timeout: DurationSpec::new("60s"),
            admin_token: None,
            tls: None,
        }
    }
}

/// `[maintenance]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceSpec {
    /// Whether candor answers 503 itself instead of forwarding.
    pub enabled: bool,
    /// `Retry-After` on those answers.
    pub retry_after: DurationSpec,
    /// The problem document's `detail`.
    pub detail: String,
    /// Regexes on the request path; matching requests are still forwarded.
    pub except_paths: StringListSpec,
}

impl Default for MaintenanceSpec {
    fn default() -> Self {
        MaintenanceSpec {
            enabled: false,
            // Long enough that clients and CDNs back off for real, short enough that a window
            // ending early is noticed soon.
            retry_after: DurationSpec::new("5m"),
            detail: "The service is down for scheduled maintenance.".to_owned(),
            except_paths: StringListSpec(Vec::new()),
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSpec {
    /// Whether the proxy observes its traffic.
    pub enabled: bool,
    /// The share of exchanges observed, 0.0 to 1.0 (an integer 0 or 1 is read as a number).
    pub sample: f64,
    /// Routes (template and method) kept.
    pub max_routes: i64,
}

impl Default for AuditSpec {
    fn default() -> Self {
        AuditSpec {
            enabled: false,
            sample: 1.0,
            max_routes: 1000,
        }
    }
}

/// A secret as written (`server.admin_token`): a string whose `Debug` never shows it, so no
/// `{:?}` of the config (a log line, a test failure) can leak it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretSpec(pub String);

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[upstream]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSpec {
    /// The upstream base URL; required, but optional here so it may come from the environment.
    pub url: Option<String>,
    /// TCP connect timeout.
    pub connect_timeout: DurationSpec,
    /// Time until the upstream's response headers.
    pub timeout: DurationSpec,
    /// Idle pooled connections older than this are not reused.
    pub pool_idle_timeout: DurationSpec,
    /// Idle connections kept per worker.
    pub pool_max_idle: i64,
    /// Longest pause between two pieces of a response body.
    pub body_idle_timeout: DurationSpec,
    /// Upstream exchanges in flight at once, across workers (the adaptive limit's ceiling).
    pub max_connections: i64,
    /// Requests that may wait for a place; more are shed with 503.
    pub max_queue: i64,
    /// Longest a request waits for a place before it is shed with 503.
    pub queue_timeout: DurationSpec,
    /// Whether the limit follows the upstream's latency.
    pub adaptive: bool,
    /// The adaptive limit's floor (and where it starts).
    pub min_connections: i64,
    /// `https://` only: a PEM bundle of the CAs to trust instead of the system's.
    pub ca: Option<String>,
    /// `https://` only: the name verified and sent as SNI instead of the URL's host.
    pub server_name: Option<String>,
    /// `https://` only: a PEM certificate chain candor presents to the upstream.
    pub client_cert: Option<String>,
    /// `https://` only: its private key.
    pub client_key: Option<String>,
}

impl Default for UpstreamSpec {
    fn default() -> Self {
        UpstreamSpec {
            url: None,
            connect_timeout: DurationSpec::new("2s"),
            timeout: DurationSpec::new("30s"),
            // Below Node's 5 s keep-alive, the most common legacy upstream, so candor never
            // reuses a connection the upstream is about to close.
            pool_idle_timeout: DurationSpec::new("4s"),
            pool_max_idle: 64,
            body_idle_timeout: DurationSpec::new("60s"),
            // As Envoy's circuit breaker: far above what a legacy app serves, so the limit is
            // opt-in protection, and a default install never sheds.
            max_connections: 1024,
            max_queue: 1024,
            // Past 5 s a waiting client is better told to come back (503 + Retry-After).
            queue_timeout: DurationSpec::new("5s"),
            adaptive: false,
            min_connections: 1,
            ca: None,
            server_name: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// `[failures]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailuresSpec {
    /// Status when the upstream refuses or cannot be reached.
    pub connect: i64,
    /// Status when the upstream sends no response headers in time.
    pub timeout: i64,
    /// `Retry-After` on every 503 candor makes.
    pub retry_after: DurationSpec,
}

impl Default for FailuresSpec {
    fn default() -> Self {
        FailuresSpec {
            connect: 502,
            timeout: 504,
            retry_after: DurationSpec::new("5s"),
        }
    }
}

/// `[inspect]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectSpec {
    /// Largest body read for rules; larger ones pass through untouched.
    pub max_body_bytes: i64,
    /// Media types whose bodies are read.
    pub content_types: StringListSpec,
    /// Bodies read for inspection at once, per process.
    pub max_concurrent: i64,
}

impl Default for InspectSpec {
    fn default() -> Self {
        InspectSpec {
            max_body_bytes: 256 * 1024,
            content_types: StringListSpec(
                [
                    "application/json",
                    "application/problem+json",
                    "text/html",
                    "text/plain",
                ]
                .map(String::from)
                .to_vec(),
            ),
            max_concurrent: 64,
        }
    }
}

/// `[retry_after]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryAfterSpec {
    /// Statuses that get a `Retry-After` when the upstream sent none.
    pub statuses: StatusListSpec,
    /// The value used then.
    pub default: DurationSpec,
}

impl Default for RetryAfterSpec {
    fn default() -> Self {
        RetryAfterSpec {
            statuses: StatusListSpec(vec![StatusSpec::Code(429), StatusSpec::Code(503)]),
            default: DurationSpec::new("30s"),
        }
    }
}

/// `[html_errors]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HtmlErrorsSpec {
    /// Whether HTML error pages are handled.
    pub enabled: bool,
}

impl Default for HtmlErrorsSpec {
    fn default() -> Self {
        HtmlErrorsSpec { enabled: true }
    }
}

/// `[scrub]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubSpec {
    /// Whether error bodies are scrubbed.
    pub enabled: bool,
    /// Extra leak patterns (regexes over the body), added to the built-in ones.
    pub patterns: StringListSpec,
}

impl Default for ScrubSpec {
    fn default() -> Self {
        ScrubSpec {
            enabled: true,
            patterns: StringListSpec(Vec::new()),
        }
    }
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSpec {
    /// Required; optional here so its absence is reported with the rule's line.
    pub name: Option<String>,
    /// Whether the rule acts or only records what it would do.
    pub mode: ModeSpec,
    /// Conditions, all of which must hold.
    pub when: WhenSpec,
    /// What to do; optional here so its absence is reported as "rule does nothing".
    pub then: Option<ThenSpec>,
}

/// `mode = "enforce" | "shadow"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSpec {
    /// Apply the rule.
    #[default]
    Enforce,
    /// Only count and log what the rule would do.
    Shadow,
}

/// A rule's `when` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhenSpec {
    /// Upstream statuses or classes.
    pub status: Option<StatusListSpec>,
    /// Request methods.
    pub method: Option<StringListSpec>,
    /// Regex on the request path.
    pub path: Option<String>,
    /// Regex on the raw query string.
    pub query: Option<String>,
    /// Request header conditions.
    pub request_header: Option<Vec<HeaderMatchSpec>>,
    /// Regex on the response content type.
    pub content_type: Option<String>,
    /// Response header conditions.
    pub header: Option<Vec<HeaderMatchSpec>>,
    /// JSON body conditions.
    pub json: Option<Vec<JsonConditionSpec>>,
    /// Regex on the decoded body.
    pub body: Option<String>,
}

/// `{ name = "x-legacy", matches = "yes" }` in `when.header`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchSpec {
    /// Header name.
    pub name: String,
    /// Regex on the header value; absent means the header only has to be present.
    #[serde(default)]
    pub matches: Option<String>,
    /// `true`: the header must not be there at all.
    #[serde(default)]
    pub absent: Option<bool>,
}

/// `{ pointer = "/status", <op> = … }` in `when.json`; exactly one op must be set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonConditionSpec {
    /// RFC 6901 JSON pointer.
    pub pointer: String,
    /// The value equals this one (compared as JSON).
    #[serde(default)]
    pub equals: Option<JsonValueSpec>,
    /// The value is (`true`) or is present and is not (`false`) JSON `null`.
    #[serde(default)]
    pub is_null: Option<bool>,
    /// The value is a string matching this regex.
    #[serde(default)]
    pub matches: Option<String>,
    /// The value equals one of these.
    #[serde(default)]
    pub one_of: Option<Vec<JsonValueSpec>>,
    /// The pointer resolves (`true`) or does not (`false`).
    #[serde(default)]
    pub exists: Option<bool>,
    /// The value is a number greater than this.
    #[serde(default)]
    pub gt: Option<f64>,
    /// The value is a number greater than or equal to this.
    #[serde(default)]
    pub gte: Option<f64>,
    /// The value is a number less than this.
    #[serde(default)]
    pub lt: Option<f64>,
    /// The value is a number less than or equal to this.
    #[serde(default)]
    pub lte: Option<f64>,
}

/// A rule's `then` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThenSpec {
    /// New status (also the fallback for `status_from`).
    pub status: Option<i64>,
    /// JSON pointer to the new status in the body.
    pub status_from: Option<String>,
    /// Fixed `Retry-After`.
    pub retry_after: Option<DurationSpec>,
    /// JSON pointer to a `Retry-After` number of seconds in the body.
    pub retry_after_from: Option<String>,
    /// What happens to the body.
    pub body: BodySpec,
    /// JSON pointer to the problem document's `detail`.
    pub detail_from: Option<String>,
    /// Headers to set on the response; values are templates.
    pub headers: Option<Vec<HeaderSetSpec>>,
    /// The problem document's `type`, `title` and copied members.
    pub problem: Option<ProblemSpec>,
}

/// `then.problem`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProblemSpec {
    /// `type`: an absolute URI or a relative reference.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `title`.
    pub title: Option<String>,
    /// Member name → JSON pointer into the upstream body.
    pub members: Option<std::collections::BTreeMap<String, String>>,
}

/// `then.body = "keep" | "problem" | "empty"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodySpec {
    /// Forward the upstream body.
    #[default]
    Keep,
    /// Replace it with an RFC 9457 problem document.
    Problem,
    /// Drop it.
    Empty,
}

/// `{ name = "x-foo", value = "bar" }` in `then.headers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSetSpec {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// A duration as written (`"2s"`), parsed in phase 3.
///
/// Only strings are accepted: a bare `5` is ambiguous (seconds? milliseconds?), so it is refused
/// with a hint rather than guessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationSpec(pub String);

impl DurationSpec {
    fn new(text: &str) -> Self {
        DurationSpec(text.to_owned())
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"5s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                Ok(DurationSpec::new(v))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A status as written: a code (`404`) or a string (`"4xx"`, or `"404"` from an env list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusSpec {
    /// An integer.
    Code(i64),
    /// A string, parsed in phase 3.
    Text(String),
}

struct StatusVisitor;

impl Visitor<'_> for StatusVisitor {
    type Value = StatusSpec;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status code like 404 or a class like \"4xx\"")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusSpec, E> {
        Ok(StatusSpec::Code(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusSpec, E> {
        // Out of i64 range is out of status range too; phase 3 reports it.
        Ok(StatusSpec::Code(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusSpec, E> {
        Ok(StatusSpec::Text(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StatusVisitor)
    }
}

/// A list of statuses; a single status is accepted as a one-element list, because an env
/// override `CANDOR__RETRY_AFTER__STATUSES=503` arrives as a bare integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListSpec(pub Vec<StatusSpec>);

impl<'de> Deserialize<'de> for StatusListSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StatusListSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of status codes like [404, \"5xx\"]")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusListSpec, E> {
                StatusVisitor.visit_i64(v).map(|s| StatusListSpec(vec![s]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusListSpec, E> {
                StatusVisitor.visit_u64(v).map(|s| StatusListSpec(vec![s]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusListSpec, E> {
                StatusVisitor.visit_str(v).map(|s| StatusListSpec(vec![s]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatusListSpec, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<StatusSpec>()? {
                    out.push(item);
                }
                Ok(StatusListSpec(out))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

/// A list of strings; a single string is accepted as a one-element list (`method = "GET"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringListSpec(pub Vec<String>);

impl<'de> Deserialize<'de> for StringListSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StringListSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringListSpec, E> {
                Ok(StringListSpec(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringListSpec, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(StringListSpec(out))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

/// Any TOML value, kept as the JSON value it is compared with (`equals`, `one_of`).
///
/// Written by hand rather than using `serde_json::Value`'s impl because that one turns a TOML
/// `nan`/`inf` silently into `null` and a TOML datetime into a private wrapper table; here the
/// first is refused and the second becomes its string form, as the `config` crate also does.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonValueSpec(pub serde_json::Value);

/// The key under which toml's deserializer hands out a datetime.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean, array or table")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Into::into)
            .map_err(|_| E::invalid_value(de::Unexpected::Other("integer beyond 64 bits"), &self))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Into::into)
            .map_err(|_| E::invalid_value(de::Unexpected::Other("integer beyond 64 bits"), &self))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Float(v), &"a finite number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(v.to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(JsonValueSpec(item)) = seq.next_element::<JsonValueSpec>()? {
            out.push(item);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == TOML_DATETIME_KEY {
                let text: String = map.next_value()?;
                return Ok(serde_json::Value::String(text));
            }
            let JsonValueSpec(value) = map.next_value::<JsonValueSpec>()?;
            out.insert(key, value);
        }
        Ok(serde_json::Value::Object(out))
    }
}

impl<'de> Deserialize<'de> for JsonValueSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor).map(JsonValueSpec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Deserializes `text` through toml directly and through the `config` crate, which must agree.
    fn both(text: &str) -> (FileSpec, FileSpec) {
        let direct: FileSpec = toml::from_str(text).expect("toml accepts the test input");
        let layered: FileSpec = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("config accepts the test input");
        (direct, layered)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let (spec, _) = both("");
        assert_eq!(spec.server.listen, "127.0.0.1:8080");
        assert_eq!(spec.upstream.url, None);
        assert_eq!(spec.upstream.timeout, DurationSpec::new("30s"));
        assert_eq!(spec.inspect.max_body_bytes, 262_144);
        assert_eq!(spec.retry_after.statuses.0.len(), 2);
        assert!(spec.rules.is_empty());
        assert!(!spec.maintenance.enabled);
        assert_eq!(spec.maintenance.retry_after, DurationSpec::new("5m"));
        assert!(spec.maintenance.except_paths.0.is_empty());
        assert_eq!(spec.server.admin_token, None);
        assert!(!spec.audit.enabled);
        assert_eq!((spec.audit.sample, spec.audit.max_routes), (1.0, 1000));
    }

    #[test]
    fn audit_sample_reads_integers_and_floats_through_both_deserializers() {
        for (value, want) in [("0.25", 0.25), ("1", 1.0), ("0", 0.0)] {
            let (a, b) = both(&format!("[audit]\nenabled = true\nsample = {value}\n"));
            for spec in [a, b] {
                assert!(spec.audit.enabled);
                assert_eq!(spec.audit.sample, want, "{value}");
            }
        }
    }

    #[test]
    fn the_admin_token_reads_through_both_deserializers_and_never_debug_prints() {
        let (a, b) = both("[server]\nadmin_token = \"s3cr3t-s3cr3t-s3cr3t\"\n");
        for spec in [a, b] {
            let token = spec.server.admin_token.clone();
            assert_eq!(token.map(|t| t.0).as_deref(), Some("s3cr3t-s3cr3t-s3cr3t"));
            let shown = format!("{spec:?}");
            assert!(
                !shown.contains("s3cr3t") && shown.contains("<redacted>"),
                "{shown}"
            );
        }
    }

    #[test]
    fn mixed_status_lists_read_the_same_through_both_deserializers() {
        let cases: [(&str, Vec<StatusSpec>); 3] = [
            (
                "[200, \"2xx\"]",
                vec![StatusSpec::Code(200), StatusSpec::Text("2xx".into())],
            ),
            ("404", vec![StatusSpec::Code(404)]),
            ("\"5xx\"", vec![StatusSpec::Text("5xx".into())]),
        ];
        for (value, want) in cases {
            let text = format!("[[rules]]\nwhen.status = {value}\n");
            let (a, b) = both(&text);
            for spec in [a, b] {
                let got = spec.rules[0].when.status.clone().map(|s| s.0);
                assert_eq!(got.as_ref(), Some(&want), "{value}");
            }
        }
    }

    #[test]
    fn equals_takes_any_toml_value_through_both_deserializers() {
        let cases = [
            ("\"error\"", json!("error")),
            ("1042", json!(1042)),
            ("-1", json!(-1)),
            ("1.5", json!(1.5)),
            ("true", json!(true)),
            ("[1, \"a\"]", json!([1, "a"])),
            ("{ a = 1, b = [false] }", json!({"a": 1, "b": [false]})),
            ("1979-05-27T07:32:00Z", json!("1979-05-27T07:32:00Z")),
        ];
        for (value, want) in cases {
            let text =
                format!("[[rules]]\nwhen.json = [{{ pointer = \"/a\", equals = {value} }}]\n");
            let (a, b) = both(&text);
            for spec in [a, b] {
                let json = spec.rules[0].when.json.clone().unwrap_or_default();
                assert_eq!(
                    json[0].equals.as_ref().map(|v| &v.0),
                    Some(&want),
                    "{value}"
                );
            }
        }
    }

    #[test]
    fn non_finite_floats_are_refused() {
        let text = "[[rules]]\nwhen.json = [{ pointer = \"/a\", equals = nan }]\n";
        let err = toml::from_str::<FileSpec>(text).expect_err("nan is refused");
        assert!(err.message().contains("finite"), "{err}");
    }

    #[test]
    fn durations_must_be_strings() {
        let err = toml::from_str::<FileSpec>("[upstream]\ntimeout = 5\n").expect_err("int refused");
        assert!(
            err.message()
                .contains("expected a duration string like \"5s\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_everywhere() {
        for text in [
            "[server]\nlistn = \"x\"\n",
            "[upstream]\nurll = \"x\"\n",
            "[[rules]]\nwhen.pathh = \"x\"\n",
            "[[rules]]\nthen.stauts = 404\n",
            "[[rules]]\nwhen.json = [{ pointer = \"\", equal = 1 }]\n",
            "[nope]\n",
        ] {
            let err = toml::from_str::<FileSpec>(text).expect_err(text);
            assert!(err.message().contains("unknown"), "{text}: {err}");
        }
    }
}
