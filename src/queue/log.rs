//! The event log as chunks: finding an event by sequence number, walking events in order.
//!
//! The `log` tree maps the first sequence number of a chunk to the chunk ([`codec::encode_chunk`]):
//! the events of one writer group, consecutive, split at [`CHUNK_MAX_BYTES`]. One sled insert
//! stores a whole group's events and one delete removes them, where a tree of single events cost
//! an insert, an index entry and two deletes per event. Chunks never overlap; a chunk is written
//! once and deleted whole (only when none of its events is pending any more).

use sled::IVec;

use super::codec::{self, CodecError};

/// A chunk is closed once it holds this many bytes of frames (before compression). sled writes
/// a value larger than a quarter of its 512 KiB segment as a file of its own, and rewrites a
/// whole leaf (up to 17 values) at once, so chunks stay small enough that a full leaf stays
/// under that bound even when their frames do not compress.
pub(super) const CHUNK_MAX_BYTES: usize = 6 * 1024;

/// One stored chunk, opened.
#[derive(Debug, Clone)]
pub(super) struct Chunk {
    pub(super) first: u64,
    /// Events the chunk holds by its header (at least 1).
    count: u32,
    /// Bytes it takes in the tree.
    pub(super) stored: usize,
    /// The plain chunk, or why it cannot be had.
    plain: Result<IVec, CodecError>,
}

impl Chunk {
    pub(super) fn from_kv(key: &[u8], raw: &[u8]) -> Result<Chunk, CodecError> {
        Ok(Chunk {
            first: codec::seq_of(key)?,
            count: codec::chunk_count(raw).unwrap_or(1).max(1),
            stored: raw.len(),
            plain: codec::plain_chunk(raw).map(|p| IVec::from(p.as_ref())),
        })
    }

    /// The last sequence number the chunk claims (its first when even the count is unreadable).
    pub(super) fn last(&self) -> u64 {
        self.first + u64::from(self.count) - 1
    }

    /// `(seq, frame)` of every event, or why the chunk cannot be read.
    pub(super) fn events(&self) -> Result<Vec<(u64, &[u8])>, CodecError> {
        Ok((self.first..).zip(self.frames()?).collect())
    }

    /// The frames, in order, or why the chunk cannot be read.
    pub(super) fn frames(&self) -> Result<Vec<&[u8]>, CodecError> {
        let plain = self.plain.as_ref().map_err(Clone::clone)?;
        codec::chunk_frames(plain)
    }

    /// The frame of `seq`: `None` when the chunk does not hold it, an error when the chunk is
    /// damaged.
    pub(super) fn frame(&self, seq: u64) -> Option<Result<&[u8], CodecError>> {
        if seq < self.first || seq > self.last() {
            return None;
        }
        Some(self.frames().and_then(|f| {
            f.get((seq - self.first) as usize)
                .copied()
                .ok_or_else(|| CodecError::Chunk("fewer frames than its count".into()))
        }))
    }
}

/// The chunk holding `seq`, if any.
pub(super) fn chunk_at(log: &sled::Tree, seq: u64) -> sled::Result<Option<Chunk>> {
    Ok(stored_at(log, seq)?.and_then(|(_, key, raw)| Chunk::from_kv(&key, &raw).ok()))
}

/// The first sequence number, key and stored bytes of the chunk holding `seq`, found by its
/// header alone (nothing is decompressed).
fn stored_at(log: &sled::Tree, seq: u64) -> sled::Result<Option<(u64, IVec, IVec)>> {
    let Some((key, raw)) = log.range(..=codec::key(seq)).next_back().transpose()? else {
        return Ok(None);
    };
    let Ok(first) = codec::seq_of(&key) else {
        return Ok(None);
    };
    let count = codec::chunk_count(&raw).unwrap_or(1).max(1);
    Ok((first + u64::from(count) > seq).then_some((first, key, raw)))
}

/// Chunks in order, starting with the one holding `seq` (or the first after it).
pub(super) fn chunks_from(
    log: &sled::Tree,
    seq: u64,
) -> sled::Result<impl Iterator<Item = sled::Result<Chunk>> + use<>> {
    let start = stored_at(log, seq)?.map_or(seq, |(first, ..)| first);
    Ok(log.range(codec::key(start)..).filter_map(|kv| match kv {
        Ok((k, v)) => Chunk::from_kv(&k, &v).ok().map(Ok),
        Err(e) => Some(Err(e)),
    }))
}

/// Split a group's `(seq, frame)` list into chunks: `(first seq, chunk bytes)`.
pub(super) fn into_chunks(frames: &[(u64, Vec<u8>)]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, f)) in frames.iter().enumerate() {
        if i > start && bytes + f.len() > CHUNK_MAX_BYTES {
            out.push(encode(&frames[start..i]));
            (start, bytes) = (i, 0);
        }
        bytes += f.len();
    }
    if start < frames.len() {
        out.push(encode(&frames[start..]));
    }
    out
}

fn encode(frames: &[(u64, Vec<u8>)]) -> (u64, Vec<u8>) {
    let first = frames[0].0;
    debug_assert!(frames.iter().zip(first..).all(|((s, _), e)| *s == e));
    (
        first,
        codec::encode_chunk(frames.iter().map(|(_, f)| f.as_slice())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_split_at_the_byte_bound_and_keep_every_frame_in_order() {
        let frames: Vec<(u64, Vec<u8>)> = (10..30).map(|s| (s, vec![s as u8; 1000])).collect();
        let chunks = into_chunks(&frames);
        assert!(chunks.len() >= 20_000 / CHUNK_MAX_BYTES);
        let mut seen = Vec::new();
        for (first, raw) in &chunks {
            let chunk = Chunk::from_kv(&codec::key(*first), raw).unwrap();
            assert!(raw.len() <= CHUNK_MAX_BYTES + 64);
            for (seq, f) in chunk.events().unwrap() {
                assert_eq!(f, vec![seq as u8; 1000].as_slice());
                seen.push(seq);
            }
        }
        assert_eq!(seen, (10..30).collect::<Vec<_>>());
    }

    #[test]
    fn a_frame_larger_than_the_bound_gets_a_chunk_of_its_own() {
        let frames = vec![
            (1, vec![1; 10]),
            (2, vec![2; CHUNK_MAX_BYTES * 2]),
            (3, vec![3; 10]),
        ];
        let firsts: Vec<u64> = into_chunks(&frames).iter().map(|c| c.0).collect();
        assert_eq!(firsts, vec![1, 2, 3]);
    }

    #[test]
    fn events_are_found_by_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let frames: Vec<(u64, Vec<u8>)> = (5..9).map(|s| (s, vec![s as u8])).collect();
        for (first, raw) in into_chunks(&frames[..2])
            .into_iter()
            .chain(into_chunks(&frames[2..]))
        {
            log.insert(codec::key(first), raw).unwrap();
        }
        assert!(chunk_at(&log, 4).unwrap().is_none());
        assert!(chunk_at(&log, 9).unwrap().is_none());
        let c = chunk_at(&log, 7).unwrap().unwrap();
        assert_eq!((c.first, c.last()), (7, 8));
        assert_eq!(c.frame(8).unwrap().unwrap(), &[8]);
        let firsts: Vec<u64> = chunks_from(&log, 6)
            .unwrap()
            .map(|c| c.unwrap().first)
            .collect();
        assert_eq!(firsts, vec![5, 7]);
    }
}
