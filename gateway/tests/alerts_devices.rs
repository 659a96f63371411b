//! Alert engine: no-comms (missed heartbeats and last will), auto-clear on return, and the
//! low-battery latch with its hysteresis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod alerts_support;

use alerts_support::*;
use gateway::alerts::EngineConfig;
use gateway::domain::{AlertId, AlertKind, AlertState, Change, EventBody, Outcome, Priority};
use protocol::{AlarmKind, DownlinkBody, UplinkBody};

const NOON: &str = "2026-01-15T12:00:00Z";

fn offline_alerts(sim: &Sim) -> Vec<gateway::domain::Alert> {
    sim.open_of(AlertKind::DeviceOffline)
}

#[test]
fn silence_for_the_default_missed_heartbeats_raises_device_offline() {
    let mut sim = Sim::default_at(NOON);
    let start = sim.now;
    sim.send(Ev::new("pnd-1", heartbeat(90, 0)).of("r1"));
    // Interval 0 means "the default" (300 s); 3 missed -> 900 s.
    assert_eq!(sim.engine.next_deadline(), Some(start.plus_ms(900 * SECOND)));
    sim.now = start.plus_ms(900 * SECOND - 1);
    assert!(sim.tick().is_empty());
    sim.now = start.plus_ms(900 * SECOND);
    let effects = sim.tick();
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.kind, AlertKind::DeviceOffline);
    assert_eq!(alert.priority, Priority::Technical);
    assert_eq!(alert.device, Some(dev("pnd-1")));
    assert_eq!(alert.resident, Some(res("r1")));
    assert_eq!(alert.transitions[0].change, Change::Raised { event: None });
    assert!(downlinks(&effects).is_empty());
    // Once: no second alert while it stays silent.
    sim.advance(HOUR / 2);
    assert!(
        changed_alerts(&sim.tick())
            .iter()
            .all(|a| a.kind != AlertKind::DeviceOffline || a.id == alert.id)
    );
    assert_eq!(offline_alerts(&sim).len(), 1);
}

#[test]
fn the_interval_comes_from_the_latest_heartbeat() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)));
    let heard = sim.now;
    assert_eq!(sim.engine.next_deadline(), Some(heard.plus_ms(180 * SECOND)));
    sim.advance(179 * SECOND);
    assert!(sim.tick().is_empty());
    sim.advance(SECOND);
    assert_eq!(changed_alerts(&sim.tick())[0].kind, AlertKind::DeviceOffline);
}

#[test]
fn a_reported_interval_outside_the_configurable_range_is_clamped() {
    // Days (or u32::MAX) would switch off no-comms detection: clamp to 86,400 s.
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, u32::MAX)));
    assert_eq!(sim.engine.next_deadline(), Some(sim.now.plus_ms(3 * 86_400 * SECOND)));
    // And seconds would raise false alarms: at least 30 s.
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-2", heartbeat(90, 1)));
    assert_eq!(sim.engine.next_deadline(), Some(sim.now.plus_ms(3 * 30 * SECOND)));
}

#[test]
fn the_missed_heartbeat_count_is_configurable() {
    let config = EngineConfig {
        offline_missed_heartbeats: 2,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config, utc(NOON));
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)));
    sim.advance(120 * SECOND - 1);
    sim.tick();
    assert!(offline_alerts(&sim).is_empty());
    sim.advance(1);
    sim.tick();
    assert_eq!(offline_alerts(&sim).len(), 1);
}

#[test]
fn any_event_restarts_the_silence_timer() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)));
    sim.advance(170 * SECOND);
    sim.send(Ev::new("pnd-1", sensor(protocol::SensorState::Motion)));
    sim.advance(170 * SECOND);
    assert!(sim.tick().is_empty());
    assert_eq!(sim.engine.next_deadline(), Some(sim.now.plus_ms(10 * SECOND)));
}

#[test]
fn devices_never_heard_from_are_not_watched() {
    let mut sim = Sim::default_at(NOON);
    assert_eq!(sim.engine.next_deadline(), None);
    // A last will (e.g. retained) for a device never heard from is ignored.
    assert!(sim.presence("ghost-1", false).is_empty());
    sim.advance(7 * 24 * HOUR);
    assert!(sim.tick().is_empty());
    assert_eq!(sim.engine.next_deadline(), None);
}

#[test]
fn the_device_coming_back_clears_an_unacknowledged_offline_alert() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)).of("r1"));
    sim.advance(200 * SECOND);
    sim.tick();
    assert_eq!(offline_alerts(&sim).len(), 1);
    sim.advance(MINUTE);
    let (_, effects) = sim.send(Ev::new("pnd-1", heartbeat(90, 60)).of("r1"));
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.state, AlertState::Resolved);
    assert_eq!(alert.outcome(), Some(Outcome::AutoCleared));
    assert!(matches!(last_change(&alert), Change::Resolved { operator: None, .. }));
    assert!(sim.open().is_empty());
    // Watched again from now on.
    assert_eq!(sim.engine.next_deadline(), Some(sim.now.plus_ms(180 * SECOND)));
}

#[test]
fn an_online_presence_also_clears_it() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)));
    sim.advance(200 * SECOND);
    sim.tick();
    let effects = sim.presence("pnd-1", true);
    assert_eq!(changed_alerts(&effects)[0].outcome(), Some(Outcome::AutoCleared));
    assert!(sim.open().is_empty());
}

#[test]
fn an_acknowledged_offline_alert_is_left_to_its_operator() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)));
    sim.advance(200 * SECOND);
    sim.tick();
    sim.ack(AlertId(1));
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)));
    let alert = sim.only_open();
    assert_eq!(alert.state, AlertState::Acknowledged);
    assert!(matches!(last_change(&alert), Change::Note { operator, .. } if operator == "gateway"));
    // Silent again: the same open alert hears about it, no second alert.
    sim.advance(200 * SECOND);
    sim.tick();
    let alert = sim.only_open();
    assert_eq!(alert.id, AlertId(1));
    assert!(matches!(last_change(&alert), Change::Note { text, .. } if text.contains("again")));
}

#[test]
fn a_last_will_raises_device_offline_at_once_by_default() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 300)).of("r1"));
    sim.advance(30 * SECOND);
    let effects = sim.presence("pnd-1", false);
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.kind, AlertKind::DeviceOffline);
    assert_eq!(alert.raised_at, sim.now);
    assert_eq!(alert.resident, Some(res("r1")));
    // The broker repeating the will changes nothing.
    assert!(sim.presence("pnd-1", false).is_empty());
    sim.advance(MINUTE);
    let effects = sim.presence("pnd-1", true);
    assert_eq!(changed_alerts(&effects)[0].outcome(), Some(Outcome::AutoCleared));
}

#[test]
fn a_last_will_waits_out_its_grace_unless_the_device_returns() {
    let config = EngineConfig {
        last_will_grace_s: 120,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config, utc(NOON));
    sim.send(Ev::new("pnd-1", heartbeat(90, 300)));
    sim.advance(10 * SECOND);
    let will = sim.now;
    assert!(sim.presence("pnd-1", false).is_empty());
    assert_eq!(sim.engine.next_deadline(), Some(will.plus_ms(120 * SECOND)));
    // Comes back within the grace: nothing.
    sim.advance(60 * SECOND);
    assert!(sim.presence("pnd-1", true).is_empty());
    sim.advance(61 * SECOND);
    assert!(sim.tick().is_empty());
    // Goes again and stays away.
    let second_will = sim.now;
    sim.presence("pnd-1", false);
    sim.now = second_will.plus_ms(120 * SECOND - 1);
    assert!(sim.tick().is_empty());
    sim.now = second_will.plus_ms(120 * SECOND);
    assert_eq!(changed_alerts(&sim.tick())[0].kind, AlertKind::DeviceOffline);
}

#[test]
fn a_last_will_older_than_what_was_heard_since_is_ignored() {
    let mut sim = Sim::default_at(NOON);
    let earlier = sim.now;
    sim.advance(MINUTE);
    sim.send(Ev::new("pnd-1", heartbeat(90, 300)));
    let input = gateway::alerts::EngineInput::Presence {
        device: dev("pnd-1"),
        resident: None,
        online: false,
        boot: None,
        at: earlier,
    };
    let effects = sim.engine.handle(input, sim.now);
    assert!(effects.is_empty());
    assert!(sim.open().is_empty());
}

#[test]
fn forgetting_a_device_stops_its_watch() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)));
    sim.engine.forget_device(dev("pnd-1"));
    assert_eq!(sim.engine.take_state_changes(), vec![("dev/pnd-1".to_owned(), None)]);
    sim.advance(HOUR);
    assert!(sim.tick().is_empty());
}

#[test]
fn low_battery_raises_one_alert_until_the_battery_recovers_past_the_hysteresis() {
    let mut sim = Sim::default_at(NOON);
    let (first, effects) = sim.send(Ev::new("pnd-1", heartbeat(19, 300)).of("r1"));
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.kind, AlertKind::LowBattery);
    assert_eq!(alert.priority, Priority::Technical);
    assert_eq!(alert.transitions[0].change, Change::Raised { event: Some(first) });
    // Still low, hovering around the threshold, and below the recovery level: nothing.
    for percent in [18, 21, 19, 25, 30] {
        sim.advance(5 * MINUTE);
        let (_, effects) = sim.send(Ev::new("pnd-1", heartbeat(percent, 300)).of("r1"));
        assert!(effects.is_empty(), "{percent}%");
    }
    // Above the recovery level: the open, unacknowledged alert clears itself.
    sim.advance(5 * MINUTE);
    let (_, effects) = sim.send(Ev::new("pnd-1", heartbeat(31, 300)).of("r1"));
    let cleared = changed_alerts(&effects).pop().unwrap();
    assert_eq!(cleared.outcome(), Some(Outcome::AutoCleared));
    assert!(sim.open().is_empty());
    // Low again: a new alert.
    sim.advance(5 * MINUTE);
    sim.send(Ev::new("pnd-1", heartbeat(15, 300)).of("r1"));
    assert_eq!(sim.only_open().id, AlertId(2));
}

#[test]
fn a_heartbeat_without_a_battery_reading_is_not_a_flat_battery() {
    let mut sim = Sim::default_at(NOON);
    let mut unknown = heartbeat(0, 300);
    if let EventBody::Uplink(UplinkBody::Heartbeat(status)) = &mut unknown {
        status.battery_mv = 0;
    }
    let (_, effects) = sim.send(Ev::new("pnd-1", unknown).of("r1"));
    assert!(changed_alerts(&effects).is_empty(), "{effects:?}");
    assert!(sim.open().is_empty());
}

#[test]
fn an_operator_resolving_low_battery_does_not_rearm_it_until_recovery() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(10, 300)));
    sim.resolve(AlertId(1), Outcome::MaintenanceRequested);
    sim.send(Ev::new("pnd-1", heartbeat(9, 300)));
    sim.send(Ev::new(
        "pnd-1",
        alarm(AlarmKind::LowBattery {
            millivolts: 2_000,
            percent: 8,
        }),
    ));
    assert!(sim.open().is_empty());
    sim.send(Ev::new("pnd-1", heartbeat(80, 300)));
    sim.send(Ev::new(
        "pnd-1",
        alarm(AlarmKind::LowBattery {
            millivolts: 2_000,
            percent: 8,
        }),
    ));
    assert_eq!(sim.only_open().id, AlertId(2));
}

#[test]
fn a_low_battery_alarm_raises_and_latches_and_joins() {
    let mut sim = Sim::default_at(NOON);
    let (key, effects) = sim.send(Ev::new(
        "smk-1",
        alarm(AlarmKind::LowBattery {
            millivolts: 2_100,
            percent: 12,
        }),
    ));
    let alert = changed_alerts(&effects).pop().unwrap();
    assert_eq!(alert.kind, AlertKind::LowBattery);
    assert_eq!(alert.transitions[0].change, Change::Raised { event: Some(key) });
    // The next heartbeat agrees it is low: latched, nothing new.
    let (_, effects) = sim.send(Ev::new("smk-1", heartbeat(12, 300)));
    assert!(effects.is_empty());
    // A repeated alarm joins the open alert.
    let (again, _) = sim.send(Ev::new(
        "smk-1",
        alarm(AlarmKind::LowBattery {
            millivolts: 2_000,
            percent: 10,
        }),
    ));
    assert_eq!(last_change(&sim.only_open()), &Change::Joined { event: again });
    // The device sent an alarm, so it hears the operator.
    let effects = sim.ack(AlertId(1));
    assert_eq!(
        downlinks(&effects),
        vec![(dev("smk-1"), DownlinkBody::HelpOnTheWay { alert_ref: 1 })]
    );
}

#[test]
fn recovery_of_an_acknowledged_low_battery_alert_only_adds_a_note() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(10, 300)));
    sim.ack(AlertId(1));
    sim.send(Ev::new("pnd-1", heartbeat(95, 300)));
    let alert = sim.only_open();
    assert_eq!(alert.state, AlertState::Acknowledged);
    assert!(matches!(last_change(&alert), Change::Note { text, .. } if text.contains("battery recovered")));
    // The latch is clear: the next low spell joins the still-open alert as a repeat.
    let (key, _) = sim.send(Ev::new("pnd-1", heartbeat(10, 300)));
    assert_eq!(last_change(&sim.only_open()), &Change::Joined { event: key });
}

#[test]
fn battery_thresholds_are_configurable() {
    let config = EngineConfig {
        low_battery_percent: 50,
        battery_recovered_percent: 60,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config, utc(NOON));
    sim.send(Ev::new("pnd-1", heartbeat(49, 300)));
    assert_eq!(sim.only_open().kind, AlertKind::LowBattery);
    sim.send(Ev::new("pnd-1", heartbeat(61, 300)));
    assert!(sim.open().is_empty());
}

#[test]
fn the_offline_alert_says_why() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)));
    sim.send(Ev::new("pnd-2", heartbeat(90, 300)));
    sim.advance(180 * SECOND);
    sim.tick();
    sim.presence("pnd-2", false);
    let texts: Vec<String> = sim
        .open_of(AlertKind::DeviceOffline)
        .iter()
        .map(|a| match &a.transitions[1].change {
            Change::Note { text, .. } => text.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            "nothing heard for 180 s".to_owned(),
            "the broker reported the connection lost (last will)".to_owned()
        ]
    );
}

#[test]
fn after_a_gateway_outage_silence_is_counted_from_when_it_could_listen_again() {
    let mut sim = Sim::default_at(NOON);
    sim.send(Ev::new("pnd-1", heartbeat(90, 60)));
    sim.send(Ev::new("pnd-2", heartbeat(90, 60)));
    sim.advance(200 * SECOND);
    sim.tick();
    assert_eq!(offline_alerts(&sim).len(), 2);
    sim.send(Ev::new("pnd-2", heartbeat(90, 60)));
    // The gateway is down for an hour, then restored.
    sim.advance(HOUR);
    let back = sim.now;
    sim.engine = sim.restored(back);
    sim.engine.restart_silence_timers(back);
    sim.absorb(Vec::new());
    let changed = changed_alerts(&sim.tick());
    assert!(
        changed.iter().all(|a| a.device != Some(dev("pnd-2"))),
        "no offline alert for a device the gateway could not hear: {changed:#?}"
    );
    assert_eq!(sim.engine.next_deadline(), Some(back.plus_ms(180 * SECOND)));
    // It survives another restart, and a device that stays silent still goes offline.
    sim.engine = sim.restored(back);
    sim.advance(180 * SECOND);
    let raised = changed_alerts(&sim.tick());
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].device, Some(dev("pnd-2")));
    assert_eq!(offline_alerts(&sim).len(), 2, "pnd-1 stayed offline throughout");
}
