//! The upstream: the hyper client as a tower `Service`, and the concurrency limit in front of
//! it that protects a fragile upstream from more exchanges than it can serve.
//!
//! Flow: [`Client`] takes a place among `upstream.max_connections` from the [`Limiter`] (or
//! waits in its FIFO queue, or sheds the request with [`Shed`]), then sends the request within
//! `upstream.timeout`. The place is held by the response body until it ends, so a slow download
//! still counts as load on the upstream.
//!
//! | file | owns |
//! | --- | --- |
//! | `client.rs` | [`Client`]: the per-worker pool, [`RequestBody`], [`UpstreamBody`], [`UpstreamError`] |
//! | `limit.rs` | [`Limiter`] (shared by every worker), the [`Permit`] a response holds, [`Shed`] |
//! | `gradient.rs` | the adaptive limit (`upstream.adaptive`): a gradient on the upstream's latency |

mod client;
mod gradient;
mod limit;

pub use client::{Client, RequestBody, ResponseFuture, UpstreamBody, UpstreamError};
pub use limit::{Limiter, Permit, Shed, UpgradePermit};
