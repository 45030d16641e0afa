//! Response inspection: bounded body collection and decoding, the normaliser's decisions, and
//! the `NormalizeLayer` that applies them.
//!
//! | file | owns |
//! | --- | --- |
//! | `collect.rs` | reading at most N body bytes, and handing them back with the rest |
//! | `decode.rs` | gzip/deflate/br/zstd decoding for inspection, capped |
//! | `normalize.rs` | what the rules and built-ins decide, and applying it to a head |
//! | `layer.rs` | the tower layer |
//! | `observe.rs` | audit's view of a sampled exchange, and of its body as it streams |
//! | `simulate.rs` | the layer over a canned upstream, for `explain` and `test` |
//! | `body.rs` | the normalised response body |

pub mod body;
pub mod collect;
pub mod decode;
pub mod layer;
pub mod normalize;
mod observe;
pub mod simulate;

pub use body::NormalizedBody;
pub use layer::{InspectError, Normalize, NormalizeLayer};
pub use normalize::{Normalizer, Report};
