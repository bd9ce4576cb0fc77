//! Errors the CLI itself finds (not the supernode, not the client library), each with the
//! stable `code` its `--json` error document carries, and the usage errors of the command line
//! as a JSON document when `--json` was asked for.

use std::fmt;

/// A failure found by the CLI before or after talking to the supernode.
#[derive(Debug)]
pub struct CliError {
    /// The stable code in `{"error":{"code":...}}` (docs/cli.md lists them).
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl CliError {
    /// A failure with this code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Exits on a command-line error as clap does (status 2, help and version to stdout with
/// status 0), except that with `--json` anywhere before a `--`, a usage error is the usual
/// error document on standard output, `{"error":{"code":"usage","message":...}}`, so that a
/// script reading JSON gets JSON whatever it typed.
pub fn exit_on_usage_error(err: &clap::Error) -> ! {
    use clap::error::ErrorKind;
    let informational = matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    let json = std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json");
    if informational || !json {
        err.exit();
    }
    let text = err.render().to_string();
    let message = text.trim().strip_prefix("error: ").unwrap_or(text.trim());
    let document = serde_json::json!({"error": {"code": "usage", "message": message}});
    println!("{document}");
    std::process::exit(2);
}
