//! Fuzz harness: arbitrary bytes as a WebSocket text frame, fed to both frame decoders.
//!
//! Beyond "no panic", it checks the codec's contract: an oversized frame is `TooLarge` before any
//! parsing, every failure maps to a small wire error, and anything that decodes re-encodes to a
//! frame that decodes to the same value.

use peerline_wire::{
    DecodeError, MAX_FRAME_BYTES, ServerFrame, decode_client_frame, decode_server_frame, encode,
};

fn check_error(data: &[u8], err: &DecodeError) {
    assert_eq!(
        matches!(err, DecodeError::TooLarge(_)),
        data.len() > MAX_FRAME_BYTES,
        "TooLarge must mean exactly: over the frame limit"
    );
    let answer = encode(&ServerFrame::Error { id: err.request_id(), error: err.to_error_body() });
    assert!(answer.len() < 2048, "error answer of {} bytes", answer.len());
}

/// Feeds one input to both frame decoders and checks the codec's contract (see the module docs);
/// panics when a check fails.
pub fn frame_decoder(data: &[u8]) {
    match decode_client_frame(data) {
        Ok(frame) => {
            let again = decode_client_frame(encode(&frame).as_bytes());
            assert_eq!(again.as_ref(), Ok(&frame), "client frame does not round-trip");
        }
        Err(err) => check_error(data, &err),
    }
    match decode_server_frame(data) {
        Ok(frame) => {
            let again = decode_server_frame(encode(&frame).as_bytes());
            assert_eq!(again.as_ref(), Ok(&frame), "server frame does not round-trip");
        }
        Err(err) => check_error(data, &err),
    }
}
