//! Device cases that must hold on every broker: the production Mosquitto (`device_e2e.rs`)
//! and the embedded demo broker (`embedded_broker.rs`). The real firmware core (simulated
//! pendant, rust-mqtt MQTT 5 client) and the real gateway (in process, rumqttc with a persistent
//! session and manual acknowledgements): a press is stored once, receipted and shown; the
//! operator's acknowledge and resolve reach the pendant; a press-and-hold cancels; a pendant
//! offline at the acknowledge hears it after reconnecting; its last will marks it offline and
//! its retained presence is replayed; QoS 1 messages a persistent session had not acknowledged
//! are delivered again when it returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use crate::sim_support::{self, device_events, device_spec, next_alert, register_home, start_gateway};
use e2e::{BrokerAuth, BrokerEndpoint, BrokerKind, TestBroker};
use firmware::Indication;
use gateway::app::GatewayHandle;
use gateway::domain::{AlertKind, AlertState, Change, EventBody, OnlineState, Outcome};
use protocol::{AlarmKind, DeviceId, DownlinkBody, Presence, UplinkBody};
use simulator::{DeviceHandle, DeviceKind as SimKind, spawn_device};

/// One `#[tokio::test]` per case, on the broker `$kind`; invoked once per test file.
macro_rules! device_tests {
    ($kind:expr) => {
        $crate::device_cases::device_tests!(@each $kind;
            press_is_stored_once_receipted_and_operator_feedback_reaches_the_pendant,
            press_then_hold_within_the_grace_window_cancels_the_alert,
            pendant_offline_at_the_acknowledge_shows_help_on_the_way_after_reconnecting,
            link_lost_publishes_the_last_will_and_the_return_is_retained_presence,
            unacknowledged_messages_are_redelivered_to_a_returning_persistent_session,
        );
    };
    (@each $kind:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::device_cases::$case($kind).await
            }
        )+
    };
}
pub(crate) use device_tests;

const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    // Bound by every test (a `..` pattern would drop, i.e. kill, the broker at once).
    _broker: sim_support::LoggedBroker<TestBroker>,
    _data: tempfile::TempDir,
    gateway: GatewayHandle,
    device: DeviceHandle,
    id: DeviceId,
}

/// A broker of `kind` (Mosquitto authenticated), the gateway, a registered pendant with a
/// resident, connected and idle.
async fn pendant_with_gateway(kind: BrokerKind, name: &str) -> Setup {
    sim_support::init_tracing();
    let id = DeviceId::new(name).unwrap();
    let broker =
        tokio::task::block_in_place(|| TestBroker::start(kind, Some(BrokerAuth::for_devices([id.as_str()])))).unwrap();
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

pub async fn press_is_stored_once_receipted_and_operator_feedback_reaches_the_pendant(broker: BrokerKind) {
    let Setup {
        gateway,
        mut device,
        id,
        _broker,
        _data,
    } = pendant_with_gateway(broker, "sim-h00001-pendant").await;
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

pub async fn press_then_hold_within_the_grace_window_cancels_the_alert(broker: BrokerKind) {
    let Setup {
        gateway,
        mut device,
        id,
        _broker,
        _data,
    } = pendant_with_gateway(broker, "sim-h00002-pendant").await;
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

pub async fn pendant_offline_at_the_acknowledge_shows_help_on_the_way_after_reconnecting(broker: BrokerKind) {
    let Setup {
        gateway,
        mut device,
        id,
        _broker,
        _data,
    } = pendant_with_gateway(broker, "sim-h00003-pendant").await;
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

/// The presence a newcomer subscribing to `id`'s status topic gets: the broker's retained copy.
async fn retained_presence(broker: &impl BrokerEndpoint, id: DeviceId, client_id: &str) -> Presence {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let mut options = MqttOptions::new(client_id, broker.host(), broker.port());
    if let Some(admin) = broker.admin() {
        options.set_credentials(admin.username, admin.password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .subscribe(protocol::Topic::status(id).to_string(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let presence = tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Incoming(Packet::Publish(publish)) = eventloop.poll().await.unwrap() {
                assert!(publish.retain, "a newcomer's first status is the retained one");
                return protocol::decode_status(&publish.payload).unwrap().presence;
            }
        }
    })
    .await
    .expect("a retained presence on the status topic");
    drop(client);
    presence
}

async fn wait_online_state(gateway: &GatewayHandle, id: DeviceId, want: OnlineState) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let record = gateway.store().unwrap().device(&id).unwrap().unwrap();
        if record.online == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} still {:?}, waiting for {want:?}",
            record.online
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn link_lost_publishes_the_last_will_and_the_return_is_retained_presence(broker: BrokerKind) {
    let Setup {
        gateway,
        mut device,
        id,
        _broker,
        _data,
    } = pendant_with_gateway(broker, "sim-h00004-pendant").await;
    wait_online_state(&gateway, id, OnlineState::Online).await;
    let boot = device.view().boot;
    assert_eq!(
        retained_presence(&_broker, id, "presence-1").await,
        Presence::Online { boot }
    );

    // The link drops: the broker publishes the pendant's retained `Offline` will.
    device.go_offline_real(Duration::from_secs(5));
    device.wait_for(WAIT, |v| !v.connected).await.unwrap();
    wait_online_state(&gateway, id, OnlineState::Offline).await;
    assert_eq!(retained_presence(&_broker, id, "presence-2").await, Presence::Offline);

    // Back: its retained `Online` replaces the will.
    device.wait_for(WAIT, |v| v.connected).await.unwrap();
    wait_online_state(&gateway, id, OnlineState::Online).await;
    assert_eq!(
        retained_presence(&_broker, id, "presence-3").await,
        Presence::Online { boot }
    );
    device.stop().await.unwrap();
    gateway.shutdown().await.unwrap();
}

pub async fn unacknowledged_messages_are_redelivered_to_a_returning_persistent_session(broker: BrokerKind) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
    use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

    let id = DeviceId::new("redeliver-0001").unwrap();
    let broker = sim_support::LoggedBroker(
        tokio::task::block_in_place(|| TestBroker::start(broker, Some(BrokerAuth::for_devices([id.as_str()]))))
            .unwrap(),
    );
    let topic = protocol::Topic::up(id).to_string();
    // The gateway's way: a persistent session, acknowledged by hand (after commit).
    let connect = |broker: &sim_support::LoggedBroker<TestBroker>| {
        let mut options = MqttOptions::new("redeliver-gateway", broker.host(), broker.port());
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(3_600));
        options.set_manual_acks(true);
        if let Some(admin) = broker.admin() {
            options.set_credentials(admin.username, admin.password);
        }
        AsyncClient::new(options, 100)
    };
    async fn receive(eventloop: &mut EventLoop, count: usize, session_present: &mut Option<bool>) -> Vec<Publish> {
        let mut received = Vec::new();
        tokio::time::timeout(WAIT, async {
            while received.len() < count {
                match eventloop.poll().await.unwrap() {
                    Event::Incoming(Packet::ConnAck(ack)) => *session_present = Some(ack.session_present),
                    Event::Incoming(Packet::Publish(publish)) => received.push(publish),
                    _ => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("only {} of {count} messages arrived", received.len()));
        received
    }

    let (client, mut eventloop) = connect(&broker);
    client.subscribe(topic.clone(), QoS::AtLeastOnce).await.unwrap();
    let mut session_present = None;
    // Drive the connection until subscribed, so the messages below are routed to it.
    tokio::time::timeout(WAIT, async {
        while !matches!(eventloop.poll().await.unwrap(), Event::Incoming(Packet::SubAck(_))) {}
    })
    .await
    .unwrap();

    let admin = broker.admin();
    let publisher =
        e2e::devices::RawClient::connect("redeliver-publisher", broker.host(), broker.port(), admin.as_ref(), 10)
            .await
            .unwrap();
    let payloads: Vec<Vec<u8>> = (0..5u8).map(|n| vec![b'm', n]).collect();
    for payload in &payloads {
        publisher.publish(&topic, payload.clone()).await.unwrap();
    }
    publisher.wait_pubacks(5, WAIT).await.unwrap();
    publisher.disconnect().await;

    // Received, never acknowledged (as if the gateway died before its commit).
    let first = receive(&mut eventloop, 5, &mut session_present).await;
    assert_eq!(first.iter().map(|p| p.payload.to_vec()).collect::<Vec<_>>(), payloads);
    drop(client);
    drop(eventloop);

    // Back with the same client id, without subscribing again: the session kept the
    // subscription and the five unacknowledged messages.
    let (client, mut eventloop) = connect(&broker);
    let again = receive(&mut eventloop, 5, &mut session_present).await;
    assert_eq!(session_present, Some(true), "the broker kept the session");
    let mut redelivered: Vec<Vec<u8>> = again.iter().map(|p| p.payload.to_vec()).collect();
    redelivered.sort();
    assert_eq!(redelivered, payloads);
    for publish in &again {
        client.ack(publish).await.unwrap();
    }
    let mut acked = 0;
    tokio::time::timeout(WAIT, async {
        while acked < 5 {
            if let Event::Outgoing(rumqttc::Outgoing::PubAck(_)) = eventloop.poll().await.unwrap() {
                acked += 1;
            }
        }
    })
    .await
    .unwrap();
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    drop(client);
    drop(eventloop);

    // Acknowledged now: a third return gets nothing more.
    let (client, mut eventloop) = connect(&broker);
    let quiet = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if let Event::Incoming(Packet::Publish(publish)) = eventloop.poll().await.unwrap() {
                return publish;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "acknowledged message delivered again: {quiet:?}");
    drop(client);
}
