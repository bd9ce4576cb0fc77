//! Frame codec: bytes of a WebSocket text message in, typed frames out, with the limits applied
//! before any parsing work. Every failure is a typed [`DecodeError`] that maps to a wire error.

use serde::Deserialize;

use crate::MAX_FRAME_BYTES;
use crate::error::{ErrorBody, ErrorCode};
use crate::messages::{ClientFrame, REQUEST_TYPES, ServerFrame};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is larger than the 64 KiB limit")]
    TooLarge(usize),
    /// Not UTF-8 / not JSON / not an object.
    #[error("frame is not a JSON object: {0}")]
    NotJson(String),
    /// A JSON object whose `type` is unknown.
    #[error("unknown request type {kind:?}")]
    UnknownType {
        /// The request id, if one could be read.
        id: Option<u64>,
        /// The offending type name (truncated).
        kind: String,
    },
    /// A known type with missing or ill-typed fields.
    #[error("malformed {kind} request: {detail}")]
    BadShape {
        /// The request id, if one could be read.
        id: Option<u64>,
        /// The request type.
        kind: String,
        /// What serde said.
        detail: String,
    },
}

impl DecodeError {
    /// The request id the answer should carry, when it could be recovered.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Self::UnknownType { id, .. } | Self::BadShape { id, .. } => *id,
            Self::TooLarge(_) | Self::NotJson(_) => None,
        }
    }

    /// The wire error for this failure.
    pub fn to_error_body(&self) -> ErrorBody {
        let code = match self {
            Self::TooLarge(_) => ErrorCode::FrameTooLarge,
            Self::UnknownType { .. } => ErrorCode::UnknownType,
            Self::NotJson(_) | Self::BadShape { .. } => ErrorCode::BadRequest,
        };
        ErrorBody::with_message(code, self.to_string())
    }
}

/// Just enough of a frame to answer an error with the right id.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Decodes a client frame, enforcing the size limit first.
pub fn decode_client_frame(bytes: &[u8]) -> Result<ClientFrame, DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    match serde_json::from_slice::<ClientFrame>(bytes) {
        Ok(frame) => Ok(frame),
        Err(err) => {
            let envelope = serde_json::from_slice::<Envelope>(bytes)
                .map_err(|e| DecodeError::NotJson(truncate(&e.to_string(), 200)))?;
            let kind = envelope.kind.unwrap_or_default();
            if REQUEST_TYPES.contains(&kind.as_str()) {
                Err(DecodeError::BadShape {
                    id: envelope.id,
                    kind,
                    detail: truncate(&err.to_string(), 200),
                })
            } else {
                Err(DecodeError::UnknownType { id: envelope.id, kind: truncate(&kind, 64) })
            }
        }
    }
}

/// Decodes a supernode frame (client side), enforcing the size limit first.
pub fn decode_server_frame(bytes: &[u8]) -> Result<ServerFrame, DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(truncate(&e.to_string(), 200)))
}

/// Encodes any frame as the JSON text of a WebSocket message.
pub fn encode<T: serde::Serialize>(frame: &T) -> String {
    // Serializing these types cannot fail: all maps have string keys and no custom serializers.
    serde_json::to_string(frame).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::messages::*;

    #[test]
    fn round_trips_a_request() {
        let frame = ClientFrame {
            id: 7,
            request: Request::SendMessage { to: "bob".into(), text: "hi".into() },
        };
        let text = encode(&frame);
        assert_eq!(text, r#"{"id":7,"type":"send_message","to":"bob","text":"hi"}"#);
        assert_eq!(decode_client_frame(text.as_bytes()).unwrap(), frame);
    }

    #[test]
    fn unit_requests_decode() {
        let f = decode_client_frame(br#"{"id":1,"type":"ping"}"#).unwrap();
        assert_eq!(f.request, Request::Ping);
    }

    #[test]
    fn unknown_type_keeps_the_id() {
        let err = decode_client_frame(br#"{"id":9,"type":"launch_missiles"}"#).unwrap_err();
        assert_eq!(err.request_id(), Some(9));
        assert_eq!(err.to_error_body().code, ErrorCode::UnknownType);
    }

    #[test]
    fn bad_shape_keeps_the_id() {
        let err = decode_client_frame(br#"{"id":3,"type":"send_message","to":5}"#).unwrap_err();
        assert_eq!(err.request_id(), Some(3));
        assert_eq!(err.to_error_body().code, ErrorCode::BadRequest);
    }

    #[test]
    fn garbage_is_not_json() {
        let err = decode_client_frame(b"\xff\x00garbage").unwrap_err();
        assert!(matches!(err, DecodeError::NotJson(_)));
        assert_eq!(err.request_id(), None);
    }

    #[test]
    fn oversized_frames_are_refused_before_parsing() {
        let big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert_eq!(
            decode_client_frame(&big).unwrap_err(),
            DecodeError::TooLarge(MAX_FRAME_BYTES + 1)
        );
    }

    #[test]
    fn server_frames_round_trip() {
        let frames = [
            ServerFrame::Ok { id: 1, result: Reply::Pong },
            ServerFrame::Error { id: None, error: ErrorBody::new(ErrorCode::RateLimited) },
            ServerFrame::Event {
                event: Event::Presence { username: "bob".into(), presence: Presence::Away },
            },
        ];
        for f in frames {
            assert_eq!(decode_server_frame(encode(&f).as_bytes()).unwrap(), f);
        }
    }
}
