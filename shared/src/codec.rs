//! Frames: `[payload length: u32 BE][protocol version: u16 BE][postcard payload]`.
//!
//! The version travels in every frame's header so a peer of another version
//! is recognised before its payload is decoded ([`CodecError::VersionMismatch`]
//! names both). Lengths are checked against a hard limit before anything is
//! allocated, and a payload must be consumed exactly: decoding any byte
//! string yields a message or an error, never a panic (property-tested below
//! over arbitrary bytes).
//!
//! Datagrams carry the version and the payload only: QUIC keeps their
//! boundaries.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::PROTOCOL_VERSION;

/// Bytes before a frame's payload: length and version.
pub const FRAME_HEADER_LEN: usize = 6;
/// Default limit on a control-stream payload.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Limit on the first frame of a connection the console does not know yet
/// (a hello, a join request): small, so a stranger cannot make it buffer
/// much.
pub const MAX_FIRST_FRAME_LEN: usize = 16 * 1024;
/// Limit on an answer to an authenticated admin client: the status of
/// ten thousand nodes is a few megabytes.
pub const MAX_ADMIN_FRAME_LEN: usize = 64 << 20;
/// Limit on a datagram, below QUIC's smallest maximum datagram size.
pub const MAX_DATAGRAM_LEN: usize = 1024;

/// Why bytes are not a message.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The header announces more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: peer speaks v{theirs}, we speak v{ours}")]
    VersionMismatch {
        /// The peer's version.
        theirs: u16,
        /// Ours, [`PROTOCOL_VERSION`].
        ours: u16,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The payload is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    /// The payload decoded but bytes were left over.
    #[error("malformed message: {0} trailing bytes")]
    TrailingBytes(usize),
    /// Reading or writing the stream failed.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `message` as one frame of the current protocol version.
///
/// # Errors
/// [`CodecError::TooLarge`] if the payload exceeds [`MAX_FRAME_LEN`];
/// [`CodecError::Malformed`] if serde refuses the value.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    encode_frame_as(message, PROTOCOL_VERSION)
}

/// Encodes `message` as one frame claiming protocol `version`; only tests and
/// the agent's `--protocol-version` flag claim another version than ours.
///
/// # Errors
/// As [`encode_frame`].
pub fn encode_frame_as<T: Serialize>(message: &T, version: u16) -> Result<Vec<u8>, CodecError> {
    encode_frame_with(message, version, MAX_FRAME_LEN)
}

/// Encodes an answer to an admin client, up to [`MAX_ADMIN_FRAME_LEN`].
///
/// # Errors
/// As [`encode_frame`], with the larger limit.
pub fn encode_admin_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    encode_frame_with(message, PROTOCOL_VERSION, MAX_ADMIN_FRAME_LEN)
}

fn encode_frame_with<T: Serialize>(message: &T, version: u16, max: usize) -> Result<Vec<u8>, CodecError> {
    let mut frame = postcard::to_extend(message, vec![0; FRAME_HEADER_LEN])?;
    let len = frame.len() - FRAME_HEADER_LEN;
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    let len_field = u32::try_from(len).map_err(|_| CodecError::TooLarge { len, max })?;
    frame[..4].copy_from_slice(&len_field.to_be_bytes());
    frame[4..6].copy_from_slice(&version.to_be_bytes());
    Ok(frame)
}

/// Decodes the first frame in `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame, otherwise the
/// message and how many bytes it used.
///
/// # Errors
/// Any [`CodecError`] but `Io`: the bytes can never become a valid frame.
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8], max_len: usize) -> Result<Option<(T, usize)>, CodecError> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let (len, version) = parse_header(header, max_len)?;
    check_version(version)?;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(payload)?, FRAME_HEADER_LEN + len)))
}

/// Reads one frame from `reader`; `Ok(None)` at a clean end of stream.
///
/// # Errors
/// [`CodecError::Truncated`] if the stream ends inside a frame, or any
/// decoding error.
pub async fn read_frame<T, R>(reader: &mut R, max_len: usize) -> Result<Option<T>, CodecError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + ?Sized,
{
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut filled = 0;
    while filled < FRAME_HEADER_LEN {
        let read = reader.read(&mut header[filled..]).await?;
        if read == 0 {
            return if filled == 0 { Ok(None) } else { Err(CodecError::Truncated) };
        }
        filled += read;
    }
    let (len, version) = parse_header(&header, max_len)?;
    check_version(version)?;
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload).await.map_err(|err| match err.kind() {
        std::io::ErrorKind::UnexpectedEof => CodecError::Truncated,
        _ => CodecError::Io(err),
    })?;
    decode_payload(&payload).map(Some)
}

/// Writes one frame to `writer`.
///
/// # Errors
/// An encoding error, or [`CodecError::Io`] if the stream fails.
pub async fn write_frame<T, W>(writer: &mut W, message: &T) -> Result<(), CodecError>
where
    T: Serialize,
    W: AsyncWrite + Unpin + ?Sized,
{
    let frame = encode_frame(message)?;
    writer.write_all(&frame).await?;
    Ok(())
}

/// Encodes `message` as a datagram.
///
/// # Errors
/// [`CodecError::TooLarge`] above [`MAX_DATAGRAM_LEN`].
pub fn encode_datagram<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    let datagram = postcard::to_extend(message, PROTOCOL_VERSION.to_be_bytes().to_vec())?;
    if datagram.len() > MAX_DATAGRAM_LEN {
        return Err(CodecError::TooLarge { len: datagram.len(), max: MAX_DATAGRAM_LEN });
    }
    Ok(datagram)
}

/// Decodes one datagram.
///
/// # Errors
/// Any decoding error; never panics.
pub fn decode_datagram<T: DeserializeOwned>(datagram: &[u8]) -> Result<T, CodecError> {
    if datagram.len() > MAX_DATAGRAM_LEN {
        return Err(CodecError::TooLarge { len: datagram.len(), max: MAX_DATAGRAM_LEN });
    }
    let Some((version, payload)) = datagram.split_first_chunk::<2>() else {
        return Err(CodecError::Truncated);
    };
    check_version(u16::from_be_bytes(*version))?;
    decode_payload(payload)
}

fn parse_header(header: &[u8], max_len: usize) -> Result<(usize, u16), CodecError> {
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&header[..4]);
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
    let version = u16::from_be_bytes([header[4], header[5]]);
    if len > max_len {
        // A peer of another version may also use other limits: name the
        // version first, it is the more useful diagnosis.
        check_version(version)?;
        return Err(CodecError::TooLarge { len, max: max_len });
    }
    Ok((len, version))
}

fn check_version(version: u16) -> Result<(), CodecError> {
    if version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(CodecError::VersionMismatch { theirs: version, ours: PROTOCOL_VERSION })
    }
}

fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (message, rest) = postcard::take_from_bytes(payload)?;
    if rest.is_empty() { Ok(message) } else { Err(CodecError::TrailingBytes(rest.len())) }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::metrics::{DiskUsage, MetricsSample};
    use crate::protocol::{AgentFrame, ConsoleFrame, Datagram, Heartbeat, Hello, Refusal, RefusalKind};

    fn sample() -> MetricsSample {
        MetricsSample {
            uptime_secs: 86_400,
            cpu_permille: 123,
            core_permille: vec![100, 146],
            load_centi: [12, 34, 56],
            mem_used_bytes: 3 << 30,
            mem_total_bytes: 24 << 30,
            swap_used_bytes: 0,
            swap_total_bytes: 1 << 30,
            disks: vec![DiskUsage { mount: "/".into(), used_bytes: 11 << 30, total_bytes: 252 << 30 }],
            net_rx_bytes_per_sec: 12_345,
            net_tx_bytes_per_sec: 6_789,
            instances: Vec::new(),
        }
    }

    #[test]
    fn frames_round_trip() {
        let messages = [
            AgentFrame::Hello(Hello { agent_version: "0.1.0".into(), heartbeat_interval_ms: 500, weight: 2 }),
            AgentFrame::Metrics(sample()),
            AgentFrame::Goodbye { reason: "SIGTERM".into() },
        ];
        for message in messages {
            let frame = encode_frame(&message).unwrap();
            let (decoded, used) = decode_frame::<AgentFrame>(&frame, MAX_FRAME_LEN).unwrap().unwrap();
            assert_eq!(decoded, message);
            assert_eq!(used, frame.len());
        }
    }

    #[test]
    fn partial_frames_ask_for_more() {
        let frame = encode_frame(&AgentFrame::Metrics(sample())).unwrap();
        for cut in 0..frame.len() {
            assert!(decode_frame::<AgentFrame>(&frame[..cut], MAX_FRAME_LEN).unwrap().is_none());
        }
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut frame = vec![0xff, 0xff, 0xff, 0xff];
        frame.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        let err = decode_frame::<AgentFrame>(&frame, MAX_FRAME_LEN).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn another_version_is_named_with_ours() {
        let refusal = ConsoleFrame::Refused(Refusal { kind: RefusalKind::BadToken, reason: "x".into() });
        let frame = encode_frame_as(&refusal, 999).unwrap();
        let err = decode_frame::<ConsoleFrame>(&frame, MAX_FRAME_LEN).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("v999") && text.contains(&format!("v{PROTOCOL_VERSION}")), "{text}");
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut frame = encode_frame(&AgentFrame::Goodbye { reason: String::new() }).unwrap();
        frame.push(0);
        frame[3] += 1;
        let err = decode_frame::<AgentFrame>(&frame, MAX_FRAME_LEN).unwrap_err();
        assert!(matches!(err, CodecError::TrailingBytes(1)), "{err}");
    }

    #[test]
    fn heartbeat_datagram_is_tiny() {
        let heartbeat = Datagram::Heartbeat(Heartbeat { seq: 1_000_000, cpu_permille: 1000, mem_permille: 999 });
        let datagram = encode_datagram(&heartbeat).unwrap();
        assert!(datagram.len() <= 12, "{} bytes", datagram.len());
        assert_eq!(decode_datagram::<Datagram>(&datagram).unwrap(), heartbeat);
    }

    #[tokio::test]
    async fn async_reader_reads_frames_then_a_clean_end() {
        let mut bytes = encode_frame(&AgentFrame::Metrics(sample())).unwrap();
        bytes.extend(encode_frame(&AgentFrame::Goodbye { reason: "bye".into() }).unwrap());
        let mut reader = bytes.as_slice();
        let first: Option<AgentFrame> = read_frame(&mut reader, MAX_FRAME_LEN).await.unwrap();
        assert!(matches!(first, Some(AgentFrame::Metrics(_))));
        let second: Option<AgentFrame> = read_frame(&mut reader, MAX_FRAME_LEN).await.unwrap();
        assert!(matches!(second, Some(AgentFrame::Goodbye { .. })));
        let end: Option<AgentFrame> = read_frame(&mut reader, MAX_FRAME_LEN).await.unwrap();
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn async_reader_reports_truncation() {
        let bytes = encode_frame(&AgentFrame::Metrics(sample())).unwrap();
        let mut reader = &bytes[..bytes.len() - 1];
        let err = read_frame::<AgentFrame, _>(&mut reader, MAX_FRAME_LEN).await.unwrap_err();
        assert!(matches!(err, CodecError::Truncated), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame::<AgentFrame>(&bytes, MAX_FRAME_LEN);
            let _ = decode_frame::<ConsoleFrame>(&bytes, MAX_FRAME_LEN);
            let _ = decode_datagram::<Datagram>(&bytes);
        }

        #[test]
        fn decoding_arbitrary_payloads_behind_a_valid_header_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
            frame.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
            frame.extend_from_slice(&payload);
            let _ = decode_frame::<AgentFrame>(&frame, MAX_FRAME_LEN);
            let _ = decode_frame::<crate::protocol::AdminResponse>(&frame, MAX_FRAME_LEN);
            let mut datagram = PROTOCOL_VERSION.to_be_bytes().to_vec();
            datagram.extend_from_slice(&payload);
            let _ = decode_datagram::<Datagram>(&datagram);
        }

        #[test]
        fn heartbeats_round_trip(seq in any::<u64>(), cpu in 0u16..=1000, mem in 0u16..=1000) {
            let heartbeat = Datagram::Heartbeat(Heartbeat { seq, cpu_permille: cpu, mem_permille: mem });
            let decoded: Datagram = decode_datagram(&encode_datagram(&heartbeat).unwrap()).unwrap();
            prop_assert_eq!(decoded, heartbeat);
        }
    }
}
