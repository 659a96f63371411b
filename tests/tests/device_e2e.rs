//! The real firmware core (simulated pendant) and the real gateway (in process) through a
//! private Mosquitto with per-device passwords and the production ACL: a press is stored
//! once, receipted and shown; the operator's acknowledge and resolve reach the pendant; a
//! press-and-hold cancels; a pendant offline at the acknowledge hears it after reconnecting.
//! Fails, never skips, when Mosquitto is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod sim_support;

use std::time::Duration;

use e2e::{Broker, BrokerAuth, BrokerOptions};
use firmware::Indication;
use gateway::app::GatewayHandle;
use gateway::domain::{AlertKind, AlertState, Change, EventBody, Outcome};
use protocol::{AlarmKind, DeviceId, DownlinkBody, UplinkBody};
use sim_support::{device_events, device_spec, next_alert, register_home, start_gateway};
use simulator::{DeviceHandle, DeviceKind as SimKind, spawn_device};

const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    // Bound by every test (a `..` pattern would drop, i.e. kill, the broker at once).
    _broker: sim_support::LoggedBroker,
    _data: tempfile::TempDir,
    gateway: GatewayHandle,
    device: DeviceHandle,
    id: DeviceId,
}

/// Authenticated broker, gateway, a registered pendant with a resident, connected and idle.
async fn pendant_with_gateway(name: &str) -> Setup {
    sim_support::init_tracing();
    let id = DeviceId::new(name).unwrap();
    let broker = tokio::task::block_in_place(|| {
        Broker::start_with(BrokerOptions {
            auth: Some(BrokerAuth::for_devices([id.as_str()])),
            ..BrokerOptions::default()
        })
    })
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&broker, data.path()).await;
    register_home(&gateway, "res-e2e", &[(id, SimKind::Pendant)]).await;
    let mut device = spawn_device(device_spec(&broker, id)).unwrap();
    // Connected, and its boot heartbeat receipted.
    device
        .wait_for(WAIT, |v| v.connected && v.outbox_depth == 0 && v.next_seq > 0)
        .await
        .unwrap();
    Setup {
        _broker: sim_support::LoggedBroker(broker),
        _data: data,
        gateway,
        device,
        id,
    }
}

fn presses(events: &[gateway::domain::StoredEvent]) -> usize {
    events
        .iter()
        .filter(|e| e.body == EventBody::Uplink(UplinkBody::Alarm(AlarmKind::PendantPress)))
        .count()
}

fn resolved_outcome(alert: &gateway::domain::Alert) -> Option<Outcome> {
    alert.transitions.iter().find_map(|t| match &t.change {
        Change::Resolved { outcome, .. } => Some(*outcome),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn press_is_stored_once_receipted_and_operator_feedback_reaches_the_pendant() {
    let Setup {
        gateway,
        mut device,
        id,
        _broker,
        _data,
    } = pendant_with_gateway("sim-h00001-pendant").await;
    let mut alerts = gateway.subscribe_alerts();

    device.press();
    let view = device
        .wait_for(WAIT, |v| {
            v.outbox_depth == 0 && v.indication == Indication::ReceivedByCentre
        })
        .await
        .unwrap();
    let events = device_events(&gateway, id);
    assert_eq!(presses(&events), 1, "stored once: {events:#?}");
    let press = events
        .iter()
        .find(|e| matches!(e.body, EventBody::Uplink(UplinkBody::Alarm(_))))
        .unwrap();
    assert_eq!(press.key.boot, view.boot);
    assert_eq!(press.resident.as_ref().map(|r| r.as_str()), Some("res-e2e"));

    let alert = next_alert(&mut alerts, "the pendant alert", WAIT, |a| {
        a.device == Some(id) && a.kind == AlertKind::PendantPress
    })
    .await;
    assert_eq!(alert.state, AlertState::Raised);
    assert!(!alert.unregistered_device);

    gateway.acknowledge(alert.id, "op-1").await.unwrap();
    device
        .wait_for(WAIT, |v| v.indication == Indication::HelpOnTheWay)
        .await
        .unwrap();

    let resolved = gateway
        .resolve(alert.id, "op-1", Outcome::ResponderAttended, None)
        .await
        .unwrap();
    assert_eq!(resolved.state, AlertState::Resolved);
    device
        .wait_for(WAIT, |v| v.indication == Indication::Resolved)
        .await
        .unwrap();

    // Retransmissions or redeliveries never made a second copy.
    assert_eq!(presses(&device_events(&gateway, id)), 1);
    assert_eq!(device.view().outbox_depth, 0);
    device.stop().await.unwrap();
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn press_then_hold_within_the_grace_window_cancels_the_alert() {
    let Setup {
        gateway,
        mut device,
        id,
        _broker,
        _data,
    } = pendant_with_gateway("sim-h00002-pendant").await;
    let mut alerts = gateway.subscribe_alerts();

    device.press();
    device
        .wait_for(WAIT, |v| {
            v.outbox_depth == 0 && v.indication == Indication::ReceivedByCentre
        })
        .await
        .unwrap();
    let alert = next_alert(&mut alerts, "the pendant alert", WAIT, |a| {
        a.device == Some(id) && a.kind == AlertKind::PendantPress && a.state == AlertState::Raised
    })
    .await;

    // Press-and-hold: the press raises its own alarm, the hold cancels it and the first.
    device.hold();
    let cancelled = next_alert(&mut alerts, "the cancelled alert", WAIT, |a| {
        a.id == alert.id && a.state == AlertState::Resolved
    })
    .await;
    assert_eq!(resolved_outcome(&cancelled), Some(Outcome::CancelledByResident));
    device.wait_for(WAIT, |v| v.outbox_depth == 0).await.unwrap();
    let open = gateway.open_alerts().await;
    // (The boot heartbeat, sent before any battery reading, reports 0% and raises a technical
    // LowBattery alert; only the pendant alert matters here.)
    assert!(
        open.iter()
            .all(|a| !(a.device == Some(id) && a.kind == AlertKind::PendantPress)),
        "{open:#?}"
    );

    let events = device_events(&gateway, id);
    let cancels = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::Uplink(UplinkBody::AlarmCancelled { .. })))
        .count();
    assert_eq!(presses(&events), 2, "{events:#?}");
    assert_eq!(cancels, 2, "{events:#?}");
    device.stop().await.unwrap();
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pendant_offline_at_the_acknowledge_shows_help_on_the_way_after_reconnecting() {
    let Setup {
        gateway,
        mut device,
        id,
        _broker,
        _data,
    } = pendant_with_gateway("sim-h00003-pendant").await;
    let mut alerts = gateway.subscribe_alerts();
    let mut wire = sim_support::DeviceWire::watch(&_broker, id).await;

    device.press();
    device
        .wait_for(WAIT, |v| {
            v.outbox_depth == 0 && v.indication == Indication::ReceivedByCentre
        })
        .await
        .unwrap();
    let alert = next_alert(&mut alerts, "the pendant alert", WAIT, |a| {
        a.device == Some(id) && a.kind == AlertKind::PendantPress
    })
    .await;
    let connects_before = device.view().connects;

    device.go_offline_real(Duration::from_secs(3));
    device.wait_for(WAIT, |v| !v.connected).await.unwrap();
    gateway.acknowledge(alert.id, "op-2").await.unwrap();
    // The gateway's "help is on the way" crosses the broker while the pendant is away; its
    // clean session means that copy is gone: no news yet.
    wire.next_downlink("the gateway's HelpOnTheWay", |body| {
        matches!(body, DownlinkBody::HelpOnTheWay { .. })
    })
    .await;
    assert_eq!(device.view().indication, Indication::ReceivedByCentre);
    assert!(!device.view().connected);

    // Reconnect: it announces itself Online and the gateway repeats "help is on the way".
    let view = device
        .wait_for(WAIT, |v| v.indication == Indication::HelpOnTheWay)
        .await
        .unwrap();
    assert!(view.connects > connects_before, "{view:?}");
    assert_eq!(presses(&device_events(&gateway, id)), 1);
    device.stop().await.unwrap();
    gateway.shutdown().await.unwrap();
}
