//! MQTT topics: `tec/v1/dev/{device_id}/{up|alarm|down|status}`.

use core::fmt;

use crate::device_id::{DeviceId, DeviceIdError, MAX_DEVICE_ID_LEN};

/// Every topic of this protocol starts with this prefix. The `v1` names the *major*
/// protocol; additive changes keep it (see SPEC.md, "Versioning").
pub const TOPIC_PREFIX: &str = "tec/v1/dev/";

/// Longest topic this protocol produces: prefix, the longest id, and `/status` (the longest kind).
pub const MAX_TOPIC_LEN: usize = TOPIC_PREFIX.len() + MAX_DEVICE_ID_LEN + "/status".len();

/// Subscription filter for every device's uplink topic (the gateway subscribes to this).
pub const ALL_UPLINKS_FILTER: &str = "tec/v1/dev/+/up";
/// Subscription filter for every device's alarm topic (the gateway's alarm session, SPEC 2.1).
pub const ALL_ALARMS_FILTER: &str = "tec/v1/dev/+/alarm";
/// Subscription filter for every device's status (presence / last will) topic.
pub const ALL_STATUS_FILTER: &str = "tec/v1/dev/+/status";

/// Which of a device's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// Device to gateway: [`crate::Uplink`] messages other than alarms.
    Up,
    /// Device to gateway: [`crate::Uplink`] messages whose body is an alarm or its cancel,
    /// on a topic of their own so that the gateway reads them on a session of their own and
    /// they never queue behind telemetry (SPEC 2.1).
    Alarm,
    /// Gateway to device: [`crate::Downlink`] messages.
    Down,
    /// Device presence: [`crate::Presence`], also the device's MQTT last will.
    Status,
}

impl TopicKind {
    /// The last topic level for this kind.
    pub const fn suffix(self) -> &'static str {
        match self {
            TopicKind::Up => "up",
            TopicKind::Alarm => "alarm",
            TopicKind::Down => "down",
            TopicKind::Status => "status",
        }
    }
}

/// Why a topic is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic does not start with {TOPIC_PREFIX}")]
    WrongPrefix,
    #[error("topic has no kind level after the device id")]
    MissingKind,
    #[error("topic kind is not up, alarm, down or status")]
    UnknownKind,
    #[error("topic has levels after the kind")]
    TrailingLevels,
    #[error("device id in topic is invalid: {0}")]
    InvalidDeviceId(DeviceIdError),
}

/// A parsed topic of this protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic {
    pub device_id: DeviceId,
    pub kind: TopicKind,
}

impl Topic {
    pub const fn new(device_id: DeviceId, kind: TopicKind) -> Self {
        Self { device_id, kind }
    }

    pub const fn up(device_id: DeviceId) -> Self {
        Self::new(device_id, TopicKind::Up)
    }

    pub const fn alarm(device_id: DeviceId) -> Self {
        Self::new(device_id, TopicKind::Alarm)
    }

    pub const fn down(device_id: DeviceId) -> Self {
        Self::new(device_id, TopicKind::Down)
    }

    pub const fn status(device_id: DeviceId) -> Self {
        Self::new(device_id, TopicKind::Status)
    }

    /// Parses a topic name. Never panics, whatever the input.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let rest = topic.strip_prefix(TOPIC_PREFIX).ok_or(TopicError::WrongPrefix)?;
        let (id, kind) = rest.split_once('/').ok_or(TopicError::MissingKind)?;
        if kind.contains('/') {
            return Err(TopicError::TrailingLevels);
        }
        let kind = match kind {
            "up" => TopicKind::Up,
            "alarm" => TopicKind::Alarm,
            "down" => TopicKind::Down,
            "status" => TopicKind::Status,
            _ => return Err(TopicError::UnknownKind),
        };
        let device_id = DeviceId::new(id).map_err(TopicError::InvalidDeviceId)?;
        Ok(Self { device_id, kind })
    }

    /// The topic as a fixed-capacity string, for no-heap callers.
    pub fn to_heapless(&self) -> heapless::String<MAX_TOPIC_LEN> {
        // Built from its parts rather than with `write!`, which would link `core::fmt` into
        // every device. Capacity is computed from the longest topic, so nothing is cut.
        let mut out = heapless::String::new();
        for part in [TOPIC_PREFIX, self.device_id.as_str(), "/", self.kind.suffix()] {
            let _ = out.push_str(part);
        }
        out
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOPIC_PREFIX}{}/{}", self.device_id, self.kind.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn builds_and_parses_each_kind() {
        for kind in [TopicKind::Up, TopicKind::Alarm, TopicKind::Down, TopicKind::Status] {
            let topic = Topic::new(id("pnd-42"), kind);
            let text = topic.to_heapless();
            assert_eq!(text.as_str(), format!("tec/v1/dev/pnd-42/{}", kind.suffix()));
            assert_eq!(text.as_str(), topic.to_string(), "to_heapless and Display agree");
            assert_eq!(Topic::parse(&text), Ok(topic));
        }
    }

    #[test]
    fn longest_topic_fits() {
        let long = "a".repeat(MAX_DEVICE_ID_LEN);
        let topic = Topic::status(id(&long)).to_heapless();
        assert_eq!(topic.len(), MAX_TOPIC_LEN);
    }

    #[test]
    fn rejects_foreign_topics() {
        assert_eq!(Topic::parse("tec/v2/dev/pnd-1/up"), Err(TopicError::WrongPrefix));
        assert_eq!(Topic::parse("tec/v1/dev/pnd-1"), Err(TopicError::MissingKind));
        assert_eq!(Topic::parse("tec/v1/dev/pnd-1/sideways"), Err(TopicError::UnknownKind));
        assert_eq!(
            Topic::parse("tec/v1/dev/pnd-1/up/extra"),
            Err(TopicError::TrailingLevels)
        );
        assert_eq!(
            Topic::parse("tec/v1/dev/+/up"),
            Err(TopicError::InvalidDeviceId(DeviceIdError::TooShort))
        );
        assert_eq!(
            Topic::parse("tec/v1/dev/pnd+/up"),
            Err(TopicError::InvalidDeviceId(DeviceIdError::InvalidCharacter(3)))
        );
    }
}
