//! [`BootCounter`] in NOR flash, with `sequential-storage`'s map.

use core::fmt::Debug;
use core::future::Future;
use core::ops::Range;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embedded_storage_async::nor_flash::NorFlash;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapStorage};

use super::PersistError;
use super::flash::{BadRange, persist_error};
use crate::boot::BootCounter;

/// The one key the map holds.
const BOOT_KEY: u8 = 0;
/// A key and a `u32`, rounded up to any write size a NOR flash is likely to have.
const ITEM_BUFFER: usize = 32;

/// The boot counter as one value in a `sequential-storage` map over its own range of erase
/// pages (at least two; not the alarm log's). Every store writes a new record and the old one
/// stays valid until the new one is complete (CRC), so a power cut during a store leaves the
/// old value: the boot being stored was never handed out, so no boot is ever used twice.
///
/// [`BootCounter`] is blocking; the flash driver's futures are polled to completion here, which
/// suits drivers that finish when polled (a blocking NVMC behind an async adapter, or a DMA
/// driver that checks its registers when polled).
pub struct FlashBootCounter<F: NorFlash> {
    map: MapStorage<u8, F, Cache<Uncached, Uncached, Uncached, u8>>,
}

impl<F: NorFlash> Debug for FlashBootCounter<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashBootCounter").finish_non_exhaustive()
    }
}

impl<F: NorFlash> FlashBootCounter<F> {
    /// A counter over `range` of `flash`; an erased range is a counter at 0 (first boot: 1).
    pub fn new(flash: F, range: Range<u32>) -> Result<Self, BadRange> {
        if range.end.saturating_sub(range.start) < 2 * F::ERASE_SIZE as u32 {
            return Err(BadRange);
        }
        let config = MapConfig::try_new(range).map_err(|_| BadRange)?;
        Ok(Self {
            map: MapStorage::new(flash, config, Cache::new_uncached()),
        })
    }

    /// Gives the flash back.
    pub fn release(self) -> F {
        self.map.destroy().0
    }

    /// The value last stored (0 if none).
    pub fn stored(&mut self) -> Result<u32, PersistError<F::Error>>
    where
        F::Error: Debug,
    {
        let mut buf = [0u8; ITEM_BUFFER];
        let stored = complete(self.map.fetch_item::<u32>(&mut buf, &BOOT_KEY)).map_err(persist_error)?;
        Ok(stored.unwrap_or(0))
    }

    fn store(&mut self, value: u32) -> Result<(), PersistError<F::Error>>
    where
        F::Error: Debug,
    {
        let mut buf = [0u8; ITEM_BUFFER];
        complete(self.map.store_item(&mut buf, &BOOT_KEY, &value)).map_err(persist_error)
    }
}

impl<F: NorFlash> BootCounter for FlashBootCounter<F>
where
    F::Error: Debug,
{
    type Error = PersistError<F::Error>;

    fn load_and_increment(&mut self) -> Result<u32, Self::Error> {
        let next = self.stored()?.checked_add(1).ok_or(PersistError::Exhausted)?;
        self.store(next)?;
        Ok(next)
    }

    fn raise_to(&mut self, floor: u32) -> Result<u32, Self::Error> {
        let stored = self.stored()?;
        if floor <= stored {
            return Ok(stored);
        }
        self.store(floor)?;
        Ok(floor)
    }
}

/// Polls `future` until it is ready.
fn complete<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}
