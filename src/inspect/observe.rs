//! Audit's view of the exchanges the layer samples: what it keeps of one until it is recorded,
//! and the observer that watches a streaming body go by.
//!
//! Nothing here changes or holds back a response. A streaming body is watched frame by frame:
//! each data frame is forwarded as it came, and a clone of its `Bytes` (a reference count, not a
//! copy) is kept, up to `inspect.max_body_bytes`. When the body ends, passes the limit, fails or
//! is dropped, what was kept is handed to [`Pending::record`], on a task of its own when a
//! runtime is there, so the detectors never run between two frames of a response.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Uri};
use tokio::sync::OwnedSemaphorePermit;

use super::decode;
use crate::audit::{self, Audit, Exchange, Heads, RequestSigns};
use crate::builtin::scrub::Scrubber;
use crate::metrics::Metrics;

/// What every observed exchange of one layer shares.
#[derive(Debug)]
pub(crate) struct Auditing {
    /// The process's audit.
    pub(crate) audit: Arc<Audit>,
    /// Redacts examples and finds leaked internals: the config's scrubber, or the defaults.
    pub(crate) scrubber: Arc<Scrubber>,
    /// Where findings and skips are counted.
    pub(crate) metrics: Metrics,
    /// `inspect.max_body_bytes`: the most body bytes kept of one exchange.
    pub(crate) limit: usize,
}

impl Auditing {
    /// A sampled exchange that could not be observed: no inspection place was free.
    pub(crate) fn skip(&self) {
        self.audit.skip();
        self.metrics.audit_skipped();
    }
}

/// How much of the upstream's body audit saw, owned.
#[derive(Debug, Clone)]
pub(crate) enum Seen {
    /// None of it.
    Unseen,
    /// All of it, decoded.
    Complete(Bytes),
    /// Its first bytes, as sent (never encoded ones: a prefix cannot be decoded reliably).
    Prefix(Bytes),
}

impl Seen {
    /// What the raw bytes `raw` of a body with `headers` show: decoded when `complete`, a prefix
    /// when the body went on (or would not decode) and is not encoded, nothing otherwise.
    pub(crate) fn of(headers: &Heads, raw: Bytes, complete: bool, limit: usize) -> Seen {
        if complete {
            let encoding = headers.content_encoding.as_ref();
            if let (Some(decoded), _) = decode::for_inspection_as(encoding, &raw, limit) {
                return Seen::Complete(decoded);
            }
        }
        Seen::prefix(headers, raw)
    }

    /// `raw` as a prefix, or unseen when the body is encoded.
    pub(crate) fn prefix(headers: &Heads, raw: Bytes) -> Seen {
        if headers.content_encoding.is_some() {
            Seen::Unseen
        } else {
            Seen::Prefix(raw)
        }
    }

    fn body(&self) -> audit::Body<'_> {
        match self {
            Seen::Unseen => audit::Body::Unseen,
            Seen::Complete(bytes) => audit::Body::Complete(bytes),
            Seen::Prefix(bytes) => audit::Body::Prefix(bytes),
        }
    }
}

/// What candor sent in place of the upstream's response, when it changed it.
#[derive(Debug)]
pub(crate) struct Sent {
    /// The status sent.
    pub(crate) status: StatusCode,
    /// The headers sent, those audit reads.
    pub(crate) headers: Heads,
    /// The body sent: `None` for the upstream's own, unchanged.
    pub(crate) body: Option<Bytes>,
}

/// One exchange audit observes, owned until it is recorded.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) auditing: Arc<Auditing>,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) signs: Box<RequestSigns>,
    /// The upstream's status and the headers audit reads, as they came.
    pub(crate) status: StatusCode,
    pub(crate) headers: Heads,
    pub(crate) sent: Option<Sent>,
    /// A place among the bodies being inspected, given back once recorded.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

impl Pending {
    /// Runs the detectors over the exchange, with `seen` of the upstream's body, and counts
    /// what they found.
    pub(crate) fn record(self: Box<Self>, seen: &Seen) {
        let upstream_body = seen.body();
        let sent = self.sent.as_ref().map(|sent| audit::Response {
            status: sent.status,
            headers: &sent.headers,
            body: match &sent.body {
                None => upstream_body,
                Some(bytes) => audit::Body::Complete(bytes),
            },
        });
        let exchange = Exchange {
            method: &self.method,
            path: self.uri.path(),
            request: &self.signs,
            upstream: audit::Response {
                status: self.status,
                headers: &self.headers,
                body: upstream_body,
            },
            sent,
            at: SystemTime::now(),
        };
        let auditing = &self.auditing;
        for kind in auditing.audit.record(&exchange, &auditing.scrubber).iter() {
            auditing.metrics.audit_finding(kind);
        }
        drop(self.permit);
    }

    /// Records the exchange off the caller's path: on a task of its own when there is a
    /// runtime, at once otherwise.
    pub(crate) fn submit(self: Box<Self>, seen: Seen) {
        self.submit_with(move |_| seen);
    }

    /// [`Pending::submit`] with the body's first frames, at most `auditing.limit` bytes of them:
    /// all of it when `complete` (decoded on that task: decoding is work too), a prefix otherwise.
    pub(crate) fn submit_frames(self: Box<Self>, frames: Kept, complete: bool) {
        let limit = self.auditing.limit;
        self.submit_with(move |pending| {
            let raw = concat(frames, limit);
            if complete {
                Seen::of(&pending.headers, raw, true, limit)
            } else {
                Seen::prefix(&pending.headers, raw)
            }
        });
    }

    /// [`Pending::submit`], with what was seen made by `seen` on that task.
    fn submit_with(self: Box<Self>, seen: impl FnOnce(&Pending) -> Seen + Send + 'static) {
        let run = move || {
            let seen = seen(&self);
            self.record(&seen);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { run() });
            }
            Err(_) => run(),
        }
    }
}

/// Watches a streaming body: keeps its frames up to the limit, and records the exchange once.
#[derive(Debug)]
pub(crate) struct Observer {
    /// `None` once recorded.
    pending: Option<Box<Pending>>,
    kept: Kept,
    /// Bytes in `kept`.
    len: usize,
    limit: usize,
}

impl Observer {
    /// An observer recording `pending` with at most `limit` body bytes.
    pub(crate) fn new(pending: Box<Pending>, limit: usize) -> Observer {
        Observer {
            pending: Some(pending),
            kept: Kept::default(),
            len: 0,
            limit,
        }
    }

    /// A data frame went by.
    pub(crate) fn data(&mut self, data: &Bytes) {
        if self.pending.is_none() || data.is_empty() {
            return;
        }
        let room = self.limit.saturating_sub(self.len);
        if data.len() > room {
            // Past the limit: what was kept is a prefix, recorded now so its memory and place
            // are given back while the rest streams on.
            if room > 0 {
                self.kept.push(data.slice(..room));
                self.len += room;
            }
            self.finish(false);
        } else {
            self.kept.push(data.clone());
            self.len += data.len();
        }
    }

    /// The body ended: what was kept is all of it.
    pub(crate) fn end(&mut self) {
        self.finish(true);
    }

    fn finish(&mut self, complete: bool) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        pending.submit_frames(std::mem::take(&mut self.kept), complete);
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        // Dropped before its end (the client left, the body failed): a prefix.
        self.finish(false);
    }
}

/// The frames of a body kept for audit, in order: the first one inline, as most bodies audit
/// sees are one frame (no list allocated for them).
#[derive(Debug, Default)]
pub(crate) struct Kept {
    first: Option<Bytes>,
    rest: Vec<Bytes>,
}

impl Kept {
    fn push(&mut self, frame: Bytes) {
        if self.first.is_none() {
            self.first = Some(frame);
        } else {
            self.rest.push(frame);
        }
    }
}

impl FromIterator<Bytes> for Kept {
    fn from_iter<I: IntoIterator<Item = Bytes>>(frames: I) -> Kept {
        let mut kept = Kept::default();
        for frame in frames {
            kept.push(frame);
        }
        kept
    }
}

/// The first `limit` bytes of the frames as one `Bytes`: a slice of the first frame when it
/// holds them (no copy), a copy otherwise.
fn concat(frames: Kept, limit: usize) -> Bytes {
    let Some(first) = frames.first else {
        return Bytes::new();
    };
    let len = (first.len() + frames.rest.iter().map(Bytes::len).sum::<usize>()).min(limit);
    let frames = frames.rest.into_iter();
    if first.len() >= len {
        return first.slice(..len);
    }
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(&first);
    for frame in frames {
        let room = len - out.len();
        out.extend_from_slice(&frame[..frame.len().min(room)]);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    const LIE: &[u8] = br#"{"status":"error","message":"user not found"}"#;

    fn auditing(limit: usize) -> Arc<Auditing> {
        let settings = audit::Settings {
            enabled: true,
            ..audit::Settings::default()
        };
        Arc::new(Auditing {
            audit: Arc::new(Audit::new(&settings)),
            scrubber: Arc::new(Scrubber::new(&[]).unwrap()),
            metrics: Metrics::register(&mut Registry::default()),
            limit,
        })
    }

    fn pending(
        auditing: &Arc<Auditing>,
        headers: Heads,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Box<Pending> {
        Box::new(Pending {
            auditing: auditing.clone(),
            method: Method::GET,
            uri: Uri::from_static("/users/7"),
            signs: Box::default(),
            status: StatusCode::OK,
            headers,
            sent: None,
            permit,
        })
    }

    fn json() -> Heads {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        Heads::of(&headers)
    }

    /// (exchanges, kinds found, whether the example was the whole body).
    fn recorded(auditing: &Auditing) -> (u64, Vec<&'static str>, Vec<bool>) {
        let report = auditing.audit.report();
        let findings = report.routes.iter().flat_map(|r| &r.findings);
        (
            report.exchanges,
            findings.clone().map(|f| f.kind.as_str()).collect(),
            findings.map(|f| f.example.complete).collect(),
        )
    }

    #[test]
    fn a_body_in_several_frames_is_read_whole_and_its_place_given_back() {
        // No runtime here: the record runs at once.
        let auditing = auditing(1024);
        let places = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = places.clone().try_acquire_owned().ok();
        let mut observer = Observer::new(pending(&auditing, json(), permit), auditing.limit);
        for part in LIE.chunks(7) {
            observer.data(&Bytes::copy_from_slice(part));
        }
        assert_eq!(places.available_permits(), 0, "held while the body streams");
        observer.end();
        assert_eq!(places.available_permits(), 1);
        observer.end();
        drop(observer);
        assert_eq!(
            recorded(&auditing),
            (1, vec!["error_in_success"], vec![true])
        );
        assert_eq!(
            auditing.metrics.audit_findings_by_kind()[0],
            ("error_in_success", 1)
        );
    }

    #[test]
    fn a_body_past_the_limit_is_recorded_once_as_its_prefix() {
        let auditing = auditing(16);
        let mut observer = Observer::new(pending(&auditing, json(), None), auditing.limit);
        observer.data(&Bytes::from_static(&LIE[..10]));
        observer.data(&Bytes::from_static(&LIE[10..]));
        // Recorded as the limit was passed: a prefix is no JSON to read.
        assert_eq!(recorded(&auditing), (1, vec![], vec![]));
        observer.data(&Bytes::from_static(b"more"));
        observer.end();
        drop(observer);
        assert_eq!(recorded(&auditing).0, 1);
    }

    #[test]
    fn a_body_dropped_early_is_a_prefix_and_an_encoded_one_unseen() {
        let mut encoded = json();
        encoded.content_encoding = Some("gzip".parse().unwrap());
        assert!(matches!(
            Seen::prefix(&encoded, Bytes::from_static(b"\x1f\x8b")),
            Seen::Unseen
        ));
        assert!(matches!(
            Seen::of(&encoded, Bytes::from_static(b"not gzip"), true, 64),
            Seen::Unseen
        ));
        assert!(matches!(
            Seen::of(&json(), Bytes::from_static(LIE), true, 64),
            Seen::Complete(_)
        ));
        let auditing = auditing(1024);
        let mut observer = Observer::new(pending(&auditing, json(), None), auditing.limit);
        observer.data(&Bytes::from_static(LIE));
        drop(observer);
        // Every byte arrived, but the end did not: not known whole.
        assert_eq!(recorded(&auditing), (1, vec![], vec![]));
    }

    #[test]
    fn concat_copies_only_when_it_must_and_stops_at_the_limit() {
        let one = Bytes::from_static(b"abcdef");
        let got = concat([one.clone()].into_iter().collect(), 4);
        assert_eq!(got, "abcd");
        assert_eq!(got.as_ptr(), one.as_ptr(), "a slice, not a copy");
        let parts = vec![
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cd"),
            "ef".into(),
        ];
        assert_eq!(concat(parts.iter().cloned().collect(), 5), "abcde");
        assert_eq!(concat(parts.into_iter().collect(), 100), "abcdef");
        assert_eq!(concat(Kept::default(), 10), "");
    }
}
