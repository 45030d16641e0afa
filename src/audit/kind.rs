//! The names of the ways a response lies: [`Kind`], a leaf of its own so the detectors and the
//! report's shape can both name them.

use serde::{Deserialize, Serialize};

/// A way a response lies (or leaks). Serialised as the names in the table of the README's
/// Audit section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// A 2xx JSON body carrying error markers.
    #[serde(rename = "error_in_success")]
    ErrorInSuccess,
    /// A 2xx JSON body whose entity is `null`.
    #[serde(rename = "null_entity")]
    NullEntity,
    /// A 2xx JSON body with a member holding a 4xx/5xx status.
    #[serde(rename = "status_in_body")]
    StatusInBody,
    /// A POST answered 200 with an id: should be 201 with `Location`.
    #[serde(rename = "created_as_200")]
    CreatedAs200,
    /// A DELETE answered 200 with nothing to say: should be 204.
    #[serde(rename = "empty_delete_200")]
    EmptyDelete200,
    /// A 200 with an empty body: should be 204.
    #[serde(rename = "empty_200")]
    Empty200,
    /// A 4xx/5xx HTML page to a client that did not ask for HTML.
    #[serde(rename = "html_to_api_client")]
    HtmlToApiClient,
    /// A 200 HTML page that is an error page.
    #[serde(rename = "soft_error_page")]
    SoftErrorPage,
    /// A body showing stack traces, paths, SQL errors or private addresses.
    #[serde(rename = "leaked_internals")]
    LeakedInternals,
    /// A 500 that is a validation failure: should be 422.
    #[serde(rename = "validation_as_500")]
    ValidationAs500,
    /// A 500 saying a dependency is down: should be 503 with `Retry-After`.
    #[serde(rename = "dependency_as_500")]
    DependencyAs500,
    /// A 429 or 503 without `Retry-After`.
    #[serde(rename = "missing_retry_after")]
    MissingRetryAfter,
    /// A 403 to a request with no credentials: should be 401.
    #[serde(rename = "forbidden_without_credentials")]
    ForbiddenWithoutCredentials,
    /// A 405 without `Allow`.
    #[serde(rename = "method_not_allowed_without_allow")]
    MethodNotAllowedWithoutAllow,
}

impl Kind {
    /// The kind's name, as in the report and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ErrorInSuccess => "error_in_success",
            Kind::NullEntity => "null_entity",
            Kind::StatusInBody => "status_in_body",
            Kind::CreatedAs200 => "created_as_200",
            Kind::EmptyDelete200 => "empty_delete_200",
            Kind::Empty200 => "empty_200",
            Kind::HtmlToApiClient => "html_to_api_client",
            Kind::SoftErrorPage => "soft_error_page",
            Kind::LeakedInternals => "leaked_internals",
            Kind::ValidationAs500 => "validation_as_500",
            Kind::DependencyAs500 => "dependency_as_500",
            Kind::MissingRetryAfter => "missing_retry_after",
            Kind::ForbiddenWithoutCredentials => "forbidden_without_credentials",
            Kind::MethodNotAllowedWithoutAllow => "method_not_allowed_without_allow",
        }
    }

    /// The kind named `name`.
    pub fn named(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
