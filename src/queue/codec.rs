//! The on-disk encoding of queue values. Pure: bytes in, values out.
//!
//! # Format
//!
//! Every value the queue stores is a frame:
//!
//! ```text
//! [u8 format version][u32 LE CRC-32 of body][body]
//! ```
//!
//! The body is bincode 2 (`config::standard()`, a size limit on decode) of a frozen struct per
//! version: [`EnvelopeV1`] for events, [`DeadLetterV1`] for dead letters. The version byte sits
//! outside the body so a reader can pick the struct before decoding, and the checksum tells
//! corruption apart from a version it does not know. Never change a `*V1` struct: add a `V2`, a
//! new version byte and a branch in the decoder. Keys are big-endian `u64` sequence numbers, so
//! byte order is numeric order.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::Envelope;

/// Version byte of [`EnvelopeV1`] frames.
pub const ENVELOPE_V1: u8 = 1;
/// Version byte of [`DeadLetterV1`] frames.
pub const DEAD_LETTER_V1: u8 = 1;
/// Decoding refuses bodies that would allocate more than this (a corrupt length field).
const DECODE_LIMIT: usize = 256 * 1024 * 1024;
const HEADER: usize = 5;

/// Why bytes could not be decoded. The text becomes the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("record is {0} bytes, shorter than its 5-byte header")]
    Truncated(usize),
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("undecodable body: {0}")]
    Body(String),
    #[error("key is {0} bytes, expected 8")]
    Key(usize),
}

/// An event as stored, version 1. Frozen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeV1 {
    pub seq: u64,
    pub id: u128,
    pub kind: String,
    pub topic: String,
    pub key: String,
    pub route_id: Option<String>,
    pub created_at_us: i64,
    /// Encoded exactly like a plain `Vec<u8>` (length, then the bytes); `serde_bytes` only
    /// makes decoding a copy instead of a byte-by-byte visit.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A dead letter as stored, version 1. Frozen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterV1 {
    pub seq: u64,
    pub reason: String,
    pub dead_at_us: i64,
    pub attempts: u32,
    /// The stored event exactly as it was (possibly corrupt), so nothing is lost.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

/// Sequence number → key.
pub fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Key → sequence number.
pub fn seq_of(key: &[u8]) -> Result<u64, CodecError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| CodecError::Key(key.len()))?;
    Ok(u64::from_be_bytes(bytes))
}

pub fn encode_envelope(e: &Envelope) -> Vec<u8> {
    let body = EnvelopeV1 {
        seq: e.seq,
        id: e.id.as_u128(),
        kind: e.kind.clone(),
        topic: e.topic.clone(),
        key: e.key.clone(),
        route_id: e.route_id.clone(),
        created_at_us: e.created_at_us,
        payload: e.payload.clone(),
    };
    frame(ENVELOPE_V1, &body)
}

/// Decode a stored event; `attempts` comes from the outbox index and is set by the caller.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, CodecError> {
    let (version, body) = unframe(bytes)?;
    match version {
        ENVELOPE_V1 => {
            let v: EnvelopeV1 = decode_body(body)?;
            Ok(Envelope {
                seq: v.seq,
                id: Uuid::from_u128(v.id),
                kind: v.kind,
                topic: v.topic,
                key: v.key,
                route_id: v.route_id,
                created_at_us: v.created_at_us,
                payload: v.payload,
                attempts: 0,
            })
        }
        other => Err(CodecError::UnknownVersion(other)),
    }
}

pub fn encode_dead_letter(d: &DeadLetterV1) -> Vec<u8> {
    frame(DEAD_LETTER_V1, d)
}

pub fn decode_dead_letter(bytes: &[u8]) -> Result<DeadLetterV1, CodecError> {
    match unframe(bytes)? {
        (DEAD_LETTER_V1, body) => decode_body(body),
        (other, _) => Err(CodecError::UnknownVersion(other)),
    }
}

fn frame<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("bincode encoding of plain structs cannot fail");
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.push(version);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn unframe(bytes: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    if bytes.len() < HEADER {
        return Err(CodecError::Truncated(bytes.len()));
    }
    let stored = u32::from_le_bytes(bytes[1..HEADER].try_into().expect("4 bytes"));
    let body = &bytes[HEADER..];
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    Ok((bytes[0], body))
}

fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let cfg = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (value, used) = bincode::serde::decode_from_slice(body, cfg)
        .map_err(|e| CodecError::Body(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Body(format!(
            "{} trailing bytes after the body",
            body.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn envelope() -> impl Strategy<Value = Envelope> {
        (
            any::<u64>(),
            any::<u128>(),
            "[a-z.]{0,20}",
            "[a-z-]{1,30}",
            ".{0,40}",
            proptest::option::of(".{0,40}"),
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 0..2048),
        )
            .prop_map(
                |(seq, id, kind, topic, key, route_id, created_at_us, payload)| Envelope {
                    seq,
                    id: Uuid::from_u128(id),
                    kind,
                    topic,
                    key,
                    route_id,
                    created_at_us,
                    payload,
                    attempts: 0,
                },
            )
    }

    proptest! {
        #[test]
        fn envelopes_round_trip(e in envelope()) {
            prop_assert_eq!(decode_envelope(&encode_envelope(&e)).unwrap(), e);
        }

        #[test]
        fn any_single_bit_flip_is_detected(e in envelope(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut bytes = encode_envelope(&e);
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(decode_envelope(&bytes).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_envelope(&bytes);
            let _ = decode_dead_letter(&bytes);
        }

        #[test]
        fn keys_sort_like_numbers(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(key(a).cmp(&key(b)), a.cmp(&b));
            prop_assert_eq!(seq_of(&key(a)).unwrap(), a);
        }
    }

    #[test]
    fn byte_fields_are_encoded_like_a_plain_vec() {
        #[derive(Serialize)]
        struct Plain {
            payload: Vec<u8>,
        }
        #[derive(Serialize)]
        struct Bytes {
            #[serde(with = "serde_bytes")]
            payload: Vec<u8>,
        }
        let cfg = bincode::config::standard();
        let data: Vec<u8> = (0..=255).collect();
        let plain = bincode::serde::encode_to_vec(
            Plain {
                payload: data.clone(),
            },
            cfg,
        )
        .unwrap();
        let bytes = bincode::serde::encode_to_vec(Bytes { payload: data }, cfg).unwrap();
        assert_eq!(
            plain, bytes,
            "the on-disk format does not depend on serde_bytes"
        );
    }

    #[test]
    fn truncation_and_unknown_versions_are_named() {
        assert_eq!(decode_envelope(&[1, 2]), Err(CodecError::Truncated(2)));
        let mut bytes = encode_envelope(&Envelope::sequenced(
            1,
            crate::events::NewEvent::now("k", "t", "v", None, &1),
        ));
        bytes[0] = 9;
        assert_eq!(decode_envelope(&bytes), Err(CodecError::UnknownVersion(9)));
    }

    #[test]
    fn dead_letters_keep_the_raw_bytes() {
        let d = DeadLetterV1 {
            seq: 7,
            reason: "checksum mismatch".into(),
            dead_at_us: 1,
            attempts: 3,
            raw: vec![0xff, 0, 1],
        };
        assert_eq!(decode_dead_letter(&encode_dead_letter(&d)).unwrap(), d);
    }
}
