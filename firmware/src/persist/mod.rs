//! Unreceipted alarms in flash, so that a reboot (a flat battery, a watchdog reset, a power
//! cut in the middle of a flash write) loses none of them.
//!
//! * [`AlarmLog`] is the seam: store an alarm durably, forget a receipted one, read back
//!   what is stored. A board implements it on its flash, or uses [`FlashAlarmLog`].
//! * [`FlashAlarmLog`] implements it on any NOR flash (`embedded-storage-async`) with
//!   `sequential-storage`'s queue: a circular log over a range of erase pages, written
//!   sequentially and erased a page at a time only once everything on it is removed, so wear
//!   spreads evenly over the pages. Every record carries a CRC; an interrupted write leaves a
//!   record that fails it and is ignored, and an interrupted erase is finished on the next
//!   access. Records are the uplink's wire encoding (`protocol::encode_uplink`), so an alarm
//!   read back after a reboot goes out byte-identical to the first transmission.
//! * [`OutboxMirror`] keeps the log in step with the device core: [`OutboxMirror::sync`]
//!   (after every step of the board's loop) stores the alarms new in the outbox or its backlog
//!   and removes the receipted ones; [`OutboxMirror::restore`] (at start) puts what the log
//!   holds back into the new boot's [`Device`], under its old `(boot, seq)`.
//! * [`FlashBootCounter`] keeps the boot counter (`crate::boot::BootCounter`) in flash the
//!   same way, in a range of its own: without it a reboot would reuse `(boot, seq)` keys.
//!
//! # Durability
//!
//! An alarm is *durably queued* once [`AlarmLog::append`] has returned `Ok` for it. A power
//! cut after that point never loses it; a cut during the append may keep it or not (it was
//! never durable), but never keeps a damaged copy. A cut during the removal of a receipted
//! alarm may leave it in the log: it is then sent once more after the reboot, which the
//! gateway deduplicates by `(device, boot, seq)` and receipts again. Only alarms (and
//! cancellations) are kept: telemetry is dropped first under pressure anyway, and a heartbeat
//! from before a reboot tells the gateway nothing the new boot's does not.

mod boot;
mod flash;

pub use boot::FlashBootCounter;
pub use flash::{BadRange, FlashAlarmLog};

use core::fmt::Debug;
use core::future::Future;

use heapless::Vec;
use protocol::{Uplink, UplinkHeader};

use crate::device::{ALARM_BACKLOG, Device, DeviceError};
use crate::outbox::OUTBOX_CAPACITY;

/// Alarms that can be unreceipted at once: a full outbox and a full backlog.
pub const MAX_UNRECEIPTED_ALARMS: usize = OUTBOX_CAPACITY + ALARM_BACKLOG;

/// The identity of an event: `(boot, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    pub boot: u32,
    pub seq: u32,
}

impl EventKey {
    pub const fn of(header: &UplinkHeader) -> Self {
        Self {
            boot: header.boot,
            seq: header.seq,
        }
    }
}

/// Why the log could not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PersistError<E: Debug> {
    /// The flash driver failed (or the power went while it worked).
    #[error("flash: {0:?}")]
    Flash(E),
    /// No room for another record: the log range is too small for the unreceipted alarms.
    #[error("alarm log is full")]
    Full,
    /// The log's pages are in a state it cannot repair (erase the range to recover).
    #[error("alarm log is corrupted")]
    Corrupted,
    /// The uplink does not encode (a bug, never data).
    #[error("uplink does not encode")]
    Encode,
    /// The log's implementation reported an inconsistency of its own.
    #[error("alarm log internal error")]
    Internal,
    /// The boot counter is at `u32::MAX`: wrapping would reuse boot numbers.
    #[error("boot counter exhausted")]
    Exhausted,
}

/// What a log read back that it could not hand on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unreadable {
    /// Records that passed the log's CRC but do not decode as an uplink (a record format
    /// this firmware does not know); they were removed from the log.
    pub undecodable: u16,
    /// Second and later records of the same `(boot, seq)`; they were removed from the log.
    pub duplicates: u16,
}

/// Durable storage of unreceipted alarms: the seam between [`OutboxMirror`] and a board's
/// flash.
pub trait AlarmLog {
    type Error: Debug;

    /// Stores `uplink`; durable (survives a power cut) once this returns `Ok`.
    fn append(&mut self, uplink: &Uplink) -> impl Future<Output = Result<(), PersistError<Self::Error>>>;

    /// Removes every record of `key`; returns whether there was one.
    fn remove(&mut self, key: EventKey) -> impl Future<Output = Result<bool, PersistError<Self::Error>>>;

    /// Calls `each` for every stored uplink, oldest first, once per `(boot, seq)`.
    fn load(&mut self, each: impl FnMut(Uplink))
    -> impl Future<Output = Result<Unreadable, PersistError<Self::Error>>>;
}

/// What [`OutboxMirror::restore`] put back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Alarms back in the device's outbox (or backlog).
    pub alarms: u16,
    /// Alarms the device could not take (more than [`MAX_UNRECEIPTED_ALARMS`]); they stay in
    /// the log, and the device counts them as lost.
    pub not_taken: u16,
    pub unreadable: Unreadable,
}

/// What one [`OutboxMirror::sync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    pub stored: u16,
    pub removed: u16,
}

/// Keeps an [`AlarmLog`] holding exactly the device's unreceipted alarms. Remembers which
/// keys the log holds, so a sync with nothing new touches no flash.
#[derive(Debug, Clone, Default)]
pub struct OutboxMirror {
    stored: Vec<EventKey, MAX_UNRECEIPTED_ALARMS>,
}

impl OutboxMirror {
    /// Loads the log into a freshly booted `device` (before its first tick) and returns the
    /// mirror of what the log now holds.
    pub async fn restore<L: AlarmLog>(
        log: &mut L,
        device: &mut Device,
    ) -> Result<(Self, Restored), PersistError<L::Error>> {
        let mut mirror = Self::default();
        let mut restored = Restored::default();
        restored.unreadable = log
            .load(|uplink| {
                let key = EventKey::of(&uplink.header);
                match device.restore(uplink) {
                    Ok(()) => {
                        restored.alarms = restored.alarms.saturating_add(1);
                        // The device holds at most as many alarms as the mirror has room for.
                        let _ = mirror.stored.push(key);
                    }
                    // Counted by the device as lost (`Device::alarms_lost`).
                    Err(
                        DeviceError::AlarmNotQueued { .. }
                        | DeviceError::TooLarge { .. }
                        | DeviceError::BootFloorNotPersisted { .. },
                    ) => {
                        restored.not_taken = restored.not_taken.saturating_add(1);
                    }
                }
            })
            .await?;
        Ok((mirror, restored))
    }

    /// Stores the device's alarms the log does not hold yet and removes those no longer
    /// unreceipted. Call after every step that may have queued an alarm or applied a receipt
    /// (on a session [`crate::session::Platform::show`]).
    pub async fn sync<L: AlarmLog>(&mut self, log: &mut L, device: &Device) -> Result<Synced, PersistError<L::Error>> {
        let mut synced = Synced::default();
        // Receipted first: that frees room for the new ones.
        let mut index = 0;
        while let Some(key) = self.stored.get(index).copied() {
            if unreceipted_alarms(device).any(|uplink| EventKey::of(&uplink.header) == key) {
                index += 1;
                continue;
            }
            log.remove(key).await?;
            self.stored.remove(index);
            synced.removed = synced.removed.saturating_add(1);
        }
        for uplink in unreceipted_alarms(device) {
            let key = EventKey::of(&uplink.header);
            if self.stored.contains(&key) {
                continue;
            }
            log.append(uplink).await?;
            // The device never holds more unreceipted alarms than the mirror has room for.
            if self.stored.push(key).is_err() {
                return Err(PersistError::Full);
            }
            synced.stored = synced.stored.saturating_add(1);
        }
        Ok(synced)
    }

    /// The keys the log holds, as far as this mirror knows.
    pub fn stored(&self) -> &[EventKey] {
        &self.stored
    }
}

/// The device's alarms (and cancellations) waiting for a receipt, oldest first.
fn unreceipted_alarms(device: &Device) -> impl Iterator<Item = &Uplink> {
    device
        .outbox()
        .iter()
        .map(|entry| &entry.uplink)
        .chain(device.alarm_backlog())
        .filter(|uplink| uplink.body.is_alarm())
}
