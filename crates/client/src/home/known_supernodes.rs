//! Pinned supernode certificates in `known_supernodes`: look up, pin and forget the fingerprint
//! of a `host:port`, keeping the user's comments and other lines as they are.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use super::files::{read_optional, write_atomic};
use super::{Home, HomeError};
use crate::tls::{format_fingerprint, parse_fingerprint};

const KNOWN_SUPERNODES_FILE: &str = "known_supernodes";

/// Written at the top of a `known_supernodes` file this module creates, so a user who opens it
/// knows what the lines mean.
const KNOWN_SUPERNODES_HEADER: &str = "\
# Peerline known supernodes: one `host:port FINGERPRINT` per line.
# FINGERPRINT is the SHA-256 of the supernode's TLS certificate. It is recorded the first time
# you connect (trust on first use); if a supernode's certificate legitimately changes, delete
# its line (or run the CLI's forget command) and connect again.
";

impl Home {
    /// The certificate fingerprint pinned for `host_port` in `known_supernodes`, if any. Host
    /// names compare case-insensitively. A malformed line for this supernode is an error (see
    /// [`HomeError::BadPinLine`]); malformed lines for other supernodes don't matter here.
    pub fn pinned_fingerprint(&self, host_port: &str) -> Result<Option<[u8; 32]>, HomeError> {
        check_host_port(host_port)?;
        let path = self.known_supernodes_path();
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        for (index, line) in text.lines().enumerate() {
            match PinLine::parse(line) {
                PinLine::Entry { host, fingerprint } if same_host(host, host_port) => {
                    return fingerprint.map(Some).map_err(|reason| HomeError::BadPinLine {
                        path: path.clone(),
                        line: index + 1,
                        reason,
                    });
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Pins `fingerprint` for `host_port`: replaces its line in `known_supernodes` (keeping its
    /// position) or appends one. Comments and other lines are kept as they are.
    pub fn pin_fingerprint(
        &self,
        host_port: &str,
        fingerprint: &[u8; 32],
    ) -> Result<(), HomeError> {
        check_host_port(host_port)?;
        let path = self.known_supernodes_path();
        let _lock = self.lock()?;
        let text = read_optional(&path)?.unwrap_or_else(|| KNOWN_SUPERNODES_HEADER.to_owned());
        let new_line = format!("{host_port} {}", format_fingerprint(fingerprint));
        let mut lines = Vec::new();
        let mut placed = false;
        for line in text.lines() {
            if line_is_for(line, host_port) {
                // The first line for this host is replaced in place; any duplicates are dropped
                // so that the file can't hold two different answers.
                if !placed {
                    lines.push(new_line.as_str());
                    placed = true;
                }
            } else {
                lines.push(line);
            }
        }
        if !placed {
            lines.push(&new_line);
        }
        write_atomic(&path, join_lines(&lines).as_bytes())
            .map_err(|source| HomeError::Write { path, source })
    }

    /// Removes every line for `host_port` from `known_supernodes` (also a malformed one, so this
    /// is how a user recovers from a bad line). Returns whether there was one.
    pub fn forget_fingerprint(&self, host_port: &str) -> Result<bool, HomeError> {
        check_host_port(host_port)?;
        let path = self.known_supernodes_path();
        let _lock = self.lock()?;
        let Some(text) = read_optional(&path)? else {
            return Ok(false);
        };
        let kept: Vec<&str> = text.lines().filter(|line| !line_is_for(line, host_port)).collect();
        if kept.len() == text.lines().count() {
            return Ok(false);
        }
        write_atomic(&path, join_lines(&kept).as_bytes())
            .map_err(|source| HomeError::Write { path, source })?;
        Ok(true)
    }

    /// The path of the `known_supernodes` file, for messages that tell the user where to look.
    pub fn known_supernodes_path(&self) -> PathBuf {
        self.dir.join(KNOWN_SUPERNODES_FILE)
    }
}

/// One line of `known_supernodes`.
enum PinLine<'a> {
    /// Blank or a `#` comment.
    Ignored,
    /// A line for `host`, with its fingerprint or what is wrong with it.
    Entry { host: &'a str, fingerprint: Result<[u8; 32], String> },
}

impl<'a> PinLine<'a> {
    fn parse(line: &'a str) -> PinLine<'a> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return PinLine::Ignored;
        }
        let mut fields = line.split_whitespace();
        let Some(host) = fields.next() else {
            return PinLine::Ignored;
        };
        let fingerprint = match fields.next() {
            None => Err(format!("no fingerprint after {host:?}")),
            Some(fp) => match fields.next() {
                // A trailing `# comment` is allowed.
                Some(extra) if !extra.starts_with('#') => {
                    Err(format!("unexpected {extra:?} after the fingerprint"))
                }
                _ => parse_fingerprint(fp).ok_or_else(|| {
                    format!(
                        "{fp:?} is not a SHA-256 fingerprint (32 hex byte pairs, ':'-separated)"
                    )
                }),
            },
        };
        PinLine::Entry { host, fingerprint }
    }
}

/// Whether `line` is a (possibly malformed) line for `host_port`.
fn line_is_for(line: &str, host_port: &str) -> bool {
    matches!(PinLine::parse(line), PinLine::Entry { host, .. } if same_host(host, host_port))
}

/// DNS names are case-insensitive; so is the hex of an IPv6 address.
fn same_host(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn check_host_port(host_port: &str) -> Result<(), HomeError> {
    if host_port.is_empty()
        || host_port.starts_with('#')
        || host_port.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(HomeError::InvalidHostPort(host_port.to_owned()));
    }
    Ok(())
}

fn join_lines(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::fs;

    use super::*;
    use crate::home::tests::home;

    #[test]
    fn pins_add_replace_forget() {
        let (_tmp, home) = home();
        let host = "sn.example:7443";
        assert_eq!(home.pinned_fingerprint(host).unwrap(), None);
        assert!(!home.forget_fingerprint(host).unwrap());

        home.pin_fingerprint(host, &[1; 32]).unwrap();
        home.pin_fingerprint("other.example:7443", &[2; 32]).unwrap();
        assert_eq!(home.pinned_fingerprint(host).unwrap(), Some([1; 32]));
        assert_eq!(home.pinned_fingerprint("SN.Example:7443").unwrap(), Some([1; 32]));
        assert_eq!(home.pinned_fingerprint("sn.example:443").unwrap(), None);

        home.pin_fingerprint(host, &[3; 32]).unwrap();
        assert_eq!(home.pinned_fingerprint(host).unwrap(), Some([3; 32]));
        let text = fs::read_to_string(home.known_supernodes_path()).unwrap();
        assert_eq!(text.matches(host).count(), 1, "{text}");
        assert!(text.contains(&format!("{host} {}", format_fingerprint(&[3; 32]))));

        assert!(home.forget_fingerprint(host).unwrap());
        assert_eq!(home.pinned_fingerprint(host).unwrap(), None);
        assert!(!home.forget_fingerprint(host).unwrap());
        assert_eq!(home.pinned_fingerprint("other.example:7443").unwrap(), Some([2; 32]));
    }

    #[test]
    fn hand_edited_file_comments_are_kept() {
        let (_tmp, home) = home();
        let path = home.known_supernodes_path();
        let fp1 = format_fingerprint(&[0xAA; 32]).to_lowercase();
        let fp2 = hex::encode([0xBB; 32]);
        let original = format!(
            "# my supernodes\n\n  a.example:1 {fp1}   # office\nb.example:2\t{fp2}\n# trailing\n"
        );
        fs::write(&path, &original).unwrap();
        assert_eq!(home.pinned_fingerprint("a.example:1").unwrap(), Some([0xAA; 32]));
        assert_eq!(home.pinned_fingerprint("b.example:2").unwrap(), Some([0xBB; 32]));

        home.pin_fingerprint("b.example:2", &[0xCC; 32]).unwrap();
        home.pin_fingerprint("c.example:3", &[0xDD; 32]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let expected = format!(
            "# my supernodes\n\n  a.example:1 {fp1}   # office\nb.example:2 {}\n# trailing\n\
             c.example:3 {}\n",
            format_fingerprint(&[0xCC; 32]),
            format_fingerprint(&[0xDD; 32]),
        );
        assert_eq!(text, expected);

        assert!(home.forget_fingerprint("a.example:1").unwrap());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my supernodes\n\nb.example:2 "), "{text}");
        assert!(text.contains("# trailing\n"));
    }

    #[test]
    fn new_file_starts_with_an_explaining_comment() {
        let (_tmp, home) = home();
        home.pin_fingerprint("a:1", &[0; 32]).unwrap();
        let text = fs::read_to_string(home.known_supernodes_path()).unwrap();
        assert!(text.starts_with("# Peerline known supernodes"), "{text}");
        assert_eq!(home.pinned_fingerprint("a:1").unwrap(), Some([0; 32]));
    }

    #[test]
    fn malformed_line_for_the_host_is_an_error_not_a_missing_pin() {
        let (_tmp, home) = home();
        let path = home.known_supernodes_path();
        let good = format_fingerprint(&[7; 32]);
        fs::write(&path, format!("bad.example:1 ZZ:ZZ\nshort.example:1\ngood.example:1 {good}\n"))
            .unwrap();
        let err = home.pinned_fingerprint("bad.example:1").unwrap_err();
        assert!(matches!(err, HomeError::BadPinLine { line: 1, .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        let err = home.pinned_fingerprint("short.example:1").unwrap_err();
        assert!(matches!(err, HomeError::BadPinLine { line: 2, .. }), "{err}");
        // Other hosts are unaffected.
        assert_eq!(home.pinned_fingerprint("good.example:1").unwrap(), Some([7; 32]));
        // Re-pinning or forgetting repairs the line.
        home.pin_fingerprint("bad.example:1", &[8; 32]).unwrap();
        assert_eq!(home.pinned_fingerprint("bad.example:1").unwrap(), Some([8; 32]));
        assert!(home.forget_fingerprint("short.example:1").unwrap());
        assert_eq!(home.pinned_fingerprint("short.example:1").unwrap(), None);
    }

    #[test]
    fn host_port_that_would_break_the_file_is_rejected() {
        let (_tmp, home) = home();
        for bad in ["", "a b:1", "#x:1", "a:1\nb:2"] {
            let err = home.pin_fingerprint(bad, &[0; 32]).unwrap_err();
            assert!(matches!(err, HomeError::InvalidHostPort(_)), "{bad:?}: {err}");
        }
        assert!(!home.known_supernodes_path().exists());
    }
}
