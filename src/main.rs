//! The `candor` binary: everything lives in the library; see `candor::cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    candor::cli::main()
}
