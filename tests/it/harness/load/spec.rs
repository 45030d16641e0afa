//! What one soak exchange is: the kind of response the origin sends, its size and framing, the
//! fault it injects, and what the client must then see through candor.
//!
//! The client draws every exchange from `(seed, id)`, so any exchange the oracle rejects can be
//! replayed from its id alone, and writes it into the request path; the origin obeys the path and
//! keeps no other state about it (Pingora's mock origin is driven the same way).

use std::fmt;

use super::super::rng::Rng;

/// The inspection limit of `config/candor.toml` (and candor's default).
pub const L: usize = 262_144;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The body sizes the soak draws, and their weights per 10,000 requests. The sizes at or above
/// `L` add up to 80 (0.8 %), under the 1 % the issue allows; `L - 1`, the largest inspected body,
/// is 2 %.
pub const SIZES: [(usize, u32); 10] = [
    (0, 700),
    (1, 700),
    (100, 2_400),
    (4 * KIB, 3_700),
    (64 * KIB, 2_220),
    (L - 1, 200),
    (L, 20),
    (L + 1, 20),
    (MIB, 20),
    (8 * MIB, 20),
];

/// The kind of response the origin sends, and so what candor's example config does to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 200 `application/json` `{"status":"ok",…}`: inspected up to `L`, no rule matches.
    Json,
    /// 200 `application/octet-stream`: never inspected.
    Binary,
    /// 200 `text/plain`: inspected up to `L`, no rule matches.
    Text,
    /// 200 `{"status":"error","code":1042,…}`: rule `user-not-found` makes it a 404 problem
    /// when the body is inspected (at most `L`), else it passes as it is.
    ErrorJson,
    /// 404 `text/html` to an API client: the `html-errors` built-in makes it a 404 problem at
    /// any size (beyond `L` it decides on the head alone).
    Html404,
    /// The same page to a browser (`Accept: text/html`): passes untouched.
    Html404Browser,
    /// 500 `text/plain` with a Python traceback: `scrub` replaces it when inspected (at most
    /// `L`), else it passes.
    Trace500,
    /// 503 `application/json` without `Retry-After`: the body passes, the `retry-after`
    /// built-in adds the header.
    Busy503,
}

/// The kinds and their weights per 100.
pub const KINDS: [(Kind, u32); 8] = [
    (Kind::Json, 40),
    (Kind::Binary, 20),
    (Kind::Text, 10),
    (Kind::ErrorJson, 10),
    (Kind::Html404, 7),
    (Kind::Html404Browser, 3),
    (Kind::Trace500, 5),
    (Kind::Busy503, 5),
];

impl Kind {
    fn token(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Binary => "bin",
            Kind::Text => "text",
            Kind::ErrorJson => "errjson",
            Kind::Html404 => "html404",
            Kind::Html404Browser => "html404b",
            Kind::Trace500 => "trace500",
            Kind::Busy503 => "busy503",
        }
    }

    fn parse(token: &str) -> Option<Kind> {
        KINDS.iter().map(|(k, _)| *k).find(|k| k.token() == token)
    }

    /// The status the origin sends.
    pub fn status(self) -> u16 {
        match self {
            Kind::Json | Kind::Binary | Kind::Text | Kind::ErrorJson => 200,
            Kind::Html404 | Kind::Html404Browser => 404,
            Kind::Trace500 => 500,
            Kind::Busy503 => 503,
        }
    }

    /// The `Content-Type` the origin sends.
    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Json | Kind::ErrorJson | Kind::Busy503 => "application/json",
            Kind::Binary => "application/octet-stream",
            Kind::Text | Kind::Trace500 => "text/plain; charset=utf-8",
            Kind::Html404 | Kind::Html404Browser => "text/html; charset=utf-8",
        }
    }

    /// The `Accept` the client sends.
    pub fn accept(self) -> &'static str {
        match self {
            Kind::Html404Browser => "text/html,application/xhtml+xml,*/*;q=0.8",
            _ => "application/json",
        }
    }

    /// The smallest body this kind can be; smaller sizes drawn for it become 100 bytes.
    fn min_size(self) -> usize {
        match self {
            Kind::Json | Kind::Binary | Kind::Text | Kind::Busy503 => 0,
            Kind::ErrorJson | Kind::Html404 | Kind::Html404Browser | Kind::Trace500 => 100,
        }
    }

    /// What the client must receive for a body of `size` bytes when nothing goes wrong.
    pub fn expect(self, size: usize) -> Expect {
        let inspected = size <= L;
        match self {
            Kind::Json | Kind::Binary | Kind::Text => Expect::Pass {
                status: 200,
                retry_after: false,
            },
            Kind::Html404Browser => Expect::Pass {
                status: 404,
                retry_after: false,
            },
            Kind::Busy503 => Expect::Pass {
                status: 503,
                retry_after: true,
            },
            Kind::ErrorJson if inspected => Expect::Problem {
                status: 404,
                detail: Some("no such user"),
            },
            Kind::ErrorJson => Expect::Pass {
                status: 200,
                retry_after: false,
            },
            Kind::Html404 => Expect::Problem {
                status: 404,
                detail: None,
            },
            Kind::Trace500 if inspected => Expect::Problem {
                status: 500,
                detail: None,
            },
            Kind::Trace500 => Expect::Pass {
                status: 500,
                retry_after: false,
            },
        }
    }
}

/// What the client must receive for an exchange without faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The origin's status and body, byte for byte (`X-Body-SHA256` holds); with
    /// `retry_after`, a `Retry-After` candor added.
    Pass { status: u16, retry_after: bool },
    /// A problem document candor wrote in place of the body, with this status and detail.
    Problem {
        status: u16,
        detail: Option<&'static str>,
    },
}

/// How the origin frames the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`, in chunks of varied sizes.
    Chunked,
    /// Neither: the body ends when the origin closes the connection (RFC 9112 §6.3 item 8).
    Close,
}

/// Framings and their weights per 100.
const FRAMINGS: [(Framing, u32); 3] = [
    (Framing::Length, 46),
    (Framing::Chunked, 46),
    (Framing::Close, 8),
];

impl Framing {
    fn token(self) -> &'static str {
        match self {
            Framing::Length => "cl",
            Framing::Chunked => "chunked",
            Framing::Close => "close",
        }
    }

    fn parse(token: &str) -> Option<Framing> {
        FRAMINGS
            .iter()
            .map(|(f, _)| *f)
            .find(|f| f.token() == token)
    }
}

/// What the origin does wrong in this exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Nothing.
    None,
    /// Reads the request, then resets the connection (RST) without a byte of response.
    ResetBeforeHead,
    /// Sends half the response head, then resets.
    ResetMidHead,
    /// Sends the head and this many body bytes (fewer than the body has), then resets.
    ResetMidBody(usize),
    /// Reads the request and sends nothing, until candor gives up on the connection.
    StallHead,
    /// Sends the head and this many body bytes, then nothing, until candor gives up.
    StallBody(usize),
}

impl Fault {
    /// Whether this exchange is faulty.
    pub fn is_fault(self) -> bool {
        self != Fault::None
    }

    /// The counter this fault is reported under.
    pub fn family(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::ResetBeforeHead | Fault::ResetMidHead | Fault::ResetMidBody(_) => "reset",
            Fault::StallHead => "stall-head",
            Fault::StallBody(_) => "stall-body",
        }
    }

    fn encode(self) -> String {
        match self {
            Fault::None => "none".into(),
            Fault::ResetBeforeHead => "reset-before".into(),
            Fault::ResetMidHead => "reset-head".into(),
            Fault::ResetMidBody(at) => format!("reset-body-{at}"),
            Fault::StallHead => "stall-head".into(),
            Fault::StallBody(at) => format!("stall-body-{at}"),
        }
    }

    fn parse(token: &str) -> Option<Fault> {
        Some(match token {
            "none" => Fault::None,
            "reset-before" => Fault::ResetBeforeHead,
            "reset-head" => Fault::ResetMidHead,
            "stall-head" => Fault::StallHead,
            _ => {
                if let Some(at) = token.strip_prefix("reset-body-") {
                    Fault::ResetMidBody(at.parse().ok()?)
                } else if let Some(at) = token.strip_prefix("stall-body-") {
                    Fault::StallBody(at.parse().ok()?)
                } else {
                    return None;
                }
            }
        })
    }
}

/// How often the origin misbehaves, per 10,000 exchanges.
#[derive(Clone, Copy, Debug)]
pub struct FaultMix {
    /// Resets (before the head, mid-head, mid-body).
    pub resets: u32,
    /// Stalls before the head.
    pub stalls_head: u32,
    /// Stalls mid-body.
    pub stalls_body: u32,
}

impl FaultMix {
    /// No faults: the clean soak.
    pub const NONE: FaultMix = FaultMix {
        resets: 0,
        stalls_head: 0,
        stalls_body: 0,
    };
}

/// One exchange, as the client draws it and the origin reads it from the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub id: u64,
    pub kind: Kind,
    pub size: usize,
    pub framing: Framing,
    pub fault: Fault,
}

fn pick<T: Copy>(rng: &mut Rng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut at = rng.below(u64::from(total)) as u32;
    for (item, weight) in table {
        if at < *weight {
            return *item;
        }
        at -= weight;
    }
    unreachable!("the draw is below the total weight")
}

impl Exchange {
    /// Exchange `id` of the soak seeded with `seed`.
    pub fn draw(seed: u64, id: u64, faults: FaultMix) -> Exchange {
        let mut rng = Rng::new(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let kind = pick(&mut rng, &KINDS);
        let mut size = pick(&mut rng, &SIZES);
        if size < kind.min_size() {
            size = 100;
        }
        let framing = pick(&mut rng, &FRAMINGS);
        let roll = rng.below(10_000) as u32;
        let fault = if roll < faults.resets {
            match rng.below(10) {
                0 => Fault::ResetBeforeHead,
                1 => Fault::ResetMidHead,
                _ if size == 0 => Fault::ResetBeforeHead,
                _ => Fault::ResetMidBody(rng.below(size as u64) as usize),
            }
        } else if roll < faults.resets + faults.stalls_head {
            Fault::StallHead
        } else if roll < faults.resets + faults.stalls_head + faults.stalls_body {
            if size == 0 {
                Fault::StallHead
            } else {
                Fault::StallBody(rng.below(size as u64) as usize)
            }
        } else {
            Fault::None
        };
        Exchange {
            id,
            kind,
            size,
            framing,
            fault,
        }
    }

    /// The request path that tells the origin what to do.
    pub fn path(&self) -> String {
        format!(
            "/soak/{}/{}/{}/{}/{}",
            self.id,
            self.kind.token(),
            self.size,
            self.framing.token(),
            self.fault.encode()
        )
    }

    /// Reads an exchange back from its request path.
    pub fn parse(path: &str) -> Option<Exchange> {
        let mut parts = path.strip_prefix("/soak/")?.split('/');
        let exchange = Exchange {
            id: parts.next()?.parse().ok()?,
            kind: Kind::parse(parts.next()?)?,
            size: parts.next()?.parse().ok()?,
            framing: Framing::parse(parts.next()?)?,
            fault: Fault::parse(parts.next()?)?,
        };
        parts.next().is_none().then_some(exchange)
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {:?} {} B {:?} fault {:?}",
            self.id, self.kind, self.size, self.framing, self.fault
        )
    }
}
