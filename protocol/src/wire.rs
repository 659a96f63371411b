//! Encoding and decoding: one version byte, then postcard.
//!
//! Decoding never panics: any byte string yields a value or a [`DecodeError`]. Bytes
//! after a complete message are ignored so a newer peer may append fields (SPEC.md,
//! "Versioning").

use serde::{Deserialize, Serialize};

use crate::downlink::{DOWNLINK_BODY_VARIANTS, Downlink, DownlinkBody, PRESENCE_VARIANTS, Presence, StatusMessage};
use crate::uplink::{
    ALARM_KIND_VARIANTS, COMMAND_RESULT_VARIANTS, SENSOR_STATE_VARIANTS, UPLINK_BODY_VARIANTS, Uplink, UplinkBody,
    UplinkHeader,
};

/// Largest uplink any revision of protocol v1 may send. Receivers reject longer payloads
/// as oversize without decoding them. This revision's largest is far below it.
pub const MAX_UPLINK_LEN: usize = 128;
/// Largest downlink any revision of protocol v1 may send.
pub const MAX_DOWNLINK_LEN: usize = 256;
/// Largest status (presence) message.
pub const MAX_STATUS_LEN: usize = 16;

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("version 0 is reserved and cannot be sent")]
    ReservedVersion,
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("payload of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("protocol version 0 is reserved")]
    ReservedVersion,
    #[error("header is truncated or malformed")]
    MalformedHeader,
    /// The body (or an enum inside it) has a tag this revision does not know: the sender
    /// is newer. For uplinks the header still decodes with [`peek_uplink_header`].
    #[error("unknown variant (body tag {body_tag}) from a newer protocol revision")]
    UnknownVariant { body_tag: u32 },
    #[error("body is truncated or malformed")]
    MalformedBody,
}

#[derive(Serialize)]
struct UplinkWire<'a> {
    header: &'a UplinkHeader,
    body: &'a UplinkBody,
}

/// Writes `message` into `buf`, returning the bytes written.
pub fn encode_uplink<'b>(message: &Uplink, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
    let wire = UplinkWire {
        header: &message.header,
        body: &message.body,
    };
    encode_versioned(message.version, &wire, buf)
}

/// Writes `message` into `buf`, returning the bytes written.
pub fn encode_downlink<'b>(message: &Downlink, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
    encode_versioned(message.version, &message.body, buf)
}

/// Writes a presence message into `buf`, returning the bytes written.
pub fn encode_status<'b>(message: &StatusMessage, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
    encode_versioned(message.version, &message.presence, buf)
}

fn encode_versioned<'b, T: Serialize>(version: u8, value: &T, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
    if version == 0 {
        return Err(EncodeError::ReservedVersion);
    }
    let (first, rest) = buf.split_first_mut().ok_or(EncodeError::BufferTooSmall)?;
    *first = version;
    let used = postcard::to_slice(value, rest)
        .map_err(|_| EncodeError::BufferTooSmall)?
        .len();
    buf.get(..=used).ok_or(EncodeError::BufferTooSmall)
}

/// Splits off and checks the version byte.
fn split_version(bytes: &[u8], limit: usize) -> Result<(u8, &[u8]), DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version == 0 {
        return Err(DecodeError::ReservedVersion);
    }
    Ok((version, rest))
}

/// Decodes a body (uplink, downlink or presence) whose enum has `known` variants.
/// `nested_tag_known` checks enums inside the body, so that a newer nested variant is
/// reported as [`DecodeError::UnknownVariant`] rather than as corruption (postcard alone
/// cannot tell the two apart).
fn decode_tagged<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    known: u32,
    nested_tag_known: impl Fn(u32, &[u8]) -> bool,
) -> Result<T, DecodeError> {
    let (body_tag, after_tag) = postcard::take_from_bytes::<u32>(bytes).map_err(|_| DecodeError::MalformedBody)?;
    if body_tag >= known || !nested_tag_known(body_tag, after_tag) {
        return Err(DecodeError::UnknownVariant { body_tag });
    }
    postcard::take_from_bytes::<T>(bytes)
        .map(|(value, _extension)| value)
        .map_err(|_| DecodeError::MalformedBody)
}

/// Whether the enum nested in an uplink body (alarm kind, sensor state, command result)
/// has a tag this revision knows. Truncated input counts as known: the full decode then
/// reports it as malformed.
fn uplink_nested_tag_known(body_tag: u32, after_tag: &[u8]) -> bool {
    let nested = |skip: &[u8], variants: u32| match postcard::take_from_bytes::<u32>(skip) {
        Ok((tag, _)) => tag < variants,
        Err(_) => true,
    };
    match body_tag {
        0 => nested(after_tag, ALARM_KIND_VARIANTS),
        3 => after_tag
            .split_first()
            .is_none_or(|(_input, rest)| nested(rest, SENSOR_STATE_VARIANTS)),
        5 => match postcard::take_from_bytes::<u32>(after_tag) {
            Ok((_command_id, rest)) => nested(rest, COMMAND_RESULT_VARIANTS),
            Err(_) => true,
        },
        _ => true,
    }
}

fn no_nested_enums(_body_tag: u32, _after_tag: &[u8]) -> bool {
    true
}

/// Decodes just the version and header of an uplink, for a receiver that could not decode
/// its body but must still store and receipt it.
pub fn peek_uplink_header(bytes: &[u8]) -> Result<(u8, UplinkHeader, &[u8]), DecodeError> {
    let (version, rest) = split_version(bytes, MAX_UPLINK_LEN)?;
    let (header, body) = postcard::take_from_bytes::<UplinkHeader>(rest).map_err(|_| DecodeError::MalformedHeader)?;
    Ok((version, header, body))
}

/// Decodes an uplink payload.
pub fn decode_uplink(bytes: &[u8]) -> Result<Uplink, DecodeError> {
    let (version, header, body) = peek_uplink_header(bytes)?;
    let body = decode_tagged::<UplinkBody>(body, UPLINK_BODY_VARIANTS, uplink_nested_tag_known)?;
    Ok(Uplink { version, header, body })
}

/// Decodes a downlink payload.
pub fn decode_downlink(bytes: &[u8]) -> Result<Downlink, DecodeError> {
    let (version, rest) = split_version(bytes, MAX_DOWNLINK_LEN)?;
    let body = decode_tagged::<DownlinkBody>(rest, DOWNLINK_BODY_VARIANTS, no_nested_enums)?;
    Ok(Downlink { version, body })
}

/// Decodes a presence payload from the status topic.
pub fn decode_status(bytes: &[u8]) -> Result<StatusMessage, DecodeError> {
    let (version, rest) = split_version(bytes, MAX_STATUS_LEN)?;
    let presence = decode_tagged::<Presence>(rest, PRESENCE_VARIANTS, no_nested_enums)?;
    Ok(StatusMessage { version, presence })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uplink::AlarmKind;

    #[test]
    fn pendant_press_round_trips_and_unknown_body_is_reported() {
        let message = Uplink::new(
            UplinkHeader {
                boot: 3,
                seq: 7,
                device_time_ms: None,
            },
            UplinkBody::Alarm(AlarmKind::PendantPress),
        );
        let mut buf = [0u8; MAX_UPLINK_LEN];
        let bytes = encode_uplink(&message, &mut buf).map(<[u8]>::to_vec);
        assert_eq!(bytes, Ok(vec![1, 3, 7, 0, 0, 0]));
        assert_eq!(decode_uplink(&[1, 3, 7, 0, 0, 0]), Ok(message));
        // A newer revision's body tag 40, and a newer alarm kind 99.
        assert_eq!(
            decode_uplink(&[1, 3, 7, 0, 40]),
            Err(DecodeError::UnknownVariant { body_tag: 40 })
        );
        assert_eq!(
            decode_uplink(&[1, 3, 7, 0, 0, 99]),
            Err(DecodeError::UnknownVariant { body_tag: 0 })
        );
        assert_eq!(
            decode_uplink(&[1, 3, 7, 0, 3, 1, 9]),
            Err(DecodeError::UnknownVariant { body_tag: 3 })
        );
        assert_eq!(
            decode_uplink(&[1, 3, 7, 0, 5, 1, 9]),
            Err(DecodeError::UnknownVariant { body_tag: 5 })
        );
        assert_eq!(decode_uplink(&[1, 3]), Err(DecodeError::MalformedHeader));
        assert_eq!(decode_uplink(&[]), Err(DecodeError::Empty));
        assert_eq!(decode_uplink(&[0, 3, 7, 0, 0, 0]), Err(DecodeError::ReservedVersion));
        // Trailing bytes from a newer revision's appended fields are ignored.
        assert!(decode_uplink(&[2, 3, 7, 0, 0, 0, 0xAA]).is_ok());
    }
}
