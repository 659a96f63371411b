//! The device's outbox: every event stays here until the gateway's receipt for its
//! `(boot, seq)` arrives (docs/architecture.md, contract 1), and alarms are never dropped to
//! make room (contract 4).
//!
//! # Capacity policy
//!
//! The outbox holds `CAP` entries (default [`OUTBOX_CAPACITY`] = 48). Telemetry may use at
//! most `TELEMETRY_MAX` of them (default [`TELEMETRY_LIMIT`] = 24), so at least
//! `CAP - TELEMETRY_MAX` slots (24) are always free for alarms however much telemetry piles
//! up during an outage.
//!
//! * New telemetry when telemetry is at its limit or the outbox is full: the *oldest*
//!   telemetry entry is dropped (counted in [`Outbox::events_dropped`]).
//! * New telemetry when the outbox is full of alarms only: the new event is dropped (counted).
//! * New alarm when the outbox is full: the oldest telemetry entry makes room (counted).
//! * New alarm when the outbox holds `CAP` unreceipted alarms and nothing else:
//!   [`OutboxError::FullOfAlarms`]. The device core then keeps the alarm, numbered, in a
//!   small backlog (`device::ALARM_BACKLOG` = 8) that moves into the outbox, in order, as
//!   receipts free slots; only beyond that (56 unreceipted alarms) does it report
//!   `DeviceError::AlarmNotQueued` and count the loss (reported in heartbeats as dropped).
//!   Reaching it needs 56 alarms with not one receipt in between, i.e. a long outage and
//!   a resident pressing again and again; the gateway joins repeats into the open alert,
//!   which the first of them already raised. Presses are never coalesced: each one is its
//!   own `(boot, seq)`.
//!
//! # Sending order and retransmission
//!
//! Alarms go before telemetry, each class in sequence order. An entry sent and not
//! receipted is sent again, byte-identical (same header, same body, same encoding), after
//! [`retransmit_timeout_ms`]: 5 s doubling per attempt up to 60 s. After a reconnect every
//! unreceipted entry is due at once ([`Outbox::requeue_all`]).

use heapless::Vec;
use protocol::{Uplink, UplinkBody};

/// Entries the outbox holds.
pub const OUTBOX_CAPACITY: usize = 48;
/// Most entries telemetry may occupy; the rest is reserved for alarms.
pub const TELEMETRY_LIMIT: usize = 24;
/// First retransmission timeout.
pub const RETRANSMIT_BASE_MS: u64 = 5_000;
/// Longest retransmission timeout.
pub const RETRANSMIT_MAX_MS: u64 = 60_000;

/// Time to wait for a receipt after the `attempts`-th transmission before sending again:
/// 5 s, 10 s, 20 s, 40 s, then 60 s. Backing off keeps a slow gateway from being flooded.
pub fn retransmit_timeout_ms(attempts: u8) -> u64 {
    let doublings = u32::from(attempts.saturating_sub(1)).min(16);
    RETRANSMIT_BASE_MS
        .saturating_mul(1u64 << doublings)
        .min(RETRANSMIT_MAX_MS)
}

/// Why an event could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// Every slot holds an unreceipted alarm; the new alarm was not queued.
    #[error("outbox is full of unreceipted alarms")]
    FullOfAlarms,
}

/// What happened to a queued event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued without displacing anything.
    Stored,
    /// Queued; the oldest telemetry entry (this sequence number) was dropped to make room.
    DroppedOldest { seq: u32 },
    /// Telemetry only: the outbox is full of alarms, so this new event was dropped.
    DroppedNew,
}

/// One queued event and its transmission state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uplink: Uplink,
    /// When it was last handed to the network, if since the last (re)connect.
    pub sent_at_ms: Option<u64>,
    /// Transmissions since the last (re)connect.
    pub attempts: u8,
}

impl Entry {
    fn is_alarm(&self) -> bool {
        self.uplink.body.is_alarm()
    }

    /// When this entry should next go out, `None` if never since the last reconnect (now).
    fn due_at(&self) -> Option<u64> {
        self.sent_at_ms
            .map(|sent| sent.saturating_add(retransmit_timeout_ms(self.attempts)))
    }

    fn is_due(&self, now_ms: u64) -> bool {
        self.due_at().is_none_or(|due| now_ms >= due)
    }
}

/// Bounded, heap-free outbox. Entries are kept in insertion order, which is sequence
/// order because the device core numbers events as it queues them.
#[derive(Debug, Clone)]
pub struct Outbox<const CAP: usize = OUTBOX_CAPACITY, const TELEMETRY_MAX: usize = TELEMETRY_LIMIT> {
    entries: Vec<Entry, CAP>,
    events_dropped: u32,
}

impl<const CAP: usize, const TELEMETRY_MAX: usize> Default for Outbox<CAP, TELEMETRY_MAX> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CAP: usize, const TELEMETRY_MAX: usize> Outbox<CAP, TELEMETRY_MAX> {
    pub const fn new() -> Self {
        const { assert!(TELEMETRY_MAX < CAP, "some slots must be reserved for alarms") };
        Self {
            entries: Vec::new(),
            events_dropped: 0,
        }
    }

    /// Queues a new event (see the module docs for what gets dropped when full).
    pub fn push(&mut self, uplink: Uplink) -> Result<Queued, OutboxError> {
        let alarm = uplink.body.is_alarm();
        let mut outcome = Queued::Stored;
        let needs_room = if alarm {
            self.entries.is_full()
        } else {
            self.entries.is_full() || self.telemetry_len() >= TELEMETRY_MAX
        };
        if needs_room {
            match self.drop_oldest_telemetry() {
                Some(seq) => outcome = Queued::DroppedOldest { seq },
                None if alarm => return Err(OutboxError::FullOfAlarms),
                None => {
                    self.events_dropped = self.events_dropped.saturating_add(1);
                    return Ok(Queued::DroppedNew);
                }
            }
        }
        let entry = Entry {
            uplink,
            sent_at_ms: None,
            attempts: 0,
        };
        match self.entries.push(entry) {
            Ok(()) => Ok(outcome),
            // Unreachable: room was made above. Report it rather than panic.
            Err(rejected) if rejected.is_alarm() => Err(OutboxError::FullOfAlarms),
            Err(_) => {
                self.events_dropped = self.events_dropped.saturating_add(1);
                Ok(Queued::DroppedNew)
            }
        }
    }

    fn drop_oldest_telemetry(&mut self) -> Option<u32> {
        let index = self.entries.iter().position(|e| !e.is_alarm())?;
        let removed = self.entries.remove(index);
        self.events_dropped = self.events_dropped.saturating_add(1);
        Some(removed.uplink.header.seq)
    }

    /// The index of the entry that should go out next at `now_ms`: due alarms first, then
    /// due telemetry, each in sequence order.
    fn next_due_index(&self, now_ms: u64) -> Option<usize> {
        let due = |want_alarm: bool| {
            self.entries
                .iter()
                .position(|e| e.is_alarm() == want_alarm && e.is_due(now_ms))
        };
        due(true).or_else(|| due(false))
    }

    /// The next uplink to transmit at `now_ms`, if any is due; marks it sent. The caller
    /// publishes it; if publishing fails, the retransmission timer sends it again.
    pub fn take_due(&mut self, now_ms: u64) -> Option<&Uplink> {
        let index = self.next_due_index(now_ms)?;
        let entry = self.entries.get_mut(index)?;
        entry.sent_at_ms = Some(now_ms);
        entry.attempts = entry.attempts.saturating_add(1);
        Some(&entry.uplink)
    }

    /// Whether anything is due for (re)transmission at `now_ms`.
    pub fn has_due(&self, now_ms: u64) -> bool {
        self.next_due_index(now_ms).is_some()
    }

    /// The earliest time something becomes due (`Some(0)` if something is due already).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.due_at().unwrap_or(0)).min()
    }

    /// Applies a receipt: removes the entries of `boot` named in `seqs`, calling `removed`
    /// for each. A receipt for another boot, an unknown seq or a duplicate receipt removes
    /// nothing. Returns how many entries were removed.
    pub fn receipt(&mut self, boot: u32, seqs: &[u32], mut removed: impl FnMut(&Uplink)) -> usize {
        let before = self.entries.len();
        self.entries.retain(|entry| {
            let hit = entry.uplink.header.boot == boot && seqs.contains(&entry.uplink.header.seq);
            if hit {
                removed(&entry.uplink);
            }
            !hit
        });
        before.saturating_sub(self.entries.len())
    }

    /// After a reconnect: everything unreceipted is due again now, backoff restarted.
    pub fn requeue_all(&mut self) {
        for entry in &mut self.entries {
            entry.sent_at_ms = None;
            entry.attempts = 0;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn alarm_len(&self) -> usize {
        self.entries.iter().filter(|e| e.is_alarm()).count()
    }

    pub fn telemetry_len(&self) -> usize {
        self.entries.len().saturating_sub(self.alarm_len())
    }

    /// Telemetry events dropped since boot because the outbox was full.
    pub fn events_dropped(&self) -> u32 {
        self.events_dropped
    }

    /// Whether any queued body matches `predicate`.
    pub fn any(&self, predicate: impl Fn(&UplinkBody) -> bool) -> bool {
        self.entries.iter().any(|e| predicate(&e.uplink.body))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{AlarmKind, SensorState, UplinkHeader, encode_uplink};

    fn uplink(seq: u32, body: UplinkBody) -> Uplink {
        Uplink::new(
            UplinkHeader {
                boot: 7,
                seq,
                device_time_ms: None,
            },
            body,
        )
    }

    fn alarm(seq: u32) -> Uplink {
        uplink(seq, UplinkBody::Alarm(AlarmKind::PendantPress))
    }

    fn telemetry(seq: u32) -> Uplink {
        uplink(
            seq,
            UplinkBody::SensorChange {
                input: 1,
                state: SensorState::DoorOpen,
            },
        )
    }

    fn seqs<const C: usize, const T: usize>(outbox: &Outbox<C, T>) -> std::vec::Vec<u32> {
        outbox.iter().map(|e| e.uplink.header.seq).collect()
    }

    fn drain_due<const C: usize, const T: usize>(outbox: &mut Outbox<C, T>, now: u64) -> std::vec::Vec<u32> {
        let mut out = std::vec::Vec::new();
        while let Some(u) = outbox.take_due(now) {
            out.push(u.header.seq);
        }
        out
    }

    #[test]
    fn telemetry_limit_drops_oldest_telemetry_and_counts() {
        let mut outbox: Outbox<8, 4> = Outbox::new();
        for seq in 0..4 {
            assert_eq!(outbox.push(telemetry(seq)), Ok(Queued::Stored));
        }
        assert_eq!(outbox.push(telemetry(4)), Ok(Queued::DroppedOldest { seq: 0 }));
        assert_eq!(seqs(&outbox), [1, 2, 3, 4]);
        assert_eq!(outbox.events_dropped(), 1);
    }

    #[test]
    fn alarms_are_never_dropped_and_displace_oldest_telemetry_when_full() {
        let mut outbox: Outbox<6, 3> = Outbox::new();
        for seq in 0..3 {
            outbox.push(telemetry(seq)).unwrap();
        }
        for seq in 3..6 {
            assert_eq!(outbox.push(alarm(seq)), Ok(Queued::Stored));
        }
        // Full: the next alarm evicts telemetry 0, then 1, then 2.
        assert_eq!(outbox.push(alarm(6)), Ok(Queued::DroppedOldest { seq: 0 }));
        assert_eq!(outbox.push(alarm(7)), Ok(Queued::DroppedOldest { seq: 1 }));
        assert_eq!(outbox.push(alarm(8)), Ok(Queued::DroppedOldest { seq: 2 }));
        assert_eq!(outbox.alarm_len(), 6);
        // Full of alarms: new telemetry is dropped, a new alarm is refused with a typed error.
        assert_eq!(outbox.push(telemetry(9)), Ok(Queued::DroppedNew));
        assert_eq!(outbox.push(alarm(10)), Err(OutboxError::FullOfAlarms));
        assert_eq!(seqs(&outbox), [3, 4, 5, 6, 7, 8]);
        assert_eq!(outbox.events_dropped(), 4);
    }

    #[test]
    fn alarm_reserve_survives_a_telemetry_flood() {
        let mut outbox: Outbox = Outbox::new();
        for seq in 0..1_000 {
            outbox.push(telemetry(seq)).unwrap();
        }
        assert_eq!(outbox.telemetry_len(), TELEMETRY_LIMIT);
        for seq in 1_000..1_000 + (OUTBOX_CAPACITY - TELEMETRY_LIMIT) as u32 {
            assert_eq!(outbox.push(alarm(seq)), Ok(Queued::Stored));
        }
        assert_eq!(outbox.len(), OUTBOX_CAPACITY);
        assert_eq!(outbox.events_dropped(), 1_000 - TELEMETRY_LIMIT as u32);
    }

    #[test]
    fn sends_alarms_first_then_telemetry_each_in_seq_order() {
        let mut outbox: Outbox<8, 4> = Outbox::new();
        outbox.push(telemetry(0)).unwrap();
        outbox.push(alarm(1)).unwrap();
        outbox.push(telemetry(2)).unwrap();
        outbox.push(alarm(3)).unwrap();
        outbox
            .push(uplink(4, UplinkBody::AlarmCancelled { alarm_seq: 3 }))
            .unwrap();
        assert_eq!(drain_due(&mut outbox, 0), [1, 3, 4, 0, 2]);
        assert!(!outbox.has_due(0));
    }

    #[test]
    fn retransmits_after_timeout_with_backoff_byte_identical() {
        let mut outbox: Outbox<8, 4> = Outbox::new();
        outbox.push(alarm(0)).unwrap();
        let mut first = [0u8; 128];
        let first = encode_uplink(outbox.take_due(1_000).unwrap(), &mut first)
            .unwrap()
            .to_vec();
        assert_eq!(outbox.next_deadline_ms(), Some(6_000));
        assert!(outbox.take_due(5_999).is_none());
        let mut again = [0u8; 128];
        let again = encode_uplink(outbox.take_due(6_000).unwrap(), &mut again)
            .unwrap()
            .to_vec();
        assert_eq!(first, again);
        // Second retransmission waits 10 s, then 20 s, 40 s and 60 s at most.
        assert_eq!(outbox.next_deadline_ms(), Some(16_000));
        assert!(outbox.take_due(16_000).is_some());
        assert_eq!(outbox.next_deadline_ms(), Some(36_000));
        assert_eq!(retransmit_timeout_ms(4), 40_000);
        assert_eq!(retransmit_timeout_ms(5), 60_000);
        assert_eq!(retransmit_timeout_ms(200), 60_000);
    }

    #[test]
    fn reconnect_makes_everything_unreceipted_due_again() {
        let mut outbox: Outbox<8, 4> = Outbox::new();
        outbox.push(telemetry(0)).unwrap();
        outbox.push(alarm(1)).unwrap();
        assert_eq!(drain_due(&mut outbox, 0), [1, 0]);
        assert_eq!(drain_due(&mut outbox, 100), [] as [u32; 0]);
        outbox.requeue_all();
        assert_eq!(outbox.next_deadline_ms(), Some(0));
        assert_eq!(drain_due(&mut outbox, 100), [1, 0]);
    }

    #[test]
    fn receipts_remove_only_matching_boot_and_seq_and_duplicates_are_harmless() {
        let mut outbox: Outbox<8, 4> = Outbox::new();
        for seq in 0..4 {
            outbox
                .push(if seq % 2 == 0 { alarm(seq) } else { telemetry(seq) })
                .unwrap();
        }
        let mut removed = std::vec::Vec::new();
        // Another boot: ignored.
        assert_eq!(outbox.receipt(6, &[0, 1], |u| removed.push(u.header.seq)), 0);
        assert_eq!(outbox.receipt(7, &[0, 3, 99], |u| removed.push(u.header.seq)), 2);
        assert_eq!(removed, [0, 3]);
        // The same receipt again (the gateway resends on duplicates): nothing more happens.
        assert_eq!(outbox.receipt(7, &[0, 3], |_| panic!("already removed")), 0);
        assert_eq!(seqs(&outbox), [1, 2]);
        assert_eq!(outbox.receipt(7, &[], |_| ()), 0);
    }

    #[test]
    fn duplicate_transmissions_keep_the_entry_until_receipted() {
        let mut outbox: Outbox<8, 4> = Outbox::new();
        outbox.push(alarm(0)).unwrap();
        for round in 0..5u64 {
            let now = round * RETRANSMIT_MAX_MS;
            assert_eq!(outbox.take_due(now).map(|u| u.header.seq), Some(0));
        }
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.receipt(7, &[0], |_| ()), 1);
        assert!(outbox.is_empty());
        assert_eq!(outbox.next_deadline_ms(), None);
    }
}
