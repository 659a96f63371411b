#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! A simulated pendant against a real Mosquitto: the press goes up, a stand-in receipter
//! (not the gateway) answers with a receipt, and the pendant shows "received by centre".
//! Fails, never skips, when Mosquitto is not installed.

mod common;

use std::time::Duration;

use common::{Broker, Seen, next_matching, stand_in, stand_in_receipter};
use firmware::Indication;
use protocol::{AlarmKind, CommandResult, DeviceConfig, DeviceId, DownlinkBody, Presence, UplinkBody};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlinks_drive_the_pendant_feedback_and_configuration() {
    let broker = Broker::start();
    let (mut seen, downlinks) = stand_in(broker.port, None).await;
    let id = DeviceId::new("sim-h00002-pendant").unwrap();
    let mut device = spawn_device(DeviceSpec::new(id, "unused", "127.0.0.1", broker.port)).unwrap();
    device
        .wait_for(Duration::from_secs(10), |v| v.connected && v.outbox_depth == 0)
        .await
        .unwrap();

    // The clock: events carry device time from now on.
    downlinks.send(
        id,
        DownlinkBody::TimeSync {
            unix_ms: 1_800_000_000_000,
        },
    );
    // Configuration: applied and acknowledged.
    let config = DeviceConfig {
        heartbeat_interval_s: 120,
        ..DeviceConfig::default()
    };
    downlinks.send(id, DownlinkBody::Configure { command_id: 42, config });
    next_matching(&mut seen, "the config ack", |s| {
        matches!(s, Seen::Up(_, u) if u.body == UplinkBody::CommandAck { command_id: 42, result: CommandResult::Applied })
    })
    .await;

    device.press();
    let Seen::Up(_, press) = next_matching(
        &mut seen,
        "the press",
        |s| matches!(s, Seen::Up(_, u) if u.body == UplinkBody::Alarm(AlarmKind::PendantPress)),
    )
    .await
    else {
        unreachable!()
    };
    let stamped = press.header.device_time_ms.expect("device time after TimeSync");
    assert!((1_800_000_000_000..1_800_000_060_000).contains(&stamped), "{stamped}");
    device
        .wait_for(Duration::from_secs(10), |v| {
            v.indication == Indication::ReceivedByCentre
        })
        .await
        .unwrap();

    downlinks.send(id, DownlinkBody::HelpOnTheWay { alert_ref: 1 });
    device
        .wait_for(Duration::from_secs(10), |v| v.indication == Indication::HelpOnTheWay)
        .await
        .unwrap();
    downlinks.send(id, DownlinkBody::AlertResolved { alert_ref: 1 });
    device
        .wait_for(Duration::from_secs(10), |v| v.indication == Indication::Resolved)
        .await
        .unwrap();

    // Press, then press-and-hold within the grace window: the first cancel names the first
    // press (the second press's own alarm and its cancel follow).
    device.press();
    device.hold();
    let Seen::Up(_, cancel) = next_matching(
        &mut seen,
        "the cancel",
        |s| matches!(s, Seen::Up(_, u) if matches!(u.body, UplinkBody::AlarmCancelled { .. })),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(
        cancel.body,
        UplinkBody::AlarmCancelled {
            alarm_seq: cancel.header.seq - 2
        }
    );
    device
        .wait_for(Duration::from_secs(10), |v| {
            v.outbox_depth == 0 && v.indication == Indication::Resolved
        })
        .await
        .unwrap();
    device.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_device_credentials_and_the_broker_acl() {
    let broker = Broker::start_with_users(&[
        ("stand-in", "centre-secret"),
        ("sim-h00003-pendant", "pendant-secret"),
        ("sim-h00004-pendant", "other-secret"),
    ]);
    let (mut seen, _downlinks) = stand_in(broker.port, Some("centre-secret")).await;

    let good_id = DeviceId::new("sim-h00003-pendant").unwrap();
    let mut good = spawn_device(DeviceSpec::new(good_id, "pendant-secret", "127.0.0.1", broker.port)).unwrap();
    let bad_id = DeviceId::new("sim-h00004-pendant").unwrap();
    let bad = spawn_device(DeviceSpec::new(bad_id, "wrong", "127.0.0.1", broker.port)).unwrap();

    good.wait_for(Duration::from_secs(10), |v| v.connected).await.unwrap();
    good.press();
    next_matching(
        &mut seen,
        "the press",
        |s| matches!(s, Seen::Up(d, u) if *d == good_id && u.body == UplinkBody::Alarm(AlarmKind::PendantPress)),
    )
    .await;
    good.wait_for(Duration::from_secs(10), |v| {
        v.outbox_depth == 0 && v.indication == Indication::ReceivedByCentre
    })
    .await
    .unwrap();

    // A device with the wrong password is refused and keeps its events.
    bad.press();
    // Refused, and refused again when it retries (the broker's log says so).
    tokio::time::timeout(Duration::from_secs(30), async {
        while broker.refused_connections() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the broker did not refuse the wrong password twice; {:?}", bad.view()));
    let view = bad.view();
    assert_eq!(view.connects, 0);
    assert!(!view.connected);
    assert!(view.outbox_depth >= 2, "{view:?}");
    good.stop().await.unwrap();
    bad.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_crash_and_restart_loses_nothing() {
    let mut broker = Broker::start();
    let mut seen = stand_in_receipter(broker.port).await;
    let id = DeviceId::new("sim-h00005-pendant").unwrap();
    let mut device = spawn_device(DeviceSpec::new(id, "unused", "127.0.0.1", broker.port)).unwrap();
    device
        .wait_for(Duration::from_secs(10), |v| v.connected && v.outbox_depth == 0)
        .await
        .unwrap();

    broker.kill();
    device
        .wait_for(Duration::from_secs(10), |v| !v.connected)
        .await
        .unwrap();
    device.press();
    device.fall();
    device
        .wait_for(Duration::from_secs(5), |v| {
            v.outbox_depth == 2 && v.indication == Indication::Sending
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.start_again();
    // The old stand-in died with the broker; a new one receipts what the device resends.
    seen = {
        drop(seen);
        stand_in_receipter(broker.port).await
    };
    let view = device
        .wait_for(Duration::from_secs(30), |v| {
            v.connected && v.outbox_depth == 0 && v.indication == Indication::ReceivedByCentre
        })
        .await
        .unwrap();
    assert!(view.connects >= 2);
    let mut alarms = Vec::new();
    while let Ok(item) = seen.try_recv() {
        if let Seen::Up(_, uplink) = item
            && uplink.body.is_alarm()
        {
            alarms.push(uplink.body);
        }
    }
    assert_eq!(
        alarms,
        [
            UplinkBody::Alarm(AlarmKind::PendantPress),
            UplinkBody::Alarm(AlarmKind::Fall)
        ],
        "alarms first, in order, each once"
    );
    device.stop().await.unwrap();
}

/// The hooks an end-to-end test of SPEC.md "When a boot counter goes back" uses: a wiped
/// boot counter makes the device come back as boot 1 and reuse keys; a `BootFloor` (here from
/// the stand-in, in the real test from the gateway) moves it, persisted, and it announces
/// the new boot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_boot_counter_reuses_keys_until_a_boot_floor_moves_it() {
    let broker = Broker::start();
    let (mut seen, downlinks) = stand_in(broker.port, None).await;
    let id = DeviceId::new("sim-h00006-pendant").unwrap();
    let mut spec = DeviceSpec::new(id, "unused", "127.0.0.1", broker.port);
    spec.stored_boot = 4;
    let mut device = spawn_device(spec).unwrap();
    device
        .wait_for(Duration::from_secs(10), |v| v.connected && v.outbox_depth == 0)
        .await
        .unwrap();
    assert_eq!((device.view().boot, device.stored_boot()), (5, 5));

    // Restart: the next boot, no key reused.
    device.restart();
    let view = device
        .wait_for(Duration::from_secs(10), |v| {
            v.restarts == 1 && v.connected && v.outbox_depth == 0
        })
        .await
        .unwrap();
    assert_eq!((view.boot, view.stored_boot), (6, 6));

    // Wipe: back to boot 1; its first event (the boot heartbeat) reuses key (1, 0).
    device.wipe_boot_counter_and_restart();
    next_matching(
        &mut seen,
        "Online after the wipe",
        |s| matches!(s, Seen::Status(d, Presence::Online { boot: 1 }) if *d == id),
    )
    .await;
    device
        .wait_for(Duration::from_secs(10), |v| v.restarts == 2 && v.boot == 1)
        .await
        .unwrap();
    next_matching(
        &mut seen,
        "an uplink of boot 1",
        |s| matches!(s, Seen::Up(d, u) if *d == id && u.header.boot == 1),
    )
    .await;

    // The floor: persisted, the device moves and says so.
    downlinks.send(id, DownlinkBody::BootFloor { min_boot: 7 });
    next_matching(
        &mut seen,
        "Online on the floor",
        |s| matches!(s, Seen::Status(d, Presence::Online { boot: 7 }) if *d == id),
    )
    .await;
    device.press();
    let Seen::Up(_, press) = next_matching(
        &mut seen,
        "the press",
        |s| matches!(s, Seen::Up(d, u) if *d == id && u.body == UplinkBody::Alarm(AlarmKind::PendantPress)),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(press.header.boot, 7);
    let view = device
        .wait_for(Duration::from_secs(10), |v| v.outbox_depth == 0)
        .await
        .unwrap();
    assert_eq!((view.boot, view.stored_boot), (7, 7));

    // A floor below the current boot changes nothing; the next restart boots above the floor.
    downlinks.send(id, DownlinkBody::BootFloor { min_boot: 3 });
    device.restart();
    let view = device
        .wait_for(Duration::from_secs(10), |v| v.restarts == 3 && v.connected)
        .await
        .unwrap();
    assert_eq!(view.boot, 8);
    device.stop().await.unwrap();
}
