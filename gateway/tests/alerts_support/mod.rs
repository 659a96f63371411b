//! A simulated gateway around the alert engine for tests: a manual clock, event
//! builders, and an in-memory "store" that keeps what the engine asks it to persist.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::collections::BTreeMap;

use gateway::alerts::{AlertEngine, Effect, EngineConfig, EngineInput, ResidentRules};
use gateway::domain::{
    Alert, AlertId, AlertKind, Change, DeviceKind, EventBody, EventKey, Outcome, ResidentId, StoredEvent, Timestamp,
};
use protocol::{
    ActivitySummary, AlarmKind, DeviceId, DeviceStatus, DownlinkBody, FirmwareVersion, SensorState, UplinkBody,
};

pub fn utc(text: &str) -> Timestamp {
    Timestamp::from_jiff(text.parse::<jiff::Timestamp>().unwrap())
}

pub fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

pub fn res(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;

pub fn alarm(kind: AlarmKind) -> EventBody {
    EventBody::Uplink(UplinkBody::Alarm(kind))
}

pub fn cancel(alarm_seq: u32) -> EventBody {
    EventBody::Uplink(UplinkBody::AlarmCancelled { alarm_seq })
}

pub fn heartbeat(battery_percent: u8, heartbeat_interval_s: u32) -> EventBody {
    EventBody::Uplink(UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 3_000,
        battery_percent,
        rssi_dbm: -60,
        uptime_s: 100,
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 0,
        },
        heartbeat_interval_s,
        outbox_depth: 0,
        events_dropped: 0,
    }))
}

pub fn sensor(state: SensorState) -> EventBody {
    EventBody::Uplink(UplinkBody::SensorChange { input: 0, state })
}

pub fn activity(counts: &[u16]) -> EventBody {
    let mut motion_counts = heapless::Vec::new();
    for count in counts {
        motion_counts.push(*count).unwrap();
    }
    EventBody::Uplink(UplinkBody::Activity(ActivitySummary {
        window_s: 600,
        motion_counts,
    }))
}

/// One event to feed, with sensible defaults (registered pendant, current boot, next seq,
/// no device clock, received now).
#[derive(Debug, Clone)]
pub struct Ev {
    pub device: DeviceId,
    pub resident: Option<ResidentId>,
    pub body: EventBody,
    pub registered: bool,
    pub kind: DeviceKind,
    pub boot: u32,
    pub seq: Option<u32>,
    /// Device clock, as an offset from the receive time (negative: it happened earlier).
    pub device_time_offset_ms: Option<i64>,
}

impl Ev {
    pub fn new(device: &str, body: EventBody) -> Self {
        Self {
            device: dev(device),
            resident: None,
            body,
            registered: true,
            kind: DeviceKind::Pendant,
            boot: 1,
            seq: None,
            device_time_offset_ms: None,
        }
    }
    pub fn of(mut self, resident: &str) -> Self {
        self.resident = Some(res(resident));
        self
    }
    pub fn kind(mut self, kind: DeviceKind) -> Self {
        self.kind = kind;
        self
    }
    pub fn unregistered(mut self) -> Self {
        self.registered = false;
        self
    }
    pub fn boot(mut self, boot: u32) -> Self {
        self.boot = boot;
        self
    }
    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = Some(seq);
        self
    }
    /// The device's clock says the event happened this long before it arrived.
    pub fn delayed(mut self, ms: i64) -> Self {
        self.device_time_offset_ms = Some(-ms);
        self
    }
}

/// The engine plus a manual clock and a store that keeps what the engine hands out.
#[derive(Debug)]
pub struct Sim {
    pub engine: AlertEngine,
    pub now: Timestamp,
    pub config: EngineConfig,
    next_seq: BTreeMap<(DeviceId, u32), u32>,
    /// Every alert the engine ever reported, latest version.
    pub alerts: BTreeMap<AlertId, Alert>,
    /// The engine's persisted state entries.
    pub state: BTreeMap<String, Vec<u8>>,
}

impl Sim {
    pub fn new(config: EngineConfig, start: Timestamp) -> Self {
        Self {
            engine: AlertEngine::new(config.clone(), AlertId(1)),
            now: start,
            config,
            next_seq: BTreeMap::new(),
            alerts: BTreeMap::new(),
            state: BTreeMap::new(),
        }
    }

    pub fn default_at(start: &str) -> Self {
        Self::new(EngineConfig::default(), utc(start))
    }

    pub fn advance(&mut self, ms: i64) {
        self.now = self.now.plus_ms(ms);
    }

    pub fn set_time(&mut self, text: &str) {
        self.now = utc(text);
    }

    /// Store round: persist alerts and state like the ingest does.
    pub fn absorb(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        for effect in &effects {
            if let Effect::AlertChanged(alert) = effect {
                self.alerts.insert(alert.id, alert.clone());
            }
        }
        for (key, value) in self.engine.take_state_changes() {
            match value {
                Some(bytes) => self.state.insert(key, bytes),
                None => self.state.remove(&key),
            };
        }
        effects
    }

    pub fn build(&mut self, ev: &Ev) -> StoredEvent {
        let seq = ev.seq.unwrap_or_else(|| {
            let next = self.next_seq.entry((ev.device, ev.boot)).or_insert(0);
            *next += 1;
            *next - 1
        });
        StoredEvent {
            key: EventKey {
                device: ev.device,
                boot: ev.boot,
                seq,
            },
            resident: ev.resident.clone(),
            received_at: self.now,
            device_time: ev.device_time_offset_ms.map(|offset| self.now.plus_ms(offset)),
            protocol_version: 1,
            body: ev.body.clone(),
        }
    }

    pub fn input(&mut self, ev: Ev) -> (EngineInput, EventKey) {
        let event = self.build(&ev);
        let key = event.key;
        (
            EngineInput::Event {
                event,
                device_registered: ev.registered,
                device_kind: ev.kind,
            },
            key,
        )
    }

    /// Feed an event; returns its key and the effects.
    pub fn send(&mut self, ev: Ev) -> (EventKey, Vec<Effect>) {
        let (input, key) = self.input(ev);
        let effects = self.engine.handle(input, self.now);
        (key, self.absorb(effects))
    }

    pub fn presence(&mut self, device: &str, online: bool) -> Vec<Effect> {
        let input = EngineInput::Presence {
            device: dev(device),
            resident: None,
            online,
            boot: online.then_some(1),
            at: self.now,
        };
        let effects = self.engine.handle(input, self.now);
        self.absorb(effects)
    }

    pub fn key_conflict(&mut self, device: &str, resident: Option<&str>, detail: &str) -> Vec<Effect> {
        let input = EngineInput::KeyConflict {
            device: dev(device),
            resident: resident.map(res),
            detail: detail.to_owned(),
        };
        let effects = self.engine.handle(input, self.now);
        self.absorb(effects)
    }

    pub fn tick(&mut self) -> Vec<Effect> {
        let effects = self.engine.tick(self.now);
        self.absorb(effects)
    }

    pub fn ack(&mut self, alert: AlertId) -> Vec<Effect> {
        let effects = self.engine.acknowledge(alert, "op-7", self.now).unwrap();
        self.absorb(effects)
    }

    pub fn resolve(&mut self, alert: AlertId, outcome: Outcome) -> Vec<Effect> {
        let effects = self
            .engine
            .resolve(alert, "op-7", outcome, Some("done"), self.now)
            .unwrap();
        self.absorb(effects)
    }

    pub fn rules(&mut self, resident: &str, rules: ResidentRules) -> Vec<Effect> {
        let effects = self.engine.set_resident_rules(res(resident), rules, self.now);
        self.absorb(effects)
    }

    pub fn open(&self) -> Vec<Alert> {
        self.engine.open_alerts().cloned().collect()
    }

    pub fn open_of(&self, kind: AlertKind) -> Vec<Alert> {
        self.engine.open_alerts().filter(|a| a.kind == kind).cloned().collect()
    }

    pub fn only_open(&self) -> Alert {
        let open = self.open();
        assert_eq!(open.len(), 1, "expected exactly one open alert: {open:#?}");
        open.into_iter().next().unwrap()
    }

    pub fn restored(&self, now: Timestamp) -> AlertEngine {
        let open = self.alerts.values().filter(|a| a.is_open()).cloned().collect();
        let state = self.state.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        AlertEngine::restore(self.config.clone(), AlertId(1), open, state, now).unwrap()
    }
}

pub fn changed_alerts(effects: &[Effect]) -> Vec<Alert> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::AlertChanged(alert) => Some(alert.clone()),
            Effect::Downlink { .. } => None,
        })
        .collect()
}

pub fn downlinks(effects: &[Effect]) -> Vec<(DeviceId, DownlinkBody)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Downlink { device, body } => Some((*device, body.clone())),
            Effect::AlertChanged(_) => None,
        })
        .collect()
}

pub fn last_change(alert: &Alert) -> &Change {
    &alert.transitions.last().unwrap().change
}
