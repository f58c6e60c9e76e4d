//! The data store's messages between the console and an agent (README.md,
//! "Data"). Agents keep only outbound connections, so the console opens a
//! stream of its own on an agent's existing connection for each operation:
//! one [`DataRequest`] frame, then for a put the bytes as [`DataChunk`]
//! frames; the agent answers with one [`DataReply`] frame, then for a get
//! the bytes as chunks. Bytes never travel whole: at most [`CHUNK_LEN`] at a
//! time, each its own frame (well under the codec's frame limit).
//!
//! Small puts are the exception ([`DataOp::PutSmall`]): the copies of many
//! small objects bound for one agent travel together in one request frame,
//! bytes included, and are answered in one frame — one stream, one frame
//! each way and one fdatasync on the agent for dozens of puts.
//!
//! Every request carries the console's term: an agent refuses a request
//! from a lower term than the highest it has seen (a deposed leader).

use serde::{Deserialize, Serialize};

use crate::data::{ObjectKey, ObjectMeta, Version};

/// The most bytes one chunk frame carries.
pub const CHUNK_LEN: usize = 256 * 1024;

/// The largest object whose copies travel in a [`DataOp::PutSmall`] batch.
pub const SMALL_COPY_MAX: u64 = 64 * 1024;

/// The most bytes of copies one [`DataOp::PutSmall`] batch carries: with
/// its metadata, well under the codec's frame limit.
pub const SMALL_BATCH_BYTES: usize = 512 * 1024;

/// The most copies one [`DataOp::PutSmall`] batch carries.
pub const SMALL_BATCH_COPIES: usize = 256;

/// What the console asks of an agent's copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRequest {
    /// The console's term.
    pub term: u64,
    /// The operation.
    pub op: DataOp,
}

/// An operation on an agent's copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataOp {
    /// Store a copy: `meta.size` bytes follow as chunks, then
    /// [`DataChunk::End`]. Acknowledged once durable and checksummed.
    Put(ObjectMeta),
    /// Send the current copy of the key: its metadata, then its bytes.
    Get(ObjectKey),
    /// What is held of the key, without the bytes.
    Stat(ObjectKey),
    /// Apply a removal: a tombstone at this version.
    Remove {
        /// The key.
        key: ObjectKey,
        /// The removal's version.
        version: Version,
    },
    /// Drop the copy (an extra one) or the tombstone (collected), whatever
    /// its version. Kept for consoles of the first data release; a console
    /// now sends [`DataOp::Discard`], which cannot race a newer put.
    Forget(ObjectKey),
    /// The per-range digests of everything held.
    Digests,
    /// The metadata of everything held in these ranges (see
    /// [`crate::data::digest`]).
    List(Vec<usize>),
    /// Drop what is held of `key` if it is of exactly `version`: an extra
    /// or stale copy, a collected tombstone, the copy of a put that failed.
    /// Any other version — one that arrived meanwhile, or an older one a
    /// failed put did not reach — is kept. Answered with what is held
    /// afterwards.
    Discard {
        /// The key.
        key: ObjectKey,
        /// The version dropped.
        version: Version,
    },
    /// How much of the data quota is used.
    Usage,
    /// Store these copies, each of at most [`SMALL_COPY_MAX`] bytes (at
    /// most [`SMALL_BATCH_COPIES`] of them, [`SMALL_BATCH_BYTES`] in all),
    /// each as [`DataOp::Put`] would. Answered with
    /// [`DataReply::HeldEach`], in the same order, once every copy is
    /// durable or refused.
    PutSmall(Vec<SmallCopy>),
}

/// One copy of a small object, bytes included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmallCopy {
    /// Its metadata, as a [`DataOp::Put`] carries it.
    pub meta: ObjectMeta,
    /// All of its bytes.
    #[serde(with = "serde_bytes_compat")]
    pub bytes: Vec<u8>,
}

/// A piece of an object's bytes, or their end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataChunk {
    /// The next bytes.
    Bytes(#[serde(with = "serde_bytes_compat")] Vec<u8>),
    /// No more.
    End,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataReply {
    /// Done; what is held now (a put's or removal's new copy, a stat's).
    Held(Option<ObjectMeta>),
    /// A get's metadata; the bytes follow as chunks.
    Object(ObjectMeta),
    /// The digests' leaves, one per range.
    Digests(Vec<u128>),
    /// The metadata listed.
    Listed(Vec<ObjectMeta>),
    /// The store's use of its quota.
    Usage {
        /// Live copies held.
        objects: u64,
        /// Bytes they take.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// Refused or failed; the sentence says why.
    Failed(DataFailure),
    /// A [`DataOp::PutSmall`]'s outcome, copy by copy in the request's
    /// order: what is held now, or why the copy was not stored.
    HeldEach(Vec<Result<ObjectMeta, DataFailure>>),
}

/// Why an agent did not carry out a data request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataFailure {
    /// No copy of the key.
    NotFound,
    /// A newer version is held: the request is stale.
    Stale {
        /// What is held.
        held: Version,
    },
    /// The copy does not fit the agent's data quota.
    OverQuota {
        /// Bytes held.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// The request came from a console of a lower term than one seen.
    Deposed {
        /// The highest term the agent has seen.
        seen: u64,
    },
    /// Anything else (bytes that do not match, a disk error, a broken
    /// stream): the sentence says what.
    Other(String),
}

impl std::fmt::Display for DataFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no copy"),
            Self::Stale { held } => write!(f, "a newer version ({held}) is held"),
            Self::OverQuota { used, quota } => write!(f, "over its data quota ({used} of {quota} bytes used)"),
            Self::Deposed { seen } => write!(f, "the request's console was deposed (term {seen} seen)"),
            Self::Other(why) => f.write_str(why),
        }
    }
}

/// Bytes as postcard's byte string rather than a sequence of numbers: the
/// same layout, without a per-byte varint.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut bytes = Vec::new();
                while let Some(byte) = seq.next_element()? {
                    bytes.push(byte);
                }
                Ok(bytes)
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, MAX_FRAME_LEN};
    use crate::data::key::MAX_KEY_LEN;

    #[test]
    fn a_full_chunk_is_one_frame_with_a_few_bytes_of_overhead() {
        let frame = codec::encode_frame(&DataChunk::Bytes(vec![7; CHUNK_LEN])).unwrap();
        assert!(frame.len() < CHUNK_LEN + 16, "{}", frame.len());
        assert!(frame.len() < MAX_FRAME_LEN);
        let (back, _) = codec::decode_frame::<DataChunk>(&frame, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(back, DataChunk::Bytes(vec![7; CHUNK_LEN]));
    }

    #[test]
    fn a_full_batch_of_small_copies_fits_one_frame() {
        let meta = |n: usize| ObjectMeta {
            key: ObjectKey::parse(&format!("{}{n:08}", "k".repeat(MAX_KEY_LEN - 8))).unwrap(),
            version: Version { term: u64::MAX, counter: u64::MAX },
            size: 0,
            checksum: "f".repeat(64),
            tombstone: false,
        };
        // The worst case: the most bytes, with the longest metadata on the
        // most copies.
        let per_copy = SMALL_BATCH_BYTES / SMALL_BATCH_COPIES;
        let copies: Vec<SmallCopy> =
            (0..SMALL_BATCH_COPIES).map(|n| SmallCopy { meta: meta(n), bytes: vec![1; per_copy] }).collect();
        let request = DataRequest { term: u64::MAX, op: DataOp::PutSmall(copies) };
        let frame = codec::encode_frame(&request).unwrap();
        let (back, _) = codec::decode_frame::<DataRequest>(&frame, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn requests_round_trip() {
        let request = DataRequest { term: 4, op: DataOp::List(vec![0, 255]) };
        let frame = codec::encode_frame(&request).unwrap();
        let (back, _) = codec::decode_frame::<DataRequest>(&frame, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(back, request);
    }
}
