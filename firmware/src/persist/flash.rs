//! [`AlarmLog`] on NOR flash with `sequential-storage`'s queue.

use core::ops::Range;

use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use heapless::Vec;
use protocol::{MAX_UPLINK_LEN, Uplink, decode_uplink, encode_uplink, peek_uplink_header};
use sequential_storage::Error as StorageError;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::queue::{QueueConfig, QueueStorage};

use super::{AlarmLog, EventKey, MAX_UNRECEIPTED_ALARMS, PersistError, Unreadable};

/// Records `load` can tell apart when looking for duplicates: more than the device ever
/// leaves unreceipted.
const DEDUP_KEYS: usize = MAX_UNRECEIPTED_ALARMS * 2;

/// Bytes `sequential-storage` needs to read one record: the largest uplink, rounded up to
/// any write size a NOR flash is likely to have.
const RECORD_BUFFER: usize = MAX_UPLINK_LEN + 32;

/// The unreceipted alarms as a circular log over `range` of `flash` (whole erase pages; at
/// least two, so one can be erased while the other holds records).
///
/// Removing a record in the middle of the log rewrites a word already written (it clears
/// bits of the record's header), hence [`MultiwriteNorFlash`]: true of the NOR flash of most
/// microcontrollers (nRF52, RP2040's QSPI flash, ...), not of those with ECC-protected words
/// (STM32L4/G4/H7), which need an adapter.
pub struct FlashAlarmLog<F: MultiwriteNorFlash> {
    queue: QueueStorage<F, Cache<Uncached, Uncached, Uncached, ()>>,
}

impl<F: MultiwriteNorFlash> core::fmt::Debug for FlashAlarmLog<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashAlarmLog").finish_non_exhaustive()
    }
}

/// Why a log range is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("log range must be whole erase pages of the flash, at least two")]
pub struct BadRange;

impl<F: MultiwriteNorFlash> FlashAlarmLog<F> {
    /// A log over `range` of `flash`. Whatever the range already holds (from earlier boots)
    /// is the log's content; an erased range is an empty log.
    pub fn new(flash: F, range: Range<u32>) -> Result<Self, BadRange> {
        if range.end.saturating_sub(range.start) < 2 * F::ERASE_SIZE as u32 {
            return Err(BadRange);
        }
        let config = QueueConfig::try_new(range).map_err(|_| BadRange)?;
        Ok(Self {
            queue: QueueStorage::new(flash, config, Cache::new_uncached()),
        })
    }

    /// Gives the flash back.
    pub fn release(self) -> F {
        self.queue.destroy().0
    }
}

pub(super) fn persist_error<E: core::fmt::Debug>(error: StorageError<E>) -> PersistError<E> {
    match error {
        StorageError::Storage { value, .. } => PersistError::Flash(value),
        StorageError::FullStorage => PersistError::Full,
        StorageError::Corrupted { .. } => PersistError::Corrupted,
        StorageError::ItemTooBig | StorageError::BufferTooBig => PersistError::Encode,
        _ => PersistError::Internal,
    }
}

impl<F: MultiwriteNorFlash> AlarmLog for FlashAlarmLog<F>
where
    F::Error: core::fmt::Debug,
{
    type Error = F::Error;

    async fn append(&mut self, uplink: &Uplink) -> Result<(), PersistError<F::Error>> {
        let mut buf = [0u8; MAX_UPLINK_LEN];
        let bytes = encode_uplink(uplink, &mut buf).map_err(|_| PersistError::Encode)?;
        // Never overwrite old records to make room: they are alarms.
        self.queue.push(bytes, false).await.map_err(persist_error)
    }

    async fn remove(&mut self, key: EventKey) -> Result<bool, PersistError<F::Error>> {
        let mut buf = [0u8; RECORD_BUFFER];
        let mut removed = false;
        let mut records = self.queue.iter().await.map_err(persist_error)?;
        while let Some(record) = records.next(&mut buf).await.map_err(persist_error)? {
            let matches = peek_uplink_header(&record).is_ok_and(|(_, header, _)| EventKey::of(&header) == key);
            if matches {
                record.pop().await.map_err(persist_error)?;
                removed = true;
            }
        }
        Ok(removed)
    }

    async fn load(&mut self, mut each: impl FnMut(Uplink)) -> Result<Unreadable, PersistError<F::Error>> {
        let mut buf = [0u8; RECORD_BUFFER];
        let mut seen: Vec<EventKey, DEDUP_KEYS> = Vec::new();
        let mut unreadable = Unreadable::default();
        let mut records = self.queue.iter().await.map_err(persist_error)?;
        while let Some(record) = records.next(&mut buf).await.map_err(persist_error)? {
            let Ok(uplink) = decode_uplink(&record) else {
                // It passed the CRC, so it is what some firmware wrote, in a format this one
                // cannot read: it can never be sent, and would fill the log for good.
                record.pop().await.map_err(persist_error)?;
                unreadable.undecodable = unreadable.undecodable.saturating_add(1);
                continue;
            };
            let key = EventKey::of(&uplink.header);
            if seen.contains(&key) {
                record.pop().await.map_err(persist_error)?;
                unreadable.duplicates = unreadable.duplicates.saturating_add(1);
                continue;
            }
            // Beyond DEDUP_KEYS records duplicates can no longer be told apart; the device
            // takes only as many alarms as it has room for anyway.
            let _ = seen.push(key);
            each(uplink);
        }
        Ok(unreadable)
    }
}
