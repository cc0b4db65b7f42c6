//! Kafka's default partitioner for keyed records, so routegate and Java producers agree.
//!
//! `org.apache.kafka.clients.producer.internals.BuiltInPartitioner.partitionForKey`:
//! `Utils.toPositive(Utils.murmur2(key)) % numPartitions`, with murmur2 seeded `0x9747b28c`.

/// Kafka's `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's Java producer picks for `key` among `partitions` (at least 1).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed with kafka-clients 4.1.1 `Utils.murmur2` and `Utils.toPositive(h) % n`.
    const JAVA: &[(&str, i32, i32, i32)] = &[
        ("21", -973932308, 0, 0),
        ("foobar", -790332482, 0, 6),
        ("a-little-bit-long-string", -985981536, 2, 8),
        ("a-little-bit-longer-string", -1486304829, 2, 11),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
            2,
            5,
        ),
        ("abc", 479470107, 0, 3),
        ("53ac84a9-ddcc-4a1c-a153-e9738c026e03", 1675331384, 2, 8),
        ("vehicle-1", 289774458, 0, 6),
        ("", 275646681, 0, 9),
    ];

    #[test]
    fn murmur2_and_partitions_match_the_java_producer() {
        for &(key, hash, p3, p12) in JAVA {
            assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
            assert_eq!(partition_for_key(key.as_bytes(), 3), p3, "{key:?} % 3");
            assert_eq!(partition_for_key(key.as_bytes(), 12), p12, "{key:?} % 12");
        }
    }

    #[test]
    fn partition_is_always_in_range() {
        for n in 1..50 {
            for k in 0..200u32 {
                let p = partition_for_key(&k.to_le_bytes(), n);
                assert!((0..n).contains(&p));
            }
        }
    }
}
