//! The committer task: group commit. It takes everything the MQTT task has forwarded (up
//! to `max_batch`), commits it in one transaction off the async threads, and only then
//! acks, receipts and broadcasts. While one batch commits the next accumulates in the
//! channel, so batches grow with load and no artificial delay is needed.
//!
//! Faults heal without a person. A store fault (a full disk, a failed fsync: redb then
//! refuses everything until reopened) acks nothing, shows on /healthz and in the metrics,
//! and the committer closes and reopens the store with backoff, rebuilding the engine from
//! it, until commits succeed again. A batch that fails for another reason is split in
//! halves until the publish that fails alone is found; that one is quarantined as
//! `processing_failed` and acked, and the rest goes through. On shutdown a batch still
//! waiting for the store is given up unacked: the broker redelivers it to the next run.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::backend::CommitterStore;
use super::core::{AssignmentChange, Committed, Core, OperatorError, Received, retry_backoff};
use super::store_slot::{SharedStore, store_fault_kind};
use crate::alerts::{AlertEngine, Effect, EngineConfig, EngineError, ResidentRules, Resolution};
use crate::domain::{
    Alert, AlertChange, AlertId, Assignment, CallOutcome, Clock, DeviceRecord, RejectReason, Resident, ResidentId,
    Timestamp,
};
use crate::ingest::mqtt::{Incoming, Lane, Outbound, OutboundItem, PerLane};
use crate::metrics::Metrics;
use crate::reports::apply::{ImportCounts, RegisterChange};
use crate::reports::import::LineError;
use crate::retention::{RetentionStep, StepOutcome};
use crate::store::{
    AccessChange, AccessRefusal, AlertChangesSince, AuditEntry, MAX_ALERT_CHANGES_PAGE, Store, StoreError,
};

/// Longest the committer sleeps between deadline checks, so a test's manual clock (or a
/// wall-clock jump) is noticed promptly.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(1);
/// Shortest sleep between timer checks, so a deadline that `tick` does not clear cannot
/// turn the committer into a busy loop.
const MIN_TIMER_SLEEP: Duration = Duration::from_millis(20);

type Reply<T> = oneshot::Sender<Result<T, OperatorError>>;

/// Requests from the in-process handle; they run in the committer so the engine has one owner.
#[derive(Debug)]
pub enum Command {
    Acknowledge {
        alert: AlertId,
        operator: String,
        reply: Reply<Alert>,
    },
    AddNote {
        alert: AlertId,
        operator: String,
        text: String,
        reply: Reply<Alert>,
    },
    Resolve {
        alert: AlertId,
        operator: String,
        resolution: Resolution,
        reply: Reply<Alert>,
    },
    RecordResponderCall {
        alert: AlertId,
        operator: String,
        /// Place in the resident's responder list, from 0.
        responder: usize,
        outcome: CallOutcome,
        reply: Reply<Alert>,
    },
    FollowUpDone {
        alert: AlertId,
        operator: String,
        note: Option<String>,
        reply: Reply<Alert>,
    },
    RegisterDevice {
        record: Box<DeviceRecord>,
        assignment: Option<Assignment>,
        reply: Reply<()>,
    },
    PutResident {
        resident: Box<Resident>,
        reply: Reply<()>,
    },
    CreateResident {
        resident: Box<Resident>,
        reply: Reply<bool>,
    },
    ChangeAssignment {
        change: AssignmentChange,
        reply: Reply<()>,
    },
    /// One care-register file (people or assignments), in one transaction.
    ImportRegister {
        change: Box<RegisterChange>,
        reply: Reply<Result<ImportCounts, LineError>>,
    },
    SetResidentRules {
        resident: ResidentId,
        rules: ResidentRules,
        reply: Reply<()>,
    },
    OpenAlerts {
        reply: oneshot::Sender<Vec<Alert>>,
    },
    /// Run due timers now (tests with a manual clock).
    RunTimers {
        reply: Reply<()>,
    },
    /// Users, sessions and audit entries, in one transaction (`crate::access`).
    ApplyAccess {
        change: Box<AccessChange>,
        reply: Reply<Result<Vec<AuditEntry>, AccessRefusal>>,
    },
    /// One bounded step of the retention purge, in its own transaction (`crate::retention`).
    Retention {
        step: Box<RetentionStep>,
        reply: Reply<StepOutcome>,
    },
}

/// Opens the committer's store again after a fault (redb: the file; PostgreSQL: a new
/// connection that takes the writer lease back). Called off the async threads.
pub type OpenCommitterStore<S> = Arc<dyn Fn() -> Result<S, StoreError> + Send + Sync>;

impl Command {
    /// Answers a command no writer will take (a standby gateway's): `Unavailable` with `why`.
    /// `OpenAlerts` is not refused but handed back, for the caller to answer from the store:
    /// an empty list would read as "no alarms".
    pub fn refuse(self, why: &str) -> Option<oneshot::Sender<Vec<Alert>>> {
        fn no<T>(why: &str) -> Result<T, OperatorError> {
            Err(OperatorError::Unavailable(why.to_owned()))
        }
        match self {
            Command::Acknowledge { reply, .. }
            | Command::AddNote { reply, .. }
            | Command::Resolve { reply, .. }
            | Command::RecordResponderCall { reply, .. }
            | Command::FollowUpDone { reply, .. } => drop(reply.send(no(why))),
            Command::RegisterDevice { reply, .. }
            | Command::PutResident { reply, .. }
            | Command::ChangeAssignment { reply, .. }
            | Command::SetResidentRules { reply, .. }
            | Command::RunTimers { reply } => drop(reply.send(no(why))),
            Command::CreateResident { reply, .. } => drop(reply.send(no(why))),
            Command::ImportRegister { reply, .. } => drop(reply.send(no(why))),
            Command::ApplyAccess { reply, .. } => drop(reply.send(no(why))),
            Command::Retention { reply, .. } => drop(reply.send(no(why))),
            Command::OpenAlerts { reply } => return Some(reply),
        }
        None
    }
}

/// Everything the committer task owns.
pub struct Committer<S: CommitterStore = Arc<Store>> {
    pub core: Core<S>,
    /// Where readers find the store; the committer puts the reopened one there.
    pub store: Arc<SharedStore>,
    /// Opens the store again after a fault.
    pub open_store: OpenCommitterStore<S>,
    /// One intake per MQTT session. Whenever the alarm session's is not empty, the next batch
    /// is taken from it alone: an alarm waits for the commit under way, never for telemetry.
    pub intake: PerLane<mpsc::Receiver<Incoming>>,
    pub commands: mpsc::Receiver<Command>,
    /// Acks go back on the session their publish came on, and so do the receipts of an
    /// alarm-lane batch; other downlinks go on the telemetry session.
    pub outbound: PerLane<Outbound>,
    /// The live stream: each committed alert change with its change-log seq.
    pub alerts: broadcast::Sender<AlertChange>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub max_batch: usize,
    pub retry_base: Duration,
    pub alive: Arc<AtomicBool>,
    /// Turns true when the gateway stops: a batch waiting for a faulty store is then given
    /// up unacked instead of holding the shutdown until its timeout.
    pub shutdown: watch::Receiver<bool>,
    /// Set when another gateway took the writer lease (PostgreSQL): this committer then
    /// stops at once without acking anything, and the gateway shuts down (a supervisor
    /// restarts it as a standby).
    pub lead_lost: watch::Sender<bool>,
}

impl<S: CommitterStore + std::fmt::Debug> std::fmt::Debug for Committer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("core", &self.core)
            .field("max_batch", &self.max_batch)
            .field("retry_base", &self.retry_base)
            .finish_non_exhaustive()
    }
}

/// Clears `alive` however the task ends (including a panic), for /healthz.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs `work` on the blocking pool with the core moved in and back out.
async fn blocking<S: CommitterStore, T: Send + 'static>(
    core: Core<S>,
    work: impl FnOnce(&mut Core<S>) -> T + Send + 'static,
) -> Result<(Core<S>, T), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let mut core = core;
        let result = work(&mut core);
        (core, result)
    })
    .await
}

/// The core's view of a publish; the `Publish` itself stays at this edge for the PUBACK.
fn received(incoming: &Incoming) -> Received {
    Received {
        topic: incoming.publish.topic.clone(),
        payload: incoming.publish.payload.clone(),
        retained: incoming.publish.retain,
        received_at: incoming.received_at,
    }
}

impl<S: CommitterStore> Committer<S> {
    /// Runs until the intake channel closes (shutdown), committing everything received,
    /// or until a shutdown finds the store down (then what is left stays unacked).
    pub async fn run(self) {
        let Committer {
            core,
            store,
            open_store,
            intake,
            commands,
            outbound,
            alerts,
            metrics,
            clock,
            max_batch,
            retry_base,
            alive,
            shutdown,
            lead_lost,
        } = self;
        alive.store(true, Ordering::Release);
        let _guard = AliveGuard(alive);
        metrics.set_open_alerts(core.open_alert_count());
        core.store().share(&store);
        let engine_config = core.engine().config().clone();
        let mut shell = Shell {
            told_seq: None,
            last_open: Vec::new(),
            commands,
            commands_open: true,
            #[cfg(test)]
            test_hooks: core.test_hooks(),
            core: Some(core),
            store,
            open_store,
            engine_config,
            outbound,
            alerts,
            metrics,
            clock,
            retry_base,
            shutdown,
            lead_lost,
            store_failures: 0,
            next_reopen: tokio::time::Instant::now(),
        };
        // Off the async threads: on PostgreSQL a store call blocks on the runtime.
        shell.told_seq = match shell.run(|core| core.store_mut().last_alert_change_seq()).await {
            Ok(Ok(seq)) => Some(seq),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the alert change log's position");
                None
            }
            Err(_) => None,
        };
        let PerLane {
            telemetry: mut telemetry_intake,
            alarms: mut alarm_intake,
        } = intake;
        let (mut telemetry_open, mut alarms_open) = (true, true);
        let mut buf: Vec<Incoming> = Vec::with_capacity(max_batch);
        let mut alarm_buf: Vec<Incoming> = Vec::new();
        // One timer across iterations: recreating it each time would never let it fire
        // while batches keep arriving, and escalations would starve under load.
        let timer = tokio::time::sleep(shell.timer_sleep());
        tokio::pin!(timer);
        while telemetry_open || alarms_open {
            if shell.lead_is_lost() {
                let left = abandon([&mut alarm_intake, &mut telemetry_intake]);
                shell.metrics.abandoned(left);
                tracing::error!(
                    queued = left,
                    "another gateway leads: stopping without acking anything uncommitted; the broker keeps it for the leader"
                );
                break;
            }
            let wanted = tokio::time::Instant::now() + shell.timer_sleep();
            if wanted < timer.deadline() {
                timer.as_mut().reset(wanted);
            }
            // In this order: alarms first, then operators' actions, then timers, then telemetry.
            let (lane, received) = tokio::select! {
                biased;
                received = alarm_intake.recv_many(&mut alarm_buf, max_batch), if alarms_open => (Lane::Alarms, received),
                command = shell.commands.recv(), if shell.commands_open => {
                    match command {
                        Some(command) => shell.command(command).await,
                        None => shell.commands_open = false,
                    }
                    continue;
                }
                () = &mut timer => {
                    shell.timers(false).await;
                    timer.as_mut().reset(tokio::time::Instant::now() + shell.timer_sleep());
                    continue;
                }
                received = telemetry_intake.recv_many(&mut buf, max_batch), if telemetry_open => (Lane::Telemetry, received),
            };
            if received == 0 {
                match lane {
                    Lane::Alarms => alarms_open = false,
                    Lane::Telemetry => telemetry_open = false,
                }
                continue;
            }
            let batch = match lane {
                Lane::Alarms => std::mem::take(&mut alarm_buf),
                Lane::Telemetry => std::mem::replace(&mut buf, Vec::with_capacity(max_batch)),
            };
            if shell.ingest(batch, lane).await == Flow::Stop {
                if shell.lead_is_lost() {
                    continue;
                }
                let left = abandon([&mut alarm_intake, &mut telemetry_intake]);
                shell.metrics.abandoned(left);
                tracing::warn!(
                    queued = left,
                    "stopping while the store is down: nothing uncommitted was acked; the broker redelivers it"
                );
                break;
            }
        }
        // Intake closed: answer what is still queued rather than leave callers hanging.
        shell.commands.close();
        while let Ok(command) = shell.commands.try_recv() {
            shell.command(command).await;
        }
        if !shell.lead_is_lost() {
            shell.step_down().await;
        }
        tracing::info!("committer stopped: everything acked was committed");
    }
}

/// Closes the intakes and drops what is queued in them (unacked: the broker redelivers it);
/// how many that was.
fn abandon(intakes: [&mut mpsc::Receiver<Incoming>; 2]) -> u64 {
    let mut left = 0u64;
    for intake in intakes {
        intake.close();
        while intake.try_recv().is_ok() {
            left += 1;
        }
    }
    left
}

/// Whether the committer goes on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// The gateway is stopping and the store is down: stop without acking the rest.
    Stop,
}

/// How one attempt at a part of a batch ended.
enum Attempt {
    Committed,
    /// Failed, and not because of the store: the part holds a poison publish.
    Poison(String),
    Stopped,
}

/// Why a blocking job gave no result.
enum JobFailed {
    /// The store is closed (being reopened after a fault).
    NoStore,
    /// The job panicked; the core was rebuilt from the store, if that worked.
    Panicked,
}

struct Shell<S: CommitterStore> {
    /// `None` while a blocking job holds it, and while the store is closed after a fault.
    core: Option<Core<S>>,
    store: Arc<SharedStore>,
    open_store: OpenCommitterStore<S>,
    engine_config: EngineConfig,
    outbound: PerLane<Outbound>,
    alerts: broadcast::Sender<AlertChange>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    retry_base: Duration,
    shutdown: watch::Receiver<bool>,
    lead_lost: watch::Sender<bool>,
    /// Consecutive store faults: sets the backoff, cleared by a successful commit.
    store_failures: u32,
    /// The next reopen after a fault is not tried before this.
    next_reopen: tokio::time::Instant,
    /// The seq of the last alert change broadcast. A commit that reports an fsync failure may
    /// still have reached the disk; after a reopen, the store's change log beyond this is
    /// broadcast. `None` if the log could not be read at start.
    told_seq: Option<u64>,
    /// The engine's open alerts when the store was last closed: what an operator is shown
    /// while it is down (never an empty list that would read as "no alarms").
    last_open: Vec<Alert>,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    /// Carried over when the core is rebuilt or reopened, so injected faults persist.
    #[cfg(test)]
    test_hooks: (u32, Option<(Vec<u8>, super::core::PoisonKind)>),
}

impl<S: CommitterStore> Shell<S> {
    fn timer_sleep(&self) -> Duration {
        let deadline = self.core.as_ref().and_then(|core| core.engine().next_deadline());
        match deadline {
            Some(deadline) => {
                let ms = deadline.millis_since(self.clock.now()).max(0);
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)).clamp(MIN_TIMER_SLEEP, MAX_TIMER_SLEEP)
            }
            None => MAX_TIMER_SLEEP,
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow() || self.lead_is_lost()
    }

    fn lead_is_lost(&self) -> bool {
        *self.lead_lost.borrow()
    }

    /// At a clean stop: gives the writer lease up (PostgreSQL), so a standby takes over now
    /// rather than when the lease runs out.
    async fn step_down(&mut self) {
        match self.run(|core| core.store_mut().step_down()).await {
            Ok(Ok(())) | Err(JobFailed::NoStore) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not give up the writer lease; it runs out by itself"),
            Err(JobFailed::Panicked) => {}
        }
    }

    /// Runs blocking work on the core. If the job panicked the core is rebuilt from the
    /// store; if even that fails the core stays closed and the next use reopens the store.
    async fn run<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Core<S>) -> T + Send + 'static,
    ) -> Result<T, JobFailed> {
        let core = self.core.take().ok_or(JobFailed::NoStore)?;
        #[cfg(test)]
        {
            self.test_hooks = core.test_hooks();
        }
        let second = core.store().second_handle();
        match blocking(core, work).await {
            Ok((core, result)) => {
                self.core = Some(core);
                Ok(result)
            }
            Err(e) => {
                let Some(store) = second else {
                    // No second handle (a database connection): reopen it, then rebuild.
                    self.note_fault("restore", &format!("committer job failed: {e}"));
                    return Err(JobFailed::Panicked);
                };
                tracing::error!(error = %e, "committer job failed; rebuilding the engine from the store");
                let config = self.engine_config.clone();
                let now = self.clock.now();
                let rebuilt = tokio::task::spawn_blocking(move || Core::open(store, config, now)).await;
                match rebuilt {
                    Ok(Ok(core)) => self.install(core),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot rebuild the engine; reopening the store");
                        self.note_fault("restore", &e);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "rebuilding the engine panicked; reopening the store");
                        self.note_fault("restore", &e);
                    }
                }
                Err(JobFailed::Panicked)
            }
        }
    }

    fn install(&mut self, core: Core<S>) {
        #[cfg(test)]
        let core = {
            let mut core = core;
            core.set_test_hooks(self.test_hooks.clone());
            core
        };
        self.metrics.set_open_alerts(core.open_alert_count());
        self.metrics.set_unreadable_records(core.store().unreadable_count());
        self.core = Some(core);
    }

    /// A store fault: nothing is acked, /healthz and the metrics say why, and the store is
    /// closed here so the next attempt (after the backoff) reopens it.
    fn note_fault(&mut self, kind: &'static str, error: &dyn std::fmt::Display) {
        if matches!(kind, "fenced" | "not_leader") {
            self.metrics.store_failed(kind, &error.to_string());
            tracing::error!(
                kind,
                error = %error,
                "LOST THE WRITER LEASE: another gateway leads; nothing uncommitted is acked and this gateway stops"
            );
            let _ = self.lead_lost.send(true);
            self.close_store();
            return;
        }
        self.store_failures = self.store_failures.saturating_add(1);
        self.metrics.store_failed(kind, &error.to_string());
        let backoff = retry_backoff(self.retry_base, self.store_failures);
        self.next_reopen = tokio::time::Instant::now() + backoff;
        tracing::error!(
            kind,
            error = %error,
            failures = self.store_failures,
            retry_in_ms = backoff.as_millis() as u64,
            "STORE FAULT: nothing acked; the store will be reopened"
        );
        self.close_store();
    }

    /// Drops the core and this side's handle on the store, so the database can close.
    fn close_store(&mut self) {
        if let Some(core) = self.core.take() {
            #[cfg(test)]
            {
                self.test_hooks = core.test_hooks();
            }
            self.last_open = core.engine().open_alerts().cloned().collect();
            drop(core);
        }
        self.store.clear();
    }

    /// A commit succeeded: the store is healthy (again).
    fn note_healthy(&mut self) {
        if self.store_failures > 0 {
            tracing::info!(failures = self.store_failures, "store healthy again; ingest resumed");
        }
        self.store_failures = 0;
        self.metrics.store_recovered();
    }

    /// Opens the store again and rebuilds the engine from it. A failure (the open, or the
    /// engine restore) leaves nothing open and sets the next attempt after the backoff.
    async fn reopen(&mut self) -> bool {
        // Readers let go of their `Arc` after one query; until they do the file stays
        // locked and the open below fails with "in use", which is retried like any fault.
        self.close_store();
        let open = self.open_store.clone();
        let config = self.engine_config.clone();
        let now = self.clock.now();
        let opened = tokio::task::spawn_blocking(move || {
            let store = open().map_err(|e| (store_fault_kind(&e).unwrap_or("open"), e.to_string()))?;
            Core::open(store, config, now).map_err(|e| {
                let kind = match &e {
                    OperatorError::Store(store) => store_fault_kind(store).unwrap_or("restore"),
                    _ => "restore",
                };
                (kind, e.to_string())
            })
        })
        .await;
        match opened {
            Ok(Ok(core)) => {
                self.metrics.store_reopened(true);
                core.store().share(&self.store);
                self.install(core);
                tracing::info!("store reopened; alert engine rebuilt from it");
                self.announce_in_doubt_alerts().await;
                true
            }
            Ok(Err((kind, error))) => {
                self.metrics.store_reopened(false);
                self.note_fault(kind, &format!("reopen failed: {error}"));
                false
            }
            Err(e) => {
                self.metrics.store_reopened(false);
                self.note_fault("reopen", &format!("reopen panicked: {e}"));
                false
            }
        }
    }

    /// Broadcasts alert changes that a commit reported as failed did in fact store (an
    /// fsync can fail after the data reached the disk): nothing committed may go unsaid. The
    /// change log says exactly which: everything after the last seq broadcast.
    async fn announce_in_doubt_alerts(&mut self) {
        let Some(mut after) = self.told_seq else {
            return;
        };
        loop {
            let found = self
                .run(move |core| core.store_mut().alert_changes_since(after, MAX_ALERT_CHANGES_PAGE))
                .await;
            let page = match found {
                Ok(Ok(AlertChangesSince::Changes(page))) => page,
                Ok(Ok(AlertChangesSince::TooOld { last_seq, .. } | AlertChangesSince::Ahead { last_seq })) => {
                    tracing::error!(
                        after,
                        last_seq,
                        "alert changes stored by a failed commit are beyond the change log; live clients must reload"
                    );
                    self.told_seq = Some(last_seq);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the alert change log after reopening");
                    return;
                }
                Err(_) => return,
            };
            for change in page.changes {
                tracing::warn!(alert = %change.alert.id, seq = change.seq, state = ?change.alert.state, "alert change stored by a commit that reported failure; sending it now");
                self.announce(change);
            }
            self.told_seq = Some(page.next_after.max(self.told_seq.unwrap_or(0)));
            if page.next_after >= page.last_seq || page.next_after == after {
                return;
            }
            after = page.next_after;
        }
    }

    fn announce(&mut self, change: AlertChange) {
        let alert = &change.alert;
        tracing::info!(alert = %alert.id, seq = change.seq, kind = ?alert.kind, state = ?alert.state, "alert changed");
        self.metrics.alert_changed(alert.kind);
        if let Some(told) = self.told_seq
            && change.seq > told.saturating_add(1)
        {
            // Committed but never broadcast (cannot happen short of a bug): stream consumers
            // still find them in the store's change log, which is why they resume from it.
            tracing::error!(
                from = told + 1,
                to = change.seq - 1,
                "alert changes skipped by the live stream"
            );
        }
        self.told_seq = Some(self.told_seq.map_or(change.seq, |told| told.max(change.seq)));
        // No subscribers is fine: the store has it.
        let _ = self.alerts.send(change);
    }

    /// Makes sure a core is open, reopening the store if its backoff has passed; false
    /// while the store is down.
    async fn ensure_core(&mut self) -> bool {
        if self.core.is_some() {
            return true;
        }
        if self.lead_is_lost() || tokio::time::Instant::now() < self.next_reopen {
            return false;
        }
        self.reopen().await
    }

    /// Waits until the next reopen is due, answering operator requests meanwhile (they
    /// cannot be committed now; better an error than a hang); false if the gateway is
    /// stopping meanwhile.
    /// Reopens the store (after each backoff) until it works; false if a shutdown came first.
    async fn store_ready(&mut self) -> bool {
        while self.core.is_none() {
            if !self.wait_for_reopen().await {
                return false;
            }
            self.reopen().await;
        }
        true
    }

    async fn wait_for_reopen(&mut self) -> bool {
        if self.stopping() {
            return false;
        }
        let until = self.next_reopen;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(command) => self.command(command).await,
                    None => self.commands_open = false,
                },
                changed = self.shutdown.changed() => match changed {
                    Ok(()) if *self.shutdown.borrow() => return false,
                    Ok(()) => {}
                    // Nobody can signal a shutdown any more: just wait.
                    Err(_) => {
                        tokio::time::sleep_until(until).await;
                        return true;
                    }
                },
            }
        }
    }

    fn unavailable(&self) -> OperatorError {
        OperatorError::Unavailable(
            self.metrics
                .store_fault()
                .unwrap_or_else(|| "the store is being reopened".to_owned()),
        )
    }

    /// After a failed commit the engine may be ahead of the store: rebuild it. If that
    /// fails too the store is closed, so the next attempt reopens it and rebuilds then.
    async fn recover(&mut self) {
        let now = self.clock.now();
        match self.run(move |core| core.restore(now)).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot rebuild the alert engine from the store");
                let kind = match &e {
                    OperatorError::Store(store) => store_fault_kind(store).unwrap_or("restore"),
                    _ => "restore",
                };
                self.note_fault(kind, &e);
            }
        }
    }

    /// A commit of a timer, operator or register change failed.
    async fn commit_failed(&mut self, error: &StoreError) {
        self.metrics.commit_failed();
        match store_fault_kind(error) {
            Some(kind) => self.note_fault(kind, error),
            None => self.recover().await,
        }
    }

    /// Commits the batch (all from the `lane` session), acking each publish once it is stored
    /// (or quarantined).
    async fn ingest(&mut self, batch: Vec<Incoming>, lane: Lane) -> Flow {
        let received: Arc<Vec<Received>> = Arc::new(batch.iter().map(received).collect());
        // Parts still to commit, the next on top; a part that fails without a store fault
        // is split in halves until the publish that fails alone is found.
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(8);
        pending.push(0..batch.len());
        while let Some(part) = pending.pop() {
            let attempt = match self.commit_part(&batch, &received, part.clone(), lane).await {
                Attempt::Poison(reason) if part.len() <= 1 => {
                    self.quarantine_poison(&batch, &received, part.start, &reason).await
                }
                other => other,
            };
            match attempt {
                Attempt::Committed => {}
                Attempt::Poison(_) => {
                    let middle = part.start + part.len() / 2;
                    tracing::warn!(
                        size = part.len(),
                        "batch failed without a store fault; splitting it to find the poison publish"
                    );
                    pending.push(middle..part.end);
                    pending.push(part.start..middle);
                }
                Attempt::Stopped => {
                    let left = part.len() + pending.iter().map(ExactSizeIterator::len).sum::<usize>();
                    self.metrics.abandoned(left as u64);
                    return Flow::Stop;
                }
            }
        }
        Flow::Continue
    }

    /// Commits `part` of the batch, waiting out store faults (reopening the store).
    async fn commit_part(
        &mut self,
        batch: &[Incoming],
        received: &Arc<Vec<Received>>,
        part: Range<usize>,
        lane: Lane,
    ) -> Attempt {
        let size = part.len();
        let mut attempt = 0u32;
        loop {
            if !self.store_ready().await {
                return Attempt::Stopped;
            }
            attempt += 1;
            let now = self.clock.now();
            let job = received.clone();
            let range = part.clone();
            let span = tracing::debug_span!("ingest_batch", size, attempt, session = lane.name());
            let started = std::time::Instant::now();
            let result = self
                .run(move |core| span.in_scope(|| core.ingest(job.get(range).unwrap_or_default(), now)))
                .await;
            match result {
                Ok(Ok(committed)) => {
                    self.note_healthy();
                    let acked = batch.get(part.clone()).unwrap_or_default();
                    let latencies: Vec<Duration> = acked.iter().map(|i| i.arrived.elapsed()).collect();
                    self.metrics.committed(size, latencies);
                    self.metrics.stored(committed.stored);
                    self.metrics.duplicates(committed.duplicates);
                    self.metrics.unregistered(committed.unregistered);
                    self.metrics
                        .device_time_out_of_range(committed.device_time_out_of_range);
                    self.metrics.key_conflicts(committed.key_conflicts);
                    self.metrics.off_lane(committed.off_lane);
                    for reason in &committed.rejected {
                        self.metrics.rejected(*reason);
                    }
                    // Acks in arrival order, for every publish: duplicates and quarantined too.
                    for incoming in acked {
                        self.ack(incoming);
                    }
                    tracing::debug!(
                        size,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        stored = committed.stored,
                        duplicates = committed.duplicates,
                        "batch committed"
                    );
                    self.after_commit_on(committed, lane);
                    return Attempt::Committed;
                }
                Ok(Err(e)) => {
                    self.metrics.commit_failed();
                    match store_fault_kind(&e) {
                        Some(kind) => self.note_fault(kind, &e),
                        None => {
                            tracing::error!(error = %e, size, "COMMIT FAILED without a store fault: nothing acked");
                            self.recover().await;
                            return Attempt::Poison(e.to_string());
                        }
                    }
                }
                Err(JobFailed::Panicked) => {
                    self.metrics.commit_failed();
                    return Attempt::Poison("processing panicked".to_owned());
                }
                Err(JobFailed::NoStore) => {}
            }
        }
    }

    /// Keeps a publish that fails alone in the quarantine, then acks it: it must not hold
    /// up the publishes behind it. Waits out store faults like a commit.
    async fn quarantine_poison(
        &mut self,
        batch: &[Incoming],
        received: &Arc<Vec<Received>>,
        index: usize,
        reason: &str,
    ) -> Attempt {
        let (Some(incoming), Some(item)) = (batch.get(index), received.get(index)) else {
            return Attempt::Committed;
        };
        loop {
            if !self.store_ready().await {
                return Attempt::Stopped;
            }
            let item = item.clone();
            let detail = format!("processing failed: {reason}");
            match self
                .run(move |core| core.quarantine_unprocessable(&item, &detail))
                .await
            {
                Ok(Ok(())) => {
                    self.note_healthy();
                    self.metrics.committed(1, [incoming.arrived.elapsed()]);
                    self.metrics.rejected(RejectReason::ProcessingFailed);
                    let topic = String::from_utf8_lossy(incoming.publish.topic.get(..128).unwrap_or_default());
                    tracing::error!(%topic, reason, "POISON publish quarantined as processing_failed and acked");
                    self.ack(incoming);
                    return Attempt::Committed;
                }
                Ok(Err(e)) => {
                    self.metrics.commit_failed();
                    // Not even the quarantine takes it: never ack what is not kept somewhere.
                    self.note_fault(store_fault_kind(&e).unwrap_or("quarantine"), &e);
                }
                Err(JobFailed::Panicked) => {
                    self.metrics.commit_failed();
                    self.note_fault("quarantine", &"quarantining a poison publish panicked");
                }
                Err(JobFailed::NoStore) => {}
            }
        }
    }

    fn ack(&self, incoming: &Incoming) {
        self.outbound.get(incoming.lane).send(OutboundItem::Ack {
            publish: incoming.publish.clone(),
            connection: incoming.connection,
        });
    }

    /// Receipts, then the engine's downlinks, then the live stream.
    fn after_commit(&mut self, committed: Committed) {
        self.after_commit_on(committed, Lane::Telemetry);
    }

    /// [`Self::after_commit`], with the downlinks sent on the `lane` session: an alarm's
    /// receipt does not queue behind the telemetry session's acks while it drains a backlog.
    fn after_commit_on(&mut self, committed: Committed, lane: Lane) {
        let Committed {
            receipts,
            downlinks,
            alerts,
            ..
        } = committed;
        for (device, body) in receipts.into_iter().chain(downlinks) {
            self.outbound.get(lane).send(OutboundItem::Downlink { device, body });
        }
        for alert in alerts {
            self.announce(alert);
        }
        if let Some(core) = &self.core {
            self.metrics.set_open_alerts(core.open_alert_count());
            self.metrics.set_unreadable_records(core.store().unreadable_count());
        }
    }

    async fn timers(&mut self, forced: bool) {
        if !self.ensure_core().await {
            return;
        }
        // The writer lease is renewed here when the intake is idle (between batches otherwise).
        if S::LEASED {
            match self.run(|core| core.store_mut().keep_leading()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.note_fault(store_fault_kind(&e).unwrap_or("lease"), &e);
                    return;
                }
                Err(_) => return,
            }
        }
        let now = self.clock.now();
        let due = self
            .core
            .as_ref()
            .and_then(|core| core.engine().next_deadline())
            .is_some_and(|deadline| deadline <= now);
        if !due && !forced {
            return;
        }
        match self.run(move |core| core.tick(now)).await {
            Ok(Ok(committed)) => {
                self.note_healthy();
                self.metrics.committed(0, []);
                self.after_commit(committed);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "COMMIT FAILED for engine timers; will retry");
                self.commit_failed(&e).await;
            }
            Err(_) => self.metrics.commit_failed(),
        }
    }

    /// An engine action that changes one alert, answered with the alert as committed.
    async fn alert_action(
        &mut self,
        alert: AlertId,
        action: impl FnOnce(&mut AlertEngine, Timestamp) -> Result<Vec<Effect>, EngineError> + Send + 'static,
    ) -> Result<Alert, OperatorError> {
        self.alert_write(alert, move |core, now| core.operator(now, |engine| action(engine, now)))
            .await
    }

    /// A write of the core that changes one alert, answered with the alert as committed.
    async fn alert_write(
        &mut self,
        alert: AlertId,
        write: impl FnOnce(&mut Core<S>, Timestamp) -> Result<Committed, OperatorError> + Send + 'static,
    ) -> Result<Alert, OperatorError> {
        if !self.ensure_core().await {
            return Err(self.unavailable());
        }
        let now = self.clock.now();
        let result = self
            .run(move |core| write(core, now))
            .await
            .map_err(|_| self.unavailable())?;
        match result {
            Ok(committed) => {
                self.note_healthy();
                self.metrics.committed(0, []);
                let changed = committed
                    .alerts
                    .iter()
                    .rev()
                    .find(|change| change.alert.id == alert)
                    .map(|change| change.alert.clone());
                self.after_commit(committed);
                changed.ok_or(OperatorError::NoChange(alert))
            }
            Err(OperatorError::Store(e)) => {
                tracing::error!(error = %e, %alert, "COMMIT FAILED for an operator action");
                self.commit_failed(&e).await;
                Err(OperatorError::Store(e))
            }
            Err(e) => Err(e),
        }
    }

    async fn store_action<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Core<S>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, OperatorError> {
        if !self.ensure_core().await {
            return Err(self.unavailable());
        }
        let result = self.run(work).await.map_err(|_| self.unavailable())?;
        match result {
            Ok(value) => {
                self.note_healthy();
                self.metrics.committed(0, []);
                Ok(value)
            }
            Err(e) => {
                // A refused change (say, an overlapping assignment) left the engine alone.
                if let Some(kind) = store_fault_kind(&e) {
                    self.metrics.commit_failed();
                    self.note_fault(kind, &e);
                }
                Err(OperatorError::Store(e))
            }
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Acknowledge { alert, operator, reply } => {
                let result = self
                    .alert_action(alert, move |engine, now| engine.acknowledge(alert, &operator, now))
                    .await;
                let _ = reply.send(result);
            }
            Command::AddNote {
                alert,
                operator,
                text,
                reply,
            } => {
                let result = self
                    .alert_action(alert, move |engine, now| engine.add_note(alert, &operator, &text, now))
                    .await;
                let _ = reply.send(result);
            }
            Command::Resolve {
                alert,
                operator,
                resolution,
                reply,
            } => {
                let result = self
                    .alert_action(alert, move |engine, now| {
                        engine.resolve_with(alert, &operator, &resolution, now)
                    })
                    .await;
                let _ = reply.send(result);
            }
            Command::RecordResponderCall {
                alert,
                operator,
                responder,
                outcome,
                reply,
            } => {
                let result = self
                    .alert_write(alert, move |core, now| {
                        core.record_responder_call(alert, &operator, responder, outcome, now)
                    })
                    .await;
                let _ = reply.send(result);
            }
            Command::FollowUpDone {
                alert,
                operator,
                note,
                reply,
            } => {
                let result = self
                    .alert_write(alert, move |core, now| {
                        core.follow_up_done(alert, &operator, note.as_deref(), now)
                    })
                    .await;
                let _ = reply.send(result);
            }
            Command::RegisterDevice {
                record,
                assignment,
                reply,
            } => {
                let result = self
                    .store_action(move |core| core.register_device(*record, assignment))
                    .await;
                let _ = reply.send(result);
            }
            Command::PutResident { resident, reply } => {
                let result = self.store_action(move |core| core.put_resident(&resident)).await;
                let _ = reply.send(result);
            }
            Command::CreateResident { resident, reply } => {
                let result = self.store_action(move |core| core.create_resident(&resident)).await;
                let _ = reply.send(result);
            }
            Command::ChangeAssignment { change, reply } => {
                let result = self.store_action(move |core| core.change_assignment(change)).await;
                let _ = reply.send(result);
            }
            Command::ImportRegister { change, reply } => {
                let result = self.store_action(move |core| core.import_register(&change)).await;
                let _ = reply.send(result);
            }
            Command::SetResidentRules { resident, rules, reply } => {
                let result = if self.ensure_core().await {
                    let now = self.clock.now();
                    match self
                        .run(move |core| core.set_resident_rules(resident, rules, now))
                        .await
                    {
                        Ok(Ok(committed)) => {
                            self.note_healthy();
                            self.metrics.committed(0, []);
                            self.after_commit(committed);
                            Ok(())
                        }
                        Ok(Err(e)) => {
                            self.commit_failed(&e).await;
                            Err(OperatorError::Store(e))
                        }
                        Err(_) => Err(self.unavailable()),
                    }
                } else {
                    Err(self.unavailable())
                };
                let _ = reply.send(result);
            }
            Command::OpenAlerts { reply } => {
                let mut open: Vec<Alert> = match &self.core {
                    Some(core) => core.engine().open_alerts().cloned().collect(),
                    None => self.last_open.clone(),
                };
                open.sort_by_key(|a| (a.priority, a.raised_at, a.id));
                let _ = reply.send(open);
            }
            Command::RunTimers { reply } => {
                self.timers(true).await;
                let _ = reply.send(Ok(()));
            }
            Command::ApplyAccess { change, reply } => {
                let result = self.access_action(change).await;
                let _ = reply.send(result);
            }
            Command::Retention { step, reply } => {
                let result = self.retention_step(step).await;
                let _ = reply.send(result);
            }
        }
    }

    /// One retention step: its own transaction on the store (none when it found nothing to
    /// remove, so an idle nightly purge commits nothing).
    async fn retention_step(&mut self, step: Box<RetentionStep>) -> Result<StepOutcome, OperatorError> {
        if !self.ensure_core().await {
            return Err(self.unavailable());
        }
        let result = self
            .run(move |core| S::apply_retention(core, &step))
            .await
            .map_err(|_| self.unavailable())?;
        match result {
            Err(e @ StoreError::NotOnPostgres { .. }) => Err(OperatorError::Unavailable(e.to_string())),
            Ok((outcome, committed)) => {
                self.note_healthy();
                if committed {
                    self.metrics.committed(0, []);
                }
                for (class, removed) in outcome.removed() {
                    self.metrics.retention_removed(class, removed);
                }
                Ok(outcome)
            }
            Err(e) => {
                self.metrics.commit_failed();
                if let Some(kind) = store_fault_kind(&e) {
                    self.note_fault(kind, &e);
                }
                tracing::error!(error = %e, "COMMIT FAILED for a retention step");
                Err(OperatorError::Store(e))
            }
        }
    }

    /// An access change (users, sessions, audit): its own transaction on the store; the
    /// alert engine is not involved. A refusal (say, a duplicate user) wrote nothing.
    async fn access_action(
        &mut self,
        change: Box<AccessChange>,
    ) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, OperatorError> {
        if !self.ensure_core().await {
            return Err(self.unavailable());
        }
        let result = self
            .run(move |core| core.store_mut().apply_access(&change))
            .await
            .map_err(|_| self.unavailable())?;
        match result {
            Err(e @ StoreError::NotOnPostgres { .. }) => Err(OperatorError::Unavailable(e.to_string())),
            Ok(applied) => {
                self.note_healthy();
                self.metrics.committed(0, []);
                Ok(applied)
            }
            Err(e) => {
                self.metrics.commit_failed();
                if let Some(kind) = store_fault_kind(&e) {
                    self.note_fault(kind, &e);
                }
                tracing::error!(error = %e, "COMMIT FAILED for an access change");
                Err(OperatorError::Store(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use protocol::{AlarmKind, DownlinkBody, MAX_UPLINK_LEN, Uplink, UplinkBody, UplinkHeader, encode_uplink};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Publish;

    use super::*;
    use crate::domain::SystemClock;
    use crate::store::Store;
    use crate::writer::core::PoisonKind;

    /// A committer on a store in `dir`, and what a test watches it through.
    struct Rig {
        committer: Committer,
        store: Arc<SharedStore>,
        intake: mpsc::Sender<Incoming>,
        /// The alarm session's intake.
        alarms: mpsc::Sender<Incoming>,
        commands: mpsc::Sender<Command>,
        /// The telemetry session's acks and downlinks.
        sent: mpsc::UnboundedReceiver<OutboundItem>,
        /// The alarm session's.
        alarm_sent: mpsc::UnboundedReceiver<OutboundItem>,
        alerts: broadcast::Receiver<AlertChange>,
        metrics: Arc<Metrics>,
        stop: watch::Sender<bool>,
    }

    fn rig(
        dir: &std::path::Path,
        clock: Arc<dyn Clock>,
        engine_config: EngineConfig,
        hooks: impl FnOnce(&mut Core),
    ) -> Rig {
        let dir = dir.to_path_buf();
        let open_store: OpenCommitterStore<Arc<Store>> = Arc::new(move || Store::open_in_dir(&dir).map(Arc::new));
        let mut core = Core::open(open_store().unwrap(), engine_config, clock.now()).unwrap();
        hooks(&mut core);
        let store = Arc::new(SharedStore::new(core.store().clone()));
        let (intake_tx, intake) = mpsc::channel(16);
        let (alarms_tx, alarm_intake) = mpsc::channel(16);
        let (commands_tx, commands) = mpsc::channel(4);
        let (outbound, sent) = Outbound::detached();
        let (alarm_outbound, alarm_sent) = Outbound::detached();
        let (alerts, alert_rx) = broadcast::channel(16);
        let metrics = Arc::new(Metrics::new());
        let (stop, shutdown) = watch::channel(false);
        let committer = Committer {
            core,
            store: store.clone(),
            open_store,
            intake: PerLane {
                telemetry: intake,
                alarms: alarm_intake,
            },
            commands,
            outbound: PerLane {
                telemetry: outbound,
                alarms: alarm_outbound,
            },
            alerts,
            metrics: metrics.clone(),
            clock,
            max_batch: 64,
            retry_base: Duration::from_millis(5),
            alive: Arc::new(AtomicBool::new(false)),
            shutdown,
            lead_lost: watch::channel(false).0,
        };
        Rig {
            committer,
            store,
            intake: intake_tx,
            alarms: alarms_tx,
            commands: commands_tx,
            sent,
            alarm_sent,
            alerts: alert_rx,
            metrics,
            stop,
        }
    }

    fn acked_pkids(items: &[OutboundItem]) -> Vec<u16> {
        items
            .iter()
            .filter_map(|item| match item {
                OutboundItem::Ack { publish, .. } => Some(publish.pkid),
                OutboundItem::Downlink { .. } => None,
            })
            .collect()
    }

    fn incoming(pkid: u16, topic: &str, payload: Vec<u8>) -> Incoming {
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload, None);
        publish.pkid = pkid;
        Incoming {
            publish,
            received_at: SystemClock.now(),
            arrived: Instant::now(),
            lane: Lane::Telemetry,
            connection: 1,
            in_flight: crate::ingest::mqtt::InFlightCharge::none(),
        }
    }

    /// An uplink from `device`, on `topic` (`up` or `alarm`), as it came on `lane`.
    fn uplink_on(lane: Lane, pkid: u16, device: &str, topic: &str, seq: u32, body: UplinkBody) -> Incoming {
        let mut buf = [0u8; MAX_UPLINK_LEN];
        let header = UplinkHeader {
            boot: 1,
            seq,
            device_time_ms: None,
        };
        let payload = encode_uplink(&Uplink::new(header, body), &mut buf).unwrap().to_vec();
        Incoming {
            lane,
            ..incoming(pkid, &format!("tec/v1/dev/{device}/{topic}"), payload)
        }
    }

    fn uplink(pkid: u16, seq: u32, body: UplinkBody) -> Incoming {
        let mut buf = [0u8; MAX_UPLINK_LEN];
        let message = Uplink::new(
            UplinkHeader {
                boot: 1,
                seq,
                device_time_ms: None,
            },
            body,
        );
        incoming(
            pkid,
            "tec/v1/dev/pnd-1/up",
            encode_uplink(&message, &mut buf).unwrap().to_vec(),
        )
    }

    #[tokio::test]
    async fn acks_only_after_commit_in_arrival_order_and_retries_failures() {
        let dir = tempfile::tempdir().unwrap();
        let Rig {
            committer,
            store,
            intake: intake_tx,
            commands: commands_tx,
            mut sent,
            alerts: mut alert_rx,
            metrics,
            stop: _stop,
            alarms: _,
            alarm_sent: _,
        } = rig(dir.path(), Arc::new(SystemClock), EngineConfig::default(), |core| {
            core.fail_next_commits = 2;
        });
        // Queue the whole batch before the committer starts so it is one transaction.
        intake_tx
            .send(uplink(11, 1, UplinkBody::Alarm(AlarmKind::PendantPress)))
            .await
            .unwrap();
        intake_tx
            .send(incoming(12, "tec/v1/dev/pnd-1/up", b"junk".to_vec()))
            .await
            .unwrap();
        intake_tx
            .send(uplink(13, 1, UplinkBody::Alarm(AlarmKind::PendantPress)))
            .await
            .unwrap();
        let task = tokio::spawn(committer.run());

        let first = sent.recv().await.unwrap();
        // Nothing went out until the third attempt committed (each failure reopened the store).
        let stats = metrics.snapshot();
        assert_eq!(stats.commit_failures, 2);
        assert_eq!(stats.store_reopens, 2);
        assert!(stats.store_healthy);
        assert_eq!(store.get().unwrap().event_count().unwrap(), 1);
        let mut items = vec![first];
        while items.len() < 4 {
            items.push(sent.recv().await.unwrap());
        }
        let pkids = acked_pkids(&items);
        assert_eq!(
            pkids,
            vec![11, 12, 13],
            "acks in arrival order, duplicates and rejects too"
        );
        match items.get(3) {
            Some(OutboundItem::Downlink {
                body: DownlinkBody::Receipt { boot: 1, seqs },
                ..
            }) => {
                assert_eq!(seqs.as_slice(), &[1]);
            }
            other => panic!("expected the receipt after the acks, got {other:?}"),
        }
        // The engine was rebuilt after each failure, so the alarm raised exactly one alert.
        let alert = alert_rx.recv().await.unwrap();
        assert!(alert_rx.try_recv().is_err());
        assert_eq!(store.get().unwrap().open_alerts().unwrap(), vec![alert.alert.clone()]);
        let stats = metrics.snapshot();
        assert_eq!((stats.stored, stats.duplicates, stats.rejected_total()), (1, 1, 1));

        // Operator actions run in the committer too.
        let (reply, answer) = oneshot::channel();
        commands_tx
            .send(Command::Acknowledge {
                alert: alert.id,
                operator: "op".into(),
                reply,
            })
            .await
            .unwrap();
        let acked = answer.await.unwrap().unwrap();
        assert_eq!(acked.state, crate::domain::AlertState::Acknowledged);
        assert!(matches!(
            sent.recv().await.unwrap(),
            OutboundItem::Downlink {
                body: DownlinkBody::HelpOnTheWay { .. },
                ..
            }
        ));

        drop(intake_tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn alarms_are_committed_first_and_answered_on_their_own_session() {
        let dir = tempfile::tempdir().unwrap();
        let Rig {
            committer,
            intake,
            alarms,
            mut sent,
            mut alarm_sent,
            alerts: mut alert_rx,
            metrics,
            ..
        } = rig(dir.path(), Arc::new(SystemClock), EngineConfig::default(), |_| {});
        // Queued before the committer starts: telemetry first (with an old device's alarm on
        // `up`), then an alarm on the alarm lane, and a heartbeat sent there by mistake.
        let heartbeat = crate::writer::core::tests::heartbeat;
        intake
            .send(uplink_on(Lane::Telemetry, 1, "old-1", "up", 1, heartbeat()))
            .await
            .unwrap();
        intake
            .send(uplink_on(
                Lane::Telemetry,
                2,
                "old-1",
                "up",
                2,
                UplinkBody::Alarm(AlarmKind::PendantPress),
            ))
            .await
            .unwrap();
        alarms
            .send(uplink_on(
                Lane::Alarms,
                7,
                "new-1",
                "alarm",
                5,
                UplinkBody::Alarm(AlarmKind::Fall),
            ))
            .await
            .unwrap();
        alarms
            .send(uplink_on(Lane::Alarms, 8, "new-1", "alarm", 6, heartbeat()))
            .await
            .unwrap();
        let task = tokio::spawn(committer.run());

        // The alarm lane's batch was committed first, although it was queued last.
        let first = alert_rx.recv().await.unwrap();
        let second = alert_rx.recv().await.unwrap();
        assert_eq!(
            (
                first.alert.device.map(|d| d.to_string()),
                second.alert.device.map(|d| d.to_string())
            ),
            (Some("new-1".to_owned()), Some("old-1".to_owned()))
        );
        // Each session acks its own publishes and carries the receipts of its own batches.
        let mut on_alarm_session = vec![alarm_sent.recv().await.unwrap(), alarm_sent.recv().await.unwrap()];
        on_alarm_session.push(alarm_sent.recv().await.unwrap());
        assert_eq!(acked_pkids(&on_alarm_session), vec![7, 8]);
        assert!(matches!(
            on_alarm_session.get(2),
            Some(OutboundItem::Downlink {
                device,
                body: DownlinkBody::Receipt { boot: 1, seqs },
            }) if device.as_str() == "new-1" && seqs.as_slice() == [5, 6]
        ));
        let mut on_telemetry_session = Vec::new();
        while acked_pkids(&on_telemetry_session).len() < 2 {
            on_telemetry_session.push(sent.recv().await.unwrap());
        }
        assert_eq!(acked_pkids(&on_telemetry_session), vec![1, 2]);
        // The heartbeat on the alarm topic was stored like any other, and counted.
        let stats = metrics.snapshot();
        assert_eq!((stats.stored, stats.off_lane), (4, 1));

        // Closing one lane does not stop the committer; closing both does.
        drop(alarms);
        intake
            .send(uplink_on(Lane::Telemetry, 3, "old-1", "up", 3, heartbeat()))
            .await
            .unwrap();
        loop {
            let item = sent.recv().await.unwrap();
            if acked_pkids(std::slice::from_ref(&item)) == [3] {
                break;
            }
        }
        drop(intake);
        task.await.unwrap();
    }

    #[derive(Debug)]
    struct ManualClock(std::sync::atomic::AtomicI64);

    impl Clock for ManualClock {
        fn now(&self) -> Timestamp {
            Timestamp(self.0.load(Ordering::SeqCst))
        }
    }

    #[tokio::test]
    async fn timers_fire_even_under_continuous_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_700_000_000_000)));
        let mut engine_config = EngineConfig::default();
        engine_config.escalation.life_safety_s = vec![5];
        let Rig {
            committer,
            intake: intake_tx,
            alerts: mut alert_rx,
            ..
        } = rig(dir.path(), clock.clone(), engine_config, |_| {});
        let task = tokio::spawn(committer.run());
        intake_tx
            .send(uplink(1, 1, UplinkBody::Alarm(AlarmKind::Fall)))
            .await
            .unwrap();
        let raised = alert_rx.recv().await.unwrap();
        assert_eq!(raised.escalation_level, 0);
        clock.0.fetch_add(6_000, Ordering::SeqCst);
        // Keep a batch arriving every 20 ms while waiting for the escalation.
        let load = {
            let intake_tx = intake_tx.clone();
            tokio::spawn(async move {
                for pkid in 100..400u16 {
                    let junk = incoming(pkid, "tec/v1/dev/pnd-1/up", vec![1, 2]);
                    if intake_tx.send(junk).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let escalated = tokio::time::timeout(Duration::from_secs(3), alert_rx.recv())
            .await
            .expect("escalation fired within the timer cap despite the load")
            .unwrap();
        assert_eq!(escalated.id, raised.id);
        assert_eq!(escalated.escalation_level, 1);
        load.abort();
        drop(intake_tx);
        task.await.unwrap();
    }
    /// Waits for `ready`, checking every few ms; the timeout only guards against a hang.
    async fn until(what: &str, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn poison_is_isolated(kind: PoisonKind) {
        let dir = tempfile::tempdir().unwrap();
        let poison = uplink(3, 3, UplinkBody::Alarm(AlarmKind::Fall));
        let poison_payload = poison.publish.payload.to_vec();
        let Rig {
            committer,
            store,
            intake,
            mut sent,
            alerts: mut alert_rx,
            metrics,
            stop: _stop,
            ..
        } = rig(dir.path(), Arc::new(SystemClock), EngineConfig::default(), |core| {
            core.poison = Some((poison_payload, kind));
        });
        let mut other = uplink(4, 1, UplinkBody::Alarm(AlarmKind::PendantPress));
        other.publish.topic = "tec/v1/dev/pnd-2/up".into();
        for item in [
            uplink(1, 1, UplinkBody::Alarm(AlarmKind::PendantPress)),
            uplink(2, 2, UplinkBody::Alarm(AlarmKind::Fall)),
            poison,
            other,
            incoming(5, "tec/v1/dev/pnd-1/up", b"junk".to_vec()),
        ] {
            intake.send(item).await.unwrap();
        }
        let task = tokio::spawn(committer.run());
        let mut items = Vec::new();
        while acked_pkids(&items).len() < 5 {
            items.push(sent.recv().await.unwrap());
        }
        assert_eq!(
            acked_pkids(&items),
            vec![1, 2, 3, 4, 5],
            "every publish acked, in order"
        );
        drop(intake);
        task.await.unwrap();

        let store = store.get().unwrap();
        assert_eq!(store.event_count().unwrap(), 3, "all but the poison publish stored");
        let quarantined = store.quarantined(None).unwrap();
        let reasons: Vec<RejectReason> = quarantined.iter().map(|q| q.reason).collect();
        assert_eq!(reasons, vec![RejectReason::Malformed, RejectReason::ProcessingFailed]);
        assert!(
            quarantined[1].detail.contains("processing failed"),
            "{:?}",
            quarantined[1]
        );
        let stats = metrics.snapshot();
        assert_eq!(stats.rejected_for(RejectReason::ProcessingFailed), 1);
        assert!(stats.store_healthy, "poison is not a store fault");
        assert_eq!(stats.store_reopens, 0);
        // The engine was rebuilt after every failed attempt: one alert per stored alarm,
        // each broadcast once, none left over from an attempt that did not commit.
        let mut raised = Vec::new();
        while let Ok(alert) = alert_rx.try_recv() {
            raised.push(alert.id);
        }
        let stored: Vec<AlertId> = store.open_alerts().unwrap().iter().map(|a| a.id).collect();
        assert_eq!(raised, stored);
        assert_eq!(stored, vec![AlertId(1), AlertId(2), AlertId(3)]);
    }

    #[tokio::test]
    async fn poison_publish_is_isolated_quarantined_and_acked() {
        poison_is_isolated(PoisonKind::EncodeError).await;
    }

    #[tokio::test]
    async fn panicking_publish_is_isolated_quarantined_and_acked() {
        poison_is_isolated(PoisonKind::Panic).await;
    }

    #[tokio::test]
    async fn shutdown_during_a_store_outage_is_prompt_and_acks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let Rig {
            committer,
            intake,
            mut sent,
            metrics,
            stop,
            ..
        } = rig(dir.path(), Arc::new(SystemClock), EngineConfig::default(), |core| {
            core.fail_next_commits = u32::MAX;
        });
        for pkid in 1..=3 {
            intake
                .send(uplink(pkid, u32::from(pkid), UplinkBody::Alarm(AlarmKind::Fall)))
                .await
                .unwrap();
        }
        let task = tokio::spawn(committer.run());
        until("three store faults", || metrics.snapshot().store_errors >= 3).await;
        let reason = metrics.store_fault().unwrap();
        assert!(reason.contains("injected commit failure"), "{reason}");
        assert!(!metrics.snapshot().store_healthy);
        // Another publish queued behind the stuck batch.
        intake
            .send(uplink(9, 9, UplinkBody::Alarm(AlarmKind::Fall)))
            .await
            .unwrap();
        stop.send(true).unwrap();
        // The intake stays open (as the MQTT task's would until the committer lets go):
        // only the shutdown signal can end the task.
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the committer stops promptly during a store outage")
            .unwrap();
        assert!(sent.try_recv().is_err(), "nothing acked or sent");
        assert_eq!(metrics.snapshot().abandoned, 4);
        drop(intake);
    }
}
