//! Which supernode certificate to trust: `peerline trust` (show, forget, or pin a fingerprint in
//! advance), the first-use notice, and the question asked before a password goes to a supernode
//! whose certificate this very run pinned on first use — the one moment a man in the middle
//! could be pinned in its place and be handed the password.

use std::io::IsTerminal;

use anyhow::Context;
use peerline_client::tls::{TlsSetupError, format_fingerprint, parse_fingerprint};
use peerline_client::{Client, ClientError, Home};

use crate::output::Out;
use crate::sanitize::Escaped;

/// What to do before a password goes over a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordGate {
    /// Send it: the certificate was pinned before this run or given by the user, or nobody is
    /// at a terminal to ask (then the first-use notice on stderr is all there is, as before).
    Send,
    /// Ask the person at the terminal first: the certificate was pinned just now, on first use,
    /// and nobody has compared its fingerprint yet.
    Ask,
}

/// Whether to ask before sending a password: only over a connection whose certificate was
/// `newly_pinned` on first use, and only when someone `interactive` can answer.
pub fn password_gate(newly_pinned: bool, interactive: bool) -> PasswordGate {
    if newly_pinned && interactive { PasswordGate::Ask } else { PasswordGate::Send }
}

/// Whether a person can be asked: stdin and stderr are a terminal, and neither `--json` nor
/// `--password-stdin` says a program is driving the command.
pub fn interactive(json: bool, password_stdin: bool) -> bool {
    is_interactive(
        json,
        password_stdin,
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
    )
}

fn is_interactive(json: bool, password_stdin: bool, terminal: bool) -> bool {
    terminal && !json && !password_stdin
}

/// Whether an answer to a `[y/N]` question is yes: `y` or `yes`, in any case; anything else,
/// an empty line included, is no.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Tells the user that `client`'s supernode was trusted on first use, with its fingerprint to
/// compare (stderr, so also with `--json`).
pub fn note_first_use(out: &Out, client: &Client) {
    if let Some(fp) = &client.newly_pinned {
        out.note(&format!(
            "Trusting supernode {} on first use; its certificate SHA-256 fingerprint is\n  {fp}\n\
             Compare it with the one the supernode printed at start. It is pinned, for every \
             supernode of its network, in {}.",
            Escaped(client.supernode_url()),
            client.home().networks_path().display()
        ));
    }
}

/// Before a password goes over `client`'s connection: if its certificate was pinned on first use
/// in this run and a person is at the terminal, asks them on stderr whether to send it.
///
/// Returns `Some(client)` when there was nothing to ask, and `None` after a yes: the connection is
/// closed while the person reads (the supernode closes a connection that has not logged in
/// within seconds, and comparing a fingerprint takes longer), so the caller connects again — now
/// against the pin just confirmed. After anything but yes, the pin is forgotten again, so that
/// the next run asks again, and the error says nothing was sent. `urls` name the network.
pub fn confirm_before_password(
    client: Client,
    interactive: bool,
    urls: &[String],
) -> anyhow::Result<Option<Client>> {
    let gate = password_gate(client.newly_pinned.is_some(), interactive);
    let (PasswordGate::Ask, Some(fingerprint)) = (gate, client.newly_pinned.clone()) else {
        return Ok(Some(client));
    };
    let home = client.home().clone();
    drop(client);
    eprint!("Send your password to this supernode? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).context("reading the answer from the terminal")?;
    if is_yes(&answer) {
        return Ok(None);
    }
    if let Some(fp) = parse_fingerprint(&fingerprint) {
        home.unpin(urls, fp)?;
    }
    anyhow::bail!(
        "nothing was sent: you did not confirm the supernode's certificate, and it is no longer \
         pinned, so the next run asks again. Get its fingerprint from the supernode's operator \
         and pin it with `peerline trust --fingerprint FINGERPRINT` (or give it to the command \
         with --fingerprint), or answer y once it matches {fingerprint}"
    )
}

/// `peerline trust`: with `fingerprint` (from the command line), pins it for the network of
/// `urls` without connecting, replacing a different pin only after `forget`; with `forget`
/// alone, forgets the pin; else shows it.
pub fn command(
    home: &Home,
    out: &Out,
    urls: &[String],
    forget: bool,
    fingerprint: Option<[u8; 32]>,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let named = urls.join(", ");
    if let Some(fp) = fingerprint {
        if let Some(ca_file) = ca_file {
            let err = TlsSetupError::FingerprintWithCa { ca_file: ca_file.to_path_buf() };
            return Err(ClientError::from(err).into());
        }
        let given = format_fingerprint(&fp);
        match home.pin(urls, fp, forget)? {
            None => out.done(&format!(
                "Pinned {given} for the network of {named}: its supernodes must present this \
                 certificate. Nothing was dialed."
            )),
            Some(old) if old == fp => {
                out.done(&format!("The network of {named} is already pinned to {given}."))
            }
            Some(old) if forget => out.done(&format!(
                "Replaced the pin of the network of {named} ({}) with {given}.",
                format_fingerprint(&old)
            )),
            Some(old) => {
                let err = TlsSetupError::PinConflict {
                    network: named,
                    pinned: format_fingerprint(&old),
                    given,
                    networks_file: home.networks_path(),
                };
                return Err(ClientError::from(err).into());
            }
        }
    } else if forget {
        let removed = home.forget_pin(urls)?;
        out.done(&if removed {
            format!(
                "Forgot the pinned certificate of the network of {named}; the next connection \
                 pins anew."
            )
        } else {
            format!("No certificate was pinned for the network of {named}.")
        });
    } else {
        let network = home.network(urls)?;
        let hosts = network.hosts.hosts().len();
        match network.pin {
            Some(fp) => out.done(&format!(
                "The network of {named} ({hosts} known supernode(s)) is pinned to {}",
                format_fingerprint(&fp)
            )),
            None => out.done(&format!("No certificate pinned for {named} yet.")),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_a_first_use_pin_with_someone_to_answer_is_asked_about() {
        assert_eq!(password_gate(true, true), PasswordGate::Ask);
        assert_eq!(password_gate(true, false), PasswordGate::Send, "no one to ask: the notice");
        assert_eq!(password_gate(false, true), PasswordGate::Send, "pinned before, or given");
        assert_eq!(password_gate(false, false), PasswordGate::Send);
    }

    #[test]
    fn a_terminal_is_interactive_unless_a_program_drives_the_command() {
        assert!(is_interactive(false, false, true));
        assert!(!is_interactive(false, false, false), "no terminal");
        assert!(!is_interactive(true, false, true), "--json");
        assert!(!is_interactive(false, true, true), "--password-stdin");
    }

    #[test]
    fn only_y_or_yes_is_yes() {
        for yes in ["y", "Y", "yes", "YES", " yes \n", "y\r\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yess", "ye", "y y", "sure", "oui"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    fn urls() -> Vec<String> {
        vec!["wss://sn.example:7443".to_owned()]
    }

    #[test]
    fn trust_pins_in_advance_and_keeps_a_different_pin_unless_forgotten_first() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        let out = Out::new(true);
        command(&home, &out, &urls(), false, Some([1; 32]), None).unwrap();
        assert_eq!(home.network(&urls()).unwrap().pin, Some([1; 32]));
        command(&home, &out, &urls(), false, Some([1; 32]), None).unwrap();

        let err = command(&home, &out, &urls(), false, Some([2; 32]), None).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err.downcast_ref::<ClientError>(),
                Some(ClientError::TlsSetup(TlsSetupError::PinConflict { .. }))
            ),
            "{err:?}"
        );
        assert!(text.contains(&format_fingerprint(&[1; 32])), "{text}");
        assert!(text.contains(&format_fingerprint(&[2; 32])), "{text}");
        assert_eq!(home.network(&urls()).unwrap().pin, Some([1; 32]), "kept");

        command(&home, &out, &urls(), true, Some([2; 32]), None).unwrap();
        assert_eq!(home.network(&urls()).unwrap().pin, Some([2; 32]), "replaced after --forget");
    }

    #[test]
    fn trust_with_a_fingerprint_and_a_ca_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        let ca = dir.path().join("ca.pem");
        let err =
            command(&home, &Out::new(true), &urls(), false, Some([1; 32]), Some(&ca)).unwrap_err();
        assert!(
            matches!(
                err.downcast_ref::<ClientError>(),
                Some(ClientError::TlsSetup(TlsSetupError::FingerprintWithCa { .. }))
            ),
            "{err:?}"
        );
        assert_eq!(home.network(&urls()).unwrap().pin, None);
    }
}
