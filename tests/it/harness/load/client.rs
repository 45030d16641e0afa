//! The integrity soak client: keep-alive connections to candor,
//! each sending exchanges drawn from `(seed, id)`, every body checked against `X-Body-SHA256`
//! and the digest the client computes itself, a deadline on every exchange, and one verdict per
//! exchange from [`classify`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::body::{hex, template};
use super::origin::Origin;
use super::spec::{Exchange, Expect, Fault, FaultMix, Kind, L};

/// What one soak run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every exchange is drawn from `(seed, id)`.
    pub seed: u64,
    /// Exchanges `0..requests`.
    pub requests: u64,
    /// Keep-alive connections to candor, each sending one exchange after another.
    pub connections: usize,
    /// How often the origin misbehaves.
    pub faults: FaultMix,
    /// Refusals to aim at, per 10,000 exchanges (0: the gate stays open).
    pub refusals: u32,
    /// The most an exchange may take, request to last body byte.
    pub deadline: Duration,
    /// Only these exchanges (a replay), instead of `0..requests`.
    pub ids: Option<Vec<u64>>,
    /// Close each connection after this many exchanges and open a new one (default: keep it
    /// as long as candor does).
    pub reconnect_every: Option<u64>,
}

/// What the client saw of one exchange.
#[derive(Debug)]
pub enum Observed {
    /// The deadline passed.
    Timeout,
    /// No response head: connect failed, or the connection failed before a head arrived.
    NoHead(String),
    /// A response head, and the body as far as it went.
    Response(Received),
}

/// A response as the client received it.
#[derive(Debug)]
pub struct Received {
    pub status: StatusCode,
    /// `X-Soak-Id`: the exchange the origin answered.
    pub soak_id: Option<u64>,
    /// `X-Body-SHA256`.
    pub sha_header: Option<String>,
    pub content_type: String,
    /// A `Retry-After` is present.
    pub retry_after: bool,
    /// `Proxy-Status`: present on the answers candor made itself.
    pub proxy_status: Option<String>,
    /// Body bytes received, and their SHA-256.
    pub body_len: usize,
    pub body_sha: String,
    /// The body failed before its end (the connection was closed or reset mid-body).
    pub body_error: Option<String>,
    /// The body itself, when it is a problem document (small).
    pub problem: Option<Bytes>,
}

/// The verdict on one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A clean exchange answered as expected.
    Ok,
    /// A clean exchange answered 502 by candor because the origin refused the connection; the
    /// request never reached the origin.
    Refused,
    /// A faulty exchange the client saw fail: 502/504, no head, or a body cut short and closed.
    Visible,
    /// A faulty exchange whose answer never depended on the failed body (an HTML 404 over `L`
    /// becomes a problem document from its head alone).
    Absorbed,
    // Failures:
    ChecksumMismatch,
    SilentTruncation,
    UnexpectedStatus,
    /// `X-Soak-Id` names another exchange.
    WrongResponse,
    Hang,
    /// A clean exchange failed at the transport level.
    TransportError,
}

impl Verdict {
    const ALL: [Verdict; 10] = [
        Verdict::Ok,
        Verdict::Refused,
        Verdict::Visible,
        Verdict::Absorbed,
        Verdict::ChecksumMismatch,
        Verdict::SilentTruncation,
        Verdict::UnexpectedStatus,
        Verdict::WrongResponse,
        Verdict::Hang,
        Verdict::TransportError,
    ];

    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Verdict::Ok | Verdict::Refused | Verdict::Visible | Verdict::Absorbed
        )
    }

    fn index(self) -> usize {
        Verdict::ALL
            .iter()
            .position(|v| *v == self)
            .expect("listed")
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Refused => "refused (502, never reached the origin)",
            Verdict::Visible => "faulty, visible",
            Verdict::Absorbed => "faulty, absorbed by a head-only rewrite",
            Verdict::ChecksumMismatch => "checksum mismatch",
            Verdict::SilentTruncation => "silent truncation",
            Verdict::UnexpectedStatus => "unexpected status",
            Verdict::WrongResponse => "wrong response (X-Soak-Id)",
            Verdict::Hang => "hang",
            Verdict::TransportError => "transport error",
        }
    }
}

/// Judges one exchange. `reached_origin` says whether the origin saw the request.
pub fn classify(exchange: &Exchange, observed: &Observed, reached_origin: bool) -> Verdict {
    let faulty = exchange.fault.is_fault();
    let received = match observed {
        Observed::Timeout => return Verdict::Hang,
        Observed::NoHead(_) if faulty => return Verdict::Visible,
        Observed::NoHead(_) => return Verdict::TransportError,
        Observed::Response(received) => received,
    };
    let candor_made = received.proxy_status.is_some();
    if received.body_error.is_some() {
        // Cut short and closed: visible to any HTTP client, and right only for a faulty one.
        return if faulty {
            Verdict::Visible
        } else {
            Verdict::TransportError
        };
    }
    let status = received.status.as_u16();
    if candor_made {
        // A connect that fails: refused outright, or reset while it was in the closing
        // listener's accept queue (which candor reports as `destination_unavailable`), or a
        // connection reset before the request went out.
        let refused = received.proxy_status.as_deref().is_some_and(|p| {
            [
                "connection_refused",
                "destination_unavailable",
                "connection_terminated",
            ]
            .iter()
            .any(|e| p.ends_with(&format!("error={e}")))
        });
        return match (faulty, status) {
            (true, 502 | 504) => Verdict::Visible,
            (false, 502) if refused && !reached_origin => Verdict::Refused,
            _ => Verdict::UnexpectedStatus,
        };
    }
    if received.soak_id != Some(exchange.id) {
        return Verdict::WrongResponse;
    }
    let expect = exchange.kind.expect(exchange.size);
    let truncated_or_bad = |received: &Received| {
        let want = template(exchange.kind, exchange.size).sha256(exchange.id);
        if received.body_len < exchange.size {
            Some(Verdict::SilentTruncation)
        } else if received.body_sha != want || received.sha_header.as_deref() != Some(&want) {
            Some(Verdict::ChecksumMismatch)
        } else {
            None
        }
    };
    match expect {
        Expect::Pass {
            status: want,
            retry_after,
        } => {
            if let Some(bad) = truncated_or_bad(received) {
                return bad;
            }
            if faulty {
                // The whole body arrived although the origin never sent all of it.
                return Verdict::SilentTruncation;
            }
            if status != want || (retry_after && !received.retry_after) {
                return Verdict::UnexpectedStatus;
            }
            Verdict::Ok
        }
        Expect::Problem {
            status: want,
            detail,
        } => {
            let problem_ok = status == want
                && received.content_type == "application/problem+json"
                && received.problem.as_ref().is_some_and(|body| {
                    let doc: serde_json::Value = match serde_json::from_slice(body) {
                        Ok(doc) => doc,
                        Err(_) => return false,
                    };
                    doc["status"] == want
                        && detail.is_none_or(|d| doc["detail"].as_str() == Some(d))
                });
            if !problem_ok {
                if received.sha_header.is_some() && status == exchange.kind.status() {
                    // The origin's body came through where a rewrite was due: if it is short,
                    // that is a truncation, whatever else is wrong.
                    if let Some(bad) = truncated_or_bad(received) {
                        return bad;
                    }
                }
                return Verdict::UnexpectedStatus;
            }
            if !faulty {
                return Verdict::Ok;
            }
            // Only a rewrite decided on the head alone may ignore a failed body.
            let head_only = exchange.kind == Kind::Html404 && exchange.size > L;
            let body_fault = matches!(exchange.fault, Fault::ResetMidBody(_) | Fault::StallBody(_));
            if head_only && body_fault {
                Verdict::Absorbed
            } else {
                Verdict::SilentTruncation
            }
        }
    }
}

/// Counts per verdict and per fault family, shared by the connections.
#[derive(Default)]
pub struct Tally {
    verdicts: [AtomicU64; 10],
    /// Faulty exchanges per family: [reset, stall-head, stall-body].
    faults: [AtomicU64; 3],
    pub completed: AtomicU64,
    pub body_bytes: AtomicU64,
    failures: Mutex<Vec<String>>,
    latencies: Mutex<Vec<u32>>,
    /// `Proxy-Status` of candor's own answers, by value.
    proxy_statuses: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Tally {
    pub fn count(&self, verdict: Verdict) -> u64 {
        self.verdicts[verdict.index()].load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        Verdict::ALL
            .iter()
            .filter(|v| v.is_failure())
            .map(|v| self.count(*v))
            .sum()
    }

    pub fn faulty(&self, family: &str) -> u64 {
        let i = match family {
            "reset" => 0,
            "stall-head" => 1,
            _ => 2,
        };
        self.faults[i].load(Ordering::Relaxed)
    }

    pub fn first_failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// Latency percentiles in milliseconds: p50, p99, max.
    pub fn latency_ms(&self) -> (f64, f64, f64) {
        let mut all = self.latencies.lock().unwrap().clone();
        if all.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        all.sort_unstable();
        let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        (at(0.5), at(0.99), at(1.0))
    }

    /// `Proxy-Status` values candor answered with, and how often.
    pub fn proxy_statuses(&self) -> String {
        let map = self.proxy_statuses.lock().unwrap();
        map.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line per verdict that occurred.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for verdict in Verdict::ALL {
            let n = self.count(verdict);
            if n > 0 || verdict.is_failure() {
                let _ = writeln!(out, "  {:<44}{n:>9}", verdict.name());
            }
        }
        out
    }
}

/// A keep-alive client connection to candor.
struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(addr: SocketAddr) -> Result<Connection, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Connection { sender, task })
}

/// Sends one exchange on `conn` (reconnecting first when needed) and reads all of the answer.
async fn exchange_once(
    addr: SocketAddr,
    conn: &mut Option<Connection>,
    exchange: &Exchange,
) -> Observed {
    if conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
        *conn = None;
        match connect(addr).await {
            Ok(c) => *conn = Some(c),
            Err(e) => return Observed::NoHead(e),
        }
    }
    let c = conn.as_mut().expect("connected above");
    if let Err(e) = c.sender.ready().await {
        // Closed by candor between two exchanges (after a `Connection: close`): nothing was
        // sent, so a new connection may carry this exchange.
        *conn = None;
        match connect(addr).await {
            Ok(fresh) => *conn = Some(fresh),
            Err(e2) => return Observed::NoHead(format!("{e}; then {e2}")),
        }
    }
    let c = conn.as_mut().expect("connected above");
    let request = Request::get(exchange.path())
        .header("host", "soak.example")
        .header("accept", exchange.kind.accept())
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let response = match c.sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => {
            *conn = None;
            return Observed::NoHead(format!("send: {e}"));
        }
    };
    let (parts, mut body) = response.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let keep = content_type == "application/problem+json";
    let mut hasher = Sha256::new();
    let mut body_len = 0usize;
    let mut kept = Vec::new();
    let mut body_error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    hasher.update(data);
                    body_len += data.len();
                    if keep && kept.len() < 64 * 1024 {
                        kept.extend_from_slice(data);
                    }
                }
            }
            Err(e) => {
                body_error = Some(e.to_string());
                *conn = None;
                break;
            }
        }
    }
    Observed::Response(Received {
        status: parts.status,
        soak_id: header("x-soak-id").and_then(|v| v.parse().ok()),
        sha_header: header("x-body-sha256"),
        content_type,
        retry_after: parts.headers.contains_key("retry-after"),
        proxy_status: header("proxy-status"),
        body_len,
        body_sha: hex(&hasher.finalize()),
        body_error,
        problem: keep.then(|| Bytes::from(kept)),
    })
}

fn describe(exchange: &Exchange, observed: &Observed, verdict: Verdict) -> String {
    let seen = match observed {
        Observed::Timeout => "no answer within the deadline".to_string(),
        Observed::NoHead(e) => format!("no head: {e}"),
        Observed::Response(r) => format!(
            "{} {} B (want {} B), id {:?}, type {:?}, proxy-status {:?}, body error {:?}",
            r.status.as_u16(),
            r.body_len,
            exchange.size,
            r.soak_id,
            r.content_type,
            r.proxy_status,
            r.body_error
        ),
    };
    format!("{}: {exchange} -> {seen}", verdict.name())
}

/// Runs `plan` against candor at `addr` in front of `origin`.
pub async fn run(addr: SocketAddr, origin: Arc<Origin>, plan: Plan) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let refuser = (plan.refusals > 0).then(|| {
        tokio::spawn(refuse_now_and_then(
            origin.clone(),
            tally.clone(),
            plan.refusals,
        ))
    });
    let total = plan
        .ids
        .as_ref()
        .map_or(plan.requests, |ids| ids.len() as u64);
    let progress = tokio::spawn(report_progress(tally.clone(), total));
    let mut workers = Vec::new();
    for _ in 0..plan.connections {
        let (tally, next, origin, plan) =
            (tally.clone(), next.clone(), origin.clone(), plan.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = None;
            let mut latencies = Vec::new();
            let mut on_this_connection = 0;
            loop {
                on_this_connection += 1;
                if plan.reconnect_every.is_some_and(|n| on_this_connection > n) {
                    conn = None;
                    on_this_connection = 1;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let id = match &plan.ids {
                    Some(ids) => match ids.get(i as usize) {
                        Some(id) => *id,
                        None => break,
                    },
                    None if i < plan.requests => i,
                    None => break,
                };
                let exchange = Exchange::draw(plan.seed, id, plan.faults);
                let started = Instant::now();
                let observed =
                    tokio::time::timeout(plan.deadline, exchange_once(addr, &mut conn, &exchange))
                        .await
                        .unwrap_or(Observed::Timeout);
                latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if matches!(observed, Observed::Timeout) {
                    conn = None;
                }
                let verdict = classify(&exchange, &observed, origin.saw(id));
                tally.verdicts[verdict.index()].fetch_add(1, Ordering::Relaxed);
                if let Observed::Response(r) = &observed {
                    tally
                        .body_bytes
                        .fetch_add(r.body_len as u64, Ordering::Relaxed);
                    if let Some(ps) = &r.proxy_status {
                        let key = format!("{} {ps}", r.status.as_u16());
                        *tally.proxy_statuses.lock().unwrap().entry(key).or_default() += 1;
                    }
                }
                match exchange.fault.family() {
                    "reset" => tally.faults[0].fetch_add(1, Ordering::Relaxed),
                    "stall-head" => tally.faults[1].fetch_add(1, Ordering::Relaxed),
                    "stall-body" => tally.faults[2].fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                if verdict.is_failure() {
                    let mut failures = tally.failures.lock().unwrap();
                    if failures.len() < 25 {
                        failures.push(describe(&exchange, &observed, verdict));
                    }
                }
                tally.completed.fetch_add(1, Ordering::Relaxed);
            }
            tally.latencies.lock().unwrap().extend(latencies);
        }));
    }
    for worker in workers {
        worker.await.expect("a soak connection task panicked");
    }
    progress.abort();
    if let Some(refuser) = refuser {
        refuser.abort();
        origin.refuse(false);
    }
    tally
}

/// Closes the origin's listening socket for a few milliseconds whenever fewer than
/// `per_10k` exchanges in 10,000 have been refused so far.
async fn refuse_now_and_then(origin: Arc<Origin>, tally: Arc<Tally>, per_10k: u32) {
    loop {
        tokio::time::sleep(Duration::from_millis(4)).await;
        let completed = tally.completed.load(Ordering::Relaxed);
        let refused = tally.count(Verdict::Refused);
        if refused * 10_000 < completed * u64::from(per_10k) {
            origin.refuse(true);
            tokio::time::sleep(Duration::from_millis(3)).await;
            origin.refuse(false);
        }
    }
}

async fn report_progress(tally: Arc<Tally>, total: u64) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let done = tally.completed.load(Ordering::Relaxed);
        eprintln!(
            "  … {done}/{total} exchanges in {:.0?} ({:.0}/s), {} failures",
            started.elapsed(),
            done as f64 / started.elapsed().as_secs_f64(),
            tally.failures()
        );
    }
}
