//! The gateway's whole command line, built inside the test package so integration tests find it
//! through `CARGO_BIN_EXE_gateway-under-test`.

fn main() -> std::process::ExitCode {
    gateway::cli::main_entry()
}
