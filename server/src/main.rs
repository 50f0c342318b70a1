//! The `flightdeck` binary. Everything lives in the library so tests can start the real server.

fn main() -> std::process::ExitCode {
    server::cli::main()
}
