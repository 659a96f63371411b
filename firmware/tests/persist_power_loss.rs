#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The alarm log on a simulated NOR flash that loses power in the middle of a write or an
//! erase, at every point an operation sequence reaches, in three ways each (the word or page
//! being programmed left untouched, half done, or done but unacknowledged). After every cut
//! the flash is read back as a rebooted device would, and:
//!
//! * every alarm durably queued (its append returned `Ok`) and not yet removed is there,
//!   exactly once, and byte-identical;
//! * nothing is there that was never queued, and nothing is there twice;
//! * an alarm whose append or removal was cut may be there or not, but whole if it is;
//! * the log works on after the reboot;
//!
//! and the boot counter in flash never hands out a boot twice.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use firmware::Input;
use firmware::boot::BootCounter;
use firmware::device::{Device, DeviceSetup};
use firmware::persist::{AlarmLog, EventKey, FlashAlarmLog, FlashBootCounter, OutboxMirror, PersistError};
use protocol::{
    AlarmKind, DeviceConfig, Downlink, DownlinkBody, FirmwareVersion, Uplink, UplinkBody, UplinkHeader, encode_uplink,
};

/// Runs a future that never waits (the simulated flash answers at once).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

const WORD: usize = 4;
const PAGE: usize = 256;
const PAGES: usize = 4;

/// What the interrupted operation left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tear {
    /// The word (or page) being written (or erased) is untouched.
    Nothing,
    /// Half of it is done: the first half of the word's bytes programmed, or the first half of
    /// the page erased.
    Half,
    /// All of it is done, but the power went before the driver could report success.
    All,
}

const TEARS: [Tear; 3] = [Tear::Nothing, Tear::Half, Tear::All];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlashError {
    PowerLost,
    NotAligned,
    OutOfBounds,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::PowerLost => NorFlashErrorKind::Other,
            FlashError::NotAligned => NorFlashErrorKind::NotAligned,
            FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
        }
    }
}

/// NOR flash: erased bytes read 0xFF, programming only clears bits (so a word may be written
/// again, with bits cleared: `MultiwriteNorFlash`). Loses power at its `cut`-th word program
/// or page erase, then fails everything until [`TearingFlash::power_on`].
#[derive(Debug, Clone)]
struct TearingFlash {
    bytes: Vec<u8>,
    erases: Vec<u32>,
    /// Word programs and page erases until the power goes (`None`: it never does).
    cut: Option<u64>,
    tear: Tear,
    dead: bool,
    /// Word programs and page erases done, all told.
    operations: u64,
}

impl TearingFlash {
    fn erased() -> Self {
        Self {
            bytes: vec![0xFF; PAGE * PAGES],
            erases: vec![0; PAGES],
            cut: None,
            tear: Tear::Nothing,
            dead: false,
            operations: 0,
        }
    }

    fn cut_after(mut self, operations: u64, tear: Tear) -> Self {
        self.cut = Some(operations);
        self.tear = tear;
        self
    }

    fn power_on(mut self) -> Self {
        self.cut = None;
        self.dead = false;
        self
    }

    /// Counts one operation; false if the power goes during it.
    fn survives_next(&mut self) -> bool {
        let survives = self.cut.is_none_or(|cut| self.operations < cut);
        self.operations += 1;
        if !survives {
            self.dead = true;
        }
        survives
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<(), FlashError> {
        if self.dead {
            return Err(FlashError::PowerLost);
        }
        if !(offset as usize).is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(FlashError::NotAligned);
        }
        if offset as usize + len > self.bytes.len() {
            return Err(FlashError::OutOfBounds);
        }
        Ok(())
    }
}

impl ErrorType for TearingFlash {
    type Error = FlashError;
}

impl ReadNorFlash for TearingFlash {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.check(offset, bytes.len(), 1)?;
        let start = offset as usize;
        bytes.copy_from_slice(&self.bytes[start..start + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

impl NorFlash for TearingFlash {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        self.check(from, (to - from) as usize, PAGE)?;
        for page in (from as usize / PAGE)..(to as usize / PAGE) {
            let range = page * PAGE..(page + 1) * PAGE;
            if !self.survives_next() {
                let done = match self.tear {
                    Tear::Nothing => 0,
                    Tear::Half => PAGE / 2,
                    Tear::All => PAGE,
                };
                self.bytes[range.start..range.start + done].fill(0xFF);
                return Err(FlashError::PowerLost);
            }
            self.bytes[range].fill(0xFF);
            self.erases[page] += 1;
        }
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.check(offset, bytes.len(), WORD)?;
        for (index, word) in bytes.chunks(WORD).enumerate() {
            let at = offset as usize + index * WORD;
            let done = if self.survives_next() {
                WORD
            } else {
                match self.tear {
                    Tear::Nothing => 0,
                    Tear::Half => WORD / 2,
                    Tear::All => WORD,
                }
            };
            for (cell, new) in self.bytes[at..at + done].iter_mut().zip(word) {
                *cell &= new;
            }
            if self.dead {
                return Err(FlashError::PowerLost);
            }
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for TearingFlash {}

fn range() -> std::ops::Range<u32> {
    0..(PAGE * PAGES) as u32
}

fn alarm(seq: u32) -> Uplink {
    let body = match seq % 4 {
        0 => UplinkBody::Alarm(AlarmKind::PendantPress),
        1 => UplinkBody::Alarm(AlarmKind::Fall),
        2 => UplinkBody::Alarm(AlarmKind::TemperatureExtreme {
            centi_celsius: -1_234 - seq as i16,
        }),
        _ => UplinkBody::AlarmCancelled {
            alarm_seq: seq.saturating_sub(3),
        },
    };
    Uplink::new(
        UplinkHeader {
            boot: 7,
            seq,
            device_time_ms: seq.is_multiple_of(2).then_some(1_764_500_000_000 + u64::from(seq)),
        },
        body,
    )
}

fn wire(uplink: &Uplink) -> Vec<u8> {
    let mut buf = [0u8; protocol::MAX_UPLINK_LEN];
    encode_uplink(uplink, &mut buf).unwrap().to_vec()
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Append(u32),
    Remove(u32),
}

/// 48 alarms through the log, about three unreceipted at a time, receipts sometimes out of
/// order: the log wraps around its four pages several times (every page erased and reused).
fn script() -> Vec<Op> {
    let mut ops = Vec::new();
    for seq in 0..48u32 {
        ops.push(Op::Append(seq));
        if seq >= 3 {
            if seq % 5 == 0 {
                // The newer of two receipted first: a removal from the middle of the log.
                ops.push(Op::Remove(seq - 2));
                ops.push(Op::Remove(seq - 3));
            } else if seq % 5 != 1 {
                ops.push(Op::Remove(seq - 3));
            }
        }
    }
    ops
}

/// Loads the log as a rebooted device would: key -> wire bytes, in log order.
fn load(log: &mut FlashAlarmLog<TearingFlash>) -> Vec<(u32, Vec<u8>)> {
    let mut loaded = Vec::new();
    let unreadable = block_on(log.load(|uplink| loaded.push((uplink.header.seq, wire(&uplink))))).unwrap();
    assert_eq!(
        unreadable.undecodable, 0,
        "a record that passed the CRC but does not decode"
    );
    assert_eq!(unreadable.duplicates, 0, "a record stored twice");
    loaded
}

/// The outcome of running the script on a flash cut at `cut`.
struct CutRun {
    /// The script ran to its end before the cut.
    completed: bool,
    durable: BTreeSet<u32>,
    in_flight: BTreeSet<u32>,
    flash: TearingFlash,
}

fn run_script_until_cut(ops: &[Op], cut: u64, tear: Tear) -> CutRun {
    let flash = TearingFlash::erased().cut_after(cut, tear);
    let mut log = FlashAlarmLog::new(flash, range()).unwrap();
    let mut durable = BTreeSet::new();
    let mut in_flight = BTreeSet::new();
    let mut completed = true;
    for op in ops {
        let result = match *op {
            Op::Append(seq) => block_on(log.append(&alarm(seq))).map(|()| {
                durable.insert(seq);
            }),
            Op::Remove(seq) => {
                durable.remove(&seq);
                block_on(log.remove(EventKey { boot: 7, seq })).map(|removed| assert!(removed, "seq {seq}"))
            }
        };
        match result {
            Ok(()) => {}
            Err(PersistError::Flash(FlashError::PowerLost)) => {
                let (Op::Append(seq) | Op::Remove(seq)) = *op;
                in_flight.insert(seq);
                completed = false;
                break;
            }
            Err(other) => panic!("cut {cut} {tear:?}: {op:?} failed with {other:?} instead of losing power"),
        }
    }
    CutRun {
        completed,
        durable,
        in_flight,
        flash: log.release(),
    }
}

#[test]
fn every_durably_queued_alarm_survives_a_power_cut_at_any_point() {
    let ops = script();
    let originals: BTreeMap<u32, Vec<u8>> = (0..100).map(|seq| (seq, wire(&alarm(seq)))).collect();
    let mut cuts_tried = 0;
    for tear in TEARS {
        for cut in 0.. {
            let run = run_script_until_cut(&ops, cut, tear);
            if run.completed {
                assert!(cut > 100, "the script should take many flash operations, took {cut}");
                break;
            }
            cuts_tried += 1;
            let mut log = FlashAlarmLog::new(run.flash.power_on(), range()).unwrap();
            let loaded = load(&mut log);
            let keys: Vec<u32> = loaded.iter().map(|(seq, _)| *seq).collect();
            let context = format!(
                "cut at operation {cut} ({tear:?}): loaded {keys:?}, durable {:?}",
                run.durable
            );
            for seq in &run.durable {
                assert!(keys.contains(seq), "durable alarm {seq} lost; {context}");
            }
            for (seq, bytes) in &loaded {
                assert!(
                    run.durable.contains(seq) || run.in_flight.contains(seq),
                    "alarm {seq} was never queued or was removed; {context}"
                );
                assert_eq!(bytes, &originals[seq], "alarm {seq} changed; {context}");
            }
            let unique: BTreeSet<u32> = keys.iter().copied().collect();
            assert_eq!(unique.len(), keys.len(), "a duplicate; {context}");
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "not oldest first; {context}");

            // The log works on after the reboot.
            block_on(log.append(&alarm(99))).unwrap_or_else(|e| panic!("append after reboot: {e:?}; {context}"));
            let after: Vec<u32> = load(&mut log).iter().map(|(seq, _)| *seq).collect();
            assert_eq!(after.last(), Some(&99), "{context}");
            assert!(block_on(log.remove(EventKey { boot: 7, seq: 99 })).unwrap());
        }
    }
    println!("power cut at {cuts_tried} points of the script, all recovered");
}

#[test]
fn wear_is_spread_evenly_over_the_pages() {
    let mut log = FlashAlarmLog::new(TearingFlash::erased(), range()).unwrap();
    for seq in 0..2_000u32 {
        block_on(log.append(&alarm(seq))).unwrap();
        if seq >= 2 {
            assert!(block_on(log.remove(EventKey { boot: 7, seq: seq - 2 })).unwrap());
        }
    }
    assert_eq!(
        load(&mut log).iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [1_998, 1_999]
    );
    let erases = log.release().erases;
    let (min, max) = (*erases.iter().min().unwrap(), *erases.iter().max().unwrap());
    println!("erases per page after 2,000 alarms: {erases:?}");
    assert!(min > 10, "every page is used: {erases:?}");
    assert!(max - min <= 1, "wear is levelled: {erases:?}");
}

#[test]
fn a_full_log_refuses_a_new_alarm_and_keeps_every_old_one() {
    let mut log = FlashAlarmLog::new(TearingFlash::erased(), range()).unwrap();
    let mut stored = 0;
    loop {
        match block_on(log.append(&alarm(stored))) {
            Ok(()) => stored += 1,
            Err(PersistError::Full) => break,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(stored > 20, "{stored}");
    let keys: Vec<u32> = load(&mut log).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(keys, (0..stored).collect::<Vec<_>>());
}

#[test]
fn a_range_of_less_than_two_pages_is_refused() {
    assert!(FlashAlarmLog::new(TearingFlash::erased(), 0..PAGE as u32).is_err());
    assert!(FlashAlarmLog::new(TearingFlash::erased(), 0..(PAGE as u32 * 2 - 4)).is_err());
}

fn pendant(boot: u32) -> Device {
    let setup = DeviceSetup {
        boot,
        firmware: FirmwareVersion {
            major: 0,
            minor: 1,
            patch: 0,
        },
        config: DeviceConfig::default(),
        activity: None,
    };
    Device::new(setup, 0)
}

fn receipt(device: &mut Device, boot: u32, seq: u32) {
    let mut seqs = heapless::Vec::new();
    seqs.push(seq).unwrap();
    device
        .handle_downlink(&Downlink::new(DownlinkBody::Receipt { boot, seqs }), 1_000)
        .unwrap();
}

/// The unreceipted alarms a device holds: seq -> wire bytes.
fn unreceipted(device: &Device) -> Alarms {
    device
        .outbox()
        .iter()
        .map(|entry| &entry.uplink)
        .chain(device.alarm_backlog())
        .filter(|uplink| uplink.body.is_alarm())
        .map(|uplink| ((uplink.header.boot, uplink.header.seq), wire(uplink)))
        .collect()
}

/// Alarms by `(boot, seq)`, as wire bytes.
type Alarms = BTreeMap<(u32, u32), Vec<u8>>;

/// How a device life ended: the flash, the alarms that must be back after the reboot, those
/// that may be, and whether the life ran to its end before the cut.
struct Life {
    flash: TearingFlash,
    must: Alarms,
    may: Alarms,
    completed: bool,
}

/// One device life through the mirror: presses and falls, syncs, receipts.
fn device_life_until_cut(cut: u64, tear: Tear) -> Life {
    let mut log = FlashAlarmLog::new(TearingFlash::erased().cut_after(cut, tear), range()).unwrap();
    let mut device = pendant(3);
    let mut mirror = OutboxMirror::default();
    let mut durable: Alarms = BTreeMap::new();
    let mut completed = true;
    let mut may = BTreeMap::new();
    for step in 0..12u32 {
        let now = u64::from(step) * 10_000;
        let input = if step % 3 == 2 {
            Input::FallDetected
        } else {
            Input::ButtonPressed
        };
        device.handle_input(input, now).unwrap();
        if step % 2 == 1 {
            // The gateway receipts the oldest unreceipted alarm.
            if let Some(&(boot, seq)) = unreceipted(&device).keys().next() {
                receipt(&mut device, boot, seq);
            }
        }
        let before = durable.clone();
        let wanted = unreceipted(&device);
        match block_on(mirror.sync(&mut log, &device)) {
            Ok(_) => durable = wanted,
            Err(PersistError::Flash(FlashError::PowerLost)) => {
                // Cut during this sync: what was durable and is still unreceipted must be
                // back; what this sync was storing or removing may be.
                durable = before
                    .iter()
                    .filter(|(k, _)| wanted.contains_key(k))
                    .map(|(k, v)| (*k, v.clone()))
                    .collect();
                may = before.into_iter().chain(wanted).collect();
                completed = false;
                break;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    Life {
        flash: log.release(),
        must: durable,
        may,
        completed,
    }
}

#[test]
fn unreceipted_alarms_come_back_into_the_rebooted_device_after_a_cut_at_any_point() {
    for tear in TEARS {
        for cut in 0.. {
            let Life {
                flash,
                must,
                may,
                completed,
            } = device_life_until_cut(cut, tear);
            let mut log = FlashAlarmLog::new(flash.power_on(), range()).unwrap();
            let mut rebooted = pendant(4);
            let (mirror, restored) = block_on(OutboxMirror::restore(&mut log, &mut rebooted)).unwrap();
            let back = unreceipted(&rebooted);
            let context = format!("cut {cut} ({tear:?}): back {:?}, must {:?}", back.keys(), must.keys());
            for (key, bytes) in &must {
                assert_eq!(back.get(key), Some(bytes), "alarm {key:?} not back intact; {context}");
            }
            for (key, bytes) in &back {
                let allowed = must.get(key).or_else(|| may.get(key));
                assert_eq!(allowed, Some(bytes), "alarm {key:?} should not be back; {context}");
            }
            assert_eq!(usize::from(restored.alarms), back.len(), "{context}");
            assert_eq!(restored.not_taken, 0);
            assert_eq!(mirror.stored().len(), back.len());
            // The restored alarms go out first, byte-identical, under their old boot.
            rebooted.connection_up(0);
            let first = rebooted.poll_transmit(0);
            if let Some((key, bytes)) = back.iter().next() {
                let first = first.expect("a restored alarm to send");
                assert_eq!((first.header.boot, first.header.seq), *key);
                assert_eq!(first.payload.as_slice(), bytes.as_slice());
            }
            if completed {
                assert!(!must.is_empty(), "the life ends with unreceipted alarms");
                break;
            }
        }
    }
}

#[test]
fn a_receipt_after_the_reboot_removes_a_restored_alarm_from_the_log() {
    let mut log = FlashAlarmLog::new(TearingFlash::erased(), range()).unwrap();
    let mut device = pendant(1);
    device.handle_input(Input::ButtonPressed, 0).unwrap();
    let mut mirror = OutboxMirror::default();
    assert_eq!(block_on(mirror.sync(&mut log, &device)).unwrap().stored, 1);
    // Nothing new: no flash touched.
    assert_eq!(block_on(mirror.sync(&mut log, &device)).unwrap(), Default::default());

    let mut rebooted = pendant(2);
    let (mut mirror, restored) = block_on(OutboxMirror::restore(&mut log, &mut rebooted)).unwrap();
    assert_eq!(restored.alarms, 1);
    receipt(&mut rebooted, 1, 0);
    let synced = block_on(mirror.sync(&mut log, &rebooted)).unwrap();
    assert_eq!(synced.removed, 1);
    assert!(load(&mut log).is_empty());
}

/// 100 boots, the gateway's boot floor (SPEC "When a boot counter goes back") raised in the
/// middle: the map's records fill its four pages more than once, so pages are reclaimed.
#[derive(Debug, Clone, Copy)]
enum BootOp {
    Boot,
    Floor(u32),
}

fn boot_script() -> Vec<BootOp> {
    let mut ops: Vec<BootOp> = (0..50).map(|_| BootOp::Boot).collect();
    ops.push(BootOp::Floor(1_000));
    ops.push(BootOp::Floor(10));
    ops.extend((0..50).map(|_| BootOp::Boot));
    ops
}

#[test]
fn the_boot_counter_never_hands_out_a_boot_twice_whatever_the_power_does() {
    let ops = boot_script();
    let mut cuts_tried = 0;
    for tear in TEARS {
        for cut in 0.. {
            let flash = TearingFlash::erased().cut_after(cut, tear);
            let mut counter = FlashBootCounter::new(flash, range()).unwrap();
            // The highest boot the device was allowed to use, and the value in flight at the cut.
            let mut used = 0u32;
            let mut in_flight = None;
            for op in &ops {
                let result = match *op {
                    BootOp::Boot => counter.load_and_increment(),
                    BootOp::Floor(floor) => counter.raise_to(floor),
                };
                match result {
                    Ok(boot) => {
                        assert!(boot >= used, "cut {cut} ({tear:?}): {boot} after {used}");
                        used = boot;
                    }
                    Err(PersistError::Flash(FlashError::PowerLost)) => {
                        in_flight = Some(match *op {
                            BootOp::Boot => used + 1,
                            BootOp::Floor(floor) => floor.max(used),
                        });
                        break;
                    }
                    Err(other) => panic!("cut {cut} ({tear:?}): {other:?}"),
                }
            }
            let Some(in_flight) = in_flight else {
                assert_eq!(used, 1_050, "50 boots, the floor, 50 boots");
                let erases = counter.release().erases;
                assert!(
                    erases.iter().all(|&n| n > 0),
                    "every page reclaimed at least once: {erases:?}"
                );
                break;
            };
            cuts_tried += 1;
            let mut rebooted = FlashBootCounter::new(counter.release().power_on(), range()).unwrap();
            let stored = rebooted.stored().unwrap();
            assert!(
                (used..=in_flight).contains(&stored),
                "cut {cut} ({tear:?}): stored {stored}, used {used}, in flight {in_flight}"
            );
            let next = rebooted.load_and_increment().unwrap();
            assert!(next > used, "cut {cut} ({tear:?}): boot {next} again after {used}");
        }
    }
    println!("boot counter: power cut at {cuts_tried} points, no boot handed out twice");
}
