//! The files in `deploy/` against the metrics candor really exports: every `candor_*` name that
//! the Grafana dashboard, the alert rules, their unit tests or the PrometheusRule mention, and
//! every label they select or group by, must appear in a live scrape of `/metrics`. A renamed
//! metric or label then fails here instead of leaving an empty panel or an alert that can never
//! fire.
//!
//! candor runs in-process with the compose stack's config (`deploy/compose/config/candor.toml`,
//! upstream set through `CANDOR__UPSTREAM__URL`) in front of a canned upstream that makes its
//! rules fire in both modes, so that the label sets of `candor_rewrites_total` are in the scrape.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::harness::*;
use regex::Regex;

/// Labels that Prometheus adds to every series from its target, not candor: `job` and
/// `instance` always, `namespace` and `pod` from Kubernetes discovery (PodMonitor).
const TARGET_LABELS: [&str; 4] = ["job", "instance", "namespace", "pod"];

/// The files whose metric names and labels are checked, relative to the repository root.
const FILES: [&str; 5] = [
    "deploy/grafana/candor-dashboard.json",
    "deploy/prometheus/alerts.yml",
    "deploy/prometheus/alerts.test.yml",
    "deploy/kubernetes/overlays/prometheus-operator/prometheusrule.yaml",
    "deploy/kubernetes/overlays/prometheus-operator/candor-dashboard.json",
];

/// What a scrape exports: each metric name (families from `# TYPE` lines and sample names such
/// as `_bucket`) with the label names seen on its samples.
#[derive(Debug, Default)]
struct Exported {
    labels: BTreeMap<String, BTreeSet<String>>,
}

impl Exported {
    fn parse(text: &str) -> Exported {
        let sample = Regex::new(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s").unwrap();
        let label = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="#).unwrap();
        let mut exported = Exported::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split_whitespace().next().unwrap_or_default();
                exported.labels.entry(name.to_owned()).or_default();
            } else if let Some(c) = sample.captures(line) {
                let names = exported.labels.entry(c[1].to_owned()).or_default();
                if let Some(set) = c.get(2) {
                    names.extend(label.captures_iter(set.as_str()).map(|l| l[1].to_owned()));
                }
            }
        }
        // A histogram's family carries the labels of its series; `le` is on `_bucket` only.
        let families: Vec<String> = exported.labels.keys().cloned().collect();
        for family in families {
            for suffix in ["_bucket", "_sum", "_count", "_total"] {
                if let Some(series) = exported.labels.get(&format!("{family}{suffix}")).cloned() {
                    let own = exported.labels.get_mut(&family).unwrap();
                    own.extend(series.into_iter().filter(|l| l != "le"));
                }
            }
        }
        exported
    }

    fn has(&self, name: &str) -> bool {
        self.labels.contains_key(name)
    }

    fn all_labels(&self) -> BTreeSet<&str> {
        self.labels.values().flatten().map(String::as_str).collect()
    }
}

/// Checks one file's text; returns its problems.
fn problems_in(file: &str, text: &str, exported: &Exported) -> Vec<String> {
    let metric = Regex::new(r"\bcandor_[a-z0-9_]*[a-z0-9]\b(\{[^}]*\})?").unwrap();
    let grouping = Regex::new(r"\b(?:by|without)\s*\(([^)]*)\)").unwrap();
    let matcher = Regex::new(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=|$)").unwrap();
    let mut problems = Vec::new();
    for c in metric.captures_iter(text) {
        let name = c.get(0).unwrap().as_str();
        let name = name.split('{').next().unwrap();
        if !exported.has(name) {
            problems.push(format!("{file}: {name} is not exported by candor"));
            continue;
        }
        let Some(selector) = c.get(1) else { continue };
        let inner = selector
            .as_str()
            .trim_start_matches('{')
            .trim_end_matches('}');
        for item in inner.split(',').filter(|i| !i.trim().is_empty()) {
            let Some(m) = matcher.captures(item) else {
                problems.push(format!(
                    "{file}: cannot read the matcher {item:?} on {name}"
                ));
                continue;
            };
            let label = &m[1];
            let known = exported.labels[name].contains(label)
                || TARGET_LABELS.contains(&label)
                || (label == "le" && name.ends_with("_bucket"));
            if !known {
                problems.push(format!("{file}: {name} has no label {label}"));
            }
        }
    }
    let all = exported.all_labels();
    for c in grouping.captures_iter(text) {
        for label in c[1].split(',').map(str::trim).filter(|l| !l.is_empty()) {
            if !(all.contains(label) || TARGET_LABELS.contains(&label) || label == "le") {
                problems.push(format!(
                    "{file}: groups by {label}, which no candor metric has"
                ));
            }
        }
    }
    problems
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics_and_labels() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let up = canned_upstream(vec![
        (
            "/users/7",
            Canned::json(200, r#"{"code":1042,"message":"no user","status":"error"}"#),
        ),
        ("/users/42", Canned::json(200, r#"{"data":{"id":42}}"#)),
        (
            "/profile",
            Canned::new(404, "text/html", "<h1>Not Found</h1>".as_bytes().to_vec()),
        ),
    ])
    .await;
    let env = HashMap::from([("CANDOR__UPSTREAM__URL".to_owned(), up.url())]);
    let mut config =
        candor::config::load_with_env(&root.join("deploy/compose/config/candor.toml"), env)
            .unwrap_or_else(|e| panic!("{e}"));
    config.server.workers = 1;
    let candor = Candor::start(config).await;

    // An enforced rule (and the shadow rule before it), a pass-through, a built-in.
    let (status, _, _) = request(candor.addr, "GET", "/users/7", &[]).await;
    assert_eq!(status, 404);
    let (status, _, _) = request(candor.addr, "GET", "/users/42", &[]).await;
    assert_eq!(status, 200);
    let accept = [("accept", "application/json")];
    let (status, headers, _) = request(candor.addr, "GET", "/profile", &accept).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/problem+json");

    let scrape = candor.metrics().await;
    let exported = Exported::parse(&scrape);
    for (name, mode) in [("user-not-found", "enforce"), ("any-error-body", "shadow")] {
        let (rule, mode) = (format!("rule=\"{name}\""), format!("mode=\"{mode}\""));
        assert!(
            scrape
                .lines()
                .any(|l| l.starts_with("candor_rewrites_total{")
                    && l.contains(&rule)
                    && l.contains(&mode)),
            "the scrape has no rewrite with {rule} and {mode}:\n{scrape}"
        );
    }

    let mut problems = Vec::new();
    for file in FILES {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
        // The dashboard is JSON: check its strings as they read, not as escaped.
        let text = if file.ends_with(".json") {
            let value: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let mut strings = Vec::new();
            collect_strings(&value, &mut strings);
            strings.join("\n")
        } else {
            text
        };
        assert!(text.contains("candor_"), "{file} names no candor metric");
        problems.extend(problems_in(file, &text, &exported));
    }
    assert!(
        problems.is_empty(),
        "{}\n\nexported: {:#?}",
        problems.join("\n"),
        exported.labels
    );
    candor.stop().await.unwrap();
}

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// The checker itself: a misspelt metric, an unknown label and a bad grouping are caught.
#[test]
fn the_checker_catches_unknown_names_and_labels() {
    let scrape = "# TYPE candor_rewrites counter\n\
                  candor_rewrites_total{rule=\"r\",from=\"200\",to=\"404\",mode=\"enforce\"} 1\n\
                  # TYPE candor_request_duration_seconds histogram\n\
                  candor_request_duration_seconds_bucket{le=\"0.1\"} 1\n";
    let exported = Exported::parse(scrape);
    let ok = r#"sum by (rule, from, to) (rate(candor_rewrites_total{job=~"$job", mode="shadow"}[5m]))
        histogram_quantile(0.9, sum by (le) (rate(candor_request_duration_seconds_bucket[5m])))"#;
    assert_eq!(problems_in("ok", ok, &exported), Vec::<String>::new());
    let bad = r#"rate(candor_rewrite_total[5m]) candor_rewrites_total{rules="x"}
        sum by (route) (candor_rewrites_total)"#;
    assert_eq!(
        problems_in("bad", bad, &exported),
        vec![
            "bad: candor_rewrite_total is not exported by candor",
            "bad: candor_rewrites_total has no label rules",
            "bad: groups by route, which no candor metric has",
        ]
    );
    let with_reload = format!(
        "{scrape}# TYPE candor_config_last_reload_successful gauge\n\
         # TYPE candor_config_reloads_total counter\n\
         candor_config_reloads_total{{outcome=\"success\"}} 1\n"
    );
    let exported = Exported::parse(&with_reload);
    assert_eq!(
        problems_in(
            "landed",
            "candor_config_last_reload_successful{result=\"x\"} sum by (result) (x)",
            &exported
        ),
        vec![
            "landed: candor_config_last_reload_successful has no label result",
            "landed: groups by result, which no candor metric has",
        ]
    );
}
