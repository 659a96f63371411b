//! The demo borough's devices, day by day: heartbeats, presses (some cancelled by the
//! resident), motion-sensor summaries, and the alerts the presses raise, answered and resolved
//! as a monitoring centre does. Pure: the same plans and random stream give the same history.

use std::collections::BTreeMap;

use jiff::ToSpan;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use protocol::{ActivitySummary, AlarmKind, DeviceId, DeviceStatus, FirmwareVersion, UplinkBody};
use rand::Rng;
use rand::rngs::StdRng;

use super::register::TecPlan;
use crate::domain::{
    Alert, AlertId, AlertKind, AlertState, CallOutcome, Change, EventBody, EventKey, Outcome, StoredEvent, Timestamp,
    Transition,
};
use crate::store::{NewEvent, StoreError, day_number};

/// Chance a worn pendant is pressed on a given day (about once a month).
const PRESS_PER_DAY: f64 = 1.0 / 30.0;
/// Chance a press is cancelled by the resident within the grace window.
const CANCELLED_SHARE: f64 = 0.06;
/// Operators on shift (user names, no personal data).
const OPERATORS: &[&str] = &["olive", "omar", "orla", "owen", "oksana"];
pub const FIRMWARE: FirmwareVersion = FirmwareVersion {
    major: 1,
    minor: 4,
    patch: 2,
};

/// What a device has sent so far: its sequence number and when it was last heard from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceProgress {
    pub next_seq: u32,
    pub last_seen: Option<Timestamp>,
    pub battery_percent: u8,
}

/// One day's events and the alerts they raised.
#[derive(Debug, Default)]
pub struct Day {
    pub events: Vec<NewEvent>,
    pub alerts: Vec<Alert>,
}

/// The history generator's settings and running state.
#[derive(Debug)]
pub struct History<'p> {
    plans: &'p [TecPlan],
    tz: TimeZone,
    heartbeat_every_days: i32,
    activity_per_day: u32,
    /// Nothing happens after this instant (the present, for a history that runs to today).
    cutoff: Timestamp,
    next_alert: u64,
    pub devices: BTreeMap<DeviceId, DeviceProgress>,
}

impl<'p> History<'p> {
    pub fn new(plans: &'p [TecPlan], heartbeat_every_days: u32, activity_per_day: u32, cutoff: Timestamp) -> Self {
        Self {
            plans,
            tz: super::london(),
            heartbeat_every_days: i32::try_from(heartbeat_every_days.max(1)).unwrap_or(i32::MAX),
            activity_per_day,
            cutoff,
            next_alert: 1,
            devices: BTreeMap::new(),
        }
    }

    /// Alerts written so far.
    pub fn alert_count(&self) -> u64 {
        self.next_alert - 1
    }

    /// London midnight starting `day`.
    pub fn day_start(&self, day: Date) -> Timestamp {
        day.to_zoned(self.tz.clone())
            .map_or(Timestamp(0), |zoned| Timestamp::from_jiff(zoned.timestamp()))
    }

    /// Everything the borough's devices sent on `day`, in time order of alerts (so alert ids
    /// increase with the time they were raised, as the gateway's do).
    pub fn day(&mut self, rng: &mut StdRng, day: Date) -> Result<Day, StoreError> {
        let start = self.day_start(day);
        let end = self.day_start(day.tomorrow().unwrap_or(day));
        let length = end.as_millis() - start.as_millis();
        let day_index = day_number(day);
        let mut out = Day::default();
        let mut presses = Vec::new();
        for (number, plan) in self.plans.iter().enumerate() {
            let covered = plan.from <= day && plan.to.is_none_or(|to| day <= to);
            if !covered || plan.silent {
                continue;
            }
            let offset = i32::try_from(number % 1024).unwrap_or(0);
            if (day_index + offset) % self.heartbeat_every_days == 0 {
                let at = Timestamp(start.as_millis() + rng.random_range(0..length));
                let battery = self.devices.get(&plan.pendant).map_or(100, |d| d.battery_percent);
                let battery = if battery <= 20 || rng.random_bool(0.01) {
                    100
                } else {
                    battery.saturating_sub(u8::from(rng.random_bool(0.2)))
                };
                let body = UplinkBody::Heartbeat(DeviceStatus {
                    battery_mv: 2_600 + u16::from(battery) * 6,
                    battery_percent: battery,
                    rssi_dbm: rng.random_range(-95..-55),
                    uptime_s: rng.random_range(3_600..2_000_000),
                    firmware: FIRMWARE,
                    heartbeat_interval_s: 86_400,
                    outbox_depth: 0,
                    events_dropped: 0,
                });
                if let Some(event) = self.event(rng, plan, plan.pendant, at, body)? {
                    out.events.push(event);
                }
                if let Some(device) = self.devices.get_mut(&plan.pendant) {
                    device.battery_percent = battery;
                }
            }
            if rng.random_bool(PRESS_PER_DAY) {
                // Between 07:00 and 23:00, local.
                let at = Timestamp(start.as_millis() + rng.random_range(7 * 3_600_000..23 * 3_600_000).min(length - 1));
                presses.push((at, number));
            }
            if let Some(sensor) = plan.sensor {
                let per_day = i64::from(self.activity_per_day.max(1));
                for window in 0..per_day {
                    let at = Timestamp(start.as_millis() + length * window / per_day + rng.random_range(0..60_000));
                    let mut counts = heapless::Vec::new();
                    // Capacity is 12: one count always fits.
                    let _ = counts.push(if (6..23).contains(&(window * 24 / per_day)) {
                        rng.random_range(0..40)
                    } else {
                        rng.random_range(0..3)
                    });
                    let body = UplinkBody::Activity(ActivitySummary {
                        window_s: u16::try_from(86_400 / per_day).unwrap_or(u16::MAX),
                        motion_counts: counts,
                    });
                    if let Some(event) = self.event(rng, plan, sensor, at, body)? {
                        out.events.push(event);
                    }
                }
            }
        }
        presses.sort_unstable();
        for (at, number) in presses {
            let Some(plan) = self.plans.get(number) else { continue };
            self.press(rng, plan, at, &mut out)?;
        }
        Ok(out)
    }

    /// One event from `device`, unless it would be after the cutoff.
    fn event(
        &mut self,
        rng: &mut StdRng,
        plan: &TecPlan,
        device: DeviceId,
        at: Timestamp,
        body: UplinkBody,
    ) -> Result<Option<NewEvent>, StoreError> {
        if at > self.cutoff {
            return Ok(None);
        }
        let progress = self.devices.entry(device).or_insert(DeviceProgress {
            next_seq: 0,
            last_seen: None,
            battery_percent: 100,
        });
        let seq = progress.next_seq;
        progress.next_seq = seq.saturating_add(1);
        progress.last_seen = Some(progress.last_seen.map_or(at, |seen| seen.max(at)));
        let event = StoredEvent {
            key: EventKey { device, boot: 1, seq },
            resident: Some(plan.person.clone()),
            received_at: at,
            device_time: Some(Timestamp(at.as_millis() - rng.random_range(40..400))),
            protocol_version: protocol::PROTOCOL_VERSION,
            body: EventBody::Uplink(body),
        };
        NewEvent::from_event(event).map(Some)
    }

    /// A pendant press, its alert and, for a cancellation, the cancel event.
    fn press(&mut self, rng: &mut StdRng, plan: &TecPlan, at: Timestamp, out: &mut Day) -> Result<(), StoreError> {
        let Some(press) = self.event(rng, plan, plan.pendant, at, UplinkBody::Alarm(AlarmKind::PendantPress))? else {
            return Ok(());
        };
        let key = press.event.key;
        out.events.push(press);
        let kind = AlertKind::PendantPress;
        let mut alert = Alert {
            id: AlertId(self.next_alert),
            kind,
            priority: kind.priority(),
            state: AlertState::Raised,
            resident: Some(plan.person.clone()),
            device: Some(plan.pendant),
            unregistered_device: false,
            raised_at: at,
            late_by_ms: None,
            escalation_level: 0,
            transitions: vec![Transition {
                at,
                change: Change::Raised { event: Some(key) },
            }],
            affected_devices: Vec::new(),
        };
        self.next_alert += 1;
        let operator = OPERATORS
            .get(rng.random_range(0..OPERATORS.len()))
            .copied()
            .unwrap_or("olive")
            .to_owned();
        if rng.random_bool(CANCELLED_SHARE) {
            let cancelled_at = Timestamp(at.as_millis() + rng.random_range(5_000..25_000));
            let body = UplinkBody::AlarmCancelled { alarm_seq: key.seq };
            if let Some(cancel) = self.event(rng, plan, plan.pendant, cancelled_at, body)? {
                out.events.push(cancel);
                alert.state = AlertState::Resolved;
                alert.transitions.push(Transition {
                    at: cancelled_at,
                    change: Change::Resolved {
                        operator: None,
                        outcome: Outcome::CancelledByResident,
                        note: None,
                    },
                });
            }
            out.alerts.push(alert);
            return Ok(());
        }
        let answer_ms = answer_time_ms(rng);
        let acknowledged_at = Timestamp(at.as_millis() + answer_ms);
        if acknowledged_at <= self.cutoff {
            alert.state = AlertState::Acknowledged;
            alert.transitions.push(Transition {
                at: acknowledged_at,
                change: Change::Acknowledged {
                    operator: operator.clone(),
                },
            });
            let resolved_at = Timestamp(acknowledged_at.as_millis() + rng.random_range(90_000..1_500_000));
            if resolved_at <= self.cutoff {
                let (outcome, note) = outcome(rng);
                if outcome == Outcome::KeyHolderAttended {
                    alert.transitions.push(Transition {
                        at: Timestamp(acknowledged_at.as_millis() + 40_000),
                        change: Change::ResponderCalled {
                            operator: operator.clone(),
                            responder: "First contact".into(),
                            outcome: CallOutcome::WillAttend,
                        },
                    });
                }
                if answer_ms > 180_000 {
                    alert.transitions.push(Transition {
                        at: resolved_at,
                        change: Change::LateAnswerReason {
                            operator: operator.clone(),
                            reason: LATE_REASONS
                                .get(rng.random_range(0..LATE_REASONS.len()))
                                .copied()
                                .unwrap_or("Peak of calls")
                                .into(),
                        },
                    });
                }
                alert.state = AlertState::Resolved;
                alert.transitions.push(Transition {
                    at: resolved_at,
                    change: Change::Resolved {
                        operator: Some(operator),
                        outcome,
                        note,
                    },
                });
            }
        }
        out.alerts.push(alert);
        Ok(())
    }
}

const LATE_REASONS: &[&str] = &[
    "Peak of calls: every operator on a call",
    "Handover between shifts",
    "Telephony fault, calls queued",
];

/// Answer times as a centre close to the TEC Quality standard achieves them: most within a
/// minute, a few within three, one in a hundred later.
fn answer_time_ms(rng: &mut StdRng) -> i64 {
    let roll: f64 = rng.random();
    if roll < 0.965 {
        rng.random_range(6_000..58_000)
    } else if roll < 0.99 {
        rng.random_range(60_000..179_000)
    } else {
        rng.random_range(181_000..420_000)
    }
}

/// How answered presses end, with the note the outcome requires.
fn outcome(rng: &mut StdRng) -> (Outcome, Option<String>) {
    let roll = rng.random_range(0..100);
    match roll {
        0..45 => (Outcome::FalseAlarm, None),
        45..70 => (Outcome::AdviceGiven, None),
        70..80 => (Outcome::KeyHolderAttended, None),
        80..88 => (Outcome::MobileResponderAttended, None),
        88..93 => (Outcome::TestCall, None),
        93..98 => (
            Outcome::AmbulanceCalled,
            Some("Fall in the kitchen; ambulance called, daughter informed".into()),
        ),
        _ => (
            Outcome::ReferralGp,
            Some("Dizzy spells this week; GP surgery asked to call back".into()),
        ),
    }
}

/// The days from `first` to `last` inclusive.
pub fn days(first: Date, last: Date) -> impl Iterator<Item = Date> {
    let count = (day_number(last) - day_number(first) + 1).max(0);
    (0..count).filter_map(move |n| first.checked_add(n.days()).ok())
}
