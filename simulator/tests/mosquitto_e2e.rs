#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! A simulated pendant against a real Mosquitto: the press goes up, a stand-in receipter
//! (not the gateway) answers with a receipt, and the pendant shows "received by centre".
//! Fails, never skips, when Mosquitto is not installed.

mod common;

use std::time::Duration;

use common::{Broker, Seen, next_matching, stand_in_receipter};
use firmware::Indication;
use protocol::{AlarmKind, DeviceId, Presence, UplinkBody};
use simulator::{DeviceSpec, spawn_device};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pendant_press_is_receipted_through_mosquitto_and_survives_an_outage() {
    let broker = Broker::start();
    let mut seen = stand_in_receipter(broker.port).await;
    let id = DeviceId::new("sim-h00001-pendant").unwrap();
    let mut device = spawn_device(DeviceSpec::new(id, "unused", "127.0.0.1", broker.port)).unwrap();

    // Connects, announces itself, and its boot heartbeat is receipted.
    next_matching(
        &mut seen,
        "Online presence",
        |s| matches!(s, Seen::Status(d, Presence::Online { boot: 1 }) if *d == id),
    )
    .await;
    device
        .wait_for(Duration::from_secs(10), |v| v.connected && v.outbox_depth == 0)
        .await
        .unwrap();

    // The press reaches the stand-in, whose receipt empties the outbox.
    device.press();
    let Seen::Up(from, uplink) = next_matching(
        &mut seen,
        "the press",
        |s| matches!(s, Seen::Up(_, u) if u.body == UplinkBody::Alarm(AlarmKind::PendantPress)),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(from, id);
    assert_eq!(uplink.header.boot, 1);
    let view = device
        .wait_for(Duration::from_secs(10), |v| {
            v.outbox_depth == 0 && v.indication == Indication::ReceivedByCentre
        })
        .await
        .unwrap();
    assert_eq!(view.next_seq, uplink.header.seq + 1);

    // An outage: the broker publishes the last will; a press meanwhile waits in the outbox
    // and goes out after the reconnect.
    device.go_offline(2_000);
    next_matching(
        &mut seen,
        "the last will",
        |s| matches!(s, Seen::Status(d, Presence::Offline) if *d == id),
    )
    .await;
    device.press();
    device
        .wait_for(Duration::from_secs(5), |v| {
            !v.connected && v.indication == Indication::Sending
        })
        .await
        .unwrap();
    let Seen::Up(_, again) = next_matching(&mut seen, "the press after the outage", |s| {
        matches!(s, Seen::Up(_, u) if u.body == UplinkBody::Alarm(AlarmKind::PendantPress) && u.header.seq > uplink.header.seq)
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(again.header.boot, 1);
    let view = device
        .wait_for(Duration::from_secs(10), |v| {
            v.connected && v.outbox_depth == 0 && v.indication == Indication::ReceivedByCentre
        })
        .await
        .unwrap();
    assert!(view.connects >= 2);

    let last = device.stop().await.unwrap();
    assert!(last.stopped);
    next_matching(
        &mut seen,
        "Offline on stop",
        |s| matches!(s, Seen::Status(d, Presence::Offline) if *d == id),
    )
    .await;
}
