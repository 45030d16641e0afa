//! Load harness of the soak and memory tests: a scriptable raw-socket origin, the integrity soak
//! client, and the built `candor` binary as a child process.
//!
//! | file | owns |
//! | --- | --- |
//! | `spec.rs` | what one exchange is (kind, size, framing, fault) and what the client must see |
//! | `body.rs` | the origin's bodies, each carrying its exchange id, and their SHA-256 |
//! | `origin.rs` | the origin: answers as the path says, injects faults, refuses connections |
//! | `client.rs` | the soak client: keep-alive connections, deadlines, one verdict per exchange |
//! | `process.rs` | `candor run` as a child: addresses, log, RSS and descriptors from /proc |
//! | `rng.rs` | the seeded generator every draw comes from |
#![allow(dead_code)]

pub mod body;
pub mod client;
pub mod origin;
pub mod process;
pub mod rng;
pub mod spec;
