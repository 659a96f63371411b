#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `BootFloor`: the gateway saw this device reuse `(boot, seq)` keys (its boot counter was
//! wiped or went back) and asks it to number new events from `min_boot` on (SPEC.md, "When a
//! boot counter goes back").

use firmware::Input;
use firmware::boot::{BootCounter, MemoryBootCounter};
use firmware::device::{Device, DeviceError, DeviceSetup};
use protocol::{
    AlarmKind, DeviceConfig, Downlink, DownlinkBody, FirmwareVersion, Uplink, UplinkBody, decode_uplink,
    encode_downlink,
};

fn setup(boot: u32) -> DeviceSetup {
    DeviceSetup {
        boot,
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 0,
        },
        config: DeviceConfig::default(),
        activity: None,
    }
}

/// A device that booted from `counter` (like a wiped device: boot 1), connected, its boot
/// heartbeat sent and receipted.
fn booted(counter: &mut impl BootCounter) -> Device {
    let boot = counter.load_and_increment().ok().unwrap();
    let mut device = Device::new(setup(boot), 0);
    device.tick(0).unwrap();
    device.connection_up(0);
    let sent = drain(&mut device, 0);
    receipt(&mut device, boot, &sent);
    device
}

fn drain(device: &mut Device, now: u64) -> Vec<Uplink> {
    std::iter::from_fn(|| device.poll_transmit(now))
        .map(|t| decode_uplink(&t.payload).unwrap())
        .collect()
}

fn down(device: &mut Device, body: DownlinkBody) {
    device.handle_downlink(&Downlink::new(body), 0).unwrap();
}

fn receipt(device: &mut Device, boot: u32, uplinks: &[Uplink]) {
    let seqs: Vec<u32> = uplinks
        .iter()
        .filter(|u| u.header.boot == boot)
        .map(|u| u.header.seq)
        .collect();
    down(
        device,
        DownlinkBody::Receipt {
            boot,
            seqs: heapless::Vec::from_slice(&seqs).unwrap(),
        },
    );
}

fn keys(uplinks: &[Uplink]) -> Vec<(u32, u32)> {
    uplinks.iter().map(|u| (u.header.boot, u.header.seq)).collect()
}

#[test]
fn a_floor_is_persisted_then_new_events_use_it_and_old_ones_keep_their_keys() {
    let mut counter = MemoryBootCounter::new(0);
    let mut device = booted(&mut counter);
    assert_eq!(device.boot(), 1, "a wiped counter boots as 1");
    // A press under the reused boot, not yet receipted when the floor arrives.
    device.handle_input(Input::ButtonPressed, 1_000).unwrap();
    let first = drain(&mut device, 1_000);
    assert_eq!(keys(&first), [(1, 1)]);

    let mut buf = [0u8; 16];
    let floor = encode_downlink(&Downlink::new(DownlinkBody::BootFloor { min_boot: 42 }), &mut buf).unwrap();
    device.handle_downlink_payload(floor, 2_000).unwrap();
    assert_eq!(device.pending_boot_floor(), Some(42));
    assert_eq!(device.boot(), 1, "nothing moves before the floor is persisted");
    assert_eq!(counter.stored(), 1);

    assert_eq!(device.apply_boot_floor(&mut counter, 2_000), Ok(Some(42)));
    assert_eq!(counter.stored(), 42, "persisted first");
    assert_eq!((device.boot(), device.next_seq()), (42, 0), "seq restarts");
    assert_eq!(device.pending_boot_floor(), None);
    assert_eq!(device.apply_boot_floor(&mut counter, 2_000), Ok(None), "applied once");

    // New events: a heartbeat at once (as on a real boot), then the next press, all on the
    // new boot. The old press is still unreceipted and keeps its old key.
    device.tick(2_000).unwrap();
    device.handle_input(Input::ButtonPressed, 3_000).unwrap();
    device.connection_up(3_000);
    let sent = drain(&mut device, 3_000);
    assert_eq!(keys(&sent), [(1, 1), (42, 1), (42, 0)]);
    assert_eq!(sent[0], first[0], "retransmitted byte for byte under its old key");
    assert!(matches!(sent[2].body, UplinkBody::Heartbeat(_)));

    // The gateway receipts the old key (as a conflict copy) and the new ones.
    receipt(&mut device, 1, &sent);
    assert_eq!(device.outbox_depth(), 2);
    receipt(&mut device, 42, &sent);
    assert_eq!(device.outbox_depth(), 0);

    // The next start boots above the floor.
    assert_eq!(counter.load_and_increment(), Ok(43));
}

#[test]
fn a_floor_at_or_below_the_current_boot_changes_nothing() {
    let mut counter = MemoryBootCounter::new(9);
    let mut device = booted(&mut counter);
    device.handle_input(Input::ButtonPressed, 1_000).unwrap();
    for min_boot in [0, 1, 9, 10] {
        down(&mut device, DownlinkBody::BootFloor { min_boot });
        assert_eq!(device.pending_boot_floor(), None, "floor {min_boot}");
        assert_eq!(device.apply_boot_floor(&mut counter, 1_000), Ok(None));
    }
    assert_eq!((device.boot(), device.next_seq()), (10, 2));
    assert_eq!(counter.stored(), 10, "never backwards");
}

#[test]
fn the_highest_of_several_floors_wins() {
    let mut counter = MemoryBootCounter::new(0);
    let mut device = booted(&mut counter);
    down(&mut device, DownlinkBody::BootFloor { min_boot: 30 });
    down(&mut device, DownlinkBody::BootFloor { min_boot: 20 });
    assert_eq!(device.pending_boot_floor(), Some(30));
    assert_eq!(device.apply_boot_floor(&mut counter, 0), Ok(Some(30)));
    down(&mut device, DownlinkBody::BootFloor { min_boot: 30 });
    assert_eq!(device.pending_boot_floor(), None, "the floor it is on");
    down(&mut device, DownlinkBody::BootFloor { min_boot: u32::MAX });
    assert_eq!(device.apply_boot_floor(&mut counter, 0), Ok(Some(u32::MAX)));
    assert_eq!(counter.stored(), u32::MAX);
}

/// A counter whose flash write fails, or that stores less than it was asked.
struct BrokenCounter {
    stores: Option<u32>,
}

impl BootCounter for BrokenCounter {
    type Error = ();
    fn load_and_increment(&mut self) -> Result<u32, ()> {
        Err(())
    }
    fn raise_to(&mut self, _floor: u32) -> Result<u32, ()> {
        self.stores.ok_or(())
    }
}

#[test]
fn a_floor_that_cannot_be_persisted_is_reported_and_the_device_stays_put() {
    for mut broken in [BrokenCounter { stores: None }, BrokenCounter { stores: Some(5) }] {
        let mut device = booted(&mut MemoryBootCounter::new(0));
        down(&mut device, DownlinkBody::BootFloor { min_boot: 7 });
        assert_eq!(
            device.apply_boot_floor(&mut broken, 0),
            Err(DeviceError::BootFloorNotPersisted { min_boot: 7 })
        );
        assert_eq!((device.boot(), device.next_seq()), (1, 1), "still on boot 1");
        assert_eq!(
            device.pending_boot_floor(),
            None,
            "dropped, not retried on every wake-up: the gateway sends it again"
        );
        // The gateway's next floor, with a working counter, moves it.
        down(&mut device, DownlinkBody::BootFloor { min_boot: 7 });
        assert_eq!(device.apply_boot_floor(&mut MemoryBootCounter::new(1), 0), Ok(Some(7)));
    }
}

#[test]
fn an_alarm_of_the_old_boot_is_not_cancelled_after_the_move() {
    let mut counter = MemoryBootCounter::new(0);
    let mut device = booted(&mut counter);
    device.handle_input(Input::ButtonPressed, 1_000).unwrap();
    down(&mut device, DownlinkBody::BootFloor { min_boot: 5 });
    device.apply_boot_floor(&mut counter, 2_000).unwrap();
    // Within the grace window of the press, but the press is of boot 1 and a cancel names a
    // seq of its own boot: it would cancel the wrong event. The hold is a new call.
    device.handle_input(Input::ButtonPressed, 3_000).unwrap();
    device.handle_input(Input::ButtonHeld, 5_000).unwrap();
    let sent = drain(&mut device, 5_000);
    assert!(
        sent.iter()
            .all(|u| !matches!(u.body, UplinkBody::AlarmCancelled { .. })),
        "{sent:?}"
    );
    assert_eq!(keys(&sent), [(1, 1), (5, 0)], "the old press, the new press");
    assert_eq!(sent[1].body, UplinkBody::Alarm(AlarmKind::PendantPress));
}
