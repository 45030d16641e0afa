//! The soak's parts: the built `candor` binary (`super::launcher::CandorProcess`) in front of a
//! fault-injecting raw-socket origin, driven by a client that checks every body.
//!
//! | file | owns |
//! | --- | --- |
//! | `spec.rs` | what one exchange is (kind, size, framing, fault) and what the client must see |
//! | `body.rs` | the origin's bodies, each carrying its exchange id, and their SHA-256 |
//! | `origin.rs` | the origin: answers as the path says, injects faults, refuses connections |
//! | `client.rs` | the soak client: keep-alive connections, deadlines, one verdict per exchange |

pub mod body;
pub mod client;
pub mod origin;
pub mod spec;
