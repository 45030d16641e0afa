//! Audit's memory: the route table stays within `audit.max_routes` plus a fixed size however many
//! distinct paths go by, and one hostile body costs the detectors a bounded peak.
//!
//! Re-runs itself alone in a child process, like `rules`: the counting allocator is global.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use candor::audit::{self, Audit, Body, Exchange, RequestSigns, Response};
use candor::builtin::scrub::Scrubber;

use crate::counting::{LIVE, PEAK};
use crate::measuring_child;

fn live() -> usize {
    LIVE.load(Ordering::SeqCst)
}

fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = live();
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - base)
}

/// A path with a literal segment of its own (letters only: never read as an id).
fn path(i: usize) -> String {
    let mut word = String::new();
    let mut n = i;
    loop {
        word.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            break;
        }
    }
    format!("/api/{word}/items")
}

fn record(audit: &Audit, scrubber: &Scrubber, path: &str, body: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let signs = RequestSigns::default();
    audit.record(
        &Exchange {
            method: &Method::GET,
            path,
            request: &signs,
            upstream: Response {
                status: StatusCode::OK,
                headers: &candor::audit::Heads::of(&headers),
                body: Body::Complete(body),
            },
            sent: None,
            at: SystemTime::now(),
        },
        scrubber,
    );
}

#[test]
fn distinct_paths_stay_within_max_routes_plus_a_fixed_size() {
    if !measuring_child(
        module_path!(),
        "distinct_paths_stay_within_max_routes_plus_a_fixed_size",
    ) {
        return;
    }
    let scrubber = Scrubber::new(&[]).unwrap();
    let max_routes = 1000;
    let audit = Audit::new(&audit::Settings {
        enabled: true,
        sample: 1.0,
        max_routes,
    });
    // Every response lies, so every route also keeps a finding with its example.
    let body = br#"{"status":"error","message":"order not found","id":12345}"#;
    // Warm: regex caches and the first allocations of the table.
    record(&audit, &scrubber, "/warm", body);
    let base = live();
    let mut at_limit = 0;
    let mut peak_record = 0;
    for i in 0..100_000 {
        let p = path(i);
        let ((), peak) = peak_during(|| record(&audit, &scrubber, &p, body));
        peak_record = peak_record.max(peak);
        // Caches around the table (the regex engines' per-thread pools) settle by then.
        if i == 20 * max_routes {
            at_limit = live() - base;
        }
    }
    let after = live() - base;
    let report = audit.report();
    let routes = report.routes.len();
    println!(
        "audit: {routes} routes kept of 100,000 paths (max_routes {max_routes}); table {} KiB after {} paths, {} KiB after 100,000; one record peaks at {} KiB",
        at_limit / 1024,
        20 * max_routes,
        after / 1024,
        peak_record / 1024
    );
    assert!(routes <= max_routes + 1, "{routes} routes");
    assert!(report.folded);
    // Past the limit new paths only count into `{other}`: the table does not grow.
    assert!(
        after <= at_limit + 16 * 1024,
        "the table grew from {at_limit} to {after} bytes past max_routes"
    );
    // A route with one finding and its example: about 1.5 KiB.
    assert!(
        after <= max_routes * 3 * 1024,
        "{after} bytes for {max_routes} routes"
    );
}

#[test]
fn a_hostile_body_costs_a_bounded_peak() {
    if !measuring_child(module_path!(), "a_hostile_body_costs_a_bounded_peak") {
        return;
    }
    let scrubber = Scrubber::new(&[]).unwrap();
    let audit = Audit::new(&audit::Settings {
        enabled: true,
        ..Default::default()
    });
    let limit = 256 * 1024;
    let mut records = b"{\"status\":\"error\",\"message\":\"".to_vec();
    records.resize(limit - 200, b'x');
    records.extend_from_slice(b"\",\"errors\":[");
    while records.len() < limit - 2 {
        records.extend_from_slice(b"{\"field\":\"a\"},");
    }
    records.pop();
    records.extend_from_slice(b"]}");
    let deep = format!("{}{}", "[".repeat(limit / 2), "]".repeat(limit / 2)).into_bytes();
    let numbers: Vec<u8> = {
        let mut b = b"[".to_vec();
        while b.len() < limit {
            b.extend_from_slice(b"0,");
        }
        b.pop();
        b.push(b']');
        b
    };
    record(&audit, &scrubber, "/warm", &records);
    for (name, body) in [
        ("records", &records),
        ("deep", &deep),
        ("numbers", &numbers),
    ] {
        let ((), peak) = peak_during(|| record(&audit, &scrubber, "/hostile", body));
        println!(
            "audit: {name} body of {} KiB, record peaks at {} KiB",
            body.len() / 1024,
            peak / 1024
        );
        // A `serde_json::Value` of such bodies is 6-24x their size; the shallow read keeps a
        // few strings, and validating nesting costs serde_json one byte per open bracket.
        assert!(peak < body.len() + 64 * 1024, "{name}: {peak} bytes");
    }
}
