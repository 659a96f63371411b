//! The shell of the purge: reads what the plan needs, applies each step in its own write
//! transaction, and records the outcome (log line, metrics through the writer, audit entries).
//!
//! While the gateway runs, every step goes through the single writer as one command
//! ([`crate::writer::committer::Command::Retention`]), so a purge never holds the store for
//! longer than one step (`retention.batch_size` keys), and the task pauses between steps so
//! that waiting device batches and alarms are committed in between. Offline
//! (`tec-gateway purge`) the steps run directly on the store.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::plan::{Cutoffs, Erasure, Purge, PurgeCounts, PurgeStep, StepOutcome, next_run, people_to_erase};
use super::policy::RetentionPolicy;
use crate::access::Action;
use crate::access::audit::draft;
use crate::app::GatewayClient;
use crate::domain::{Clock, Timestamp};
use crate::store::{AccessChange, AccessStore, AuditDraft, ReadStore, Store, StoreError, WriteStore, WriteTxn};
use crate::writer::{Core, OperatorError};

/// Who the purge's audit entries name as the actor.
pub const RETENTION_ACTOR: &str = "retention";
/// Pause between two steps while the gateway runs: the writer takes the device batches and
/// alarms queued meanwhile before the next step.
const PAUSE_BETWEEN_STEPS: Duration = Duration::from_millis(20);

/// One step with what it needs, as sent to the writer.
#[derive(Debug, Clone)]
pub struct RetentionStep {
    pub step: PurgeStep,
    pub cutoffs: Cutoffs,
    pub limit: usize,
    pub now: Timestamp,
}

/// Why a purge stopped.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Gateway(#[from] OperatorError),
}

/// Applies one step inside `batch` (the caller commits, or aborts for a dry run).
pub fn apply_step(batch: &mut impl WriteTxn, step: &RetentionStep) -> Result<StepOutcome, StoreError> {
    let cut = &step.cutoffs;
    let limit = step.limit;
    Ok(match &step.step {
        PurgeStep::Events { resume } => {
            let (removed, resume) = batch.compact_events(cut.telemetry, cut.alerts, *resume, limit)?;
            StepOutcome::Events { removed, resume }
        }
        PurgeStep::Alerts { resume } => StepOutcome::Alerts(batch.purge_closed_alerts(cut.alerts, *resume, limit)?),
        PurgeStep::Quarantine => StepOutcome::Quarantine(batch.purge_quarantine(cut.quarantine, limit)?),
        PurgeStep::Erase(person) => StepOutcome::Erase(batch.erase_person_step(person, limit)?),
        PurgeStep::Audit => StepOutcome::Audit(batch.purge_audit(cut.audit, step.now, limit)?),
    })
}

/// One step in the writer, in its own transaction, committed only if it removed something
/// (whether it did is the second value). Before a person's records go, the alert engine
/// drops their rules, so it never writes them back.
pub fn apply_in_core<S: WriteStore>(
    core: &mut Core<S>,
    step: &RetentionStep,
) -> Result<(StepOutcome, bool), StoreError> {
    if let PurgeStep::Erase(person) = &step.step
        && core.engine().resident_rules(person).is_some()
    {
        core.set_resident_rules(person.clone(), Default::default(), step.now)?;
    }
    let mut txn = core.store_mut().begin_txn()?;
    let outcome = apply_step(&mut txn, step)?;
    let wrote = outcome.wrote();
    if wrote {
        txn.commit().into_result()?;
    }
    // Otherwise dropped: rolled back, nothing written.
    Ok((outcome, wrote))
}

/// The plan's inputs, read from the store.
fn plan(store: &(impl ReadStore + ?Sized), now: Timestamp, policy: &RetentionPolicy) -> Result<Purge, StoreError> {
    let cutoffs = Cutoffs::at(now, policy);
    let open: BTreeSet<_> = store.residents_with_open_alerts()?.into_iter().collect();
    let erase = people_to_erase(&store.people()?, &store.all_assignments()?, &open, &cutoffs);
    Ok(Purge::new(cutoffs, erase))
}

fn erasure_entry(now: Timestamp, erasure: &Erasure) -> AuditDraft {
    let target = format!(
        "erased events {}, alerts {}, records {}{}",
        erasure.events,
        erasure.alerts,
        erasure.records,
        if erasure.deferred {
            "; stopped at an open alert, the rest on a later run"
        } else {
            ""
        }
    );
    draft(
        now,
        RETENTION_ACTOR,
        None,
        Action::PersonErased,
        Some(&erasure.person),
        Some(&target),
        None,
    )
}

fn purge_entry(now: Timestamp, counts: &PurgeCounts) -> AuditDraft {
    draft(
        now,
        RETENTION_ACTOR,
        None,
        Action::RetentionPurged,
        None,
        Some(&counts.to_string()),
        None,
    )
}

fn log_counts(counts: &PurgeCounts, dry_run: bool) {
    tracing::info!(
        dry_run,
        telemetry_events = counts.telemetry_events,
        alarm_events = counts.alarm_events,
        alerts = counts.alerts,
        quarantine = counts.quarantine,
        audit_entries = counts.audit_entries,
        people_erased = counts.people_erased,
        people_deferred = counts.people_deferred,
        batches = counts.batches,
        "retention purge finished"
    );
}

/// The purge on a store no gateway is running on. A dry run applies every step in one
/// transaction and aborts it, so its counts are exactly what a real run would remove.
/// `progress` is called after every step with the counts so far.
pub fn purge_offline(
    store: &Store,
    policy: &RetentionPolicy,
    now: Timestamp,
    dry_run: bool,
    progress: &mut dyn FnMut(&PurgeCounts),
) -> Result<PurgeCounts, PurgeError> {
    let mut purge = plan(store, now, policy)?;
    let limit = policy.batch();
    let mut dry = if dry_run { Some(store.begin_write()?) } else { None };
    let mut audit = Vec::new();
    while let Some(step) = purge.next_step().cloned() {
        let step = RetentionStep {
            step,
            cutoffs: purge.cutoffs,
            limit,
            now,
        };
        let outcome = match dry.as_mut() {
            Some(batch) => apply_step(batch, &step)?,
            None => {
                let mut batch = store.begin_write()?;
                let outcome = apply_step(&mut batch, &step)?;
                if outcome.wrote() {
                    batch.commit()?;
                } else {
                    batch.abort()?;
                }
                outcome
            }
        };
        purge.record(outcome);
        audit.extend(purge.take_erasures().iter().map(|erasure| erasure_entry(now, erasure)));
        progress(purge.counts());
    }
    let counts = purge.counts().clone();
    match dry {
        Some(batch) => batch.abort()?,
        None if !counts.is_empty() => {
            audit.push(purge_entry(now, &counts));
            let change = AccessChange { ops: Vec::new(), audit };
            // No ops: nothing to refuse.
            let _ = store.apply_access(&change)?;
        }
        None => {}
    }
    log_counts(&counts, dry_run);
    Ok(counts)
}

/// The purge in a running gateway, each step through the writer.
pub async fn purge_online(
    client: &GatewayClient,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<PurgeCounts, PurgeError> {
    let mut purge = {
        let store = client.reads().map_err(|e| OperatorError::Unavailable(e.to_string()))?;
        let policy = policy.clone();
        tokio::task::spawn_blocking(move || plan(&*store, now, &policy))
            .await
            .map_err(|e| OperatorError::Unavailable(format!("planning the purge failed: {e}")))??
    };
    let limit = policy.batch();
    while let Some(step) = purge.next_step().cloned() {
        let outcome = client
            .retention_step(RetentionStep {
                step,
                cutoffs: purge.cutoffs,
                limit,
                now,
            })
            .await?;
        purge.record(outcome);
        let erased: Vec<AuditDraft> = purge
            .take_erasures()
            .iter()
            .map(|erasure| erasure_entry(now, erasure))
            .collect();
        if !erased.is_empty() {
            client
                .apply_access(AccessChange {
                    ops: Vec::new(),
                    audit: erased,
                })
                .await?
                .map_err(|refusal| OperatorError::Unavailable(refusal.to_string()))?;
        }
        tokio::time::sleep(PAUSE_BETWEEN_STEPS).await;
    }
    let counts = purge.counts().clone();
    if !counts.is_empty() {
        client
            .apply_access(AccessChange {
                ops: Vec::new(),
                audit: vec![purge_entry(now, &counts)],
            })
            .await?
            .map_err(|refusal| OperatorError::Unavailable(refusal.to_string()))?;
    }
    log_counts(&counts, false);
    Ok(counts)
}

/// Runs the purge daily at `policy.run_at` London time by `clock`, until the gateway stops.
/// A failed run is logged and tried again the next day.
pub async fn run_daily(client: GatewayClient, clock: Arc<dyn Clock>, policy: RetentionPolicy) {
    let Ok(at) = policy.run_time() else {
        tracing::error!(run_at = %policy.run_at, "retention.run_at is not a time; the daily purge is off");
        return;
    };
    loop {
        let due = next_run(clock.now(), at);
        // Short sleeps against the injected clock: a test's manual clock (or a wall-clock
        // jump) is noticed within a second.
        while clock.now() < due {
            let wait = Duration::from_millis(u64::try_from(due.millis_since(clock.now())).unwrap_or(0))
                .min(Duration::from_secs(1));
            tokio::select! {
                () = client.stopped() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
        match purge_online(&client, &policy, clock.now()).await {
            Ok(_) => {}
            Err(PurgeError::Gateway(OperatorError::Stopped)) => return,
            Err(e) => tracing::error!(error = %e, "retention purge failed; it runs again tomorrow"),
        }
        // Past the due minute before planning the next run.
        while next_run(clock.now(), at) == due {
            tokio::select! {
                () = client.stopped() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
