//! Property tests of the frame codec: it must never panic on anything a peer sends, must classify
//! every failure as a typed [`DecodeError`], must refuse oversized frames before parsing, and must
//! give back exactly what was encoded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use peerline_wire::{
    ChannelBinding, ChatMessage, ClientFrame, Contact, ContactState, DecodeError, DeviceProof,
    EndReason, ErrorBody, ErrorCode, Event, Login, MAX_FRAME_BYTES, Presence, REQUEST_TYPES,
    ReceiptKind, Reply, Request, ServerFrame, Status, UserSummary, decode_client_frame,
    decode_server_frame, encode,
};
use proptest::prelude::*;

const CASES: u32 = 256;

// ---- checks shared by the properties ----

/// Decodes `bytes` as a client frame and checks everything that must hold whatever the input:
/// the error matches the input, and whatever decodes re-encodes to the same value.
fn check_client(bytes: &[u8]) {
    match decode_client_frame(bytes) {
        Ok(frame) => {
            assert!(bytes.len() <= MAX_FRAME_BYTES);
            let again = decode_client_frame(encode(&frame).as_bytes()).unwrap_or_else(|e| {
                panic!("{frame:?} decoded once but not after re-encoding: {e}")
            });
            assert_eq!(again, frame);
        }
        Err(err) => {
            check_error(bytes, &err);
            match &err {
                DecodeError::UnknownType { kind, .. } => {
                    assert!(
                        !REQUEST_TYPES.contains(&kind.as_str()),
                        "known type {kind:?} called unknown"
                    );
                    assert!(kind.chars().count() <= 64, "unknown type name not truncated");
                }
                DecodeError::BadShape { kind, .. } => {
                    assert!(
                        REQUEST_TYPES.contains(&kind.as_str()),
                        "bad shape of unknown type {kind:?}"
                    );
                }
                DecodeError::TooLarge(_) | DecodeError::NotJson(_) => {}
            }
        }
    }
}

/// The same for supernode frames.
fn check_server(bytes: &[u8]) {
    match decode_server_frame(bytes) {
        Ok(frame) => {
            assert!(bytes.len() <= MAX_FRAME_BYTES);
            let again = decode_server_frame(encode(&frame).as_bytes()).unwrap_or_else(|e| {
                panic!("{frame:?} decoded once but not after re-encoding: {e}")
            });
            assert_eq!(again, frame);
        }
        Err(err) => {
            check_error(bytes, &err);
            assert_eq!(err.request_id(), None, "server frames never yield a request id");
        }
    }
}

fn check_error(bytes: &[u8], err: &DecodeError) {
    if bytes.len() > MAX_FRAME_BYTES {
        assert_eq!(*err, DecodeError::TooLarge(bytes.len()));
    } else {
        assert!(!matches!(err, DecodeError::TooLarge(_)), "{} bytes called too large", bytes.len());
    }
    // Turning the error into a wire answer must not panic either, and must stay a small frame.
    let body = err.to_error_body();
    let answer = encode(&ServerFrame::Error { id: err.request_id(), error: body });
    assert!(answer.len() < 2048, "error answer of {} bytes", answer.len());
}

// ---- strategies ----

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, control characters and quotes included.
    any::<String>()
}

fn username() -> impl Strategy<Value = String> {
    prop_oneof![Just("alice".to_owned()), Just("bob".to_owned()), "[a-z0-9._-]{3,32}", text()]
}

fn hex(len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(b"0123456789abcdef".to_vec()), len)
        .prop_map(|b| String::from_utf8(b).unwrap())
}

fn status() -> impl Strategy<Value = Status> {
    proptest::sample::select(vec![Status::Online, Status::Away, Status::Busy, Status::Invisible])
}

fn presence() -> impl Strategy<Value = Presence> {
    proptest::sample::select(vec![
        Presence::Online,
        Presence::Away,
        Presence::Busy,
        Presence::Offline,
    ])
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(vec![
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::RateLimited,
        ErrorCode::InvalidCredentials,
        ErrorCode::LoginThrottled,
        ErrorCode::NotContact,
        ErrorCode::ContactRequestLimit,
        ErrorCode::MessageTooLong,
        ErrorCode::Internal,
    ])
}

fn chat_message() -> impl Strategy<Value = ChatMessage> {
    (
        any::<i64>(),
        username(),
        username(),
        text(),
        any::<i64>(),
        any::<Option<i64>>(),
        any::<Option<i64>>(),
    )
        .prop_map(|(id, from, to, text, sent_at, delivered_at, read_at)| ChatMessage {
            id,
            from,
            to,
            text,
            sent_at,
            delivered_at,
            read_at,
        })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(version, client)| Request::Hello { version, client }),
        (username(), proptest::option::of(text()), text()).prop_map(
            |(username, display_name, password)| Request::Register {
                username,
                display_name,
                password
            }
        ),
        (
            username(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            hex(64),
            hex(128),
            text(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(username, password, token, public_key, signature, name, bound, quiet)| {
                    let channel_binding = bound.then_some(ChannelBinding::TlsExporter);
                    Request::Login(Login {
                        username,
                        password,
                        token,
                        device: DeviceProof { public_key, signature, name, channel_binding },
                        quiet,
                    })
                }
            ),
        Just(Request::Logout),
        (text(), text()).prop_map(|(old_password, new_password)| Request::ChangePassword {
            old_password,
            new_password
        }),
        Just(Request::Whoami),
        any::<i64>().prop_map(|device_id| Request::RemoveDevice { device_id }),
        (proptest::option::of(text()), any::<Option<bool>>()).prop_map(
            |(display_name, discoverable)| Request::SetProfile { display_name, discoverable }
        ),
        text().prop_map(|query| Request::Search { query }),
        (username(), proptest::option::of(text()))
            .prop_map(|(username, message)| Request::ContactAdd { username, message }),
        username().prop_map(|username| Request::ContactAccept { username }),
        username().prop_map(|username| Request::ContactBlock { username }),
        status().prop_map(|status| Request::SetStatus { status }),
        (username(), text()).prop_map(|(to, text)| Request::SendMessage { to, text }),
        proptest::collection::vec(any::<i64>(), 0..50)
            .prop_map(|ids| Request::AckDelivered { ids }),
        proptest::collection::vec(any::<i64>(), 0..50).prop_map(|ids| Request::MarkRead { ids }),
        (any::<Option<u32>>(), any::<Option<i64>>())
            .prop_map(|(limit, after)| Request::Inbox { limit, after }),
        proptest::option::of(username()).prop_map(|after| Request::Contacts { after }),
        (username(), any::<Option<u32>>(), any::<Option<i64>>())
            .prop_map(|(with, limit, before)| Request::History { with, limit, before }),
        Just(Request::Ping),
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    (any::<u64>(), request()).prop_map(|(id, request)| ClientFrame { id, request })
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (any::<u32>(), text(), hex(64), any::<u64>(), any::<Option<u16>>()).prop_map(
            |(version, server, nonce, heartbeat_timeout_secs, stun_port)| {
                Reply::Hello { version, server, nonce, heartbeat_timeout_secs, stun_port }
            }
        ),
        Just(Reply::Done),
        (
            username(),
            text(),
            any::<i64>(),
            text(),
            status(),
            proptest::collection::vec(text(), 0..3)
        )
            .prop_map(|(username, display_name, device_id, token, status, supernodes)| {
                Reply::LoggedIn { username, display_name, device_id, token, status, supernodes }
            }),
        proptest::collection::vec((username(), text()), 0..5).prop_map(|users| {
            Reply::SearchResults {
                users: users
                    .into_iter()
                    .map(|(username, display_name)| UserSummary { username, display_name })
                    .collect(),
            }
        }),
        proptest::collection::vec(
            (username(), text(), presence(), proptest::option::of(text())),
            0..5
        )
        .prop_map(|contacts| Reply::Contacts {
            more: contacts.len() % 2 == 1,
            contacts: contacts
                .into_iter()
                .map(|(username, display_name, presence, message)| Contact {
                    username,
                    display_name,
                    state: ContactState::Accepted,
                    presence,
                    message,
                })
                .collect(),
        }),
        chat_message().prop_map(|message| Reply::MessageSent { message }),
        proptest::collection::vec(chat_message(), 0..5)
            .prop_map(|messages| Reply::Messages { more: messages.len() % 2 == 1, messages }),
        Just(Reply::Pong),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (username(), presence())
            .prop_map(|(username, presence)| Event::Presence { username, presence }),
        (username(), text(), proptest::option::of(text())).prop_map(
            |(username, display_name, message)| Event::ContactRequest {
                username,
                display_name,
                message
            }
        ),
        username().prop_map(|username| Event::ContactRemoved { username }),
        chat_message().prop_map(|message| Event::Message { message }),
        (any::<i64>(), any::<bool>(), any::<i64>()).prop_map(|(message_id, read, at)| {
            Event::Receipt {
                message_id,
                kind: if read { ReceiptKind::Read } else { ReceiptKind::Delivered },
                at,
            }
        }),
        Just(Event::SessionEnded { reason: EndReason::SlowReader }),
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (any::<u64>(), reply()).prop_map(|(id, result)| ServerFrame::Ok { id, result }),
        (any::<Option<u64>>(), error_code(), text(), any::<Option<u64>>()).prop_map(
            |(id, code, message, retry_after_secs)| ServerFrame::Error {
                id,
                error: ErrorBody { code, message, retry_after_secs },
            }
        ),
        event().prop_map(|event| ServerFrame::Event { event }),
    ]
}

/// Encoded valid frames of both directions, as seeds for mutation.
fn valid_frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        client_frame().prop_map(|f| encode(&f).into_bytes()),
        server_frame().prop_map(|f| encode(&f).into_bytes()),
    ]
}

/// One edit of a byte string; positions are taken modulo the length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
    Replace { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to JSON are likelier than others, so edits reach past the tokenizer.
    let byte =
        prop_oneof![proptest::sample::select(br#"{}[]":,\ 0-9eE.tfn"#.to_vec()), any::<u8>()];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), byte.clone()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Delete { at }),
        (any::<usize>(), byte).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Flip { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
            Mutation::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
            Mutation::Delete { at } if len > 0 => {
                bytes.remove(at % len);
            }
            Mutation::Replace { at, byte } if len > 0 => bytes[at % len] = byte,
            _ => {}
        }
    }
    bytes
}

// ---- properties ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// (a) Arbitrary bytes, up to past the frame limit, never panic either decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..70 * 1024)) {
        check_client(&bytes);
        check_server(&bytes);
    }

    /// (a) The same with bytes drawn from JSON's alphabet, which get further into the parser.
    #[test]
    fn json_like_soup_never_panics(soup in r#"[{}\[\]":,0-9a-z_ \\-]{0,400}"#) {
        check_client(soup.as_bytes());
        check_server(soup.as_bytes());
    }

    /// (b) Valid frames with random edits never panic, and are either decoded (and then
    /// re-encode to the same value) or refused with a typed error.
    #[test]
    fn mutated_frames_never_panic(
        frame in valid_frame_bytes(),
        mutations in proptest::collection::vec(mutation(), 1..8),
    ) {
        let bytes = apply(frame, &mutations);
        check_client(&bytes);
        check_server(&bytes);
    }

    /// (c) Any request encodes and decodes back to itself.
    #[test]
    fn requests_round_trip(frame in client_frame()) {
        let text = encode(&frame);
        prop_assert_eq!(decode_client_frame(text.as_bytes()), Ok(frame));
    }

    /// (c) Any supernode frame encodes and decodes back to itself.
    #[test]
    fn server_frames_round_trip(frame in server_frame()) {
        let text = encode(&frame);
        prop_assert_eq!(decode_server_frame(text.as_bytes()), Ok(frame));
    }

    /// (d) A frame over 64 KiB is `TooLarge` whatever it holds, even valid JSON; padded to
    /// exactly 64 KiB it still decodes.
    #[test]
    fn oversized_frames_are_too_large(
        frame in valid_frame_bytes(),
        over in 1usize..8192,
        filler in any::<u8>(),
    ) {
        let mut at_limit = frame.clone();
        at_limit.resize(MAX_FRAME_BYTES, b' ');
        let fits = decode_client_frame(&at_limit).is_ok() || decode_server_frame(&at_limit).is_ok();
        prop_assert!(fits, "a valid frame padded to exactly the limit must decode");

        let mut padded = frame.clone();
        padded.resize(MAX_FRAME_BYTES + over, b' ');
        let mut junk = frame;
        junk.resize(MAX_FRAME_BYTES + over, filler);
        for bytes in [padded, junk] {
            let len = bytes.len();
            prop_assert_eq!(decode_client_frame(&bytes), Err(DecodeError::TooLarge(len)));
            prop_assert_eq!(decode_server_frame(&bytes), Err(DecodeError::TooLarge(len)));
            prop_assert_eq!(DecodeError::TooLarge(len).to_error_body().code, ErrorCode::FrameTooLarge);
        }
    }
}

/// Deep nesting inside an otherwise valid frame (in a field the decoder ignores, or buffers for
/// an internally tagged enum) is refused by the parser's depth limit, not by a stack overflow.
#[test]
fn deep_nesting_is_refused_without_overflow() {
    let depth = MAX_FRAME_BYTES / 2 - 64;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(depth / 5), "}".repeat(depth / 5));
    for nested in [arrays, objects] {
        for frame in [
            nested.clone(),
            format!(r#"{{"id":1,"type":"ping","x":{nested}}}"#),
            format!(r#"{{"id":1,"type":"send_message","to":"bob","text":{nested}}}"#),
            format!(
                r#"{{"type":"event","event":{{"type":"presence","username":"bob","presence":"online","x":{nested}}}}}"#
            ),
            format!(r#"{{"type":"ok","id":1,"result":{{"type":"pong","x":{nested}}}}}"#),
        ] {
            let bytes = &frame.as_bytes()[..frame.len().min(MAX_FRAME_BYTES)];
            check_client(bytes);
            check_server(bytes);
        }
    }
}

/// Errors carry the request id when the frame got far enough to show one.
#[test]
fn errors_keep_the_id_when_they_can() {
    let cases: [(&[u8], Option<u64>, ErrorCode); 5] = [
        (br#"{"id":5,"type":"no_such_request"}"#, Some(5), ErrorCode::UnknownType),
        (br#"{"id":6,"type":"send_message","to":"bob"}"#, Some(6), ErrorCode::BadRequest),
        (br#"{"id":7}"#, Some(7), ErrorCode::UnknownType),
        (br#"{"id":8,"type":"ping""#, None, ErrorCode::BadRequest),
        (b"\xff\xfe", None, ErrorCode::BadRequest),
    ];
    for (bytes, id, code) in cases {
        let err = decode_client_frame(bytes).unwrap_err();
        assert_eq!(
            (err.request_id(), err.to_error_body().code),
            (id, code),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}
