//! Where passwords come from: `PEERLINE_PASSWORD`, standard input, or a prompt — never argv,
//! where other users of the machine could read them.

use std::io::BufRead;

use anyhow::{Context, bail};

fn stdin_lines(n: usize) -> anyhow::Result<Vec<String>> {
    let stdin = std::io::stdin();
    let mut lines = Vec::new();
    for line in stdin.lock().lines().take(n) {
        lines.push(line.context("reading the password from standard input")?);
    }
    if lines.len() < n {
        bail!("expected {n} line(s) on standard input for --password-stdin");
    }
    Ok(lines)
}

fn prompt(label: &str) -> anyhow::Result<String> {
    rpassword::prompt_password(format!("{label}: ")).with_context(|| {
        "cannot prompt for a password (no terminal?); set PEERLINE_PASSWORD or use --password-stdin"
            .to_owned()
    })
}

/// An existing password (login).
pub fn existing_password(from_stdin: bool, label: &str) -> anyhow::Result<String> {
    if from_stdin {
        return stdin_lines(1)?.into_iter().next().context("no password on standard input");
    }
    if let Ok(p) = std::env::var("PEERLINE_PASSWORD") {
        return Ok(p);
    }
    prompt(label)
}

/// A new password, confirmed when typed at a prompt.
pub fn new_password(from_stdin: bool, label: &str) -> anyhow::Result<String> {
    if from_stdin || std::env::var("PEERLINE_PASSWORD").is_ok() {
        return existing_password(from_stdin, label);
    }
    let first = prompt(label)?;
    if prompt("Repeat it")? != first {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// Old and new password for `passwd`.
pub fn change(from_stdin: bool) -> anyhow::Result<(String, String)> {
    if from_stdin {
        let mut lines = stdin_lines(2)?.into_iter();
        let old = lines.next().unwrap_or_default();
        return Ok((old, lines.next().unwrap_or_default()));
    }
    let old = match std::env::var("PEERLINE_PASSWORD") {
        Ok(p) => p,
        Err(_) => prompt("Current password")?,
    };
    let new = match std::env::var("PEERLINE_NEW_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let first = prompt("New password")?;
            if prompt("Repeat it")? != first {
                bail!("the two passwords differ");
            }
            first
        }
    };
    Ok((old, new))
}
