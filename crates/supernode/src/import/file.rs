//! Reading an import file: JSON Lines, one account or one contact pair per line, each checked by
//! the rules a registration and a login apply, into a [`Plan`] the importer writes, or a list of
//! every problem with its line number.

use std::collections::HashMap;
use std::io::{BufRead, Read};

use argon2::password_hash::PasswordHash;
use ed25519_dalek::VerifyingKey;
use peerline_store::{ImportAccount, ImportDevice, ImportSession, NewAccount, TimestampMs};
use peerline_wire::validate;
use serde::Deserialize;

/// Longest line read, in bytes: an account with the most devices and sessions fits many times.
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// Longest device name, in characters: what a login keeps of the name a client sends.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// Most sessions one imported account may have.
pub const MAX_SESSIONS_PER_ACCOUNT: usize = 100;

/// Highest Argon2 memory cost (KiB) an imported hash may ask for: a password login runs the
/// hash with the parameters stored in it, so one account's hash must not cost the supernode
/// more than this (the supernode's own hashes use 19,456 KiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 65_536;

/// Highest Argon2 time cost (passes) an imported hash may ask for.
pub const MAX_ARGON2_PASSES: u32 = 10;

/// Highest Argon2 parallelism (lanes) an imported hash may ask for.
pub const MAX_ARGON2_LANES: u32 = 8;

/// Problems listed one by one; past this many only their number is said.
pub const MAX_LISTED_PROBLEMS: usize = 100;

/// One line of the file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    /// An account with its devices and sessions.
    Account(AccountRecord),
    /// Two usernames that become accepted contacts of each other.
    Contact([String; 2]),
}

/// `{"account": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountRecord {
    username: String,
    #[serde(default)]
    display_name: Option<String>,
    password_hash: String,
    #[serde(default)]
    devices: Vec<DeviceRecord>,
    #[serde(default)]
    sessions: Vec<SessionRecord>,
}

/// A device of an account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceRecord {
    public_key: String,
    name: String,
}

/// A session of an account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRecord {
    token_sha256: String,
    device_public_key: String,
    /// Unix seconds; absent: the configured token lifetime from now.
    #[serde(default)]
    expires_at: Option<i64>,
}

/// A user the file names: an account of the file, or a contact that must exist already.
#[derive(Debug)]
pub struct Person {
    /// Canonical username.
    pub username: String,
    /// The line of the account, or of the first contact naming it.
    pub line: u64,
    /// Its index in [`Plan::accounts`], if the file has its account.
    pub account: Option<usize>,
}

/// What a valid file asks for.
#[derive(Debug, Default)]
pub struct Plan {
    /// Accounts to create, in file order.
    pub accounts: Vec<ImportAccount>,
    /// Everyone the file names; accounts' entries first come in any order.
    pub people: Vec<Person>,
    /// Contact pairs as indices into `people`, each pair once, with its line.
    pub pairs: Vec<(u32, u32, u64)>,
    /// Devices and sessions in `accounts`.
    pub devices: usize,
    /// Sessions in `accounts`.
    pub sessions: usize,
}

/// A problem of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The file had problems: nothing was written. Its message lists them.
#[derive(Debug, thiserror::Error)]
#[error("{}", list(.problems, *.count))]
pub struct InvalidFile {
    /// The problems listed (at most [`MAX_LISTED_PROBLEMS`]), by line.
    pub problems: Vec<Problem>,
    /// How many problems there were in all.
    pub count: usize,
}

fn list(problems: &[Problem], count: usize) -> String {
    let mut text = String::new();
    for p in problems {
        text.push_str(&format!("{p}\n"));
    }
    if count > problems.len() {
        text.push_str(&format!("... and {} more\n", count - problems.len()));
    }
    let s = if count == 1 { "" } else { "s" };
    text.push_str(&format!("{count} problem{s} in the import file; nothing was imported"));
    text
}

/// A file read: the plan, or its problems; and how many lines it had.
#[derive(Debug)]
pub struct Checked {
    /// What to import, or why not.
    pub plan: Result<Plan, InvalidFile>,
    /// Lines read, blank ones included.
    pub lines: u64,
}

/// What the checks need to know besides the file.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Now, in milliseconds since the Unix epoch.
    pub now: TimestampMs,
    /// The configured session token lifetime, in milliseconds.
    pub token_lifetime_ms: i64,
    /// `limits.max_devices`.
    pub max_devices: usize,
}

/// Reads and checks every line: the plan, or every problem found (the first
/// [`MAX_LISTED_PROBLEMS`] of them and how many there were). `progress` is told each line's
/// bytes.
pub fn read(
    input: impl BufRead,
    rules: &Rules,
    mut progress: impl FnMut(u64),
) -> std::io::Result<Checked> {
    let mut reader = Reader::new(*rules);
    let mut input = input;
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = Read::take(&mut input, MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line += 1;
        if buf.len() > MAX_LINE_BYTES {
            reader.problem(line, format!("longer than {MAX_LINE_BYTES} bytes"));
            let skipped = if buf.last() == Some(&b'\n') { 0 } else { skip_line(&mut input)? };
            progress(n as u64 + skipped);
            continue;
        }
        progress(n as u64);
        reader.line(line, &buf);
    }
    Ok(Checked { plan: reader.finish(), lines: line })
}

/// Skips the rest of a line without holding it in memory; returns how many bytes.
fn skip_line(input: &mut impl BufRead) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(skipped);
        }
        let (used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (chunk.len(), false),
        };
        input.consume(used);
        skipped += used as u64;
        if done {
            return Ok(skipped);
        }
    }
}

/// Checks lines one after another.
struct Reader {
    rules: Rules,
    plan: Plan,
    /// Username → index in `plan.people`.
    names: HashMap<String, u32>,
    /// Token hashes seen, and where.
    tokens: HashMap<[u8; 32], u64>,
    problems: Vec<Problem>,
    problem_count: usize,
}

impl Reader {
    fn new(rules: Rules) -> Self {
        Self {
            rules,
            plan: Plan::default(),
            names: HashMap::new(),
            tokens: HashMap::new(),
            problems: Vec::new(),
            problem_count: 0,
        }
    }

    fn problem(&mut self, line: u64, message: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(Problem { line, message });
        }
    }

    fn line(&mut self, line: u64, bytes: &[u8]) {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let record: Record = match serde_json::from_slice(bytes) {
            Ok(record) => record,
            Err(e) => {
                return self.problem(
                    line,
                    format!(
                        "not a record ({e}); expected {{\"account\": {{...}}}} or \
                         {{\"contact\": [\"USER\", \"USER\"]}}"
                    ),
                );
            }
        };
        let checked = match record {
            Record::Account(account) => self.account(line, account),
            Record::Contact([a, b]) => self.contact(line, &a, &b),
        };
        if let Err(message) = checked {
            self.problem(line, message);
        }
    }

    /// The index of `username` in `people`, added (as a contact named at `line`) if new.
    fn person(&mut self, username: &str, line: u64) -> Result<u32, String> {
        if let Some(&i) = self.names.get(username) {
            return Ok(i);
        }
        let i = u32::try_from(self.plan.people.len())
            .map_err(|_| "the file names more than 4 billion users".to_owned())?;
        self.plan.people.push(Person { username: username.to_owned(), line, account: None });
        self.names.insert(username.to_owned(), i);
        Ok(i)
    }

    fn account(&mut self, line: u64, record: AccountRecord) -> Result<(), String> {
        let username = validate::username(&record.username).map_err(|_| {
            format!(
                "username {:?} is invalid: 3 to 32 characters of a-z 0-9 . _ - (upper case \
                 is folded)",
                record.username
            )
        })?;
        if let Some(&i) = self.names.get(&username)
            && let Some(person) = self.plan.people.get(i as usize)
            && person.account.is_some()
        {
            return Err(format!("username {username:?} is already at line {}", person.line));
        }
        let display_name = match &record.display_name {
            Some(d) => validate::display_name(d).map_err(|_| {
                format!(
                    "display_name {d:?} is invalid: 1 to {} characters after trimming, no \
                     control, bidirectional-override or invisible characters",
                    validate::MAX_DISPLAY_NAME_CHARS
                )
            })?,
            None => username.clone(),
        };
        check_password_hash(&record.password_hash)?;
        if record.devices.len() > self.rules.max_devices {
            return Err(format!(
                "{} devices; an account may have at most {} (limits.max_devices)",
                record.devices.len(),
                self.rules.max_devices
            ));
        }
        if record.sessions.len() > MAX_SESSIONS_PER_ACCOUNT {
            return Err(format!(
                "{} sessions; an account may have at most {MAX_SESSIONS_PER_ACCOUNT}",
                record.sessions.len()
            ));
        }
        let mut devices = Vec::with_capacity(record.devices.len());
        for (i, device) in record.devices.iter().enumerate() {
            let public_key = device_key(&device.public_key)
                .map_err(|e| format!("devices[{i}].public_key: {e}"))?;
            if devices.iter().any(|d: &ImportDevice| d.public_key == public_key) {
                return Err(format!("devices[{i}]: the same public_key is listed twice"));
            }
            if let Some(c) = device.name.chars().find(|c| c.is_control()) {
                return Err(format!(
                    "devices[{i}].name holds control character U+{:04X}",
                    u32::from(c)
                ));
            }
            if device.name.chars().count() > MAX_DEVICE_NAME_CHARS {
                return Err(format!(
                    "devices[{i}].name is longer than {MAX_DEVICE_NAME_CHARS} characters"
                ));
            }
            devices.push(ImportDevice { public_key, name: device.name.clone() });
        }
        let mut sessions = Vec::with_capacity(record.sessions.len());
        let mut hashes = Vec::with_capacity(record.sessions.len());
        for (i, session) in record.sessions.iter().enumerate() {
            let token_hash = hex32(&session.token_sha256)
                .map_err(|e| format!("sessions[{i}].token_sha256: {e}"))?;
            let key = hex32(&session.device_public_key)
                .map_err(|e| format!("sessions[{i}].device_public_key: {e}"))?;
            let device = devices.iter().position(|d| d.public_key == key).ok_or_else(|| {
                format!("sessions[{i}].device_public_key is not one of this account's devices")
            })?;
            let expires_at = self
                .expiry(session.expires_at)
                .map_err(|e| format!("sessions[{i}].expires_at {e}"))?;
            if let Some(&other) = self.tokens.get(&token_hash) {
                return Err(format!("sessions[{i}].token_sha256 is already used at line {other}"));
            }
            if hashes.contains(&token_hash) {
                return Err(format!("sessions[{i}].token_sha256 is listed twice"));
            }
            hashes.push(token_hash);
            sessions.push(ImportSession { token_hash, device, expires_at });
        }

        // Checked: now it counts.
        let index = self.person(&username, line)?;
        let position = self.plan.accounts.len();
        if let Some(person) = self.plan.people.get_mut(index as usize) {
            person.account = Some(position);
            person.line = line;
        }
        for hash in hashes {
            self.tokens.insert(hash, line);
        }
        self.plan.devices += devices.len();
        self.plan.sessions += sessions.len();
        self.plan.accounts.push(ImportAccount {
            account: NewAccount { username, display_name, password_hash: record.password_hash },
            devices,
            sessions,
        });
        Ok(())
    }

    /// A session's expiry in milliseconds: given in Unix seconds, after now and within the
    /// token lifetime a login would give; absent, the full lifetime from now.
    fn expiry(&self, seconds: Option<i64>) -> Result<TimestampMs, String> {
        let latest = self.rules.now.saturating_add(self.rules.token_lifetime_ms);
        let Some(seconds) = seconds else { return Ok(latest) };
        let ms = seconds.checked_mul(1000).ok_or_else(|| format!("{seconds} is out of range"))?;
        if ms <= self.rules.now {
            return Err(format!("{seconds} is not in the future"));
        }
        if ms > latest {
            return Err(format!(
                "{seconds} is later than a login would give (now + sessions.token_lifetime_days)"
            ));
        }
        Ok(ms)
    }

    fn contact(&mut self, line: u64, a: &str, b: &str) -> Result<(), String> {
        let name = |raw: &str| {
            validate::username(raw).map_err(|_| format!("contact {raw:?} is not a valid username"))
        };
        let (a, b) = (name(a)?, name(b)?);
        if a == b {
            return Err(format!("{a:?} cannot be a contact of itself"));
        }
        let (a, b) = (self.person(&a, line)?, self.person(&b, line)?);
        self.plan.pairs.push((a.min(b), a.max(b), line));
        Ok(())
    }

    fn finish(mut self) -> Result<Plan, InvalidFile> {
        // A pair listed twice (in either order) is a mistake worth saying: sort, then compare
        // neighbours.
        self.plan.pairs.sort_unstable();
        let mut duplicates = Vec::new();
        let mut kept = Vec::with_capacity(self.plan.pairs.len());
        for &(a, b, line) in &self.plan.pairs {
            if let Some(&(_, _, first)) = kept.last().filter(|&&(x, y, _)| (x, y) == (a, b)) {
                duplicates.push((line, first, a, b));
                continue;
            }
            kept.push((a, b, line));
        }
        for (line, first, a, b) in duplicates {
            let who = |i: u32| {
                self.plan.people.get(i as usize).map(|p| p.username.clone()).unwrap_or_default()
            };
            let message =
                format!("contact pair {:?} and {:?} is already at line {first}", who(a), who(b));
            self.problem(line, message);
        }
        self.plan.pairs = kept;
        if self.problem_count > 0 {
            self.problems.sort_by_key(|p| p.line);
            return Err(InvalidFile { problems: self.problems, count: self.problem_count });
        }
        Ok(self.plan)
    }
}

/// 64 hex characters as 32 bytes.
fn hex32(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|_| "must be 64 hex characters".to_owned())?;
    bytes.try_into().map_err(|_| "must be 64 hex characters (32 bytes)".to_owned())
}

/// An Ed25519 public key: 64 hex characters that decode to a valid point (a login with any
/// other key fails its signature check).
fn device_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex32(text)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "is not a valid Ed25519 public key".to_owned())?;
    Ok(bytes)
}

/// A PHC string of Argon2id, version 19, with a salt and a hash, whose costs stay within what the
/// supernode is willing to pay at each password login.
fn check_password_hash(phc: &str) -> Result<(), String> {
    let hash =
        PasswordHash::new(phc).map_err(|e| format!("password_hash is not a PHC string ({e})"))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "password_hash uses {}; only argon2id ($argon2id$v=19$...) is accepted",
            hash.algorithm
        ));
    }
    if hash.version != Some(0x13) {
        return Err("password_hash must be Argon2 version 19 (v=19)".to_owned());
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("password_hash has no salt or no hash".to_owned());
    }
    let params = argon2::Params::try_from(&hash)
        .map_err(|e| format!("password_hash has invalid Argon2 parameters ({e})"))?;
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB
        || params.t_cost() > MAX_ARGON2_PASSES
        || params.p_cost() > MAX_ARGON2_LANES
    {
        return Err(format!(
            "password_hash costs m={},t={},p={}; at most m={MAX_ARGON2_MEMORY_KIB},\
             t={MAX_ARGON2_PASSES},p={MAX_ARGON2_LANES} are accepted",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$\
                        V4dG5Kp2a3BZbS9oYU5yUUZkVW1zQ0lMa1BZbnV3b0E";

    fn rules() -> Rules {
        Rules { now: 1_000_000_000, token_lifetime_ms: 30 * 86_400_000, max_devices: 2 }
    }

    fn key(seed: u8) -> String {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        hex::encode(signing.verifying_key().to_bytes())
    }

    fn read_str(text: &str) -> Result<Plan, (Vec<Problem>, usize)> {
        read(text.as_bytes(), &rules(), |_| {}).unwrap().plan.map_err(|e| (e.problems, e.count))
    }

    #[test]
    fn a_valid_file_becomes_a_plan() {
        let text = format!(
            "{{\"account\": {{\"username\": \"Alice\", \"password_hash\": \"{HASH}\", \
             \"devices\": [{{\"public_key\": \"{k}\", \"name\": \"laptop\"}}], \
             \"sessions\": [{{\"token_sha256\": \"{t}\", \"device_public_key\": \"{k}\"}}]}}}}\n\
             \n\
             {{\"contact\": [\"alice\", \"bob\"]}}\n",
            k = key(1),
            t = "ab".repeat(32)
        );
        let plan = read_str(&text).unwrap();
        assert_eq!(plan.accounts.len(), 1);
        let alice = &plan.accounts[0];
        assert_eq!(alice.account.username, "alice", "folded like a registration");
        assert_eq!(alice.account.display_name, "alice", "the username when not given");
        assert_eq!(alice.sessions[0].expires_at, rules().now + rules().token_lifetime_ms);
        assert_eq!(plan.people.len(), 2, "alice and bob");
        assert_eq!(plan.people[1].account, None, "bob must exist already");
        assert_eq!(plan.pairs, [(0, 1, 3)]);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let good_key = key(2);
        let lines = [
            "not json".to_owned(),
            format!("{{\"account\": {{\"username\": \"a b\", \"password_hash\": \"{HASH}\"}}}}"),
            format!(
                "{{\"account\": {{\"username\": \"carol\", \"password_hash\": \"{}\"}}}}",
                HASH.replace("argon2id", "argon2i")
            ),
            format!(
                "{{\"account\": {{\"username\": \"dave\", \"password_hash\": \"{HASH}\", \
                 \"devices\": [{{\"public_key\": \"abcd\", \"name\": \"x\"}}]}}}}"
            ),
            format!(
                "{{\"account\": {{\"username\": \"erin\", \"password_hash\": \"{HASH}\", \
                 \"sessions\": [{{\"token_sha256\": \"{}\", \"device_public_key\": \"{good_key}\"}}]}}}}",
                "cd".repeat(32)
            ),
            "{\"contact\": [\"bob\", \"BOB\"]}".to_owned(),
            "{\"contact\": [\"bob\", \"carl\"]}".to_owned(),
            "{\"contact\": [\"carl\", \"bob\"]}".to_owned(),
            "{\"friend\": [\"bob\", \"carl\"]}".to_owned(),
            format!(
                "{{\"account\": {{\"username\": \"frank\", \"password_hash\": \"{HASH}\", \"x\": 1}}}}"
            ),
            "{\"account\": {\"username\": \"gina\", \"password_hash\": \
             \"$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHRzYWx0$\
             V4dG5Kp2a3BZbS9oYU5yUUZkVW1zQ0lMa1BZbnV3b0E\"}}"
                .to_owned(),
        ];
        let (problems, count) = read_str(&lines.join("\n")).unwrap_err();
        let at: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(at, [1, 2, 3, 4, 5, 6, 8, 9, 10, 11], "{problems:#?}");
        assert_eq!(count, 10);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text[1].contains("username \"a b\" is invalid"), "{text:?}");
        assert!(text[2].contains("only argon2id"), "{text:?}");
        assert!(text[3].contains("devices[0].public_key"), "{text:?}");
        assert!(text[4].contains("not one of this account's devices"), "{text:?}");
        assert!(text[6].contains("already at line 7"), "{text:?}");
        assert!(text[9].contains("m=1048576"), "{text:?}");
    }

    #[test]
    fn the_same_username_or_token_twice_is_refused() {
        let k = key(3);
        let t = "ef".repeat(32);
        let account = |name: &str| {
            format!(
                "{{\"account\": {{\"username\": \"{name}\", \"password_hash\": \"{HASH}\", \
                 \"devices\": [{{\"public_key\": \"{k}\", \"name\": \"d\"}}], \
                 \"sessions\": [{{\"token_sha256\": \"{t}\", \"device_public_key\": \"{k}\"}}]}}}}"
            )
        };
        let text = [account("alice"), account("ALICE"), account("bob")].join("\n");
        let (problems, _) = read_str(&text).unwrap_err();
        assert_eq!(problems[0].line, 2);
        assert!(problems[0].message.contains("already at line 1"), "{problems:?}");
        assert_eq!(problems[1].line, 3);
        assert!(problems[1].message.contains("already used at line 1"), "{problems:?}");
    }

    #[test]
    fn an_over_long_line_is_one_problem_and_the_next_line_is_read() {
        let text =
            format!("{}\n{{\"contact\": [\"abc\", \"def\"]}}\n", "x".repeat(MAX_LINE_BYTES + 10));
        let mut bytes = 0;
        let Checked { plan, lines } = read(text.as_bytes(), &rules(), |n| bytes += n).unwrap();
        let InvalidFile { problems, count } = plan.unwrap_err();
        assert_eq!((count, problems[0].line, lines), (1, 1, 2), "{problems:?}");
        assert!(problems[0].message.contains("longer than"), "{problems:?}");
        assert_eq!(bytes, text.len() as u64, "every byte is counted once");
    }

    #[test]
    fn expiry_must_be_ahead_and_within_the_lifetime() {
        let r = Reader::new(rules());
        let now_s = rules().now / 1000;
        assert!(r.expiry(Some(now_s)).is_err());
        assert!(r.expiry(Some(now_s + 40 * 86_400)).is_err());
        assert_eq!(r.expiry(Some(now_s + 60)).unwrap(), (now_s + 60) * 1000);
    }
}
