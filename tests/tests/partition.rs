//! Network partition: the broker is stopped while a home's five simulated devices (the real
//! firmware core) raise alarms and telemetry. The devices use a clean MQTT session, so only
//! their outboxes carry the events across. When the broker returns on the same port, every
//! event generated during the outage is stored exactly once, and each device publishes its
//! alarms before its telemetry even where the telemetry was generated first; the gateway's
//! alarm session reconnects before its telemetry session, so no alarm waits behind telemetry.
//! Fails, never skips, when Mosquitto is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod sim_support;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::Broker;
use firmware::session::Backoff;
use gateway::domain::{Change, EventBody, EventKey, StoredEvent};
use protocol::{AlarmKind, DeviceId, SensorState, UplinkBody};
use sim_support::{LoggedBroker, WireObserver, device_events, device_spec, register_home, start_gateway};
use simulator::{DeviceHandle, DeviceKind as SimKind, device_id, spawn_device};

const WAIT: Duration = Duration::from_secs(30);

/// What the test asked one device to do during the outage, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generated {
    Alarm(AlarmKind),
    Telemetry(SensorState),
}

fn temperature(centi_celsius: i16) -> SensorState {
    SensorState::Temperature { centi_celsius }
}

/// One round of inputs per device: telemetry first, then (in some rounds) an alarm, so a
/// receive order that merely followed generation order would put telemetry first.
fn round(kind: SimKind, round: usize) -> Vec<Generated> {
    let even = round.is_multiple_of(2);
    let mut inputs = Vec::new();
    match kind {
        SimKind::Pendant => {
            inputs.push(Generated::Telemetry(temperature(2_000 + round as i16)));
            if round < 3 {
                let alarm = if round == 1 {
                    AlarmKind::Fall
                } else {
                    AlarmKind::PendantPress
                };
                inputs.push(Generated::Alarm(alarm));
            }
        }
        SimKind::Door => {
            inputs.push(Generated::Telemetry(if even {
                SensorState::DoorOpen
            } else {
                SensorState::DoorClosed
            }));
            if round == 2 {
                inputs.push(Generated::Alarm(AlarmKind::Flood));
            }
        }
        SimKind::Bed => {
            inputs.push(Generated::Telemetry(if even {
                SensorState::BedEmpty
            } else {
                SensorState::BedOccupied
            }));
            if round == 3 {
                inputs.push(Generated::Alarm(AlarmKind::Fall));
            }
        }
        SimKind::Pir => {
            inputs.push(Generated::Telemetry(temperature(1_900 + round as i16)));
            if round == 1 {
                inputs.push(Generated::Alarm(AlarmKind::Heat));
            }
        }
        SimKind::Smoke => {
            inputs.push(Generated::Telemetry(temperature(2_200 + round as i16)));
            if round == 0 || round == 4 {
                let alarm = if round == 0 {
                    AlarmKind::Smoke
                } else {
                    AlarmKind::CarbonMonoxide
                };
                inputs.push(Generated::Alarm(alarm));
            }
        }
    }
    inputs
}

fn apply(device: &DeviceHandle, input: Generated) {
    match input {
        Generated::Alarm(AlarmKind::PendantPress) => device.press(),
        Generated::Alarm(AlarmKind::Fall) => device.fall(),
        Generated::Alarm(kind) => device.alarm(kind),
        Generated::Telemetry(state) => device.sensor(1, state),
    }
}

fn as_generated(event: &StoredEvent) -> Option<Generated> {
    match &event.body {
        EventBody::Uplink(UplinkBody::Alarm(kind)) => Some(Generated::Alarm(*kind)),
        EventBody::Uplink(UplinkBody::SensorChange { state, .. }) => Some(Generated::Telemetry(*state)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_raised_while_the_broker_is_down_all_arrive_first_and_once() {
    sim_support::init_tracing();
    let mut broker = LoggedBroker(tokio::task::block_in_place(Broker::start).unwrap());
    let data = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&broker, data.path()).await;
    // Sees the order in which each device published (the store's receive times tie within a
    // commit batch).
    let observer = WireObserver::start(&broker, "partition-observer").await;

    let kinds = SimKind::ALL;
    let ids: Vec<(DeviceId, SimKind)> = kinds.iter().map(|&kind| (device_id(1, kind).unwrap(), kind)).collect();
    register_home(&gateway, "res-partition", &ids).await;
    let mut devices = Vec::new();
    for &(id, kind) in &ids {
        let mut spec = device_spec(&broker, id);
        spec.activity = kind.activity();
        // Quick reconnects keep the test short; the schedule itself is the firmware's.
        spec.backoff = Backoff {
            initial_ms: 250,
            max_ms: 2_000,
        };
        devices.push((kind, spawn_device(spec).unwrap()));
    }
    for (_, device) in &mut devices {
        device
            .wait_for(WAIT, |v| v.connected && v.outbox_depth == 0 && v.next_seq > 0)
            .await
            .unwrap();
    }
    let first_outage_seq: Vec<u32> = devices.iter().map(|(_, d)| d.view().next_seq).collect();

    // The partition: the broker goes away (gracefully, so its persistence survives).
    tokio::task::block_in_place(|| broker.stop()).unwrap();
    for (_, device) in &mut devices {
        device.wait_for(WAIT, |v| !v.connected).await.unwrap();
    }

    let mut generated: Vec<Vec<Generated>> = vec![Vec::new(); devices.len()];
    for r in 0..5 {
        for (index, (kind, device)) in devices.iter().enumerate() {
            for input in round(*kind, r) {
                apply(device, input);
                generated[index].push(input);
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    for ((_, device), (inputs, first)) in devices.iter_mut().zip(generated.iter().zip(&first_outage_seq)) {
        let expected = first + inputs.len() as u32;
        let view = device.wait_for(WAIT, |v| v.next_seq == expected).await.unwrap();
        assert!(!view.connected);
        assert_eq!(
            view.outbox_depth,
            inputs.len(),
            "{}: everything waits in the outbox",
            device.device_id()
        );
        assert_eq!(view.events_dropped, 0);
        assert_eq!(view.alarms_lost, 0);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The broker returns on the same port; devices reconnect and drain their outboxes.
    tokio::task::block_in_place(|| broker.start_again()).unwrap();
    for (_, device) in &mut devices {
        let view = device
            .wait_for(WAIT, |v| v.connected && v.outbox_depth == 0)
            .await
            .unwrap();
        assert!(view.connects >= 2, "{view:?}");
    }

    // The gateway's alarm session reconnected before its telemetry session, so the broker
    // handed over the queued alarms first. (Which of two publishes a millisecond apart is read
    // first across the two sessions is the broker's fan-out and the scheduler's; the order that
    // is the device's to keep is checked on the wire below.)
    let log = std::fs::read_to_string(broker.log_path()).unwrap();
    let after_restart = &log[log.rfind("starting").unwrap()..];
    let alarm_session = after_restart.find(" as e2e.gateway-alarms ").unwrap();
    let telemetry_session = after_restart.find(" as e2e.gateway ").unwrap();
    assert!(
        alarm_session < telemetry_session,
        "the telemetry session reconnected first: {after_restart}"
    );

    for (index, (kind, device)) in devices.iter().enumerate() {
        let id = device.device_id();
        let first = first_outage_seq[index];
        let view = device.view();
        let during: Vec<StoredEvent> = device_events(&gateway, id)
            .into_iter()
            .filter(|e| e.key.boot == view.boot && e.key.seq >= first)
            .collect();
        // Exactly the sequence numbers the device used during the outage, each once.
        let seqs: Vec<u32> = {
            let mut seqs: Vec<u32> = during.iter().map(|e| e.key.seq).collect();
            seqs.sort_unstable();
            seqs
        };
        let expected_seqs: Vec<u32> = (first..view.next_seq).collect();
        assert_eq!(seqs, expected_seqs, "{id}: every outage event stored once");

        // The same things we asked for, none lost, none doubled.
        let tally = |items: &mut dyn Iterator<Item = Generated>| {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for item in items {
                *counts.entry(format!("{item:?}")).or_default() += 1;
            }
            counts
        };
        let stored = tally(&mut during.iter().filter_map(as_generated));
        let wanted = tally(&mut generated[index].iter().copied());
        assert_eq!(stored, wanted, "{id} ({kind:?})");

        // On the wire: every outage alarm was published before any outage telemetry, and
        // each class in sequence order.
        let wire: Vec<_> = observer
            .first_deliveries(id)
            .into_iter()
            .filter(|u| u.boot == view.boot && u.seq >= first)
            .collect();
        assert_eq!(wire.len(), expected_seqs.len(), "{id}: observer saw {wire:?}");
        let alarms_then_telemetry: Vec<u32> = {
            let alarms = during.iter().filter(|e| e.body.is_alarm()).map(|e| e.key.seq);
            let mut alarms: Vec<u32> = alarms.collect();
            alarms.sort_unstable();
            let mut telemetry: Vec<u32> = during
                .iter()
                .filter(|e| !e.body.is_alarm())
                .map(|e| e.key.seq)
                .collect();
            telemetry.sort_unstable();
            alarms.into_iter().chain(telemetry).collect()
        };
        let wire_order: Vec<u32> = wire.iter().map(|u| u.seq).collect();
        assert_eq!(
            wire_order, alarms_then_telemetry,
            "{id}: publish order after the outage"
        );
    }

    // Every alarm raised during the outage reached an operator's queue: it raised an alert
    // or joined the resident's open alert of that kind.
    let alerts = gateway
        .store()
        .unwrap()
        .alerts(&gateway::store::AlertFilter::default())
        .unwrap();
    let in_an_alert = |key: &EventKey| {
        alerts.iter().any(|alert| {
            alert.transitions.iter().any(|t| match &t.change {
                Change::Raised { event } => event.as_ref() == Some(key),
                Change::Joined { event } => event == key,
                _ => false,
            })
        })
    };
    for (index, (_, device)) in devices.iter().enumerate() {
        let view = device.view();
        for event in device_events(&gateway, device.device_id()) {
            if event.key.boot == view.boot && event.key.seq >= first_outage_seq[index] && event.body.is_alarm() {
                assert!(in_an_alert(&event.key), "{}: no alert for {event:?}", event.key);
            }
        }
    }

    for (_, device) in devices {
        device.stop().await.unwrap();
    }
    gateway.shutdown().await.unwrap();
}
