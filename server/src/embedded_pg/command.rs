//! Running the PostgreSQL programs with a time limit, and reporting what they said.

use std::process::Output;
use std::time::Duration;

use super::EmbeddedPgError;

/// Runs `cmd` to completion, capturing its output, and kills it after `timeout`.
///
/// A non-zero exit is not an error here: callers report it in their own terms.
pub(super) async fn output(
    cmd: std::process::Command,
    program: &'static str,
    timeout: Duration,
) -> Result<Output, EmbeddedPgError> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(source)) => Err(EmbeddedPgError::Io {
            action: "run",
            path: cmd.as_std().get_program().into(),
            source,
        }),
        Err(_) => Err(EmbeddedPgError::CommandTimedOut {
            program,
            seconds: timeout.as_secs(),
        }),
    }
}

/// The exit status and whatever the program printed, on one or more lines.
pub(super) fn describe(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let printed: Vec<&str> = [stderr.trim(), stdout.trim()]
        .into_iter()
        .filter(|text| !text.is_empty())
        .collect();
    if printed.is_empty() {
        output.status.to_string()
    } else {
        format!("{}: {}", output.status, printed.join("\n"))
    }
}
