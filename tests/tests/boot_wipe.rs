//! A device whose boot counter is wiped mid-life (flash wiped, board replaced under the same
//! id) comes back as boot 1 and reuses keys the gateway already holds, some with the very same
//! bytes as months ago. The real firmware core (simulated pendant) and the real gateway (in
//! process) through a private Mosquitto with the production ACL: every uplink the device sends
//! after the wipe is stored exactly once, every alarm among them alerts, the device gets a
//! `KeyConflict` technical alert, and the `BootFloor` downlink moves it to fresh keys by itself.
//! Fails, never skips, when Mosquitto is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod sim_support;

use std::time::Duration;

use e2e::{Broker, BrokerAuth, BrokerOptions};
use gateway::app::GatewayHandle;
use gateway::domain::{Alert, AlertKind, Change, Clock, Outcome, SystemClock, Timestamp};
use gateway::store::{AlertFilter, EventFilter};
use protocol::{AlarmKind, DeviceId, DownlinkBody, Uplink, UplinkBody};
use sim_support::{DeviceWire, device_spec, next_alert, register_home, start_gateway};
use simulator::{DeviceHandle, DeviceKind as SimKind, spawn_device};

const WAIT: Duration = Duration::from_secs(20);

/// Presses the pendant, waits for its alert and resolves it, so the next press raises anew.
async fn press_and_resolve(gateway: &GatewayHandle, device: &mut DeviceHandle, boot: u32) {
    let mut alerts = gateway.subscribe_alerts();
    device.press();
    let alert = next_alert(&mut alerts, "the press's alert", WAIT, |a| {
        a.kind == AlertKind::PendantPress && a.is_open()
    })
    .await;
    gateway
        .resolve(alert.id, "op-1", Outcome::FalseAlarm, None)
        .await
        .unwrap();
    let view = device.wait_for(WAIT, |v| v.outbox_depth == 0).await.unwrap();
    assert_eq!(view.boot, boot);
}

/// The alert changes that name `key` as raising or joining them at or after `since`.
fn alerted_by(alerts: &[Alert], key: gateway::domain::EventKey, since: Timestamp) -> bool {
    alerts.iter().any(|alert| {
        alert.transitions.iter().any(|t| {
            t.at >= since
                && match &t.change {
                    Change::Raised { event } => *event == Some(key),
                    Change::Joined { event } => *event == key,
                    _ => false,
                }
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_boot_counter_loses_nothing_and_the_device_recovers_fresh_keys() {
    sim_support::init_tracing();
    let id = DeviceId::new("sim-h00001-pendant").unwrap();
    let broker = tokio::task::block_in_place(|| {
        Broker::start_with(BrokerOptions {
            auth: Some(BrokerAuth::for_devices([id.as_str()])),
            ..BrokerOptions::default()
        })
    })
    .unwrap();
    let broker = sim_support::LoggedBroker(broker);
    let data = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&broker, data.path()).await;
    register_home(&gateway, "res-wipe", &[(id, SimKind::Pendant)]).await;
    let mut wire = DeviceWire::watch(&broker, id).await;

    // Its earlier life: boots 1 to 3, a press in each of the first two.
    let mut spec = device_spec(&broker, id);
    spec.stored_boot = 0;
    let mut device = spawn_device(spec).unwrap();
    device
        .wait_for(WAIT, |v| v.connected && v.outbox_depth == 0 && v.boot == 1)
        .await
        .unwrap();
    press_and_resolve(&gateway, &mut device, 1).await;
    device.restart();
    device
        .wait_for(WAIT, |v| v.restarts == 1 && v.connected && v.outbox_depth == 0)
        .await
        .unwrap();
    press_and_resolve(&gateway, &mut device, 2).await;
    device.restart();
    device
        .wait_for(WAIT, |v| {
            v.restarts == 2 && v.connected && v.outbox_depth == 0 && v.boot == 3
        })
        .await
        .unwrap();
    let before_wipe = wire.take_uplinks();
    assert!(before_wipe.iter().any(|u| u.header.boot == 1), "{before_wipe:#?}");

    // The wipe: back to boot 1, its first events reuse keys the store holds. A press at once,
    // before the gateway can have told the device anything.
    let wiped_at = SystemClock.now();
    let mut alerts = gateway.subscribe_alerts();
    device.wipe_boot_counter_and_restart();
    device.wait_for(WAIT, |v| v.restarts == 3 && v.boot == 1).await.unwrap();
    device.press();

    // The gateway notices (a lower Online, or a reused key), raises the technical alert and
    // sends the floor; the device moves to it by itself.
    let conflict = next_alert(&mut alerts, "the key-conflict alert", WAIT, |a| {
        a.kind == AlertKind::KeyConflict && a.device == Some(id)
    })
    .await;
    let floor = wire
        .next_downlink("the boot floor", |b| matches!(b, DownlinkBody::BootFloor { .. }))
        .await;
    let DownlinkBody::BootFloor { min_boot } = floor else {
        unreachable!()
    };
    assert_eq!(min_boot, 4, "one above the highest boot seen (3)");
    let moved = device
        .wait_for(WAIT, |v| v.boot >= min_boot && v.stored_boot >= min_boot)
        .await
        .unwrap();
    assert_eq!(moved.boot, 4);

    // Life goes on with fresh keys: another press, then everything receipted.
    device.press();
    device
        .wait_for(WAIT, |v| v.boot == 4 && v.outbox_depth == 0 && v.next_seq >= 2)
        .await
        .unwrap();
    let after_wipe = wire.take_uplinks();

    // Every distinct uplink sent after the wipe is stored exactly once (received since the
    // wipe, so not confused with its earlier life's event under the same key).
    let store = gateway.store().unwrap();
    let mut distinct: Vec<&Uplink> = Vec::new();
    for uplink in &after_wipe {
        if !distinct
            .iter()
            .any(|d| d.header == uplink.header && d.body == uplink.body)
        {
            distinct.push(uplink);
        }
    }
    assert!(
        distinct.iter().any(|u| u.header.boot == 1) && distinct.iter().any(|u| u.header.boot == 4),
        "uplinks under both the reused boot and the floor: {distinct:#?}"
    );
    let stored = store
        .events(&EventFilter {
            device: Some(id),
            since: Some(wiped_at),
            ..EventFilter::default()
        })
        .unwrap();
    assert!(stored.unreadable.is_empty(), "{:?}", stored.unreadable);
    for uplink in &distinct {
        let copies: Vec<_> = stored
            .events
            .iter()
            .filter(|read| {
                let e = &read.event;
                e.key.boot == uplink.header.boot
                    && e.key.seq == uplink.header.seq
                    && e.body == gateway::domain::EventBody::Uplink(uplink.body.clone())
            })
            .collect();
        assert_eq!(
            copies.len(),
            1,
            "uplink {:?} {:?} stored {} times since the wipe",
            uplink.header,
            uplink.body,
            copies.len()
        );
    }
    assert_eq!(
        stored.events.len(),
        distinct.len(),
        "nothing else stored since the wipe"
    );

    eprintln!(
        "after the wipe: {} uplinks on the wire, {} distinct: {:?}",
        after_wipe.len(),
        distinct.len(),
        distinct
            .iter()
            .map(|u| (u.header.boot, u.header.seq, u.header.device_time_ms.is_some(), &u.body))
            .collect::<Vec<_>>()
    );
    // Every alarm sent after the wipe raised or joined an alert.
    let all_alerts = store.alerts(&AlertFilter::default()).unwrap();
    let presses: Vec<_> = distinct
        .iter()
        .filter(|u| u.body == UplinkBody::Alarm(AlarmKind::PendantPress))
        .collect();
    assert_eq!(presses.len(), 2, "{distinct:#?}");
    for press in presses {
        let key = gateway::domain::EventKey {
            device: id,
            boot: press.header.boot,
            seq: press.header.seq,
        };
        assert!(
            alerted_by(&all_alerts, key, wiped_at),
            "press {key} after the wipe alerted nothing: {all_alerts:#?}"
        );
    }
    assert!(conflict.is_open(), "a technician closes the key-conflict alert");
    device.stop().await.unwrap();
    gateway.shutdown().await.unwrap();
}
