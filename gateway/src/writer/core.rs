//! The committer's synchronous core: applies a batch of publishes, a timer tick or an
//! operator action to the store and the alert engine in ONE write transaction, so a
//! committed alarm never lacks its alert. Blocking (redb fsync): run it off the async
//! threads. On any store error the caller rebuilds the engine from the store before a
//! retry: [`Core::restore`], or [`Core::open`] on a reopened store after an I/O fault.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{DeviceId, DownlinkBody, MAX_RECEIPT_SEQS, Presence, UplinkBody};

use crate::alerts::{AlertEngine, Effect, EngineConfig, EngineError, EngineInput, ResidentRules, complete_follow_up};
use crate::domain::{
    AlertChange, AlertId, Assignment, CallOutcome, DeviceKind, DeviceRecord, EventBody, EventKey, OnlineState,
    RejectReason, Resident, ResidentId, StoredEvent, Timestamp,
};
use crate::ingest::classify::{Classified, Reject, classify};
use crate::reports::apply::{ImportCounts, RegisterChange, apply_register};
use crate::reports::import::LineError;
use crate::store::{InsertOutcome, NewEvent, Store, StoreError, WriteStore, WriteTxn};

/// Why an operator action (or a register change) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the action changed nothing on alert {0}")]
    NoChange(AlertId),
    /// The alert's resident has no responder at this place in the list (or no resident).
    #[error("alert {alert} has no responder number {index} (counted from 0)")]
    NoSuchResponder { alert: AlertId, index: usize },
    #[error("the gateway is shutting down")]
    Stopped,
    /// The store is down (a disk fault) and being reopened; /healthz says why.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// A change to the device register's assignments, applied by the committer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    /// Refused with `StoreError::OverlappingAssignment` if it overlaps another.
    Assign(Assignment),
    /// Ends the assignment covering `at` (`StoreError::NoActiveAssignment` if none).
    End { device: DeviceId, at: Timestamp },
}

/// One received publish as the core sees it. The MQTT client's own type (needed for the
/// PUBACK) stays at the edge, so the core can be fed from tests, tools or another transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub topic: Bytes,
    pub payload: Bytes,
    /// The broker delivered it from its retained store, not as it was published.
    pub retained: bool,
    /// Gateway time of arrival: the events' `received_at`.
    pub received_at: Timestamp,
}

/// What a committed transaction asks the shell to do, in this order: ack, receipt,
/// downlink, broadcast.
#[derive(Debug, Default)]
pub struct Committed {
    pub receipts: Vec<(DeviceId, DownlinkBody)>,
    pub downlinks: Vec<(DeviceId, DownlinkBody)>,
    /// Every alert change of the transaction, numbered in the store's change log.
    pub alerts: Vec<AlertChange>,
    /// Events newly stored, conflicting copies included.
    pub stored: u64,
    pub duplicates: u64,
    /// Of `stored`, events whose key was already taken by different content (the device
    /// reused keys): stored as copies, alerted, and the device sent a `BootFloor`.
    pub key_conflicts: u64,
    pub rejected: Vec<RejectReason>,
    pub unregistered: u64,
    /// Uplinks whose device time was outside the protocol's range (taken as unknown).
    pub device_time_out_of_range: u64,
    /// Uplinks on the alarm topic that were not alarms (stored all the same).
    pub off_lane: u64,
}

/// The store plus the engine it feeds. The engine has exactly one owner: this.
///
/// Works on any [`WriteStore`]: redb (the default) or PostgreSQL.
#[derive(Debug)]
pub struct Core<S = Arc<Store>> {
    store: S,
    engine: AlertEngine,
    engine_config: EngineConfig,
    /// Test hook: fail this many ingest commits (after doing all the work) before succeeding.
    #[cfg(test)]
    pub(crate) fail_next_commits: u32,
    /// Test hook: a batch holding a publish with this payload fails (after doing all the
    /// work) every time, as a poison message would: with an encode error, or a panic.
    #[cfg(test)]
    pub(crate) poison: Option<(Vec<u8>, PoisonKind)>,
}

/// How the [`Core::poison`] test hook fails.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoisonKind {
    EncodeError,
    Panic,
}

impl<S: WriteStore> Core<S> {
    /// Rebuilds the engine from what the store holds.
    pub fn open(store: S, engine_config: EngineConfig, now: Timestamp) -> Result<Self, OperatorError> {
        let engine = restore_engine(&store, &engine_config, now)?;
        Ok(Self {
            store,
            engine,
            engine_config,
            #[cfg(test)]
            fail_next_commits: 0,
            #[cfg(test)]
            poison: None,
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// For the store's own work between transactions (the writer lease, the change log).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn engine(&self) -> &AlertEngine {
        &self.engine
    }

    /// Throws away in-memory engine state that a failed commit left ahead of the store.
    pub fn restore(&mut self, now: Timestamp) -> Result<(), OperatorError> {
        self.engine = restore_engine(&self.store, &self.engine_config, now)?;
        Ok(())
    }

    /// The test hooks, to carry over when the committer rebuilds or reopens the core.
    #[cfg(test)]
    pub(crate) fn test_hooks(&self) -> (u32, Option<(Vec<u8>, PoisonKind)>) {
        (self.fail_next_commits, self.poison.clone())
    }

    #[cfg(test)]
    pub(crate) fn set_test_hooks(&mut self, hooks: (u32, Option<(Vec<u8>, PoisonKind)>)) {
        (self.fail_next_commits, self.poison) = hooks;
    }

    pub fn open_alert_count(&self) -> usize {
        self.engine.open_alerts().count()
    }

    /// Classifies, stores and evaluates a batch of publishes, then commits durably.
    ///
    /// Three passes: classify everything (and look up each device once), store the batch's
    /// events in one go (which tells new from duplicate), then let the device records and the
    /// engine see the publishes in arrival order.
    pub fn ingest(&mut self, batch: &[Received], now: Timestamp) -> Result<Committed, StoreError> {
        let mut txn = self.store.begin_txn()?;
        let mut out = Committed::default();
        let classified: Vec<Classified> = batch
            .iter()
            .map(|incoming| classify(&incoming.topic, &incoming.payload))
            .collect();
        let BatchDevices {
            mut devices,
            unreadable: unreadable_devices,
            residents,
        } = BatchDevices::read(&mut txn, batch, &classified)?;
        let mut receipts = Receipts::default();
        let mut events: Vec<NewEvent> = Vec::with_capacity(batch.len());
        let mut steps: Vec<Step> = Vec::with_capacity(batch.len());
        for (incoming, classified) in batch.iter().zip(classified) {
            match classified {
                Classified::Event {
                    device,
                    version,
                    header,
                    body,
                    off_lane,
                } => {
                    if off_lane {
                        tracing::warn!(%device, boot = header.boot, seq = header.seq, "a non-alarm uplink came on the alarm topic; stored as usual");
                        out.off_lane += 1;
                    }
                    let (record, created) = device_entry(&mut devices, device);
                    if std::mem::take(created) {
                        tracing::info!(%device, "first event from a device not in the register");
                    }
                    // In arrival order: a boot at or above the floor clears a boot-reuse flag.
                    record.note_event_boot(header.boot);
                    let boot_reused_since = record.boot_reuse.map(|reuse| reuse.since);
                    receipts.add(device, header.boot, header.seq);
                    steps.push(Step::Event { version });
                    events.push(NewEvent {
                        event: StoredEvent {
                            key: EventKey {
                                device,
                                boot: header.boot,
                                seq: header.seq,
                            },
                            resident: residents.get(&device).cloned().flatten(),
                            received_at: incoming.received_at,
                            device_time: device_time(device, header.device_time_ms, &mut out),
                            protocol_version: version,
                            body,
                        },
                        payload: incoming.payload.to_vec(),
                        boot_reused_since,
                    });
                }
                Classified::Presence { device, presence } => {
                    let (record, _) = device_entry(&mut devices, device);
                    // A retained presence is the broker replaying old news: never a boot that
                    // went back now.
                    let boot_went_back = match presence {
                        Presence::Online { boot } if !incoming.retained => record
                            .note_online_boot(boot, incoming.received_at)
                            .map(|min_boot| (boot, min_boot)),
                        Presence::Online { .. } | Presence::Offline => None,
                    };
                    let resident = residents.get(&device).cloned().flatten();
                    steps.push(Step::Presence {
                        device,
                        presence,
                        resident,
                        at: incoming.received_at,
                        retained: incoming.retained,
                        boot_went_back,
                    });
                }
                Classified::Reject(reject) => {
                    let topic = String::from_utf8_lossy(incoming.topic.get(..128).unwrap_or(&incoming.topic));
                    tracing::warn!(%topic, reason = reject.reason.as_str(), detail = %reject.detail, "publish quarantined");
                    txn.quarantine(&reject.to_record(&incoming.topic, &incoming.payload, incoming.received_at))?;
                    out.rejected.push(reject.reason);
                }
            }
        }
        let outcomes = txn.insert_events(&events)?;
        let mut events = events.into_iter().map(|new| new.event).zip(outcomes);
        // (device, boot floor) for devices seen reusing keys in this batch.
        let mut boot_floors: Vec<(DeviceId, u32)> = Vec::new();
        // The engine sees the inputs in arrival order; the records do not depend on it.
        let mut inputs = Vec::with_capacity(steps.len());
        for step in steps {
            match step {
                Step::Event { version } => {
                    let Some((event, outcome)) = events.next() else { break };
                    let device = event.key.device;
                    let Some((record, _)) = devices.get_mut(&device) else {
                        continue;
                    };
                    touch(record, event.received_at, version);
                    let key_conflict = match outcome {
                        InsertOutcome::Duplicate => {
                            out.duplicates += 1;
                            continue;
                        }
                        InsertOutcome::Inserted => None,
                        InsertOutcome::Conflict { copy } => {
                            // A reused key: the new content is stored and alerts like any new
                            // event, and the device is told to move past every boot seen.
                            out.key_conflicts += 1;
                            let min_boot = record.flag_boot_reuse(event.received_at);
                            note_boot_floor(&mut boot_floors, device, min_boot);
                            tracing::warn!(%device, boot = event.key.boot, seq = event.key.seq, copy, min_boot, "key reused with different content; stored as a copy");
                            Some(EngineInput::KeyConflict {
                                device,
                                resident: event.resident.clone(),
                                detail: format!(
                                    "event {} arrived again with different content (stored as copy {copy}); boot floor {min_boot} sent",
                                    event.key
                                ),
                            })
                        }
                    };
                    out.stored += 1;
                    let registered = record.registered;
                    if !registered {
                        out.unregistered += 1;
                    }
                    if let EventBody::Uplink(UplinkBody::Heartbeat(status)) = &event.body {
                        // 0 mV: the device has no reading yet (SPEC.md).
                        if status.battery_mv > 0 {
                            record.battery_mv = Some(status.battery_mv);
                            record.battery_percent = Some(status.battery_percent);
                        }
                        record.firmware = Some(status.firmware);
                        record.heartbeat_interval_s = Some(status.heartbeat_interval_s);
                    }
                    inputs.push(EngineInput::Event {
                        event,
                        device_registered: registered,
                        device_kind: record.kind,
                    });
                    inputs.extend(key_conflict);
                }
                Step::Presence {
                    device,
                    presence,
                    resident,
                    at,
                    retained,
                    boot_went_back,
                } => {
                    let Some((record, _)) = devices.get_mut(&device) else {
                        continue;
                    };
                    let (online, boot) = match presence {
                        Presence::Online { boot } => (true, Some(boot)),
                        Presence::Offline => (false, None),
                    };
                    let state = if online {
                        OnlineState::Online
                    } else {
                        OnlineState::Offline
                    };
                    if retained {
                        // The broker replaying its last word for the device because we
                        // (re)subscribed: old news, not a sign of life. It never refreshes
                        // liveness (last seen, no-comms timers) and sends no time sync (a
                        // resubscribe would otherwise sync every device at once); it only fills
                        // a presence we know nothing about, for display. A device that really
                        // went away is caught by its no-comms timer.
                        if record.online == OnlineState::Unknown {
                            record.online = state;
                        }
                        tracing::debug!(%device, online, "retained presence: not taken as liveness");
                        continue;
                    }
                    record.online = state;
                    if online {
                        record.last_seen = Some(record.last_seen.map_or(at, |seen| seen.max(at)));
                    }
                    tracing::debug!(%device, online, "presence");
                    if online {
                        // Devices start without a clock and reconnect with a clean session:
                        // give them the time on every connect (after the commit, like all
                        // downlinks, so a crash cannot send it twice for one presence).
                        if let Ok(unix_ms) = u64::try_from(now.as_millis()) {
                            out.downlinks.push((device, DownlinkBody::TimeSync { unix_ms }));
                        }
                    }
                    let key_conflict = boot_went_back.map(|(boot, min_boot)| {
                        tracing::warn!(%device, boot, min_boot, "online with a boot below one already seen");
                        note_boot_floor(&mut boot_floors, device, min_boot);
                        EngineInput::KeyConflict {
                            device,
                            resident: resident.clone(),
                            detail: format!(
                                "online with boot {boot}, below boot {} already seen; boot floor {min_boot} sent",
                                min_boot.saturating_sub(1)
                            ),
                        }
                    });
                    inputs.push(EngineInput::Presence {
                        device,
                        resident,
                        online,
                        boot,
                        at,
                    });
                    inputs.extend(key_conflict);
                }
            }
        }
        out.downlinks.extend(
            boot_floors
                .into_iter()
                .map(|(device, min_boot)| (device, DownlinkBody::BootFloor { min_boot })),
        );
        let effects = self.engine.handle_batch(inputs, now);
        let writable: Vec<&DeviceRecord> = devices
            .values()
            .map(|(record, _)| record)
            .filter(|record| !unreadable_devices.contains(&record.id))
            .collect();
        txn.put_devices(&writable)?;
        out.receipts = receipts.into_downlinks();
        persist_effects(&mut self.engine, &mut txn, effects, now, &mut out)?;
        #[cfg(test)]
        if let Some((payload, kind)) = &self.poison
            && batch
                .iter()
                .any(|incoming| incoming.payload.as_ref() == payload.as_slice())
        {
            match kind {
                PoisonKind::EncodeError => {
                    return Err(StoreError::Encode {
                        table: "events",
                        detail: "injected poison".into(),
                    });
                }
                PoisonKind::Panic => panic!("injected poison"),
            }
        }
        #[cfg(test)]
        if self.fail_next_commits > 0 {
            self.fail_next_commits -= 1;
            drop(txn);
            return Err(StoreError::Io(std::io::Error::other("injected commit failure")));
        }
        txn.commit().into_result()?;
        Ok(out)
    }

    /// Keeps a publish that could not be processed (a poison message) in the quarantine,
    /// with why, in its own transaction: after this it may be acked.
    pub fn quarantine_unprocessable(&mut self, received: &Received, detail: &str) -> Result<(), StoreError> {
        let reject = Reject {
            reason: RejectReason::ProcessingFailed,
            detail: detail.to_owned(),
        };
        let mut txn = self.store.begin_txn()?;
        txn.quarantine(&reject.to_record(&received.topic, &received.payload, received.received_at))?;
        txn.commit().into_result()
    }

    /// Fires due engine timers (no-comms, bed, movement, escalation).
    pub fn tick(&mut self, now: Timestamp) -> Result<Committed, StoreError> {
        let effects = self.engine.tick(now);
        self.commit_effects(effects, now)
    }

    /// Runs an operator action on the engine and commits what it changed at `now`.
    pub fn operator(
        &mut self,
        now: Timestamp,
        action: impl FnOnce(&mut AlertEngine) -> Result<Vec<Effect>, EngineError>,
    ) -> Result<Committed, OperatorError> {
        let effects = action(&mut self.engine)?;
        Ok(self.commit_effects(effects, now)?)
    }

    pub fn set_resident_rules(
        &mut self,
        resident: ResidentId,
        rules: ResidentRules,
        now: Timestamp,
    ) -> Result<Committed, StoreError> {
        let effects = self.engine.set_resident_rules(resident, rules, now);
        self.commit_effects(effects, now)
    }

    fn commit_effects(&mut self, effects: Vec<Effect>, now: Timestamp) -> Result<Committed, StoreError> {
        let txn = self.store.begin_txn()?;
        commit_effects_in(&mut self.engine, txn, effects, now)
    }

    /// Records a call to the responder at `index` in the alert's resident's list, copying
    /// the name the record holds now (a later edit of the list leaves the trail as it was).
    /// The resident is read in the transaction that records the call.
    pub fn record_responder_call(
        &mut self,
        alert: AlertId,
        operator: &str,
        index: usize,
        outcome: CallOutcome,
        now: Timestamp,
    ) -> Result<Committed, OperatorError> {
        let resident = self.engine.open_alert(alert)?.resident.clone();
        let mut txn = self.store.begin_txn()?;
        let responder = match resident {
            Some(resident) => txn
                .resident(&resident)?
                .and_then(|record| record.responders.into_iter().nth(index)),
            None => None,
        }
        .ok_or(OperatorError::NoSuchResponder { alert, index })?;
        let effects = self
            .engine
            .record_responder_call(alert, operator, &responder.name, outcome, now)?;
        Ok(commit_effects_in(&mut self.engine, txn, effects, now)?)
    }

    /// Marks an alert's follow-up done. A resolved alert (the usual case: follow-ups are
    /// promised at resolution) is read from the store, as the engine holds only open ones,
    /// in the transaction that writes it back.
    pub fn follow_up_done(
        &mut self,
        alert: AlertId,
        operator: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<Committed, OperatorError> {
        if self.engine.alert(alert).is_some() {
            return self.operator(now, |engine| engine.follow_up_done(alert, operator, note, now));
        }
        let mut txn = self.store.begin_txn()?;
        let mut stored = txn.alert(alert)?.ok_or(EngineError::UnknownAlert(alert))?;
        complete_follow_up(&mut stored, operator, note, now)?;
        Ok(commit_effects_in(
            &mut self.engine,
            txn,
            vec![Effect::AlertChanged(stored)],
            now,
        )?)
    }

    /// Registers (or re-registers) a device, keeping what ingest learnt about it, and
    /// optionally records its assignment to a resident.
    pub fn register_device(&mut self, record: DeviceRecord, assignment: Option<Assignment>) -> Result<(), StoreError> {
        let mut txn = self.store.begin_txn()?;
        let mut merged = record;
        let known = txn
            .devices(std::slice::from_ref(&merged.id))?
            .into_iter()
            .next()
            .transpose()
            .map_err(StoreError::Unreadable)?
            .flatten();
        if let Some(known) = known {
            merged.firmware = merged.firmware.or(known.firmware);
            merged.protocol_version = merged.protocol_version.or(known.protocol_version);
            merged.last_seen = merged.last_seen.or(known.last_seen);
            merged.battery_mv = merged.battery_mv.or(known.battery_mv);
            merged.battery_percent = merged.battery_percent.or(known.battery_percent);
            merged.heartbeat_interval_s = merged.heartbeat_interval_s.or(known.heartbeat_interval_s);
            merged.highest_boot = merged.highest_boot.max(known.highest_boot);
            merged.boot_reuse = merged.boot_reuse.or(known.boot_reuse);
            if merged.online == OnlineState::Unknown {
                merged.online = known.online;
            }
        }
        txn.put_devices(&[&merged])?;
        if let Some(assignment) = assignment {
            txn.assign(&assignment)?;
        }
        txn.commit().into_result()
    }

    /// Starts an assignment or ends the one covering an instant (the admin API).
    pub fn change_assignment(&mut self, change: AssignmentChange) -> Result<(), StoreError> {
        let mut txn = self.store.begin_txn()?;
        match change {
            AssignmentChange::Assign(assignment) => txn.assign(&assignment)?,
            AssignmentChange::End { device, at } => txn.end_assignment(&device, at)?,
        }
        txn.commit().into_result()
    }

    /// Imports one register file in one transaction (`Ok(Err(line))`: refused, nothing written).
    /// The API records the import in the audit log before asking (`register_api`).
    pub fn import_register(&mut self, change: &RegisterChange) -> Result<Result<ImportCounts, LineError>, StoreError> {
        match apply_register(&mut self.store, change, &[])? {
            Ok((counts, commit)) => {
                commit.into_result()?;
                Ok(Ok(counts))
            }
            Err(line) => Ok(Err(line)),
        }
    }

    /// Creates the resident if the id is free; `false` (nothing written) if it is taken.
    pub fn create_resident(&mut self, resident: &Resident) -> Result<bool, StoreError> {
        let mut txn = self.store.begin_txn()?;
        let created = txn.create_resident(resident)?;
        if created {
            txn.commit().into_result()?;
        }
        Ok(created)
    }

    pub fn put_resident(&mut self, resident: &Resident) -> Result<(), StoreError> {
        let mut txn = self.store.begin_txn()?;
        txn.put_resident(resident)?;
        txn.commit().into_result()
    }
}

/// Persists `effects` into `txn` and commits it if anything was written (an action that
/// changed nothing leaves no transaction behind).
fn commit_effects_in(
    engine: &mut AlertEngine,
    mut txn: impl WriteTxn,
    effects: Vec<Effect>,
    now: Timestamp,
) -> Result<Committed, StoreError> {
    let mut out = Committed::default();
    let wrote = persist_effects(engine, &mut txn, effects, now, &mut out)?;
    if wrote {
        txn.commit().into_result()?;
    }
    Ok(out)
}

/// Writes alerts, their numbered change-log entries and engine state into `txn`; true if
/// anything was written. A change and its log entry share the transaction: both or neither.
fn persist_effects(
    engine: &mut AlertEngine,
    txn: &mut impl WriteTxn,
    effects: Vec<Effect>,
    committed_at: Timestamp,
    out: &mut Committed,
) -> Result<bool, StoreError> {
    let mut wrote = false;
    for effect in effects {
        match effect {
            Effect::AlertChanged(alert) => {
                txn.put_alert(&alert)?;
                let seq = txn.record_alert_change(&alert, committed_at)?;
                wrote = true;
                out.alerts.push(AlertChange {
                    seq,
                    committed_at,
                    alert,
                });
            }
            Effect::Downlink { device, body } => out.downlinks.push((device, body)),
        }
    }
    for (key, value) in engine.take_state_changes() {
        txn.put_engine_state(&key, value.as_deref())?;
        wrote = true;
    }
    Ok(wrote)
}

fn restore_engine(
    store: &impl WriteStore,
    config: &EngineConfig,
    now: Timestamp,
) -> Result<AlertEngine, OperatorError> {
    let next = store
        .max_alert_id()?
        .map_or(AlertId(1), |id| AlertId(id.0.saturating_add(1)));
    let mut engine = AlertEngine::restore(config.clone(), next, store.open_alerts()?, store.engine_state()?, now)?;
    // While the gateway was down nobody heard the devices: count their silence from now,
    // so the whole fleet does not go "offline" before its queued messages are drained.
    engine.restart_silence_timers(now);
    Ok(engine)
}

/// One storable publish of a batch, in arrival order (events' bodies are stored apart).
enum Step {
    Event {
        version: u8,
    },
    Presence {
        device: DeviceId,
        presence: Presence,
        resident: Option<ResidentId>,
        at: Timestamp,
        /// Replayed by the broker on (re)subscription, not sent now.
        retained: bool,
        /// `Online` with a boot below one already seen: (that boot, the floor to send).
        boot_went_back: Option<(u32, u32)>,
    },
}

/// The device's clock reading as a timestamp, or unknown when it is outside the range a
/// working clock can show (`protocol::DEVICE_TIME_MIN_MS..=DEVICE_TIME_MAX_MS`: a clock never
/// set, or garbage). Such a reading is logged and counted, never used: the raw payload keeps
/// the original value on record.
fn device_time(device: DeviceId, device_time_ms: Option<u64>, out: &mut Committed) -> Option<Timestamp> {
    let ms = device_time_ms?;
    if protocol::device_time_accepted(ms) {
        // The range ends far below i64::MAX, so this always converts.
        i64::try_from(ms).ok().map(Timestamp::from_millis)
    } else {
        tracing::warn!(%device, device_time_ms = ms, "device time out of range: stored as unknown");
        out.device_time_out_of_range += 1;
        None
    }
}

/// Every device of a batch as the batch sees it, and each one's resident, read in one call
/// each before the batch is applied (a round trip each on PostgreSQL, not one per publish).
struct BatchDevices {
    /// Each device's record and whether it is new (not in the register).
    devices: HashMap<DeviceId, (DeviceRecord, bool)>,
    /// Devices whose stored record is unreadable: handled as unregistered, never overwritten
    /// (the store keeps listing it for a human).
    unreadable: HashSet<DeviceId>,
    /// Each device's resident at its first publish in the batch: a batch spans milliseconds.
    residents: HashMap<DeviceId, Option<ResidentId>>,
}

impl BatchDevices {
    fn read(txn: &mut impl WriteTxn, batch: &[Received], classified: &[Classified]) -> Result<Self, StoreError> {
        let mut first_seen: Vec<(DeviceId, Timestamp)> = Vec::new();
        let mut seen: HashSet<DeviceId> = HashSet::new();
        for (incoming, classified) in batch.iter().zip(classified) {
            let device = match classified {
                Classified::Event { device, .. } | Classified::Presence { device, .. } => *device,
                Classified::Reject(_) => continue,
            };
            if seen.insert(device) {
                first_seen.push((device, incoming.received_at));
            }
        }
        let ids: Vec<DeviceId> = first_seen.iter().map(|(device, _)| *device).collect();
        let stored = txn.devices(&ids)?;
        let residents = txn.residents_for(&first_seen)?;
        let mut devices = HashMap::with_capacity(ids.len());
        let mut unreadable = HashSet::new();
        for (device, found) in ids.iter().zip(stored) {
            let entry = match found {
                Ok(Some(record)) => (record, false),
                Ok(None) => (DeviceRecord::new(*device, DeviceKind::Other, false), true),
                Err(problem) => {
                    tracing::error!(%device, %problem, "device record unreadable: handled as unregistered, left unchanged");
                    unreadable.insert(*device);
                    (DeviceRecord::new(*device, DeviceKind::Other, false), false)
                }
            };
            devices.insert(*device, entry);
        }
        Ok(Self {
            devices,
            unreadable,
            residents: ids.into_iter().zip(residents).collect(),
        })
    }
}

/// The batch's view of a device (read in [`BatchDevices::read`]; new and unregistered if the
/// store did not answer for it).
fn device_entry(
    devices: &mut HashMap<DeviceId, (DeviceRecord, bool)>,
    device: DeviceId,
) -> (&mut DeviceRecord, &mut bool) {
    let entry = devices
        .entry(device)
        .or_insert_with(|| (DeviceRecord::new(device, DeviceKind::Other, false), true));
    (&mut entry.0, &mut entry.1)
}

/// Records the boot floor to send a device after the commit (the latest per device).
fn note_boot_floor(floors: &mut Vec<(DeviceId, u32)>, device: DeviceId, min_boot: u32) {
    match floors.iter_mut().find(|(known, _)| *known == device) {
        Some(entry) => entry.1 = min_boot,
        None => floors.push((device, min_boot)),
    }
}

fn touch(record: &mut DeviceRecord, at: Timestamp, version: u8) {
    record.last_seen = Some(record.last_seen.map_or(at, |seen| seen.max(at)));
    record.protocol_version = Some(version);
    record.online = OnlineState::Online;
}

/// Sequence numbers to receipt, per device and boot, in first-seen order.
#[derive(Debug, Default)]
struct Receipts {
    order: Vec<(DeviceId, u32)>,
    seqs: HashMap<(DeviceId, u32), Vec<u32>>,
}

impl Receipts {
    fn add(&mut self, device: DeviceId, boot: u32, seq: u32) {
        let seqs = self.seqs.entry((device, boot)).or_insert_with(|| {
            self.order.push((device, boot));
            Vec::new()
        });
        if !seqs.contains(&seq) {
            seqs.push(seq);
        }
    }

    fn into_downlinks(mut self) -> Vec<(DeviceId, DownlinkBody)> {
        let mut out = Vec::new();
        for key in self.order {
            let (device, boot) = key;
            let Some(seqs) = self.seqs.remove(&key) else { continue };
            for chunk in seqs.chunks(MAX_RECEIPT_SEQS) {
                let mut list = heapless::Vec::new();
                for seq in chunk {
                    // A chunk is at most MAX_RECEIPT_SEQS long, so this always fits.
                    let _ = list.push(*seq);
                }
                out.push((device, DownlinkBody::Receipt { boot, seqs: list }));
            }
        }
        out
    }
}

/// Backoff after the n-th consecutive failed commit: doubles from `base`, at most 5 s.
pub fn retry_backoff(base: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(6)).unwrap_or(64);
    (base * factor).min(Duration::from_secs(5).max(base))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Instant;

    use protocol::{AlarmKind, DeviceStatus, FirmwareVersion, MAX_UPLINK_LEN, Uplink, UplinkHeader, encode_uplink};

    use super::*;
    use crate::domain::AlertKind;

    fn dev(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    fn incoming(topic: &str, payload: Vec<u8>, at: i64) -> Received {
        Received {
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            payload: payload.into(),
            retained: false,
            received_at: Timestamp(at),
        }
    }

    fn uplink(device: &str, boot: u32, seq: u32, body: UplinkBody, at: i64) -> Received {
        let mut buf = [0u8; MAX_UPLINK_LEN];
        let message = Uplink::new(
            UplinkHeader {
                boot,
                seq,
                device_time_ms: None,
            },
            body,
        );
        let bytes = encode_uplink(&message, &mut buf).unwrap().to_vec();
        incoming(&format!("tec/v1/dev/{device}/up"), bytes, at)
    }

    /// A plausible heartbeat, for tests of the writer.
    pub(crate) fn heartbeat() -> UplinkBody {
        UplinkBody::Heartbeat(DeviceStatus {
            battery_mv: 2900,
            battery_percent: 80,
            rssi_dbm: -60,
            uptime_s: 10,
            firmware: FirmwareVersion {
                major: 1,
                minor: 2,
                patch: 3,
            },
            heartbeat_interval_s: 300,
            outbox_depth: 0,
            events_dropped: 0,
        })
    }

    fn core() -> (tempfile::TempDir, Core) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in_dir(dir.path()).unwrap());
        let core = Core::open(store, EngineConfig::default(), Timestamp(1_000)).unwrap();
        (dir, core)
    }

    #[test]
    fn batch_stores_once_receipts_all_and_raises_alerts() {
        let (_dir, mut core) = core();
        let batch = vec![
            uplink("pnd-1", 1, 1, heartbeat(), 1_000),
            uplink("pnd-1", 1, 2, UplinkBody::Alarm(AlarmKind::PendantPress), 1_001),
            uplink("pnd-1", 1, 2, UplinkBody::Alarm(AlarmKind::PendantPress), 1_002),
            incoming("tec/v1/dev/pnd-1/up", b"junk".to_vec(), 1_003),
            incoming("tec/v1/dev/pnd-1/down", vec![1, 2], 1_004),
        ];
        let out = core.ingest(&batch, Timestamp(1_010)).unwrap();
        assert_eq!((out.stored, out.duplicates, out.unregistered), (2, 1, 2));
        assert_eq!(out.rejected, vec![RejectReason::Malformed, RejectReason::ForeignTopic]);
        assert_eq!(out.receipts.len(), 1);
        match &out.receipts[0] {
            (device, DownlinkBody::Receipt { boot, seqs }) => {
                assert_eq!(*device, dev("pnd-1"));
                assert_eq!(*boot, 1);
                assert_eq!(seqs.as_slice(), &[1, 2]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(out.alerts.len(), 1);
        assert!(out.alerts[0].unregistered_device);
        let store = core.store().clone();
        assert_eq!(store.event_count().unwrap(), 2);
        assert_eq!(store.quarantine_len().unwrap(), 2);
        assert_eq!(store.open_alerts().unwrap().len(), 1);
        let record = store.device(&dev("pnd-1")).unwrap().unwrap();
        assert!(!record.registered);
        assert_eq!(record.battery_percent, Some(80));
        assert_eq!(record.last_seen, Some(Timestamp(1_002)));
        // Redelivery of the whole batch: nothing new, receipts again.
        let again = core.ingest(&batch, Timestamp(1_020)).unwrap();
        assert_eq!((again.stored, again.duplicates), (0, 3));
        assert_eq!(again.receipts.len(), 1);
        assert!(again.alerts.is_empty());
        assert_eq!(store.event_count().unwrap(), 2);
    }

    #[test]
    fn acknowledge_sends_help_on_the_way_and_survives_restore() {
        let (_dir, mut core) = core();
        let batch = vec![uplink("pnd-2", 1, 1, UplinkBody::Alarm(AlarmKind::Fall), 1_000)];
        let out = core.ingest(&batch, Timestamp(1_000)).unwrap();
        let id = out.alerts[0].id;
        let acked = core
            .operator(Timestamp(2_000), |engine| {
                engine.acknowledge(id, "op-1", Timestamp(2_000))
            })
            .unwrap();
        assert!(
            acked
                .downlinks
                .iter()
                .any(|(d, body)| *d == dev("pnd-2") && matches!(body, DownlinkBody::HelpOnTheWay { .. }))
        );
        core.restore(Timestamp(3_000)).unwrap();
        assert_eq!(core.open_alert_count(), 1);
        let again = core.operator(Timestamp(3_000), |engine| {
            engine.acknowledge(id, "op-1", Timestamp(3_000))
        });
        assert!(matches!(again, Err(OperatorError::Engine(_))));
    }

    #[test]
    fn online_presence_gets_the_time_and_any_help_on_the_way_again() {
        let (_dir, mut core) = core();
        let status = |presence: Presence, at: i64| {
            let mut buf = [0u8; protocol::MAX_STATUS_LEN];
            let bytes = protocol::encode_status(&protocol::StatusMessage::new(presence), &mut buf)
                .unwrap()
                .to_vec();
            incoming("tec/v1/dev/pnd-3/status", bytes, at)
        };
        let out = core
            .ingest(
                &[uplink("pnd-3", 1, 1, UplinkBody::Alarm(AlarmKind::PendantPress), 1_000)],
                Timestamp(1_000),
            )
            .unwrap();
        let id = out.alerts[0].id;
        core.operator(Timestamp(2_000), |engine| {
            engine.acknowledge(id, "op-1", Timestamp(2_000))
        })
        .unwrap();
        core.ingest(&[status(Presence::Offline, 3_000)], Timestamp(3_000))
            .unwrap();
        let back = core
            .ingest(&[status(Presence::Online { boot: 1 }, 9_000)], Timestamp(9_000))
            .unwrap();
        assert_eq!(
            back.downlinks,
            vec![
                (dev("pnd-3"), DownlinkBody::TimeSync { unix_ms: 9_000 }),
                (dev("pnd-3"), DownlinkBody::HelpOnTheWay { alert_ref: id.0 }),
            ]
        );
    }

    fn status_publish(device: &str, presence: Presence, retained: bool, at: i64) -> Received {
        let mut buf = [0u8; protocol::MAX_STATUS_LEN];
        let bytes = protocol::encode_status(&protocol::StatusMessage::new(presence), &mut buf)
            .unwrap()
            .to_vec();
        let mut publish = incoming(&format!("tec/v1/dev/{device}/status"), bytes, at);
        publish.retained = retained;
        publish
    }

    #[test]
    fn retained_presence_is_not_liveness_and_sends_no_time_sync() {
        let (_dir, mut core) = core();
        let store = core.store().clone();
        // A device never heard live: the replay fills its presence for display, nothing more.
        let replay = core
            .ingest(
                &[status_publish("pnd-r1", Presence::Online { boot: 1 }, true, 5_000)],
                Timestamp(5_000),
            )
            .unwrap();
        assert!(replay.downlinks.is_empty(), "{:?}", replay.downlinks);
        assert!(replay.alerts.is_empty());
        let record = store.device(&dev("pnd-r1")).unwrap().unwrap();
        assert_eq!(record.online, OnlineState::Online);
        assert_eq!(record.last_seen, None);
        assert_eq!(
            core.engine().next_deadline(),
            None,
            "a retained presence armed a no-comms timer"
        );

        // Heard live at 6 000, then offline live; a later replay of an old Online changes nothing.
        core.ingest(&[uplink("pnd-r1", 1, 1, heartbeat(), 6_000)], Timestamp(6_000))
            .unwrap();
        core.ingest(
            &[status_publish("pnd-r1", Presence::Offline, false, 7_000)],
            Timestamp(7_000),
        )
        .unwrap();
        let deadline = core.engine().next_deadline();
        let replay = core
            .ingest(
                &[status_publish("pnd-r1", Presence::Online { boot: 1 }, true, 90_000)],
                Timestamp(90_000),
            )
            .unwrap();
        assert!(replay.downlinks.is_empty(), "{:?}", replay.downlinks);
        let record = store.device(&dev("pnd-r1")).unwrap().unwrap();
        assert_eq!(record.last_seen, Some(Timestamp(6_000)));
        assert_eq!(record.online, OnlineState::Offline);
        assert_eq!(core.engine().next_deadline(), deadline);

        // The same presence live: liveness and a time sync.
        let live = core
            .ingest(
                &[status_publish("pnd-r1", Presence::Online { boot: 1 }, false, 95_000)],
                Timestamp(95_000),
            )
            .unwrap();
        assert_eq!(
            live.downlinks,
            vec![(dev("pnd-r1"), DownlinkBody::TimeSync { unix_ms: 95_000 })]
        );
        let record = store.device(&dev("pnd-r1")).unwrap().unwrap();
        assert_eq!(
            (record.online, record.last_seen),
            (OnlineState::Online, Some(Timestamp(95_000)))
        );
    }

    fn uplink_at_device_time(device: &str, seq: u32, device_time_ms: Option<u64>) -> Received {
        let mut buf = [0u8; MAX_UPLINK_LEN];
        let message = Uplink::new(
            UplinkHeader {
                boot: 1,
                seq,
                device_time_ms,
            },
            UplinkBody::Alarm(AlarmKind::PendantPress),
        );
        let bytes = encode_uplink(&message, &mut buf).unwrap().to_vec();
        incoming(&format!("tec/v1/dev/{device}/up"), bytes, 1_000)
    }

    #[test]
    fn device_time_out_of_range_is_unknown_and_counted() {
        let (_dir, mut core) = core();
        let min = protocol::DEVICE_TIME_MIN_MS;
        let max = protocol::DEVICE_TIME_MAX_MS;
        let batch = vec![
            uplink_at_device_time("pnd-t", 1, Some(min)),
            uplink_at_device_time("pnd-t", 2, Some(max)),
            uplink_at_device_time("pnd-t", 3, Some(min - 1)),
            uplink_at_device_time("pnd-t", 4, Some(max + 1)),
            uplink_at_device_time("pnd-t", 5, Some(0)),
            uplink_at_device_time("pnd-t", 6, Some(u64::MAX)),
            uplink_at_device_time("pnd-t", 7, None),
        ];
        let out = core.ingest(&batch, Timestamp(1_000)).unwrap();
        assert_eq!(out.stored, 7, "an odd clock never costs the event");
        assert_eq!(out.device_time_out_of_range, 4);
        let events = core
            .store()
            .events(&crate::store::EventFilter::default())
            .unwrap()
            .into_events();
        let mut times: Vec<(u32, Option<Timestamp>)> = events.iter().map(|e| (e.key.seq, e.device_time)).collect();
        times.sort_by_key(|(seq, _)| *seq);
        let as_ts = |ms: u64| Some(Timestamp::from_millis(i64::try_from(ms).unwrap()));
        assert_eq!(
            times,
            vec![
                (1, as_ts(min)),
                (2, as_ts(max)),
                (3, None),
                (4, None),
                (5, None),
                (6, None),
                (7, None)
            ]
        );
    }

    fn status_of(device: &str, presence: Presence, at: i64) -> Received {
        status_publish(device, presence, false, at)
    }

    fn receipted(out: &Committed, device: &str, boot: u32) -> Vec<u32> {
        out.receipts
            .iter()
            .filter_map(|(d, body)| match body {
                DownlinkBody::Receipt { boot: b, seqs } if *d == dev(device) && *b == boot => Some(seqs.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn boot_floors(out: &Committed) -> Vec<u32> {
        out.downlinks
            .iter()
            .filter_map(|(_, body)| match body {
                DownlinkBody::BootFloor { min_boot } => Some(*min_boot),
                _ => None,
            })
            .collect()
    }

    fn kinds(out: &Committed) -> Vec<AlertKind> {
        out.alerts.iter().map(|alert| alert.kind).collect()
    }

    #[test]
    fn same_key_and_value_in_other_bytes_is_a_duplicate() {
        let (_dir, mut core) = core();
        let first = uplink("pnd-1", 1, 1, UplinkBody::Alarm(AlarmKind::PendantPress), 1_000);
        core.ingest(std::slice::from_ref(&first), Timestamp(1_000)).unwrap();
        // The seq as an over-long varint: a different encoding of the same event.
        let mut bytes = first.payload.to_vec();
        assert_eq!(bytes[2], 1);
        bytes.splice(2..3, [0x81, 0x00]);
        let again = core
            .ingest(&[incoming("tec/v1/dev/pnd-1/up", bytes, 2_000)], Timestamp(2_000))
            .unwrap();
        assert_eq!((again.stored, again.duplicates, again.key_conflicts), (0, 1, 0));
        assert_eq!(receipted(&again, "pnd-1", 1), [1]);
        assert!(again.alerts.is_empty() && boot_floors(&again).is_empty());
        assert_eq!(core.store().event_count().unwrap(), 1);
    }

    #[test]
    fn a_reused_key_with_other_content_is_stored_alerted_and_floored() {
        let (_dir, mut core) = core();
        core.ingest(&[uplink("pnd-1", 3, 1, heartbeat(), 1_000)], Timestamp(1_000))
            .unwrap();
        let press = uplink("pnd-1", 3, 1, UplinkBody::Alarm(AlarmKind::PendantPress), 2_000);
        let out = core.ingest(std::slice::from_ref(&press), Timestamp(2_000)).unwrap();
        assert_eq!((out.stored, out.duplicates, out.key_conflicts), (1, 0, 1));
        assert_eq!(receipted(&out, "pnd-1", 3), [1]);
        // The alarm alerts like any new one, and the device gets a technical alert.
        assert_eq!(kinds(&out), [AlertKind::PendantPress, AlertKind::KeyConflict]);
        assert_eq!(boot_floors(&out), [4]);
        let copies = core
            .store()
            .event_copies(&EventKey {
                device: dev("pnd-1"),
                boot: 3,
                seq: 1,
            })
            .unwrap();
        assert_eq!(copies.iter().map(|c| c.copy).collect::<Vec<_>>(), [0, 1]);
        let record = core.store().device(&dev("pnd-1")).unwrap().unwrap();
        assert_eq!(record.boot_reuse.map(|reuse| reuse.min_boot), Some(4));
        // The copy retransmitted is an ordinary duplicate: receipted, nothing new.
        let again = core.ingest(&[press], Timestamp(3_000)).unwrap();
        assert_eq!((again.stored, again.duplicates, again.key_conflicts), (0, 1, 0));
        assert_eq!(receipted(&again, "pnd-1", 3), [1]);
        assert!(again.alerts.is_empty() && boot_floors(&again).is_empty());
        // The device moves to the floor: the flag clears.
        core.ingest(&[uplink("pnd-1", 4, 0, heartbeat(), 4_000)], Timestamp(4_000))
            .unwrap();
        let record = core.store().device(&dev("pnd-1")).unwrap().unwrap();
        assert_eq!((record.highest_boot, record.boot_reuse), (Some(4), None));
    }

    #[test]
    fn online_with_a_lower_boot_is_flagged_and_floored() {
        let (_dir, mut core) = core();
        core.ingest(
            &[
                status_of("pnd-1", Presence::Online { boot: 7 }, 1_000),
                uplink("pnd-1", 7, 0, heartbeat(), 1_001),
            ],
            Timestamp(1_001),
        )
        .unwrap();
        // A reconnect with the same boot is not a reuse.
        let same = core
            .ingest(
                &[status_of("pnd-1", Presence::Online { boot: 7 }, 2_000)],
                Timestamp(2_000),
            )
            .unwrap();
        assert!(boot_floors(&same).is_empty() && same.alerts.is_empty());
        let lower = core
            .ingest(
                &[status_of("pnd-1", Presence::Online { boot: 2 }, 3_000)],
                Timestamp(3_000),
            )
            .unwrap();
        assert_eq!(boot_floors(&lower), [8]);
        assert_eq!(kinds(&lower), [AlertKind::KeyConflict]);
        let record = core.store().device(&dev("pnd-1")).unwrap().unwrap();
        assert_eq!(
            record.boot_reuse,
            Some(crate::domain::BootReuse {
                since: Timestamp(3_000),
                min_boot: 8
            })
        );
    }

    #[test]
    fn a_wiped_devices_first_press_alerts_though_its_bytes_match_an_old_alarm() {
        let (_dir, mut core) = core();
        // Months ago: boot 1, seq 1 was a press; answered and resolved. Later boots followed.
        let press = || uplink("pnd-1", 1, 1, UplinkBody::Alarm(AlarmKind::PendantPress), 1_000);
        let out = core.ingest(&[press()], Timestamp(1_000)).unwrap();
        let id = out.alerts[0].id;
        core.operator(Timestamp(2_000), |engine| {
            engine.resolve(id, "op-1", crate::domain::Outcome::FalseAlarm, None, Timestamp(2_000))
        })
        .unwrap();
        core.ingest(&[uplink("pnd-1", 57, 0, heartbeat(), 3_000)], Timestamp(3_000))
            .unwrap();
        // Wiped: it comes online as boot 1 and presses; same bytes as months ago.
        let mut wiped_press = press();
        wiped_press.received_at = Timestamp(9_000_001);
        let out = core
            .ingest(
                &[status_of("pnd-1", Presence::Online { boot: 1 }, 9_000_000), wiped_press],
                Timestamp(9_000_001),
            )
            .unwrap();
        assert_eq!((out.stored, out.duplicates), (1, 0));
        assert_eq!(receipted(&out, "pnd-1", 1), [1]);
        assert!(kinds(&out).contains(&AlertKind::PendantPress), "{:?}", kinds(&out));
        assert!(kinds(&out).contains(&AlertKind::KeyConflict));
        assert_eq!(boot_floors(&out), [58]);
        // Its retransmission is a duplicate of the copy.
        let mut retransmitted = press();
        retransmitted.received_at = Timestamp(9_000_100);
        let again = core.ingest(&[retransmitted], Timestamp(9_000_100)).unwrap();
        assert_eq!((again.stored, again.duplicates), (0, 1));
        assert!(!kinds(&again).contains(&AlertKind::PendantPress));
    }

    #[test]
    fn an_unreadable_device_record_is_left_alone_and_its_alarm_still_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::STORE_FILE_NAME);
        drop(Store::open(&path).unwrap());
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("devices"))
                .unwrap()
                .insert("pnd-1", b"{damaged".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Arc::new(Store::open(&path).unwrap());
        let mut core = Core::open(store.clone(), EngineConfig::default(), Timestamp(1_000)).unwrap();
        let out = core
            .ingest(
                &[uplink("pnd-1", 1, 1, UplinkBody::Alarm(AlarmKind::PendantPress), 1_000)],
                Timestamp(1_000),
            )
            .unwrap();
        assert_eq!((out.stored, out.alerts.len()), (1, 1));
        assert!(out.alerts[0].unregistered_device);
        assert_eq!(receipted(&out, "pnd-1", 1), [1]);
        assert!(matches!(
            store.device(&dev("pnd-1")),
            Err(StoreError::Unreadable(ref problem)) if problem.table == "devices"
        ));
        assert_eq!(store.unreadable_count(), 1);
    }

    #[test]
    fn receipts_are_chunked() {
        let mut receipts = Receipts::default();
        for seq in 0..70 {
            receipts.add(dev("abc"), 3, seq);
        }
        receipts.add(dev("abc"), 4, 1);
        let out = receipts.into_downlinks();
        let sizes: Vec<usize> = out
            .iter()
            .map(|(_, body)| match body {
                DownlinkBody::Receipt { seqs, .. } => seqs.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, vec![32, 32, 6, 1]);
    }

    #[test]
    fn registration_keeps_learnt_fields() {
        let (_dir, mut core) = core();
        core.ingest(&[uplink("hub-1", 1, 1, heartbeat(), 5)], Timestamp(5))
            .unwrap();
        core.register_device(DeviceRecord::new(dev("hub-1"), DeviceKind::Hub, true), None)
            .unwrap();
        let record = core.store().device(&dev("hub-1")).unwrap().unwrap();
        assert!(record.registered);
        assert_eq!(record.kind, DeviceKind::Hub);
        assert_eq!(record.battery_percent, Some(80));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let base = Duration::from_millis(100);
        assert_eq!(retry_backoff(base, 1), base);
        assert_eq!(retry_backoff(base, 2), base * 2);
        assert_eq!(retry_backoff(base, 50), Duration::from_secs(5));
    }

    #[test]
    fn engine_batch_matches_one_input_at_a_time() {
        let status = |interval_s: u32| match heartbeat() {
            UplinkBody::Heartbeat(mut status) => {
                status.heartbeat_interval_s = interval_s;
                UplinkBody::Heartbeat(status)
            }
            other => other,
        };
        let event = |device: &str, seq: u32, body: UplinkBody, at: i64| EngineInput::Event {
            event: StoredEvent {
                key: EventKey {
                    device: dev(device),
                    boot: 1,
                    seq,
                },
                resident: None,
                received_at: Timestamp(at),
                device_time: None,
                protocol_version: 1,
                body: EventBody::Uplink(body),
            },
            device_registered: true,
            device_kind: DeviceKind::Pendant,
        };
        let inputs = || {
            vec![
                event("pnd-a", 1, status(60), 1_000),
                event("pnd-b", 1, status(300), 1_001),
                event("pnd-a", 2, status(30), 1_002),
                EngineInput::Presence {
                    device: dev("pnd-b"),
                    resident: None,
                    online: false,
                    boot: None,
                    at: Timestamp(1_003),
                },
                event("pnd-c", 1, UplinkBody::Alarm(AlarmKind::PendantPress), 1_004),
                event("pnd-a", 3, status(30), 1_005),
            ]
        };
        let now = Timestamp(2_000);
        let mut one_by_one = AlertEngine::new(EngineConfig::default(), AlertId(1));
        let mut effects = Vec::new();
        for input in inputs() {
            effects.extend(one_by_one.handle(input, now));
        }
        let mut batched = AlertEngine::new(EngineConfig::default(), AlertId(1));
        assert_eq!(batched.handle_batch(inputs(), now), effects);
        assert_eq!(batched.next_deadline(), one_by_one.next_deadline());
        assert_eq!(batched.take_state_changes(), one_by_one.take_state_changes());
        for at in [60_000, 100_000, 200_000, 400_000, 1_000_000] {
            assert_eq!(
                batched.tick(Timestamp(at)),
                one_by_one.tick(Timestamp(at)),
                "tick at {at}"
            );
            assert_eq!(batched.next_deadline(), one_by_one.next_deadline());
        }
    }

    /// What a join costs as an alert's history grows: one alert joined 10,000 times through
    /// `ingest` (one press per commit, engine included). `cargo test -p tec-gateway --release
    /// --lib writer::core::tests::alert_join_cost -- --ignored --nocapture` (JOINS sets the count).
    #[test]
    #[ignore = "cost measurement; run in release with --ignored"]
    fn alert_join_cost() {
        let joins: u32 = std::env::var("JOINS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let (_dir, mut core) = core();
        let mut per_join = Vec::with_capacity(joins as usize + 1);
        for seq in 0..=joins {
            let at = 1_000 + i64::from(seq);
            let press = uplink("pnd-1", 1, seq, UplinkBody::Alarm(AlarmKind::PendantPress), at);
            let started = Instant::now();
            let out = core.ingest(&[press], Timestamp(at)).unwrap();
            per_join.push(started.elapsed());
            assert_eq!(out.alerts.len(), 1);
        }
        let alert = core.store().open_alerts().unwrap().remove(0);
        assert_eq!(alert.transitions.len(), joins as usize + 1);
        let window = (joins as usize / 10).max(1);
        let mean = |slice: &[Duration]| slice.iter().sum::<Duration>() / u32::try_from(slice.len()).unwrap();
        let first = mean(&per_join[1..=window]);
        let last = mean(&per_join[per_join.len() - window..]);
        // The engine hands the whole alert over on every join (Effect::AlertChanged(clone)).
        let started = Instant::now();
        let rounds = 100u32;
        for _ in 0..rounds {
            std::hint::black_box(alert.clone());
        }
        let clone = started.elapsed() / rounds;
        // What every join wrote before the history was split out: the whole alert as JSON.
        let started = Instant::now();
        let mut whole_len = 0;
        for _ in 0..rounds {
            whole_len = serde_json::to_vec(std::hint::black_box(&alert)).unwrap().len();
        }
        let whole = started.elapsed() / rounds;
        let state_bytes: usize = core.store().engine_state().unwrap().iter().map(|(_, v)| v.len()).sum();
        println!(
            "alert join through ingest: first {window}: {first:.2?}/join, last {window}: {last:.2?}/join; \
             one clone of the {}-transition alert: {clone:.2?}; encoding it whole (the old per-join \
             write, {whole_len} bytes): {whole:.2?}; engine state now {state_bytes} bytes",
            alert.transitions.len()
        );
    }

    /// The committer's own cost per event, without MQTT: `cargo test -p tec-gateway --release --lib
    /// writer::core::tests::ingest_throughput -- --ignored --nocapture` (CORE_BATCH sets the batch size).
    #[test]
    #[ignore = "throughput measurement; run in release with --ignored"]
    fn ingest_throughput() {
        let batch_size: usize = std::env::var("CORE_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024);
        let total = 200_000u32;
        let devices: Vec<String> = (0..100).map(|n| format!("bench-{n:04}")).collect();
        let mut all = Vec::with_capacity(total as usize);
        for n in 0..total {
            let which = (n % 100) as usize;
            let seq = n / 100;
            let body = match seq % 5 {
                0 => heartbeat(),
                1 => UplinkBody::SensorChange {
                    input: 0,
                    state: protocol::SensorState::DoorOpen,
                },
                2 => UplinkBody::SensorChange {
                    input: 0,
                    state: protocol::SensorState::DoorClosed,
                },
                3 => UplinkBody::SensorChange {
                    input: 1,
                    state: protocol::SensorState::Motion,
                },
                _ => UplinkBody::SensorChange {
                    input: 2,
                    state: protocol::SensorState::Temperature { centi_celsius: 2_050 },
                },
            };
            all.push(uplink(
                &devices[which],
                1,
                seq,
                body,
                1_800_000_000_000 + i64::from(n / 10),
            ));
        }
        let (_dir, mut core) = core();
        let started = Instant::now();
        let mut commits = 0;
        for batch in all.chunks(batch_size) {
            core.ingest(batch, Timestamp(1_800_000_000_000)).unwrap();
            commits += 1;
        }
        let elapsed = started.elapsed();
        println!(
            "core ingest: {total} events in {commits} batches of {batch_size}: {elapsed:.2?}, {:.0} events/s, {:.1} us/event",
            f64::from(total) / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / f64::from(total)
        );
    }
}
