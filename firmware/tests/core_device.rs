#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The device core as a black box: inputs, downlinks and time in; uplinks and feedback out.

use firmware::device::{
    ALARM_BACKLOG, ActivitySetup, Device, DeviceError, DeviceSetup, HELP_SHOW_MS, NO_CONNECTION_AFTER_MS,
    RECEIVED_SHOW_MS, RESOLVED_SHOW_MS,
};
use firmware::outbox::{OUTBOX_CAPACITY, RETRANSMIT_BASE_MS};
use firmware::{Indication, Input};
use protocol::{
    ActivitySummary, AlarmKind, CommandResult, DeviceConfig, Downlink, DownlinkBody, FirmwareVersion, SensorState,
    Uplink, UplinkBody, decode_uplink, encode_downlink,
};

const FW: FirmwareVersion = FirmwareVersion {
    major: 1,
    minor: 2,
    patch: 3,
};

fn setup() -> DeviceSetup {
    DeviceSetup {
        boot: 4,
        firmware: FW,
        config: DeviceConfig::default(),
        activity: None,
    }
}

/// A connected device whose boot heartbeat has been sent and receipted.
fn connected(setup: DeviceSetup) -> Device {
    let mut device = Device::new(setup, 0);
    device.tick(0).unwrap();
    device.connection_up(0);
    let sent = drain(&mut device, 0);
    receipt(&mut device, 0, &sent);
    device
}

fn drain(device: &mut Device, now: u64) -> Vec<Uplink> {
    std::iter::from_fn(|| device.poll_transmit(now))
        .map(|t| {
            let uplink = decode_uplink(&t.payload).unwrap();
            assert_eq!(uplink.header, t.header);
            assert_eq!(uplink.body.is_alarm(), t.alarm);
            uplink
        })
        .collect()
}

fn down(device: &mut Device, now: u64, body: DownlinkBody) {
    device.handle_downlink(&Downlink::new(body), now).unwrap();
}

fn receipt(device: &mut Device, now: u64, uplinks: &[Uplink]) {
    let boot = device.boot();
    let seqs = uplinks.iter().map(|u| u.header.seq).collect::<Vec<_>>();
    down(
        device,
        now,
        DownlinkBody::Receipt {
            boot,
            seqs: heapless::Vec::from_slice(&seqs).unwrap(),
        },
    );
}

fn bodies(uplinks: &[Uplink]) -> Vec<UplinkBody> {
    uplinks.iter().map(|u| u.body.clone()).collect()
}

#[test]
fn press_is_sent_receipted_and_shown() {
    let mut device = connected(setup());
    device.handle_input(Input::ButtonPressed, 1_000).unwrap();
    assert_eq!(device.indication(1_000), Indication::Sending);
    let sent = drain(&mut device, 1_000);
    assert_eq!(bodies(&sent), [UplinkBody::Alarm(AlarmKind::PendantPress)]);
    assert_eq!(sent[0].header.boot, 4);
    assert_eq!(sent[0].header.seq, 1, "seq 0 was the boot heartbeat");
    assert_eq!(sent[0].header.device_time_ms, None, "no TimeSync yet");
    receipt(&mut device, 1_500, &sent);
    assert_eq!(device.outbox_depth(), 0);
    assert_eq!(device.indication(1_500), Indication::ReceivedByCentre);
    assert_eq!(device.indication(1_500 + RECEIVED_SHOW_MS), Indication::Idle);
}

#[test]
fn events_are_queued_while_offline_and_numbered_in_order() {
    let mut device = Device::new(setup(), 0);
    device.tick(0).unwrap();
    device.handle_input(Input::ButtonPressed, 10).unwrap();
    device.handle_input(Input::FallDetected, 20).unwrap();
    device.handle_input(Input::Alarm(AlarmKind::Smoke), 30).unwrap();
    assert!(
        device.poll_transmit(40).is_none(),
        "nothing goes out while disconnected"
    );
    assert_eq!(device.outbox_depth(), 4);
    device.connection_up(50);
    let sent = drain(&mut device, 50);
    let order: Vec<(u32, UplinkBody)> = sent.iter().map(|u| (u.header.seq, u.body.clone())).collect();
    assert_eq!(
        order,
        [
            (1, UplinkBody::Alarm(AlarmKind::PendantPress)),
            (2, UplinkBody::Alarm(AlarmKind::Fall)),
            (3, UplinkBody::Alarm(AlarmKind::Smoke)),
            (0, sent[3].body.clone()),
        ]
    );
    assert!(
        matches!(sent[3].body, UplinkBody::Heartbeat(_)),
        "alarms before telemetry"
    );
}

#[test]
fn time_sync_stamps_device_time() {
    let mut device = connected(setup());
    down(
        &mut device,
        2_000,
        DownlinkBody::TimeSync {
            unix_ms: 1_700_000_000_000,
        },
    );
    device.handle_input(Input::ButtonPressed, 5_000).unwrap();
    let sent = drain(&mut device, 5_000);
    assert_eq!(sent[0].header.device_time_ms, Some(1_700_000_003_000));
    assert_eq!(device.device_time_ms(6_000), Some(1_700_000_004_000));
}

#[test]
fn press_and_hold_within_grace_cancels_and_a_long_press_is_one_call() {
    let mut device = connected(setup());
    device.handle_input(Input::ButtonPressed, 1_000).unwrap();
    // The cancel gesture: a second press, held, within the grace window of the first.
    device.handle_input(Input::ButtonPressed, 20_000).unwrap();
    device.handle_input(Input::ButtonHeld, 22_000).unwrap();
    // A resident in distress holding the button: one call for help, never a cancel.
    device.handle_input(Input::ButtonPressed, 40_000).unwrap();
    device.handle_input(Input::ButtonHeld, 42_000).unwrap();
    // Press-and-hold outside the grace window of the previous alarm: also just a call.
    device.handle_input(Input::ButtonPressed, 100_000).unwrap();
    device.handle_input(Input::ButtonHeld, 102_000).unwrap();
    // A hold reported without a press (another input driver) is a press.
    device.handle_input(Input::ButtonHeld, 200_000).unwrap();
    let sent = drain(&mut device, 200_000);
    assert_eq!(
        bodies(&sent),
        [
            UplinkBody::Alarm(AlarmKind::PendantPress),
            UplinkBody::Alarm(AlarmKind::PendantPress),
            UplinkBody::AlarmCancelled { alarm_seq: 1 },
            UplinkBody::AlarmCancelled { alarm_seq: 2 },
            UplinkBody::Alarm(AlarmKind::PendantPress),
            UplinkBody::Alarm(AlarmKind::PendantPress),
            UplinkBody::Alarm(AlarmKind::PendantPress),
        ]
    );
}

#[test]
fn cancel_receipt_shows_resolved_and_fall_can_be_cancelled() {
    let mut device = connected(setup());
    device.handle_input(Input::FallDetected, 1_000).unwrap();
    device.handle_input(Input::ButtonPressed, 1_500).unwrap();
    device.handle_input(Input::ButtonHeld, 2_000).unwrap();
    let sent = drain(&mut device, 2_000);
    assert_eq!(
        bodies(&sent),
        [
            UplinkBody::Alarm(AlarmKind::Fall),
            UplinkBody::Alarm(AlarmKind::PendantPress),
            UplinkBody::AlarmCancelled { alarm_seq: 1 },
            UplinkBody::AlarmCancelled { alarm_seq: 2 },
        ]
    );
    assert_eq!(device.indication(2_000), Indication::Sending);
    receipt(&mut device, 2_500, &sent);
    assert_eq!(device.indication(2_500), Indication::Resolved);
    assert_eq!(device.indication(2_500 + RESOLVED_SHOW_MS), Indication::Idle);
}

#[test]
fn help_on_the_way_then_resolved() {
    let mut device = connected(setup());
    device.handle_input(Input::ButtonPressed, 1_000).unwrap();
    let sent = drain(&mut device, 1_000);
    receipt(&mut device, 1_100, &sent);
    down(&mut device, 20_000, DownlinkBody::HelpOnTheWay { alert_ref: 9 });
    assert_eq!(device.indication(20_000), Indication::HelpOnTheWay);
    // A repeat press while help is coming: sending, then back to help on the way.
    device.handle_input(Input::ButtonPressed, 21_000).unwrap();
    assert_eq!(device.indication(21_000), Indication::Sending);
    let again = drain(&mut device, 21_000);
    receipt(&mut device, 21_100, &again);
    assert_eq!(device.indication(21_100), Indication::HelpOnTheWay);
    assert_eq!(device.indication(20_000 + HELP_SHOW_MS), Indication::Idle);
    down(&mut device, 60_000, DownlinkBody::AlertResolved { alert_ref: 9 });
    assert_eq!(device.indication(60_000), Indication::Resolved);
    // After resolution a press-and-hold is a new call, not a cancel.
    device.handle_input(Input::ButtonPressed, 61_000).unwrap();
    device.handle_input(Input::ButtonHeld, 63_000).unwrap();
    assert_eq!(
        bodies(&drain(&mut device, 63_000)),
        [UplinkBody::Alarm(AlarmKind::PendantPress)]
    );
}

#[test]
fn sensors_become_sensor_changes_and_temperature_extremes_alarm_once() {
    let mut device = connected(setup());
    let door = Input::Sensor {
        input: 2,
        state: SensorState::DoorOpen,
    };
    device.handle_input(door, 1_000).unwrap();
    let hot = |c| Input::Sensor {
        input: 3,
        state: SensorState::Temperature { centi_celsius: c },
    };
    device.handle_input(hot(3_600), 2_000).unwrap();
    device.handle_input(hot(3_700), 3_000).unwrap();
    device.handle_input(hot(2_000), 4_000).unwrap();
    device.handle_input(hot(900), 5_000).unwrap();
    let sent = drain(&mut device, 5_000);
    assert_eq!(
        bodies(&sent),
        [
            UplinkBody::Alarm(AlarmKind::TemperatureExtreme { centi_celsius: 3_600 }),
            UplinkBody::Alarm(AlarmKind::TemperatureExtreme { centi_celsius: 900 }),
            UplinkBody::SensorChange {
                input: 2,
                state: SensorState::DoorOpen
            },
            UplinkBody::SensorChange {
                input: 3,
                state: SensorState::Temperature { centi_celsius: 3_600 }
            },
            UplinkBody::SensorChange {
                input: 3,
                state: SensorState::Temperature { centi_celsius: 3_700 }
            },
            UplinkBody::SensorChange {
                input: 3,
                state: SensorState::Temperature { centi_celsius: 2_000 }
            },
            UplinkBody::SensorChange {
                input: 3,
                state: SensorState::Temperature { centi_celsius: 900 }
            },
        ]
    );
}

#[test]
fn heartbeats_carry_status_at_the_configured_interval() {
    let mut device = connected(setup());
    device
        .handle_input(
            Input::Battery {
                millivolts: 2_900,
                percent: 80,
            },
            1_000,
        )
        .unwrap();
    device.set_rssi(-71);
    assert_eq!(device.next_wakeup_ms(1_000), 300_000);
    device.tick(299_999).unwrap();
    assert!(drain(&mut device, 299_999).is_empty());
    device.tick(300_000).unwrap();
    let sent = drain(&mut device, 300_000);
    let UplinkBody::Heartbeat(status) = &sent[0].body else {
        panic!("{sent:?}")
    };
    assert_eq!(status.battery_mv, 2_900);
    assert_eq!(status.battery_percent, 80);
    assert_eq!(status.rssi_dbm, -71);
    assert_eq!(status.uptime_s, 300);
    assert_eq!(status.firmware, FW);
    assert_eq!(status.heartbeat_interval_s, 300);
    assert_eq!(
        status.outbox_depth, 0,
        "the status is taken before the heartbeat is queued"
    );
    assert_eq!(status.events_dropped, 0);
}

#[test]
fn motion_is_summarised_per_window() {
    let mut device = connected(DeviceSetup {
        activity: Some(ActivitySetup {
            window_s: 60,
            windows_per_summary: 3,
        }),
        ..setup()
    });
    let motion = Input::Sensor {
        input: 0,
        state: SensorState::Motion,
    };
    device.handle_input(motion, 1_000).unwrap();
    device.handle_input(motion, 2_000).unwrap();
    device.record_motion(5, 61_000);
    device.tick(150_000).unwrap();
    assert!(drain(&mut device, 150_000).is_empty());
    device.tick(180_000).unwrap();
    let sent = drain(&mut device, 180_000);
    assert_eq!(
        bodies(&sent),
        [UplinkBody::Activity(ActivitySummary {
            window_s: 60,
            motion_counts: heapless::Vec::from_slice(&[2, 5, 0]).unwrap(),
        })]
    );
}

#[test]
fn low_battery_alarms_once_per_crossing_and_is_shown() {
    let mut device = connected(setup());
    let battery = |percent| Input::Battery {
        millivolts: 2_400,
        percent,
    };
    device.handle_input(battery(19), 1_000).unwrap();
    device.handle_input(battery(18), 2_000).unwrap();
    device.handle_input(battery(22), 3_000).unwrap();
    device.handle_input(battery(19), 4_000).unwrap();
    let sent = drain(&mut device, 4_000);
    assert_eq!(
        bodies(&sent),
        [UplinkBody::Alarm(AlarmKind::LowBattery {
            millivolts: 2_400,
            percent: 19
        })]
    );
    // A technical alarm does not light "sending".
    assert_eq!(device.indication(4_000), Indication::LowBattery);
    device.handle_input(battery(25), 5_000).unwrap();
    assert_eq!(device.indication(5_000), Indication::Idle);
    device.handle_input(battery(10), 6_000).unwrap();
    assert_eq!(drain(&mut device, 6_000).len(), 1, "a new crossing alarms again");
}

#[test]
fn configure_validates_applies_and_acks() {
    let mut device = connected(setup());
    let config = DeviceConfig {
        heartbeat_interval_s: 60,
        cancel_grace_s: 10,
        ..DeviceConfig::default()
    };
    down(&mut device, 1_000, DownlinkBody::Configure { command_id: 7, config });
    assert_eq!(*device.config(), config);
    let bad = DeviceConfig {
        heartbeat_interval_s: 1,
        ..DeviceConfig::default()
    };
    down(
        &mut device,
        2_000,
        DownlinkBody::Configure {
            command_id: 8,
            config: bad,
        },
    );
    let inverted = DeviceConfig {
        temperature_low_centi: 3_000,
        temperature_high_centi: 2_000,
        ..DeviceConfig::default()
    };
    down(
        &mut device,
        2_000,
        DownlinkBody::Configure {
            command_id: 9,
            config: inverted,
        },
    );
    down(&mut device, 3_000, DownlinkBody::SelfTest { command_id: 10 });
    assert_eq!(*device.config(), config, "rejected configs change nothing");
    let sent = drain(&mut device, 3_000);
    assert_eq!(
        bodies(&sent),
        [
            UplinkBody::CommandAck {
                command_id: 7,
                result: CommandResult::Applied
            },
            UplinkBody::CommandAck {
                command_id: 8,
                result: CommandResult::Rejected
            },
            UplinkBody::CommandAck {
                command_id: 9,
                result: CommandResult::Rejected
            },
            UplinkBody::CommandAck {
                command_id: 10,
                result: CommandResult::SelfTestPassed
            },
        ]
    );
    receipt(&mut device, 3_000, &sent);
    // The new interval is in force: next heartbeat 60 s after applying it.
    device.tick(61_000).unwrap();
    let sent = drain(&mut device, 61_000);
    assert!(matches!(sent[0].body, UplinkBody::Heartbeat(s) if s.heartbeat_interval_s == 60));
    receipt(&mut device, 61_000, &sent);
    // And the new grace window: a press-and-hold 11 s after a press is a second call.
    device.handle_input(Input::ButtonPressed, 100_000).unwrap();
    device.handle_input(Input::ButtonPressed, 111_000).unwrap();
    device.handle_input(Input::ButtonHeld, 113_000).unwrap();
    assert_eq!(
        bodies(&drain(&mut device, 113_000)),
        [
            UplinkBody::Alarm(AlarmKind::PendantPress),
            UplinkBody::Alarm(AlarmKind::PendantPress)
        ]
    );
}

#[test]
fn downlink_payloads_are_decoded_and_garbage_is_an_error() {
    let mut device = connected(setup());
    let mut buf = [0u8; 64];
    let bytes = encode_downlink(&Downlink::new(DownlinkBody::SelfTest { command_id: 1 }), &mut buf).unwrap();
    device.handle_downlink_payload(bytes, 0).unwrap();
    assert!(device.handle_downlink_payload(&[], 0).is_err());
    assert!(device.handle_downlink_payload(&[1, 200], 0).is_err());
    assert_eq!(device.outbox_depth(), 1);
}

#[test]
fn retransmits_until_receipted_and_resends_everything_after_reconnect() {
    let mut device = connected(setup());
    device.handle_input(Input::ButtonPressed, 0).unwrap();
    let first = device.poll_transmit(0).unwrap();
    assert!(device.poll_transmit(RETRANSMIT_BASE_MS - 1).is_none());
    assert_eq!(device.next_wakeup_ms(1), RETRANSMIT_BASE_MS);
    let again = device.poll_transmit(RETRANSMIT_BASE_MS).unwrap();
    assert_eq!(first, again, "byte-identical retransmission");
    device.connection_down(6_000);
    assert!(device.poll_transmit(100_000).is_none());
    device.connection_up(100_000);
    assert_eq!(device.poll_transmit(100_000), Some(first));
}

#[test]
fn receipts_for_another_boot_are_ignored() {
    let mut device = connected(setup());
    device.handle_input(Input::ButtonPressed, 0).unwrap();
    let sent = drain(&mut device, 0);
    down(
        &mut device,
        10,
        DownlinkBody::Receipt {
            boot: 3,
            seqs: heapless::Vec::from_slice(&[sent[0].header.seq]).unwrap(),
        },
    );
    assert_eq!(device.outbox_depth(), 1);
    assert_eq!(device.indication(10), Indication::Sending);
}

#[test]
fn no_connection_is_shown_after_a_while_offline() {
    let mut device = connected(setup());
    device.connection_down(1_000);
    assert_eq!(device.indication(1_000 + NO_CONNECTION_AFTER_MS - 1), Indication::Idle);
    assert_eq!(device.next_wakeup_ms(2_000), 1_000 + NO_CONNECTION_AFTER_MS);
    assert_eq!(
        device.indication(1_000 + NO_CONNECTION_AFTER_MS),
        Indication::NoConnection
    );
    device.handle_input(Input::ButtonPressed, 100_000).unwrap();
    assert_eq!(device.indication(100_000), Indication::NoConnection);
    device.connection_up(101_000);
    assert_eq!(device.indication(101_000), Indication::Sending);
}

#[test]
fn every_press_is_kept_beyond_the_outbox_until_the_backlog_is_full() {
    let mut device = Device::new(setup(), 0);
    let kept = OUTBOX_CAPACITY + ALARM_BACKLOG;
    for i in 0..kept {
        device.handle_input(Input::ButtonPressed, i as u64).unwrap();
    }
    assert_eq!(device.outbox_depth(), kept);
    let lost = device.handle_input(Input::ButtonPressed, 1_000);
    assert!(matches!(lost, Err(DeviceError::AlarmNotQueued { .. })), "{lost:?}");
    assert_eq!(device.alarms_lost(), 1);
    // Receipts make room: the backlog moves into the outbox in order.
    device.connection_up(2_000);
    let sent = drain(&mut device, 2_000);
    assert_eq!(sent.len(), OUTBOX_CAPACITY);
    receipt(&mut device, 2_100, &sent[..ALARM_BACKLOG]);
    let more = drain(&mut device, 2_100);
    let seqs: Vec<u32> = more.iter().map(|u| u.header.seq).collect();
    let expected: Vec<u32> = (OUTBOX_CAPACITY as u32..kept as u32).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn press_and_hold_cancels_only_what_a_resident_may_cancel() {
    // Environmental and other kinds: an alarm in the grace window stays raised.
    for kind in [
        AlarmKind::Smoke,
        AlarmKind::Heat,
        AlarmKind::CarbonMonoxide,
        AlarmKind::Flood,
        AlarmKind::Tamper,
        AlarmKind::Seizure,
        AlarmKind::MainsPowerLost,
    ] {
        let mut device = connected(setup());
        device.handle_input(Input::Alarm(kind), 1_000).unwrap();
        device.handle_input(Input::ButtonPressed, 2_000).unwrap();
        device.handle_input(Input::ButtonHeld, 4_000).unwrap();
        assert_eq!(
            bodies(&drain(&mut device, 4_000)),
            [UplinkBody::Alarm(kind), UplinkBody::Alarm(AlarmKind::PendantPress)],
            "{kind:?} is not the resident's to cancel; the hold is one more call"
        );
    }
    // Pendant press and fall (from the detector or as an alarm input) are.
    for input in [
        Input::ButtonPressed,
        Input::FallDetected,
        Input::Alarm(AlarmKind::Fall),
        Input::Alarm(AlarmKind::PendantPress),
    ] {
        let mut device = connected(setup());
        device.handle_input(input, 1_000).unwrap();
        device.handle_input(Input::ButtonPressed, 2_000).unwrap();
        device.handle_input(Input::ButtonHeld, 4_000).unwrap();
        let sent = bodies(&drain(&mut device, 4_000));
        assert_eq!(
            &sent[2..],
            [
                UplinkBody::AlarmCancelled { alarm_seq: 1 },
                UplinkBody::AlarmCancelled { alarm_seq: 2 }
            ],
            "{input:?}: {sent:?}"
        );
    }
}

#[test]
fn smoke_after_a_press_leaves_the_press_cancellable_and_the_smoke_raised() {
    let mut device = connected(setup());
    device.handle_input(Input::ButtonPressed, 1_000).unwrap();
    device.handle_input(Input::Alarm(AlarmKind::Smoke), 1_500).unwrap();
    device.handle_input(Input::ButtonPressed, 2_000).unwrap();
    device.handle_input(Input::ButtonHeld, 4_000).unwrap();
    assert_eq!(
        bodies(&drain(&mut device, 4_000)),
        [
            UplinkBody::Alarm(AlarmKind::PendantPress),
            UplinkBody::Alarm(AlarmKind::Smoke),
            UplinkBody::Alarm(AlarmKind::PendantPress),
            UplinkBody::AlarmCancelled { alarm_seq: 1 },
            UplinkBody::AlarmCancelled { alarm_seq: 3 },
        ]
    );
}

#[test]
fn device_time_outside_the_accepted_range_is_never_sent() {
    use protocol::{DEVICE_TIME_MAX_MS, DEVICE_TIME_MIN_MS};
    // An unset clock sends no time.
    let mut device = connected(setup());
    device.handle_input(Input::ButtonPressed, 1_000).unwrap();
    assert_eq!(drain(&mut device, 1_000)[0].header.device_time_ms, None);
    // A TimeSync outside the range (a broken clock upstream) is not taken.
    for bogus in [0, DEVICE_TIME_MIN_MS - 1, DEVICE_TIME_MAX_MS + 1, u64::MAX] {
        down(&mut device, 2_000, DownlinkBody::TimeSync { unix_ms: bogus });
        assert_eq!(device.device_time_ms(2_000), None, "{bogus}");
    }
    // The range's edges are taken.
    down(
        &mut device,
        3_000,
        DownlinkBody::TimeSync {
            unix_ms: DEVICE_TIME_MIN_MS,
        },
    );
    assert_eq!(device.device_time_ms(3_000), Some(DEVICE_TIME_MIN_MS));
    // A good clock is kept when a bogus TimeSync follows.
    down(&mut device, 4_000, DownlinkBody::TimeSync { unix_ms: 5 });
    assert_eq!(device.device_time_ms(4_000), Some(DEVICE_TIME_MIN_MS + 1_000));
    // A clock that runs past the end of the range stops stamping events.
    down(
        &mut device,
        5_000,
        DownlinkBody::TimeSync {
            unix_ms: DEVICE_TIME_MAX_MS - 500,
        },
    );
    device.handle_input(Input::ButtonPressed, 5_500).unwrap();
    device.handle_input(Input::ButtonPressed, 5_501).unwrap();
    let sent = drain(&mut device, 5_501);
    let times: Vec<Option<u64>> = sent.iter().map(|u| u.header.device_time_ms).collect();
    assert_eq!(times, [Some(DEVICE_TIME_MAX_MS), None]);
}
