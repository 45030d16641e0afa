//! candor's integration tests, one test crate: each module below is one area's tests (the
//! catalogue rows keep their names, `catalogue_requests::c3_…`), all on one harness
//! ([`harness`]). The tests that count the process's allocations (`tests/memory`) and the soak
//! (`tests/soak.rs`, which CI runs again in an optimised profile) are separate binaries on the
//! same harness.

mod harness;

mod audit_cli;
mod audit_e2e;
mod audit_live;
mod audit_propose;
mod catalogue_inspect;
mod catalogue_load;
mod catalogue_requests;
mod catalogue_upstream;
mod cli;
mod config_load;
mod deploy;
mod failures;
mod fuzz_corpus;
mod hardening;
mod layers;
mod lifecycle;
mod limit;
mod maintenance;
mod meaning;
mod module_graph;
mod passthrough;
mod process_manager;
mod protocol;
mod proxy;
mod reload;
mod rules;
mod serve;
mod status;
mod tls;
