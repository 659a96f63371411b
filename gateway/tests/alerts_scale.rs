//! Alert engine with many devices: timers are indexed, so a tick that fires nothing or one
//! device stays cheap however many devices are watched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use std::time::Instant;

use alerts_support::*;
use gateway::alerts::{AlertEngine, EngineConfig, EngineInput};
use gateway::domain::{AlertId, AlertKind, DeviceKind, EventKey, StoredEvent};
use protocol::AlarmKind;

#[test]
fn twenty_thousand_watched_devices() {
    const DEVICES: i64 = 20_000;
    let start = utc("2026-01-15T12:00:00Z");
    // Every device goes quiet: flood grouping off, so each gets its own timer and alert.
    let config = EngineConfig {
        flood_threshold: 0,
        ..EngineConfig::default()
    };
    let mut engine = AlertEngine::new(config, AlertId(1));
    let began = Instant::now();
    for n in 0..DEVICES {
        // One heartbeat a millisecond apart, so every device has its own deadline.
        let now = start.plus_ms(n);
        let event = StoredEvent {
            key: EventKey {
                device: dev(&format!("pnd-{n}")),
                boot: 1,
                seq: 0,
            },
            resident: None,
            received_at: now,
            device_time: None,
            protocol_version: 1,
            body: heartbeat(90, 60),
        };
        let effects = engine.handle(
            EngineInput::Event {
                event,
                device_registered: true,
                device_kind: DeviceKind::Pendant,
            },
            now,
        );
        assert!(effects.is_empty());
    }
    assert_eq!(engine.take_state_changes().len(), DEVICES as usize);
    let fed = began.elapsed();
    let first_due = start.plus_ms(180 * SECOND);
    assert_eq!(engine.next_deadline(), Some(first_due));
    let ticks = Instant::now();
    for _ in 0..1_000 {
        assert!(engine.tick(first_due.plus_ms(-1)).is_empty());
    }
    let idle_ticks = ticks.elapsed();
    let effects = engine.tick(first_due.plus_ms(9));
    assert_eq!(changed_alerts(&effects).len(), 10);
    assert!(
        changed_alerts(&effects)
            .iter()
            .all(|a| a.kind == AlertKind::DeviceOffline)
    );
    assert_eq!(engine.next_deadline(), Some(first_due.plus_ms(10)));
    // Generous bounds for a debug build on a busy machine: a scan of every device per tick
    // would take seconds for 1,000 ticks.
    eprintln!("fed {DEVICES} devices in {fed:?}; 1,000 idle ticks in {idle_ticks:?}");
    assert!(idle_ticks.as_millis() < 1_000, "idle ticks took {idle_ticks:?}");
}

#[test]
fn a_flood_of_twenty_thousand_devices_is_one_incident_written_once_per_tick() {
    const DEVICES: usize = 20_000;
    let start = utc("2026-01-15T12:00:00Z");
    let mut engine = AlertEngine::new(EngineConfig::default(), AlertId(1));
    let inputs = (0..DEVICES).map(|n| EngineInput::Event {
        event: StoredEvent {
            key: EventKey {
                device: dev(&format!("pnd-{n}")),
                boot: 1,
                seq: 0,
            },
            resident: Some(res(&format!("r{n}"))),
            received_at: start,
            device_time: None,
            protocol_version: 1,
            body: heartbeat(90, 60),
        },
        device_registered: true,
        device_kind: DeviceKind::Pendant,
    });
    engine.handle_batch(inputs, start);
    // The power goes: nothing more is heard, every timer fires in one tick.
    let began = Instant::now();
    let effects = engine.tick(start.plus_ms(180 * SECOND));
    let took = began.elapsed();
    let changed = changed_alerts(&effects);
    let threshold = EngineConfig::default().flood_threshold as usize;
    // The first few alone (raised, then folded in), then the incident: raised, and its list once.
    assert_eq!(
        changed.len(),
        2 * (threshold - 1) + 2,
        "one write per alert change, not per device"
    );
    let incident = changed.last().unwrap();
    assert_eq!(incident.kind, AlertKind::InfrastructureIncident);
    assert_eq!(incident.affected_devices.len(), DEVICES);
    let open: Vec<_> = engine.open_alerts().collect();
    assert_eq!(open.len(), 1, "only the incident is open");
    eprintln!("{DEVICES} devices offline in one tick, one incident: {took:?}");
}

#[test]
fn an_alert_joined_thousands_of_times_keeps_its_engine_state_small() {
    // A stuck pendant: 5,000 presses join one alert. Every press is in the alert's history
    // (the store appends it), but the engine's per-alert state stays bounded, and the
    // pendant still hears the operator.
    let mut sim = Sim::default_at("2026-01-15T12:00:00Z");
    for seq in 0..5_000 {
        sim.send(Ev::new("pnd-1", alarm(AlarmKind::PendantPress)).of("r1").seq(seq));
    }
    sim.send(Ev::new("pnd-2", alarm(AlarmKind::PendantPress)).of("r1").seq(0));
    let alert = sim.only_open();
    assert_eq!(alert.transitions.len(), 5_001);
    let largest = sim.state.values().map(Vec::len).max().unwrap();
    assert!(largest < 16 * 1024, "engine state entry of {largest} bytes");
    let acked = sim.ack(alert.id);
    let told: Vec<_> = downlinks(&acked).into_iter().map(|(device, _)| device).collect();
    assert_eq!(
        told,
        vec![dev("pnd-1"), dev("pnd-2")],
        "each device once, the first one too"
    );
}
