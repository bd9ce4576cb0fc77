//! Checks `docs/protocol.md` against the wire types, so the document cannot drift from the code.
//!
//! Every ```json block of the document must decode (as a request when its top-level `type` is a
//! request type, as a supernode frame otherwise), survive encode → decode unchanged, and use no
//! field the types silently drop. The examples together must show every request, reply, event
//! and error code, and each of those must have its own `###` section.
//!
//! Failures name the block by its line in the document and are all reported at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use peerline_wire::{
    ClientFrame, ContactState, EndReason, ErrorCode, Event, Presence, REQUEST_TYPES, ReceiptKind,
    Reply, Request, ServerFrame, Status, decode_client_frame, decode_server_frame, encode,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

const DOC: &str = "docs/protocol.md";

/// Every `ErrorCode` variant. The enum has no list of its variants, so it is written out here;
/// `error_code_list_is_complete` compares it with the variants serde knows, so a new code that
/// is missing here fails that test.
const ALL_ERROR_CODES: &[ErrorCode] = &[
    ErrorCode::BadRequest,
    ErrorCode::UnknownType,
    ErrorCode::UnsupportedVersion,
    ErrorCode::HelloRequired,
    ErrorCode::FrameTooLarge,
    ErrorCode::RateLimited,
    ErrorCode::TooManyPending,
    ErrorCode::NotAuthenticated,
    ErrorCode::AlreadyAuthenticated,
    ErrorCode::InvalidUsername,
    ErrorCode::InvalidDisplayName,
    ErrorCode::WeakPassword,
    ErrorCode::UsernameTaken,
    ErrorCode::InvalidCredentials,
    ErrorCode::LoginThrottled,
    ErrorCode::InvalidToken,
    ErrorCode::InvalidDeviceSignature,
    ErrorCode::NoSuchUser,
    ErrorCode::NotContact,
    ErrorCode::NoPendingRequest,
    ErrorCode::AlreadyContacts,
    ErrorCode::SelfContact,
    ErrorCode::ContactRequestLimit,
    ErrorCode::EmptyMessage,
    ErrorCode::MessageTooLong,
    ErrorCode::InvalidQuery,
    ErrorCode::NoSuchDevice,
    ErrorCode::InvalidArgument,
    ErrorCode::NoSuchCall,
    ErrorCode::CallExists,
    ErrorCode::CallLimit,
    ErrorCode::CalleeBusy,
    ErrorCode::CalleeUnavailable,
    ErrorCode::ShuttingDown,
    ErrorCode::Internal,
    ErrorCode::Unavailable,
    ErrorCode::MailboxFull,
    ErrorCode::TooManyDevices,
];

/// One ```json block: the line of its opening fence (1-based) and its text.
struct Block {
    line: usize,
    text: String,
}

/// What the examples showed, for the coverage checks.
#[derive(Default)]
struct Seen {
    requests: BTreeSet<String>,
    replies: BTreeSet<String>,
    events: BTreeSet<String>,
    error_codes: BTreeSet<String>,
}

fn doc_text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../").join(DOC);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn json_blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in doc.lines().enumerate() {
        let trimmed = line.trim();
        match open.as_mut() {
            None if trimmed == "```json" => {
                open = Some(Block { line: index + 1, text: String::new() });
            }
            Some(_) if trimmed == "```" => blocks.extend(open.take()),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None => {}
        }
    }
    if let Some(block) = open {
        panic!("{DOC}:{}: ```json block is never closed", block.line);
    }
    blocks
}

/// The variant names serde accepts for `T`, read from its "unknown variant" error, so that the
/// lists below follow the code instead of being copied from it.
fn serde_variant_names<T: DeserializeOwned + std::fmt::Debug>(probe: &str) -> Vec<String> {
    let err = serde_json::from_str::<T>(probe)
        .expect_err("probe must name an unknown variant")
        .to_string();
    let list = err
        .split_once("expected one of ")
        .or_else(|| err.split_once("expected "))
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("serde's error no longer lists the variants: {err}"));
    let names: Vec<String> = list.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    assert!(!names.is_empty(), "no variant names found in {err:?}");
    names
}

fn tag_probe() -> &'static str {
    r#"{"type":"__no_such_variant__"}"#
}

fn string_probe() -> &'static str {
    r#""__no_such_variant__""#
}

fn wire_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value).unwrap() {
        Value::String(s) => s,
        Value::Object(map) => map["type"].as_str().unwrap().to_owned(),
        other => panic!("unexpected wire form {other}"),
    }
}

/// Checks that everything the document wrote is in `encoded`: a field the types do not know (a
/// typo, a field that was renamed) would be silently ignored by the decoder and vanish here.
/// Fields the document left out may appear in `encoded` (defaults, `null` optionals).
fn doc_is_covered(doc: &Value, encoded: &Value, path: &str) -> Result<(), String> {
    match (doc, encoded) {
        (Value::Object(d), Value::Object(e)) => {
            for (key, d_value) in d {
                let here = format!("{path}.{key}");
                match e.get(key) {
                    Some(e_value) => doc_is_covered(d_value, e_value, &here)?,
                    None if d_value.is_null() => {}
                    None => {
                        return Err(format!(
                            "field {here} is not part of the type (ignored by the decoder)"
                        ));
                    }
                }
            }
            Ok(())
        }
        (Value::Array(d), Value::Array(e)) if d.len() == e.len() => d
            .iter()
            .zip(e)
            .enumerate()
            .try_for_each(|(i, (d, e))| doc_is_covered(d, e, &format!("{path}[{i}]"))),
        (d, e) if d == e => Ok(()),
        (d, e) => Err(format!("{path} is {d} in the document but {e} after a round trip")),
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_client_block(block: &Block, value: &Value, seen: &mut Seen) -> Result<(), String> {
    let frame: ClientFrame = decode_client_frame(block.text.trim().as_bytes())
        .map_err(|e| format!("request does not decode: {e}"))?;
    let encoded = encode(&frame);
    let again = decode_client_frame(encoded.as_bytes())
        .map_err(|e| format!("re-encoded request does not decode: {e}: {encoded}"))?;
    if again != frame {
        return Err(format!("round trip changed the request: {frame:?} became {again:?}"));
    }
    doc_is_covered(value, &serde_json::from_str(&encoded).unwrap(), "")?;
    let kind = frame.request.kind();
    if value["type"] != kind {
        return Err(format!(
            "Request::kind() says {kind:?} but the wire type is {}",
            value["type"]
        ));
    }
    if let Request::Login(login) = &frame.request {
        if !is_lower_hex(&login.device.public_key, 64) {
            return Err("device.public_key must be 64 lowercase hex characters".into());
        }
        if !is_lower_hex(&login.device.signature, 128) {
            return Err("device.signature must be 128 lowercase hex characters".into());
        }
        if login.password.is_some() == login.token.is_some() {
            return Err("login must carry exactly one of password and token".into());
        }
    }
    seen.requests.insert(kind.to_owned());
    Ok(())
}

fn check_server_block(block: &Block, value: &Value, seen: &mut Seen) -> Result<(), String> {
    let frame: ServerFrame = decode_server_frame(block.text.trim().as_bytes())
        .map_err(|e| format!("supernode frame does not decode: {e}"))?;
    let encoded = encode(&frame);
    let again = decode_server_frame(encoded.as_bytes())
        .map_err(|e| format!("re-encoded frame does not decode: {e}: {encoded}"))?;
    if again != frame {
        return Err(format!("round trip changed the frame: {frame:?} became {again:?}"));
    }
    doc_is_covered(value, &serde_json::from_str(&encoded).unwrap(), "")?;
    match &frame {
        ServerFrame::Ok { result, .. } => {
            if let Reply::Hello { nonce, .. } = result
                && !is_lower_hex(nonce, 64)
            {
                return Err("nonce must be 64 lowercase hex characters".into());
            }
            seen.replies.insert(wire_name(result));
        }
        ServerFrame::Event { event } => {
            seen.events.insert(wire_name(event));
        }
        ServerFrame::Error { error, .. } => {
            seen.error_codes.insert(wire_name(&error.code));
        }
    }
    Ok(())
}

#[test]
fn every_json_example_decodes_and_round_trips() {
    let doc = doc_text();
    let blocks = json_blocks(&doc);
    assert!(blocks.len() > 50, "{DOC} has only {} ```json blocks", blocks.len());
    let mut failures = Vec::new();
    let mut seen = Seen::default();
    for block in &blocks {
        let result = serde_json::from_str::<Value>(&block.text)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|value| {
                let is_request = value
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| REQUEST_TYPES.contains(&t));
                if is_request {
                    check_client_block(block, &value, &mut seen)
                } else {
                    check_server_block(block, &value, &mut seen)
                }
            });
        if let Err(why) = result {
            failures.push(format!("{DOC}:{}: {why}\n    {}", block.line, block.text.trim()));
        }
    }

    let missing = |what: &str, all: Vec<String>, shown: &BTreeSet<String>| -> Vec<String> {
        all.into_iter()
            .filter(|name| !shown.contains(name))
            .map(|name| format!("{DOC}: no example shows the {what} `{name}`"))
            .collect()
    };
    failures.extend(missing(
        "request",
        REQUEST_TYPES.iter().map(|s| s.to_string()).collect(),
        &seen.requests,
    ));
    failures.extend(missing("reply", serde_variant_names::<Reply>(tag_probe()), &seen.replies));
    failures.extend(missing("event", serde_variant_names::<Event>(tag_probe()), &seen.events));
    failures.extend(missing(
        "error code",
        ALL_ERROR_CODES.iter().map(wire_name).collect(),
        &seen.error_codes,
    ));

    assert!(
        failures.is_empty(),
        "{} problem(s) in {DOC}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_request_reply_event_and_error_code_has_a_section() {
    let doc = doc_text();
    let headings: BTreeSet<&str> =
        doc.lines().filter_map(|l| l.strip_prefix("### ")).map(str::trim).collect();
    let mut failures = Vec::new();
    let mut need = |name: String, alternatives: &[String]| {
        if !headings.contains(name.as_str())
            && !alternatives.iter().any(|a| headings.contains(a.as_str()))
        {
            failures.push(format!("{DOC}: no `### {name}` section"));
        }
    };
    for name in REQUEST_TYPES {
        need(name.to_string(), &[]);
    }
    for name in serde_variant_names::<Reply>(tag_probe()) {
        let alt = format!("{name} (reply)");
        need(name, &[alt]);
    }
    for name in serde_variant_names::<Event>(tag_probe()) {
        need(name, &[]);
    }
    for code in ALL_ERROR_CODES {
        need(wire_name(code), &[]);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_enumeration_value_is_documented() {
    let doc = doc_text();
    let values = [
        serde_variant_names::<Status>(string_probe()),
        serde_variant_names::<Presence>(string_probe()),
        serde_variant_names::<ContactState>(string_probe()),
        serde_variant_names::<ReceiptKind>(string_probe()),
        serde_variant_names::<EndReason>(string_probe()),
    ];
    let undocumented: Vec<String> =
        values.iter().flatten().filter(|v| !doc.contains(&format!("`{v}`"))).cloned().collect();
    assert!(undocumented.is_empty(), "{DOC} never mentions these values: {undocumented:?}");
}

#[test]
fn error_code_list_is_complete() {
    // ErrorCode has a catch-all (`unknown`) for codes from newer supernodes, so serde cannot list
    // its variants; an exhaustive match makes the compiler do it: a new variant fails to build
    // here until it is added to ALL_ERROR_CODES (and so must be documented).
    fn listed(code: ErrorCode) -> bool {
        match code {
            ErrorCode::Unknown => false,
            ErrorCode::BadRequest
            | ErrorCode::UnknownType
            | ErrorCode::UnsupportedVersion
            | ErrorCode::HelloRequired
            | ErrorCode::FrameTooLarge
            | ErrorCode::RateLimited
            | ErrorCode::TooManyPending
            | ErrorCode::NotAuthenticated
            | ErrorCode::AlreadyAuthenticated
            | ErrorCode::InvalidUsername
            | ErrorCode::InvalidDisplayName
            | ErrorCode::WeakPassword
            | ErrorCode::UsernameTaken
            | ErrorCode::InvalidCredentials
            | ErrorCode::LoginThrottled
            | ErrorCode::InvalidToken
            | ErrorCode::InvalidDeviceSignature
            | ErrorCode::NoSuchUser
            | ErrorCode::NotContact
            | ErrorCode::NoPendingRequest
            | ErrorCode::AlreadyContacts
            | ErrorCode::SelfContact
            | ErrorCode::ContactRequestLimit
            | ErrorCode::EmptyMessage
            | ErrorCode::MessageTooLong
            | ErrorCode::InvalidQuery
            | ErrorCode::NoSuchDevice
            | ErrorCode::InvalidArgument
            | ErrorCode::NoSuchCall
            | ErrorCode::CallExists
            | ErrorCode::CallLimit
            | ErrorCode::CalleeBusy
            | ErrorCode::CalleeUnavailable
            | ErrorCode::ShuttingDown
            | ErrorCode::Internal
            | ErrorCode::Unavailable
            | ErrorCode::MailboxFull
            | ErrorCode::TooManyDevices => ALL_ERROR_CODES.contains(&code),
        }
    }
    assert!(ALL_ERROR_CODES.iter().all(|c| listed(*c)));
    let unknown: ErrorCode = serde_json::from_str(r#""code_from_the_future""#).unwrap();
    assert_eq!(unknown, ErrorCode::Unknown, "unknown codes must decode to the catch-all");
}

#[test]
fn request_types_match_the_request_enum() {
    // The codec uses REQUEST_TYPES to tell `unknown_type` from `bad_request`; a request missing
    // from it would be answered `unknown_type` whenever one of its fields is malformed.
    assert_eq!(
        REQUEST_TYPES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        serde_variant_names::<Request>(tag_probe()),
        "REQUEST_TYPES is out of date with the Request enum"
    );
}
