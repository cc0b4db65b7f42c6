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
    #[error("chunk structure damaged: {0}")]
    Chunk(String),
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

/// Version byte of a plain chunk (only ever the inside of a [`CHUNK_V2`] now).
pub const CHUNK_V1: u8 = 1;
/// Version byte of a compressed chunk: the values of the `log` tree.
pub const CHUNK_V2: u8 = 2;
/// Bytes of a plain chunk's header before its length table: version and count.
const CHUNK_HEADER: usize = 5;
/// Bytes of a compressed chunk's header: version, count, plain length, CRC-32.
const CHUNK_V2_HEADER: usize = 13;
/// zstd's fastest level: a chunk of GPS fixes shrinks 3–5 times at a few % of a core.
const CHUNK_ZSTD_LEVEL: i32 = 1;

/// A chunk: consecutive event frames stored under the first one's sequence number.
///
/// ```text
/// plain (v1):      [u8 1][u32 LE count][count × u32 LE frame length][frame 0][frame 1]…
/// compressed (v2): [u8 2][u32 LE count][u32 LE plain length][u32 LE CRC-32 of the rest][zstd of the plain chunk]
/// ```
///
/// Frame `i` is the event with sequence number `first + i`, an [`encode_envelope`] frame with
/// its own checksum, so a damaged event spoils only itself; a damaged length table or
/// compressed body spoils the chunk (every event in it is reported corrupt). The count sits
/// outside the compressed body, so the sequence numbers a chunk covers are known even then.
/// Frozen, like the `*V1` structs.
pub fn encode_chunk<'a>(frames: impl ExactSizeIterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let plain = encode_plain_chunk(frames);
    let packed = COMPRESSOR.with(|c| {
        c.borrow_mut()
            .compress(&plain)
            .expect("zstd compresses any input into a growable buffer")
    });
    let mut out = Vec::with_capacity(CHUNK_V2_HEADER + packed.len());
    out.push(CHUNK_V2);
    out.extend_from_slice(&plain[1..CHUNK_HEADER]);
    out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&packed).to_le_bytes());
    out.extend_from_slice(&packed);
    out
}

fn encode_plain_chunk<'a>(frames: impl ExactSizeIterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let body: usize = frames.clone().map(|f| f.len() + 4).sum();
    let mut out = Vec::with_capacity(CHUNK_HEADER + body);
    out.push(CHUNK_V1);
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    for f in frames.clone() {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
    }
    for f in frames {
        out.extend_from_slice(f);
    }
    out
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<zstd::bulk::Compressor<'static>> = std::cell::RefCell::new(
        zstd::bulk::Compressor::new(CHUNK_ZSTD_LEVEL).expect("zstd level 1 exists"),
    );
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// How many frames a chunk says it holds, without checking the rest.
pub fn chunk_count(bytes: &[u8]) -> Result<u32, CodecError> {
    match bytes {
        [CHUNK_V1 | CHUNK_V2, a, b, c, d, ..] => Ok(u32::from_le_bytes([*a, *b, *c, *d])),
        [other, _, _, _, _, ..] => Err(CodecError::UnknownVersion(*other)),
        _ => Err(CodecError::Truncated(bytes.len())),
    }
}

/// A stored chunk as a plain one: decompressed (after its checksum is checked) when it is
/// compressed, as it is when it is plain.
pub fn plain_chunk(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CodecError> {
    chunk_count(bytes)?;
    if bytes[0] == CHUNK_V1 {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    if bytes.len() < CHUNK_V2_HEADER {
        return Err(CodecError::Truncated(bytes.len()));
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let (plain_len, stored) = (word(5) as usize, word(9));
    let packed = &bytes[CHUNK_V2_HEADER..];
    let computed = crc32fast::hash(packed);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    if plain_len > DECODE_LIMIT {
        return Err(CodecError::Chunk(format!("claims {plain_len} plain bytes")));
    }
    let plain = DECOMPRESSOR
        .with(|d| match d.borrow_mut().as_mut() {
            Some(d) => d.decompress(packed, plain_len),
            None => zstd::bulk::decompress(packed, plain_len),
        })
        .map_err(|e| CodecError::Chunk(format!("cannot decompress: {e}")))?;
    if plain.len() != plain_len || chunk_count(&plain)? != chunk_count(bytes)? {
        return Err(CodecError::Chunk(
            "the compressed body does not match its header".into(),
        ));
    }
    Ok(std::borrow::Cow::Owned(plain))
}

/// The frames of a plain chunk ([`plain_chunk`]), in order; an error when the structure does
/// not add up.
pub fn chunk_frames(bytes: &[u8]) -> Result<Vec<&[u8]>, CodecError> {
    if bytes.first() == Some(&CHUNK_V2) {
        return Err(CodecError::Chunk(
            "compressed: open it with plain_chunk first".into(),
        ));
    }
    let count = chunk_count(bytes)? as usize;
    let table_end = count
        .checked_mul(4)
        .and_then(|t| t.checked_add(CHUNK_HEADER))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| CodecError::Chunk(format!("{count} frames do not fit")))?;
    let mut frames = Vec::with_capacity(count);
    let mut at = table_end;
    for entry in bytes[CHUNK_HEADER..table_end].chunks_exact(4) {
        let len = u32::from_le_bytes(entry.try_into().expect("4 bytes")) as usize;
        let end = at
            .checked_add(len)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| CodecError::Chunk("a frame runs past the end".into()))?;
        frames.push(&bytes[at..end]);
        at = end;
    }
    if at != bytes.len() {
        return Err(CodecError::Chunk(format!(
            "{} bytes after the last frame",
            bytes.len() - at
        )));
    }
    Ok(frames)
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

    proptest! {
        #[test]
        fn chunks_round_trip(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20)) {
            let encoded = encode_chunk(frames.iter().map(Vec::as_slice));
            prop_assert_eq!(chunk_count(&encoded).unwrap() as usize, frames.len());
            let plain = plain_chunk(&encoded).unwrap();
            let decoded: Vec<Vec<u8>> = chunk_frames(&plain).unwrap().into_iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn any_single_bit_flip_in_a_compressed_chunk_is_detected(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 1..8),
            pos in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut encoded = encode_chunk(frames.iter().map(Vec::as_slice));
            let i = pos.index(encoded.len());
            encoded[i] ^= 1 << bit;
            // The body is covered by the checksum, the count and length by the body.
            prop_assert!(plain_chunk(&encoded).is_err());
        }

        #[test]
        fn damaged_chunks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(plain) = plain_chunk(&bytes) {
                let _ = chunk_frames(&plain);
            }
            let _ = chunk_frames(&bytes);
            let _ = chunk_count(&bytes);
        }
    }

    #[test]
    fn a_chunk_whose_table_does_not_add_up_is_refused() {
        let mut encoded = encode_plain_chunk([&b"abc"[..], &b"de"[..]].into_iter());
        encoded[5] = 9;
        assert!(matches!(chunk_frames(&encoded), Err(CodecError::Chunk(_))));
        encoded.truncate(3);
        assert_eq!(chunk_frames(&encoded), Err(CodecError::Truncated(3)));
    }

    #[test]
    fn a_chunk_of_gps_fixes_is_stored_in_a_fraction_of_its_size() {
        let fixes: Vec<Vec<u8>> = (0..12)
            .map(|i| {
                let fix = format!(
                    r#"{{"vehicleId":"v-{i:04}","latitude":40.71{i:02},"longitude":-74.00{i:02},"timestamp":"2026-12-01T09:00:{i:02}Z","speedKmh":42.{i}}}"#
                );
                encode_envelope(&Envelope::sequenced(i, crate::events::NewEvent::now("vehicle.position", "positions", "v", None, &fix)))
            })
            .collect();
        let plain: usize = fixes.iter().map(Vec::len).sum();
        let stored = encode_chunk(fixes.iter().map(Vec::as_slice)).len();
        assert!(stored * 2 < plain, "{stored} of {plain} bytes");
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
