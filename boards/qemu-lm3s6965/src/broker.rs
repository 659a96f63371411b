//! The device's peer: a scripted MQTT 5 broker-and-gateway on an in-memory link.
//!
//! It parses what the device's rust-mqtt client writes and answers at once (so the device
//! never waits on it): CONNACK, SUBACK, PINGRESP, a PUBACK for every QoS 1 publish, and for
//! every uplink a receipt downlink (a `protocol` [`DownlinkBody::Receipt`] on the down topic,
//! QoS 1). Two scripted faults:
//!
//! * the first time the fall alarm arrives, it drops the connection before acknowledging it,
//!   as a lost radio link would: the alarm must come again on the next connection;
//! * the first time the pendant-press alarm arrives, it acknowledges nothing (the gateway has
//!   not committed it yet), and the scenario cuts the device's power: the alarm must come
//!   again from the rebooted device, restored from flash, under its old `(boot, seq)`.
//!
//! Every repeat must be byte-identical to the first transmission. It records what it saw,
//! and [`Broker::check`] says whether every expected uplink was published and receipted.

use core::cell::RefCell;

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use firmware::session::Connector;
use heapless::{String, Vec};
use protocol::{
    AlarmKind, DeviceId, Downlink, DownlinkBody, MAX_DOWNLINK_LEN, MAX_TOPIC_LEN, Presence, Topic, UplinkBody,
    decode_status, decode_uplink, encode_downlink,
};

use crate::console::{line, out, out_u32};

/// MQTT control packet types (the high nibble of the first byte).
mod packet {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
}

/// Bytes buffered in each direction: more than the largest packet either side sends (the
/// CONNECT with its will, about 100 bytes). Small, because the broker runs on the device's
/// stack and its RAM counts in the measured high-water mark.
const LINK_BUFFER: usize = 256;

/// The kinds of uplink the scenario produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The first event of every boot.
    Heartbeat,
    /// From the LIS3DH trace, through the fall detector.
    Fall,
    /// From the button pin.
    Press,
}

/// Every uplink the scenario must get published and receipted: `(boot, seq, kind, publishes)`.
/// The fall goes out twice (the link drops under it), the press twice (the power goes before
/// its receipt; the second time from the rebooted device, boot 2, still as boot 1's seq 2).
const EXPECTED: [(u32, u32, Expected, u8); 4] = [
    (1, 0, Expected::Heartbeat, 1),
    (1, 1, Expected::Fall, 2),
    (1, 2, Expected::Press, 2),
    (2, 0, Expected::Heartbeat, 1),
];

/// The presence announcements expected, in order: `Online { boot }` on each connection.
const EXPECTED_ONLINE: [u32; 3] = [1, 1, 2];

impl Expected {
    fn of(body: &UplinkBody) -> Option<Self> {
        match body {
            UplinkBody::Heartbeat(_) => Some(Self::Heartbeat),
            UplinkBody::Alarm(AlarmKind::Fall) => Some(Self::Fall),
            UplinkBody::Alarm(AlarmKind::PendantPress) => Some(Self::Press),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Heartbeat => "Heartbeat",
            Self::Fall => "Alarm(Fall)",
            Self::Press => "Alarm(PendantPress)",
        }
    }
}

/// One uplink `(boot, seq)` as the broker saw it.
#[derive(Debug)]
struct Seen {
    boot: u32,
    seq: u32,
    kind: Expected,
    /// The length and FNV-1a hash of its first publish's payload; every later one must match.
    fingerprint: (usize, u32),
    publishes: u8,
    /// The packet id of the receipt sent to the device, until the device acknowledges it.
    receipt_packet: Option<u16>,
    receipted: bool,
}

/// The scripted broker. Shared (in a `RefCell`) by the connector, the link and the scenario.
#[derive(Debug)]
pub struct Broker {
    client_id: DeviceId,
    up: String<MAX_TOPIC_LEN>,
    alarm: String<MAX_TOPIC_LEN>,
    down: String<MAX_TOPIC_LEN>,
    status: String<MAX_TOPIC_LEN>,
    /// Connections opened so far; the current one is number `connects`.
    connects: u8,
    open: bool,
    from_device: Vec<u8, LINK_BUFFER>,
    to_device: Vec<u8, LINK_BUFFER>,
    to_device_read: usize,
    next_packet_id: u16,
    seen: Vec<Seen, { EXPECTED.len() }>,
    dropped_under_fall: bool,
    press_withheld: bool,
    online: Vec<u32, 4>,
    offline_announced: bool,
    disconnected_cleanly: bool,
    /// Anything the device did that this broker did not expect.
    violations: u8,
}

impl Broker {
    pub fn new(client_id: DeviceId) -> Self {
        Self {
            client_id,
            up: Topic::up(client_id).to_heapless(),
            alarm: Topic::alarm(client_id).to_heapless(),
            down: Topic::down(client_id).to_heapless(),
            status: Topic::status(client_id).to_heapless(),
            connects: 0,
            open: false,
            from_device: Vec::new(),
            to_device: Vec::new(),
            to_device_read: 0,
            next_packet_id: 1,
            seen: Vec::new(),
            dropped_under_fall: false,
            press_withheld: false,
            online: Vec::new(),
            offline_announced: false,
            disconnected_cleanly: false,
            violations: 0,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Every expected uplink has been published and its receipt acknowledged by the device.
    pub fn all_receipted(&self) -> bool {
        EXPECTED.iter().all(|(boot, seq, _, _)| {
            self.seen
                .iter()
                .any(|seen| seen.boot == *boot && seen.seq == *seq && seen.receipted)
        })
    }

    /// The press alarm arrived and the broker has acknowledged nothing for it.
    pub fn press_withheld(&self) -> bool {
        self.press_withheld
            && !self
                .seen
                .iter()
                .any(|seen| seen.kind == Expected::Press && seen.receipt_packet.is_some())
    }

    /// Prints the verdict on what the device sent; true if all is as expected.
    pub fn check(&self) -> bool {
        let mut ok = true;
        for (boot, seq, kind, publishes) in EXPECTED {
            match self.seen.iter().find(|seen| seen.boot == boot && seen.seq == seq) {
                Some(seen) if seen.kind == kind && seen.receipted && seen.publishes == publishes => {
                    out("ok: ");
                    out(kind.name());
                    out(" (boot ");
                    out_u32(boot);
                    out(", seq ");
                    out_u32(seq);
                    out(") published ");
                    out_u32(u32::from(seen.publishes));
                    line("x, identical, and receipted");
                }
                Some(_) => {
                    out("FAIL: not the expected kind, publish count and receipt: boot ");
                    out_u32(boot);
                    out(", seq ");
                    out_u32(seq);
                    line("");
                    ok = false;
                }
                None => {
                    out("FAIL: never published: ");
                    out(kind.name());
                    out(", boot ");
                    out_u32(boot);
                    out(", seq ");
                    out_u32(seq);
                    line("");
                    ok = false;
                }
            }
        }
        let checks = [
            (self.dropped_under_fall, "the link was dropped under the fall alarm"),
            (
                self.press_withheld,
                "the press alarm went unreceipted until the power cut",
            ),
            (
                self.connects == 3,
                "three connections (after a link drop, after a reboot)",
            ),
            (
                self.online.as_slice() == EXPECTED_ONLINE.as_slice(),
                "Online announced on each connection (boot 1, 1, then 2)",
            ),
            (self.offline_announced, "Offline announced at switch-off"),
            (self.disconnected_cleanly, "DISCONNECT at switch-off"),
            (self.violations == 0, "no unexpected packets"),
        ];
        for (passed, what) in checks {
            out(if passed { "ok: " } else { "FAIL: " });
            line(what);
            ok &= passed;
        }
        ok
    }

    fn accept(&mut self) -> u8 {
        if self.open {
            out("broker: link ");
            out_u32(u32::from(self.connects));
            line(" went silent without DISCONNECT (the device lost power); the will goes out");
        }
        self.connects = self.connects.saturating_add(1);
        self.open = true;
        self.from_device.clear();
        self.to_device.clear();
        self.to_device_read = 0;
        self.connects
    }

    fn close(&mut self) {
        self.open = false;
        self.from_device.clear();
        self.to_device.clear();
        self.to_device_read = 0;
    }

    fn violation(&mut self, what: &str) {
        out("broker: unexpected: ");
        line(what);
        self.violations = self.violations.saturating_add(1);
    }

    /// Takes bytes the device wrote and answers every complete packet among them.
    fn receive(&mut self, bytes: &[u8]) {
        if self.from_device.extend_from_slice(bytes).is_err() {
            self.violation("more unparsed bytes than any packet the device sends");
            self.close();
            return;
        }
        while self.open {
            let Some((first, body_start, end)) = split_packet(&self.from_device) else {
                return;
            };
            let mut body: Vec<u8, LINK_BUFFER> = Vec::new();
            if let Some(slice) = self.from_device.get(body_start..end) {
                let _ = body.extend_from_slice(slice);
            }
            self.handle(first, &body);
            let len = self.from_device.len();
            let rest_len = len.saturating_sub(end);
            self.from_device.rotate_left(end.min(len));
            self.from_device.truncate(rest_len);
        }
    }

    fn handle(&mut self, first: u8, body: &[u8]) {
        match first >> 4 {
            packet::CONNECT => self.on_connect(body),
            packet::PUBLISH => self.on_publish(first, body),
            packet::PUBACK => self.on_puback(body),
            packet::SUBSCRIBE => self.on_subscribe(body),
            packet::PINGREQ => {
                line("device -> broker: PINGREQ");
                self.send(&[packet::PINGRESP << 4, 0]);
            }
            packet::DISCONNECT => {
                line("device -> broker: DISCONNECT");
                if self.offline_announced {
                    self.disconnected_cleanly = true;
                }
                self.close();
            }
            _ => self.violation("packet type"),
        }
    }

    fn on_connect(&mut self, body: &[u8]) {
        // Protocol name "MQTT", level 5, flags, keep-alive, properties, then the client id.
        let header_ok = body.get(..7) == Some(&[0, 4, b'M', b'Q', b'T', b'T', 5][..]);
        let client_id = body
            .get(10..)
            .and_then(|rest| {
                let (props_len, used) = varint(rest)?;
                rest.get(used.checked_add(props_len)?..)
            })
            .and_then(mqtt_str);
        out("device -> broker: CONNECT (MQTT 5) as ");
        line(client_id.unwrap_or("?"));
        if !header_ok || client_id != Some(self.client_id.as_str()) {
            self.violation("CONNECT header or client id");
        }
        // CONNACK: no session present, success, no properties.
        self.send(&[packet::CONNACK << 4, 3, 0, 0, 0]);
        line("broker -> device: CONNACK");
    }

    fn on_subscribe(&mut self, body: &[u8]) {
        let Some((&[id_high, id_low], rest)) = body.split_first_chunk::<2>() else {
            self.violation("SUBSCRIBE without packet id");
            return;
        };
        let filters = varint(rest).and_then(|(props_len, used)| rest.get(used.checked_add(props_len)?..));
        let mut filters = filters.unwrap_or(&[]);
        let mut reasons: Vec<u8, 4> = Vec::new();
        while let Some(filter) = mqtt_str(filters) {
            out("device -> broker: SUBSCRIBE ");
            line(filter);
            if filter != self.down.as_str() {
                self.violation("subscription to a topic not the device's down topic");
            }
            // Granted QoS 1.
            let _ = reasons.push(1);
            filters = filters.get(2 + filter.len() + 1..).unwrap_or(&[]);
        }
        let mut suback: Vec<u8, 12> = Vec::new();
        let _ = suback.extend_from_slice(&[packet::SUBACK << 4, 3 + reasons.len() as u8, id_high, id_low, 0]);
        let _ = suback.extend_from_slice(&reasons);
        self.send(&suback);
        line("broker -> device: SUBACK");
    }

    fn on_puback(&mut self, body: &[u8]) {
        let Some(&[high, low]) = body.first_chunk::<2>() else {
            self.violation("PUBACK without packet id");
            return;
        };
        let id = u16::from_be_bytes([high, low]);
        match self.seen.iter_mut().find(|seen| seen.receipt_packet == Some(id)) {
            Some(seen) => {
                seen.receipt_packet = None;
                seen.receipted = true;
                out("device -> broker: PUBACK for the receipt of seq ");
                out_u32(seen.seq);
                line("");
            }
            None => self.violation("PUBACK for a packet the broker did not send"),
        }
    }

    fn on_publish(&mut self, first: u8, body: &[u8]) {
        let qos = (first >> 1) & 0b11;
        let Some(topic) = mqtt_str(body) else {
            self.violation("PUBLISH without topic");
            return;
        };
        let after_topic = body.get(2 + topic.len()..).unwrap_or(&[]);
        let (packet_id, after_id) = match (qos, after_topic.split_first_chunk::<2>()) {
            (0, _) => (None, after_topic),
            (_, Some((id, rest))) => (Some(*id), rest),
            (_, None) => {
                self.violation("QoS 1 PUBLISH without packet id");
                return;
            }
        };
        let payload = varint(after_id)
            .and_then(|(props_len, used)| after_id.get(used.checked_add(props_len)?..))
            .unwrap_or(&[]);
        let Some(packet_id) = packet_id.filter(|_| qos == 1) else {
            self.violation("uplink or presence not at QoS 1");
            return;
        };
        if topic == self.status.as_str() {
            self.on_status(payload);
            self.puback(packet_id);
        } else if topic == self.up.as_str() {
            self.on_uplink(payload, packet_id, false);
        } else if topic == self.alarm.as_str() {
            self.on_uplink(payload, packet_id, true);
        } else {
            out("device -> broker: PUBLISH on ");
            line(topic);
            self.violation("topic");
        }
    }

    fn on_status(&mut self, payload: &[u8]) {
        out("device -> broker: PUBLISH status ");
        match decode_status(payload).map(|status| status.presence) {
            Ok(Presence::Online { boot }) => {
                out("Online, boot ");
                out_u32(boot);
                line("");
                if self.online.push(boot).is_err() {
                    self.violation("more Online announcements than connections");
                }
            }
            Ok(Presence::Offline) => {
                line("Offline");
                self.offline_announced = true;
            }
            Err(_) => {
                line("(undecodable)");
                self.violation("status payload");
            }
        }
    }

    /// An uplink on the up topic, or (`on_alarm_topic`) on the alarm topic.
    fn on_uplink(&mut self, payload: &[u8], packet_id: [u8; 2], on_alarm_topic: bool) {
        let Ok(uplink) = decode_uplink(payload) else {
            self.violation("undecodable uplink");
            return;
        };
        // SPEC 2.1: alarms and their cancels on the alarm topic, everything else on up.
        if uplink.body.is_alarm() != on_alarm_topic {
            self.violation("uplink on the wrong topic (alarms go on /alarm, the rest on /up)");
        }
        let topic_name = if on_alarm_topic { "/alarm" } else { "/up" };
        let (boot, seq) = (uplink.header.boot, uplink.header.seq);
        let Some(kind) = Expected::of(&uplink.body) else {
            out("device -> broker: PUBLISH ");
            out(topic_name);
            out(", seq ");
            out_u32(seq);
            line(", not expected");
            self.violation("uplink kind");
            return;
        };
        out("device -> broker: PUBLISH ");
        out(topic_name);
        out(" ");
        out(kind.name());
        out(", boot ");
        out_u32(boot);
        out(", seq ");
        out_u32(seq);
        out(" (");
        out_u32(payload.len() as u32);
        line(" B)");
        let index = match self.seen.iter().position(|seen| seen.boot == boot && seen.seq == seq) {
            Some(index) => index,
            None => {
                let first = Seen {
                    boot,
                    seq,
                    kind,
                    fingerprint: fingerprint(payload),
                    publishes: 0,
                    receipt_packet: None,
                    receipted: false,
                };
                if self.seen.push(first).is_err() {
                    self.violation("more distinct uplinks than expected");
                    return;
                }
                self.seen.len() - 1
            }
        };
        let mut identical = true;
        if let Some(seen) = self.seen.get_mut(index) {
            seen.publishes = seen.publishes.saturating_add(1);
            identical = seen.fingerprint == fingerprint(payload) && seen.kind == kind;
        }
        if !identical {
            self.violation("a retransmission that differs from the first transmission");
        }
        if kind == Expected::Fall && !self.dropped_under_fall {
            self.dropped_under_fall = true;
            line("broker: drops the link before acknowledging the fall alarm (lost radio link)");
            self.close();
            return;
        }
        if kind == Expected::Press && !self.press_withheld {
            self.press_withheld = true;
            line("broker: no PUBACK, no receipt for the press alarm yet (gateway still committing)");
            return;
        }
        self.puback(packet_id);
        self.send_receipt(index, boot, seq);
    }

    fn puback(&mut self, packet_id: [u8; 2]) {
        let [high, low] = packet_id;
        self.send(&[packet::PUBACK << 4, 2, high, low]);
    }

    /// Publishes `Receipt { boot, seqs: [seq] }` on the down topic, QoS 1.
    fn send_receipt(&mut self, index: usize, boot: u32, seq: u32) {
        let mut seqs = Vec::new();
        let _ = seqs.push(seq);
        let receipt = Downlink::new(DownlinkBody::Receipt { boot, seqs });
        let mut buf = [0u8; MAX_DOWNLINK_LEN];
        let Ok(payload) = encode_downlink(&receipt, &mut buf) else {
            self.violation("receipt does not encode");
            return;
        };
        let packet_id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
        let topic = self.down.clone();
        // Topic (length-prefixed), packet id, empty properties, payload.
        let remaining = 2 + topic.len() + 2 + 1 + payload.len();
        let mut publish: Vec<u8, LINK_BUFFER> = Vec::new();
        let mut ok = publish.push((packet::PUBLISH << 4) | 0b0010).is_ok();
        ok &= push_varint(&mut publish, remaining);
        ok &= publish.extend_from_slice(&(topic.len() as u16).to_be_bytes()).is_ok();
        ok &= publish.extend_from_slice(topic.as_bytes()).is_ok();
        ok &= publish.extend_from_slice(&packet_id.to_be_bytes()).is_ok();
        ok &= publish.push(0).is_ok();
        ok &= publish.extend_from_slice(payload).is_ok();
        if !ok {
            self.violation("receipt packet too large");
            return;
        }
        self.send(&publish);
        if let Some(seen) = self.seen.get_mut(index) {
            seen.receipt_packet = Some(packet_id);
        }
        out("broker -> device: PUBACK, then PUBLISH down Receipt { boot ");
        out_u32(boot);
        out(", seqs [");
        out_u32(seq);
        line("] }");
    }

    fn send(&mut self, bytes: &[u8]) {
        if self.to_device.extend_from_slice(bytes).is_err() {
            self.violation("the device does not read what the broker sends");
            self.close();
        }
    }
}

/// Length and 32-bit FNV-1a hash of `bytes`: enough to tell a changed retransmission.
fn fingerprint(bytes: &[u8]) -> (usize, u32) {
    let hash = bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    });
    (bytes.len(), hash)
}

/// The first byte, the body's start and the end of the first complete packet in `bytes`.
fn split_packet(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let (&first, rest) = bytes.split_first()?;
    let (len, used) = varint(rest)?;
    let start = 1 + used;
    let end = start.checked_add(len)?;
    (end <= bytes.len()).then_some((first, start, end))
}

/// An MQTT variable byte integer at the start of `bytes`: (value, bytes used).
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (index, byte) in bytes.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

fn push_varint<const N: usize>(out: &mut Vec<u8, N>, mut value: usize) -> bool {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        if out.push(byte).is_err() {
            return false;
        }
        if value == 0 {
            return true;
        }
    }
}

/// An MQTT UTF-8 string (length-prefixed) at the start of `bytes`.
fn mqtt_str(bytes: &[u8]) -> Option<&str> {
    let (&[high, low], rest) = bytes.split_first_chunk::<2>()?;
    let text = rest.get(..usize::from(u16::from_be_bytes([high, low])))?;
    core::str::from_utf8(text).ok()
}

/// Opens in-memory links to the [`Broker`].
#[derive(Debug)]
pub struct MemoryConnector<'b> {
    broker: &'b RefCell<Broker>,
}

impl<'b> MemoryConnector<'b> {
    pub fn new(broker: &'b RefCell<Broker>) -> Self {
        Self { broker }
    }
}

/// Why a link could not be opened (never: the broker always accepts).
#[derive(Debug)]
pub struct Refused;

impl<'b> Connector for MemoryConnector<'b> {
    type Connection = MemoryLink<'b>;
    type Error = Refused;

    async fn connect(&mut self) -> Result<MemoryLink<'b>, Refused> {
        let connection = self.broker.borrow_mut().accept();
        out("link ");
        out_u32(u32::from(connection));
        line(" opened");
        Ok(MemoryLink {
            broker: self.broker,
            connection,
        })
    }
}

/// One connection to the broker. Once the broker closes it (or a newer one is opened), reads
/// see the end of the stream and writes fail, as on a dead TCP connection.
#[derive(Debug)]
pub struct MemoryLink<'b> {
    broker: &'b RefCell<Broker>,
    connection: u8,
}

impl MemoryLink<'_> {
    fn is_live(&self, broker: &Broker) -> bool {
        broker.open && broker.connects == self.connection
    }
}

impl ErrorType for MemoryLink<'_> {
    type Error = ErrorKind;
}

impl Read for MemoryLink<'_> {
    /// Ready with bytes when the broker has answered, with 0 (end of stream) when the link is
    /// closed, and pending otherwise: the session then waits on the scenario's clock instead.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        core::future::poll_fn(|_| {
            let mut broker = self.broker.borrow_mut();
            if !self.is_live(&broker) {
                return core::task::Poll::Ready(Ok(0));
            }
            let pending = broker.to_device.get(broker.to_device_read..).unwrap_or(&[]);
            if pending.is_empty() {
                return core::task::Poll::Pending;
            }
            let n = pending.len().min(buf.len());
            if let (Some(to), Some(from)) = (buf.get_mut(..n), pending.get(..n)) {
                to.copy_from_slice(from);
            }
            broker.to_device_read += n;
            if broker.to_device_read == broker.to_device.len() {
                broker.to_device.clear();
                broker.to_device_read = 0;
            }
            core::task::Poll::Ready(Ok(n))
        })
        .await
    }
}

impl Write for MemoryLink<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let mut broker = self.broker.borrow_mut();
        if !self.is_live(&broker) {
            return Err(ErrorKind::ConnectionReset);
        }
        broker.receive(buf);
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        if self.is_live(&self.broker.borrow()) {
            Ok(())
        } else {
            Err(ErrorKind::ConnectionReset)
        }
    }
}
