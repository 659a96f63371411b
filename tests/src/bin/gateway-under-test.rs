//! The gateway's whole command line, built inside the test package so integration tests find it
//! through `CARGO_BIN_EXE_gateway-under-test`.

// TEMPORARY stub until `gateway::cli::main_entry` lands; then this is just
// `fn main() -> std::process::ExitCode { gateway::cli::main_entry() }`.
fn main() -> std::process::ExitCode {
    eprintln!("gateway::cli::main_entry does not exist yet");
    std::process::ExitCode::FAILURE
}
