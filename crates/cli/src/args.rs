//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Peerline: find people, see who is online, send messages, call your contacts.
///
/// The password is read from $PEERLINE_PASSWORD, from the first line of standard input with
/// --password-stdin, or from a prompt; never from the command line.
#[derive(Debug, Parser)]
#[command(name = "peerline", version)]
pub struct Args {
    /// Supernode URL. Several (repeat the option, or separate them with commas) are supernodes
    /// of one network, tried in this order; the network's other supernodes, learned at login,
    /// come after them.
    #[arg(
        long,
        global = true,
        env = "PEERLINE_SUPERNODE",
        value_delimiter = ',',
        default_value = "wss://127.0.0.1:7443"
    )]
    pub supernode: Vec<String>,
    /// Directory for this client's device key, pinned certificates and session
    /// [default: the user's data dir, e.g. ~/.local/share/peerline].
    #[arg(long, global = true, env = "PEERLINE_HOME")]
    pub home: Option<PathBuf>,
    /// Print one JSON document per command (JSON lines for `online`).
    #[arg(long, global = true)]
    pub json: bool,
    /// Verify the supernode against this CA certificate (PEM) instead of pinning it on first use.
    #[arg(long, global = true, env = "PEERLINE_CA")]
    pub ca: Option<PathBuf>,
    /// Connect only to a supernode presenting the certificate with this SHA-256 fingerprint,
    /// as its operator gave it (AB:CD:…, lowercase or without colons too), instead of trusting
    /// the first one seen; a network without a pin is pinned to it. Not with --ca. With
    /// `trust`, pins it without connecting.
    #[arg(long, global = true, env = "PEERLINE_FINGERPRINT", value_name = "SHA256",
          value_parser = fingerprint)]
    pub fingerprint: Option<[u8; 32]>,
    /// Whether `--fingerprint` was typed on the command line (not taken from the environment):
    /// only then does `trust` pin it. Set by `main` from clap's matches.
    #[arg(skip)]
    pub fingerprint_typed: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account and log this device in.
    Register {
        /// 3-32 characters of a-z 0-9 . _ -
        username: String,
        /// Name shown to others (up to 64 characters) [default: the username].
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// This device's name in `peerline devices` (kept for later logins) [default: the
        /// host name].
        #[arg(long, value_name = "NAME")]
        device_name: Option<String>,
    },
    /// Log this device in (later commands reuse the session, no password needed).
    Login {
        /// Your username.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// This device's name in `peerline devices` (kept for later logins) [default: the
        /// host name].
        #[arg(long, value_name = "NAME")]
        device_name: Option<String>,
    },
    /// Log out and revoke this device's session.
    Logout,
    /// Show who this device is logged in as.
    Whoami,
    /// Change the password ($PEERLINE_PASSWORD and $PEERLINE_NEW_PASSWORD, two lines of stdin,
    /// or prompts).
    Passwd {
        /// Read the old and the new password from the first two lines of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List this account's devices, or remove one.
    Devices {
        /// `remove ID`.
        #[command(subcommand)]
        command: Option<DevicesCommand>,
    },
    /// Search the directory by username prefix or display-name substring (at most 20 results).
    Search {
        /// At least 2 characters.
        query: String,
    },
    /// List contacts, or add, accept, decline, remove or block one.
    Contacts {
        /// Sub-command; none lists contacts.
        #[command(subcommand)]
        command: Option<ContactsCommand>,
    },
    /// Show or set your presence: online, away, busy, invisible (appear offline).
    Status {
        /// The new status.
        status: Option<String>,
    },
    /// Change your display name or whether the directory finds you.
    Profile {
        /// New display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Whether directory search may find you (true/false).
        #[arg(long)]
        discoverable: Option<bool>,
    },
    /// Send an instant message to a contact. `peerline send bob -` reads it from standard
    /// input (several lines, up to end of file).
    Send {
        /// The contact.
        username: String,
        /// The text (words are joined with spaces; at most 4096 bytes), or `-` to read it from
        /// standard input.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Show messages you have not read yet, and mark them read.
    Inbox {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Do not mark them read.
        #[arg(long)]
        peek: bool,
    },
    /// Show the conversation with a contact, oldest first. When older messages are left, it
    /// says how to see them (`--before ID`).
    History {
        /// The contact.
        username: String,
        /// The newest N messages.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only messages older than this message id (the next page back).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
    },
    /// List past calls, newest first, from the supernode (every device sees the same list):
    /// direction, peer, start, duration, how it ended and the path.
    Calls {
        /// Only calls to you that nobody answered.
        #[arg(long)]
        missed: bool,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Only calls older than this record id (the next page back).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
    },
    /// Stay online and print events (messages, presence, contact requests, calls) until Ctrl-C.
    /// Incoming calls ring here: answer on the terminal, or automatically with --auto-answer.
    /// A lost supernode is replaced by another of the network, with the saved session.
    Online {
        /// Set this status first.
        #[arg(long)]
        status: Option<String>,
        /// Exit after this many seconds (for scripts); an ongoing call is hung up then.
        #[arg(long)]
        exit_after: Option<f64>,
        /// Answer incoming calls without asking.
        #[arg(long)]
        auto_answer: bool,
        /// Send this WAV file (any common rate, looped) instead of the microphone.
        #[arg(long)]
        play: Option<PathBuf>,
        /// Record what you hear to this WAV file (48 kHz mono) instead of the speaker.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Answer calls through a TURN relay only, so callers never learn your IP address
        /// (also on with `peerline settings --relay-only true`).
        #[arg(long)]
        relay_only: bool,
    },
    /// Call a contact. Voice goes directly between you (never through the supernode); hang up
    /// with Ctrl-C or --duration. With --json, prints JSON lines with setup timings and the path.
    Call {
        /// The contact.
        username: String,
        /// Send this WAV file (any common rate, looped) instead of the microphone.
        #[arg(long)]
        play: Option<PathBuf>,
        /// Record what you hear to this WAV file (48 kHz mono) instead of the speaker.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Hang up after this many seconds of call.
        #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
        duration: Option<f64>,
        /// Call through a TURN relay only, so the contact never learns your IP address (also on
        /// with `peerline settings --relay-only true`).
        #[arg(long)]
        relay_only: bool,
    },
    /// Show or change this user's settings on this device.
    Settings {
        /// Always relay calls through TURN, so peers never learn your IP address (true/false).
        #[arg(long)]
        relay_only: Option<bool>,
    },
    /// Show the safety numbers of this device with a contact's devices, to compare with them
    /// over another channel: every device a call pinned, and every one the supernode lists
    /// (new ones marked). Pins nothing: a call pins a device's key once the device signed it.
    Verify {
        /// The contact.
        username: String,
        /// Forget the contact's pinned device keys (after they really changed devices).
        #[arg(long)]
        forget: bool,
    },
    /// Run the echo test service: a bot account that accepts every contact request, answers
    /// calls and plays back what it hears two seconds later, then messages the caller the
    /// setup time and path. Registers the account on first run.
    EchoService {
        /// The bot's username.
        #[arg(long, default_value = "echo")]
        username: String,
        /// Seconds between hearing and playing back.
        #[arg(long, default_value_t = 2.0)]
        delay: f64,
        /// Exit after this many seconds (for scripts).
        #[arg(long)]
        exit_after: Option<u64>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `peerline completions bash > ~/.local/share/bash-completion/completions/peerline`;
    /// zsh: save it as `_peerline` in a directory of $fpath; fish: `peerline completions fish >
    /// ~/.config/fish/completions/peerline.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for scripts/man.
    #[command(hide = true)]
    Manpage,
    /// Show the pinned certificate of the supernode's network, or forget it to re-trust a new
    /// one. With --fingerprint, pin that certificate in advance, without connecting (after
    /// --forget, it replaces the old pin; without, a different pin is kept and the command
    /// fails).
    Trust {
        /// Forget the network's pin; the next connection pins whatever its supernode presents
        /// (or, with --fingerprint, that certificate).
        #[arg(long)]
        forget: bool,
    },
}

/// Parses `--fingerprint`: the SHA-256 of a certificate as the supernode prints it (`AB:CD:…`),
/// in lowercase, or as 64 hex digits.
fn fingerprint(text: &str) -> Result<[u8; 32], String> {
    peerline_client::tls::parse_fingerprint(text).ok_or_else(|| {
        "not a SHA-256 fingerprint: expected 32 hex byte pairs separated by colons, as the \
         supernode prints it (AB:CD:…), or 64 hex digits"
            .to_owned()
    })
}

/// Parses `--duration`: a positive, finite number of seconds.
fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(secs),
        _ => Err("must be a positive number of seconds, like 30 or 2.5".to_owned()),
    }
}

/// `devices` sub-commands.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Revoke a device: its session ends and it must log in again with the password.
    Remove {
        /// Device id from `peerline devices`.
        id: i64,
    },
}

/// `contacts` sub-commands.
#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Ask a user to become a contact.
    Add {
        /// The user.
        username: String,
        /// A greeting shown with the request.
        #[arg(long)]
        message: Option<String>,
    },
    /// Accept a pending request.
    Accept {
        /// The requester.
        username: String,
    },
    /// Decline a pending request.
    Decline {
        /// The requester.
        username: String,
    },
    /// Remove a contact, cancel a request, or lift a block.
    Remove {
        /// The user.
        username: String,
    },
    /// Block a user: no more requests or messages from them, and they see you offline.
    Block {
        /// The user.
        username: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Args, Command};

    #[test]
    fn a_call_lasts_a_positive_number_of_seconds() {
        for bad in ["0", "-1", "nan", "inf", "soon"] {
            let flag = format!("--duration={bad}");
            let err = Args::try_parse_from(["peerline", "call", "bob", flag.as_str()]);
            let text = err.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains("positive number of seconds"), "{bad}: {text}");
        }
        let args = Args::try_parse_from(["peerline", "call", "bob", "--duration", "2.5"]);
        assert!(
            matches!(args.map(|a| a.command), Ok(Command::Call { duration: Some(d), .. }) if d == 2.5)
        );
    }
}
