//! The committer task: group commit. It takes everything the MQTT task has forwarded (up
//! to `max_batch`), commits it in one transaction off the async threads, and only then
//! acks, receipts and broadcasts. While one batch commits the next accumulates in the
//! channel, so batches grow with load and no artificial delay is needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::core::{Committed, Core, OperatorError, retry_backoff};
use crate::alerts::{AlertEngine, Effect, EngineError, ResidentRules};
use crate::domain::{Alert, AlertId, Assignment, Clock, DeviceRecord, Outcome, Resident, ResidentId, Timestamp};
use crate::ingest::mqtt::{Incoming, Outbound, OutboundItem};
use crate::metrics::Metrics;
use crate::store::StoreError;

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
        outcome: Outcome,
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
}

/// Everything the committer task owns.
#[derive(Debug)]
pub struct Committer {
    pub core: Core,
    pub intake: mpsc::Receiver<Incoming>,
    pub commands: mpsc::Receiver<Command>,
    pub outbound: Outbound,
    pub alerts: broadcast::Sender<Alert>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub max_batch: usize,
    pub retry_base: Duration,
    pub alive: Arc<AtomicBool>,
}

/// Clears `alive` however the task ends (including a panic), for /healthz.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs `work` on the blocking pool with the core moved in and back out.
async fn blocking<T: Send + 'static>(
    core: Core,
    work: impl FnOnce(&mut Core) -> T + Send + 'static,
) -> Result<(Core, T), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let mut core = core;
        let result = work(&mut core);
        (core, result)
    })
    .await
}

impl Committer {
    /// Runs until the intake channel closes (shutdown), committing everything received.
    pub async fn run(self) {
        let Committer {
            core,
            mut intake,
            mut commands,
            outbound,
            alerts,
            metrics,
            clock,
            max_batch,
            retry_base,
            alive,
        } = self;
        alive.store(true, Ordering::Release);
        let _guard = AliveGuard(alive);
        metrics.set_open_alerts(core.open_alert_count());
        let mut shell = Shell {
            core: Some(core),
            outbound,
            alerts,
            metrics,
            clock,
            retry_base,
        };
        let mut commands_open = true;
        let mut buf: Vec<Incoming> = Vec::with_capacity(max_batch);
        // One timer across iterations: recreating it each time would never let it fire
        // while batches keep arriving, and escalations would starve under load.
        let timer = tokio::time::sleep(shell.timer_sleep());
        tokio::pin!(timer);
        loop {
            let wanted = tokio::time::Instant::now() + shell.timer_sleep();
            if wanted < timer.deadline() {
                timer.as_mut().reset(wanted);
            }
            tokio::select! {
                biased;
                command = commands.recv(), if commands_open => match command {
                    Some(command) => shell.command(command).await,
                    None => commands_open = false,
                },
                () = &mut timer => {
                    shell.timers(false).await;
                    timer.as_mut().reset(tokio::time::Instant::now() + shell.timer_sleep());
                }
                received = intake.recv_many(&mut buf, max_batch) => {
                    if received == 0 {
                        break;
                    }
                    let batch = std::mem::replace(&mut buf, Vec::with_capacity(max_batch));
                    shell.ingest(batch).await;
                }
            }
        }
        // Intake closed: answer what is still queued rather than leave callers hanging.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            shell.command(command).await;
        }
        tracing::info!("committer stopped: everything received was committed");
    }
}

struct Shell {
    /// `None` only while a blocking job holds it.
    core: Option<Core>,
    outbound: Outbound,
    alerts: broadcast::Sender<Alert>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    retry_base: Duration,
}

impl Shell {
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

    /// Runs blocking work on the core. If the job panicked the core is rebuilt from the
    /// store (the panic is logged by tokio); `None` means even that failed.
    async fn run<T: Send + 'static>(&mut self, work: impl FnOnce(&mut Core) -> T + Send + 'static) -> Option<T> {
        let core = self.core.take()?;
        let store = core.store().clone();
        let engine_config = core.engine().config().clone();
        match blocking(core, work).await {
            Ok((core, result)) => {
                self.core = Some(core);
                Some(result)
            }
            Err(e) => {
                tracing::error!(error = %e, "committer job failed; rebuilding the engine from the store");
                match Core::open(store, engine_config, self.clock.now()) {
                    Ok(core) => self.core = Some(core),
                    Err(e) => tracing::error!(error = %e, "cannot rebuild the engine"),
                }
                None
            }
        }
    }

    /// After a failed commit the engine may be ahead of the store: rebuild it.
    async fn recover(&mut self) {
        let now = self.clock.now();
        let restored = self.run(move |core| core.restore(now)).await;
        if let Some(Err(e)) = restored {
            tracing::error!(error = %e, "cannot rebuild the alert engine from the store");
        }
    }

    async fn ingest(&mut self, batch: Vec<Incoming>) {
        let size = batch.len();
        let batch = Arc::new(batch);
        let mut failures = 0u32;
        loop {
            let now = self.clock.now();
            let job = batch.clone();
            let span = tracing::debug_span!("ingest_batch", size, attempt = failures + 1);
            let started = std::time::Instant::now();
            let result = self.run(move |core| span.in_scope(|| core.ingest(&job, now))).await;
            match result {
                Some(Ok(committed)) => {
                    let latencies: Vec<Duration> = batch.iter().map(|i| i.arrived.elapsed()).collect();
                    self.metrics.committed(size, latencies);
                    self.metrics.stored(committed.stored);
                    self.metrics.duplicates(committed.duplicates);
                    self.metrics.unregistered(committed.unregistered);
                    self.metrics
                        .device_time_out_of_range(committed.device_time_out_of_range);
                    for reason in &committed.rejected {
                        self.metrics.rejected(*reason);
                    }
                    // Acks in arrival order, for every publish: duplicates and quarantined too.
                    for incoming in batch.iter() {
                        self.outbound.send(OutboundItem::Ack {
                            publish: incoming.publish.clone(),
                            connection: incoming.connection,
                        });
                    }
                    tracing::debug!(
                        size,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        stored = committed.stored,
                        duplicates = committed.duplicates,
                        "batch committed"
                    );
                    self.after_commit(committed);
                    return;
                }
                Some(Err(e)) => {
                    failures += 1;
                    self.metrics.commit_failed();
                    tracing::error!(error = %e, size, failures, "COMMIT FAILED: nothing acked; retrying");
                }
                None => {
                    failures += 1;
                    self.metrics.commit_failed();
                }
            }
            self.recover().await;
            tokio::time::sleep(retry_backoff(self.retry_base, failures)).await;
        }
    }

    /// Receipts, then the engine's downlinks, then the live stream.
    fn after_commit(&self, committed: Committed) {
        let Committed {
            receipts,
            downlinks,
            alerts,
            ..
        } = committed;
        for (device, body) in receipts.into_iter().chain(downlinks) {
            self.outbound.send(OutboundItem::Downlink { device, body });
        }
        for alert in alerts {
            tracing::info!(alert = %alert.id, kind = ?alert.kind, state = ?alert.state, "alert changed");
            self.metrics.alert_changed(alert.kind);
            // No subscribers is fine: the store has it.
            let _ = self.alerts.send(alert);
        }
        if let Some(core) = &self.core {
            self.metrics.set_open_alerts(core.open_alert_count());
        }
    }

    async fn timers(&mut self, forced: bool) {
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
            Some(Ok(committed)) => {
                self.metrics.committed(0, []);
                self.after_commit(committed);
            }
            Some(Err(e)) => {
                self.metrics.commit_failed();
                tracing::error!(error = %e, "COMMIT FAILED for engine timers; will retry");
                self.recover().await;
            }
            None => self.metrics.commit_failed(),
        }
    }

    /// An engine action that changes one alert, answered with the alert as committed.
    async fn alert_action(
        &mut self,
        alert: AlertId,
        action: impl FnOnce(&mut AlertEngine, Timestamp) -> Result<Vec<Effect>, EngineError> + Send + 'static,
    ) -> Result<Alert, OperatorError> {
        let now = self.clock.now();
        let result = self
            .run(move |core| core.operator(|engine| action(engine, now)))
            .await
            .ok_or(OperatorError::Stopped)?;
        match result {
            Ok(committed) => {
                self.metrics.committed(0, []);
                let changed = committed.alerts.iter().rev().find(|a| a.id == alert).cloned();
                self.after_commit(committed);
                changed.ok_or(OperatorError::NoChange(alert))
            }
            Err(OperatorError::Store(e)) => {
                self.metrics.commit_failed();
                tracing::error!(error = %e, %alert, "COMMIT FAILED for an operator action");
                self.recover().await;
                Err(OperatorError::Store(e))
            }
            Err(e) => Err(e),
        }
    }

    async fn store_action(
        &mut self,
        work: impl FnOnce(&mut Core) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), OperatorError> {
        let result = self.run(work).await.ok_or(OperatorError::Stopped)?;
        match result {
            Ok(()) => {
                self.metrics.committed(0, []);
                Ok(())
            }
            Err(e) => Err(OperatorError::Store(e)),
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
                outcome,
                note,
                reply,
            } => {
                let result = self
                    .alert_action(alert, move |engine, now| {
                        engine.resolve(alert, &operator, outcome, note.as_deref(), now)
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
            Command::SetResidentRules { resident, rules, reply } => {
                let now = self.clock.now();
                let result = self
                    .run(move |core| core.set_resident_rules(resident, rules, now))
                    .await;
                let result = match result {
                    Some(Ok(committed)) => {
                        self.metrics.committed(0, []);
                        self.after_commit(committed);
                        Ok(())
                    }
                    Some(Err(e)) => {
                        self.metrics.commit_failed();
                        self.recover().await;
                        Err(OperatorError::Store(e))
                    }
                    None => Err(OperatorError::Stopped),
                };
                let _ = reply.send(result);
            }
            Command::OpenAlerts { reply } => {
                let mut open: Vec<Alert> = self
                    .core
                    .as_ref()
                    .map(|core| core.engine().open_alerts().cloned().collect())
                    .unwrap_or_default();
                open.sort_by_key(|a| (a.priority, a.raised_at, a.id));
                let _ = reply.send(open);
            }
            Command::RunTimers { reply } => {
                self.timers(true).await;
                let _ = reply.send(Ok(()));
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
    use crate::alerts::EngineConfig;
    use crate::domain::SystemClock;
    use crate::store::Store;

    fn incoming(pkid: u16, topic: &str, payload: Vec<u8>) -> Incoming {
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload, None);
        publish.pkid = pkid;
        Incoming {
            publish,
            received_at: SystemClock.now(),
            arrived: Instant::now(),
            connection: 1,
            in_flight: crate::ingest::mqtt::InFlightCharge::none(),
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
        let store = Arc::new(Store::open_in_dir(dir.path()).unwrap());
        let mut core = Core::open(store.clone(), EngineConfig::default(), SystemClock.now()).unwrap();
        core.fail_next_commits = 2;
        let (intake_tx, intake) = mpsc::channel(16);
        let (commands_tx, commands) = mpsc::channel(4);
        let (outbound, mut sent) = Outbound::detached();
        let (alerts, mut alert_rx) = broadcast::channel(16);
        let metrics = Arc::new(Metrics::new());
        let committer = Committer {
            core,
            intake,
            commands,
            outbound,
            alerts,
            metrics: metrics.clone(),
            clock: Arc::new(SystemClock),
            max_batch: 64,
            retry_base: Duration::from_millis(5),
            alive: Arc::new(AtomicBool::new(false)),
        };
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
        // Nothing went out until the third attempt committed.
        assert_eq!(metrics.snapshot().commit_failures, 2);
        assert_eq!(store.event_count().unwrap(), 1);
        let mut items = vec![first];
        while items.len() < 4 {
            items.push(sent.recv().await.unwrap());
        }
        let pkids: Vec<u16> = items
            .iter()
            .filter_map(|item| match item {
                OutboundItem::Ack { publish, .. } => Some(publish.pkid),
                OutboundItem::Downlink { .. } => None,
            })
            .collect();
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
        assert_eq!(store.open_alerts().unwrap(), vec![alert.clone()]);
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
        let store = Arc::new(Store::open_in_dir(dir.path()).unwrap());
        let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_700_000_000_000)));
        let mut engine_config = EngineConfig::default();
        engine_config.escalation.life_safety_s = vec![5];
        let core = Core::open(store, engine_config, clock.now()).unwrap();
        let (intake_tx, intake) = mpsc::channel(16);
        let (_commands_tx, commands) = mpsc::channel(4);
        let (outbound, _sent) = Outbound::detached();
        let (alerts, mut alert_rx) = broadcast::channel(16);
        let committer = Committer {
            core,
            intake,
            commands,
            outbound,
            alerts,
            metrics: Arc::new(Metrics::new()),
            clock: clock.clone(),
            max_batch: 64,
            retry_base: Duration::from_millis(5),
            alive: Arc::new(AtomicBool::new(false)),
        };
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
}
