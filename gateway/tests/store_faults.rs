//! Store faults heal without a person: the real committer and core on a redb storage
//! backend that fails on cue (ENOSPC or EIO on write and on fsync, refused reopens, failed
//! engine restores). While the store is down nothing is acked and the metrics say why;
//! once the fault clears, everything sent is stored exactly once, alarms are alerted once,
//! and only committed publishes were acked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gateway::alerts::EngineConfig;
use gateway::domain::{AlertChange, AlertId, Clock, SystemClock};
use gateway::ingest::mqtt::{Incoming, Lane, Outbound, OutboundItem, PerLane};
use gateway::metrics::Metrics;
use gateway::store::{Store, StoreError};
use gateway::writer::committer::OpenCommitterStore;
use gateway::writer::committer::{Command, Committer};
use gateway::writer::{Core, OperatorError, SharedStore};
use protocol::{AlarmKind, DeviceStatus, FirmwareVersion, MAX_UPLINK_LEN, Uplink, UplinkBody, UplinkHeader};
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// What the backend and the opener fail, set by the test while the committer runs.
#[derive(Debug, Default)]
struct FaultPlan {
    /// errno for every write and resize while non-zero (a full disk).
    write_errno: AtomicI32,
    /// errno for every fsync while non-zero.
    sync_errno: AtomicI32,
    /// Fail this many fsyncs, then succeed.
    sync_failures: AtomicU32,
    /// Refuse this many opens outright.
    open_failures: AtomicU32,
    /// Fail reads right after this many successful opens, so the engine restore fails.
    restore_failures: AtomicU32,
    fail_reads: AtomicBool,
    injected: AtomicU64,
    reads_failed: AtomicU64,
}

impl FaultPlan {
    fn fault(&self, errno: i32) -> io::Error {
        self.injected.fetch_add(1, Ordering::SeqCst);
        io::Error::from_raw_os_error(errno)
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn check_write(&self) -> io::Result<()> {
        match self.write_errno.load(Ordering::SeqCst) {
            0 => Ok(()),
            errno => Err(self.fault(errno)),
        }
    }
}

/// redb's own file backend, failing when the plan says so.
#[derive(Debug)]
struct FaultyBackend {
    inner: FileBackend,
    plan: Arc<FaultPlan>,
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        if self.plan.fail_reads.load(Ordering::SeqCst) {
            self.plan.reads_failed.fetch_add(1, Ordering::SeqCst);
            return Err(self.plan.fault(EIO));
        }
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.plan.check_write()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        match self.plan.sync_errno.load(Ordering::SeqCst) {
            0 if FaultPlan::take(&self.plan.sync_failures) => return Err(self.plan.fault(EIO)),
            0 => {}
            errno => return Err(self.plan.fault(errno)),
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.plan.check_write()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

fn opener(path: PathBuf, plan: Arc<FaultPlan>) -> OpenCommitterStore<Arc<Store>> {
    Arc::new(move || {
        plan.fail_reads.store(false, Ordering::SeqCst);
        if FaultPlan::take(&plan.open_failures) {
            return Err(StoreError::Io(plan.fault(EIO)));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let backend = FaultyBackend {
            inner: FileBackend::new(file)?,
            plan: plan.clone(),
        };
        let store = Store::open_with_backend(backend, &path)?;
        if FaultPlan::take(&plan.restore_failures) {
            // Open, but every read from here fails: the engine restore cannot finish.
            plan.fail_reads.store(true, Ordering::SeqCst);
        }
        Ok(Arc::new(store))
    })
}

/// The real committer on a faulty store, watched from outside.
struct Harness {
    _dir: tempfile::TempDir,
    plan: Arc<FaultPlan>,
    store: Arc<SharedStore>,
    intake: mpsc::Sender<Incoming>,
    commands: mpsc::Sender<Command>,
    sent: mpsc::UnboundedReceiver<OutboundItem>,
    acked: Vec<u16>,
    alerts: broadcast::Receiver<AlertChange>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plan = Arc::new(FaultPlan::default());
        let open_store = opener(dir.path().join("faulty.redb"), plan.clone());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let core = Core::open(open_store().unwrap(), EngineConfig::default(), clock.now()).unwrap();
        let store = Arc::new(SharedStore::new(core.store().clone()));
        let (intake, intake_rx) = mpsc::channel(64);
        let (commands, commands_rx) = mpsc::channel(4);
        let (outbound, sent) = Outbound::detached();
        let (alerts_tx, alerts) = broadcast::channel(64);
        let metrics = Arc::new(Metrics::new());
        let (stop, shutdown) = watch::channel(false);
        let committer = Committer {
            core,
            store: store.clone(),
            open_store,
            // No alarm session here: its intake is closed from the start.
            intake: PerLane {
                telemetry: intake_rx,
                alarms: mpsc::channel(1).1,
            },
            commands: commands_rx,
            outbound: PerLane::both(outbound),
            alerts: alerts_tx,
            metrics: metrics.clone(),
            clock,
            max_batch: 64,
            retry_base: Duration::from_millis(2),
            alive: Arc::new(AtomicBool::new(false)),
            shutdown,
            lead_lost: watch::channel(false).0,
        };
        let task = tokio::spawn(committer.run());
        Self {
            _dir: dir,
            plan,
            store,
            intake,
            commands,
            sent,
            acked: Vec::new(),
            alerts,
            metrics,
            stop,
            task,
        }
    }

    async fn send(&self, pkid: u16, device: &str, seq: u32, body: UplinkBody) {
        let mut buf = [0u8; MAX_UPLINK_LEN];
        let message = Uplink::new(
            UplinkHeader {
                boot: 1,
                seq,
                device_time_ms: None,
            },
            body,
        );
        let payload = protocol::encode_uplink(&message, &mut buf).unwrap().to_vec();
        let mut publish = Publish::new(format!("tec/v1/dev/{device}/up"), QoS::AtLeastOnce, payload, None);
        publish.pkid = pkid;
        let incoming = Incoming {
            publish,
            received_at: SystemClock.now(),
            arrived: std::time::Instant::now(),
            lane: Lane::Telemetry,
            connection: 1,
            in_flight: gateway::ingest::mqtt::InFlightCharge::none(),
        };
        self.intake.send(incoming).await.unwrap();
    }

    /// Takes what the committer has sent so far, keeping the acks.
    fn drain_sent(&mut self) {
        while let Ok(item) = self.sent.try_recv() {
            if let OutboundItem::Ack { publish, .. } = item {
                self.acked.push(publish.pkid);
            }
        }
    }

    async fn wait_acked(&mut self, want: &[u16]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !want.iter().all(|pkid| self.acked.contains(pkid)) {
            match tokio::time::timeout_at(deadline, self.sent.recv()).await {
                Ok(Some(OutboundItem::Ack { publish, .. })) => self.acked.push(publish.pkid),
                Ok(Some(OutboundItem::Downlink { .. })) => {}
                Ok(None) => panic!("committer stopped; acked {:?}, wanted {want:?}", self.acked),
                Err(_) => panic!("timed out: acked {:?}, wanted {want:?}", self.acked),
            }
        }
    }

    /// Waits until `ready` holds; the timeout only guards against a hang.
    async fn until(&self, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn metric(&self, line_start: &str) -> u64 {
        let text = self.metrics.encode();
        text.lines()
            .find_map(|line| line.strip_prefix(line_start))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Stops the committer; returns the store and every alert change it broadcast since
    /// the last look (all of them: the task has ended).
    async fn finish(mut self) -> (Arc<Store>, Vec<AlertId>) {
        drop(self.intake);
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("committer stopped")
            .unwrap();
        let mut changes = Vec::new();
        while let Ok(alert) = self.alerts.try_recv() {
            changes.push(alert.id);
        }
        (self.store.get().unwrap(), changes)
    }
}

fn heartbeat() -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2950,
        battery_percent: 87,
        rssi_dbm: -70,
        uptime_s: 100,
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 2,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    })
}

/// One committed alarm, then a fault (as `arm` sets it) while an alarm, a heartbeat and a
/// redelivered copy of the alarm arrive; then the fault clears (`disarm`).
async fn outage_heals(kind: &str, arm: impl Fn(&FaultPlan), disarm: impl Fn(&FaultPlan)) {
    let mut rig = Harness::start();
    rig.send(1, "pnd-1", 1, UplinkBody::Alarm(AlarmKind::PendantPress))
        .await;
    rig.wait_acked(&[1]).await;
    let first = tokio::time::timeout(Duration::from_secs(20), rig.alerts.recv()).await;
    assert_eq!(first.unwrap().unwrap().id, AlertId(1));

    arm(&rig.plan);
    rig.send(2, "pnd-2", 1, UplinkBody::Alarm(AlarmKind::Fall)).await;
    rig.send(3, "pnd-1", 2, heartbeat()).await;
    rig.send(4, "pnd-2", 1, UplinkBody::Alarm(AlarmKind::Fall)).await;
    rig.until("the store has failed and a reopen has been refused", |rig| {
        rig.metrics.snapshot().store_errors >= 3 && rig.metric("tec_store_reopens_total{outcome=\"failed\"}") >= 1
    })
    .await;
    rig.drain_sent();
    assert_eq!(rig.acked, vec![1], "nothing acked while the store is down");
    let reason = rig.metrics.store_fault().expect("a store fault reported");
    let expected = if kind == "no_space" {
        "No space left on device"
    } else {
        "Input/output error"
    };
    assert!(reason.contains(expected), "{reason}");
    assert!(reason.contains(&format!("store fault ({kind})")), "{reason}");
    assert!(!rig.metrics.snapshot().store_healthy);
    assert!(rig.metric(&format!("tec_store_errors_total{{kind=\"{kind}\"}}")) >= 1);
    assert_eq!(rig.metric("tec_store_healthy"), 0);

    disarm(&rig.plan);
    rig.wait_acked(&[2, 3, 4]).await;
    rig.drain_sent();
    assert_eq!(
        rig.acked,
        vec![1, 2, 3, 4],
        "each acked once, in order, after its commit"
    );
    let stats = rig.metrics.snapshot();
    assert!(stats.store_healthy);
    assert!(rig.metrics.store_fault().is_none());
    assert!(rig.metric("tec_store_reopens_total{outcome=\"ok\"}") >= 1);
    let (store, changes) = rig.finish().await;
    // The alarm that arrived during the outage raised exactly one alert, although the
    // engine saw it in every failed attempt.
    assert_eq!(changes, vec![AlertId(2)]);
    assert_eq!(store.event_count().unwrap(), 3, "stored exactly once");
    let open: BTreeSet<AlertId> = store.open_alerts().unwrap().iter().map(|a| a.id).collect();
    assert_eq!(open, BTreeSet::from([AlertId(1), AlertId(2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_at_commit_waits_then_resumes_without_a_restart() {
    outage_heals(
        "no_space",
        |plan| plan.write_errno.store(ENOSPC, Ordering::SeqCst),
        |plan| plan.write_errno.store(0, Ordering::SeqCst),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_on_write_waits_then_resumes_without_a_restart() {
    outage_heals(
        "io",
        |plan| plan.write_errno.store(EIO, Ordering::SeqCst),
        |plan| plan.write_errno.store(0, Ordering::SeqCst),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_failure_waits_then_resumes_without_a_restart() {
    outage_heals(
        "io",
        |plan| plan.sync_errno.store(EIO, Ordering::SeqCst),
        |plan| plan.sync_errno.store(0, Ordering::SeqCst),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_on_fsync_is_reported_as_a_full_disk() {
    outage_heals(
        "no_space",
        |plan| plan.sync_errno.store(ENOSPC, Ordering::SeqCst),
        |plan| plan.sync_errno.store(0, Ordering::SeqCst),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reopens_and_failed_engine_restores_are_retried_until_they_work() {
    let mut rig = Harness::start();
    // One failed fsync, then three refused opens, then three opens whose engine restore
    // fails, then a good open.
    rig.plan.sync_failures.store(1, Ordering::SeqCst);
    rig.plan.open_failures.store(3, Ordering::SeqCst);
    rig.plan.restore_failures.store(3, Ordering::SeqCst);
    rig.send(1, "pnd-1", 1, UplinkBody::Alarm(AlarmKind::Fall)).await;
    rig.send(2, "pnd-1", 2, heartbeat()).await;
    rig.wait_acked(&[1, 2]).await;
    assert_eq!(rig.plan.sync_failures.load(Ordering::SeqCst), 0);
    assert_eq!(rig.plan.open_failures.load(Ordering::SeqCst), 0);
    assert_eq!(rig.plan.restore_failures.load(Ordering::SeqCst), 0);
    assert!(
        rig.plan.reads_failed.load(Ordering::SeqCst) >= 3,
        "each armed engine restore hit a failing read"
    );
    assert_eq!(rig.metric("tec_store_reopens_total{outcome=\"failed\"}"), 6);
    assert_eq!(rig.metric("tec_store_reopens_total{outcome=\"ok\"}"), 1);
    assert_eq!(rig.metrics.snapshot().store_errors, 7);
    assert!(rig.metrics.snapshot().store_healthy);
    let (store, changes) = rig.finish().await;
    assert_eq!(changes, vec![AlertId(1)], "one alert, raised once");
    assert_eq!(store.event_count().unwrap(), 2);
    assert_eq!(store.open_alerts().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_outage_is_prompt_and_acks_only_what_was_committed() {
    let mut rig = Harness::start();
    rig.send(1, "pnd-1", 1, UplinkBody::Alarm(AlarmKind::PendantPress))
        .await;
    rig.wait_acked(&[1]).await;
    rig.plan.write_errno.store(ENOSPC, Ordering::SeqCst);
    rig.send(2, "pnd-1", 2, heartbeat()).await;
    rig.send(3, "pnd-2", 1, UplinkBody::Alarm(AlarmKind::Fall)).await;
    rig.until("the store has failed", |rig| rig.metrics.snapshot().store_errors >= 2)
        .await;
    rig.stop.send(true).unwrap();
    // The intake stays open, as the MQTT task's would: only the stop signal ends the task.
    tokio::time::timeout(Duration::from_secs(20), &mut rig.task)
        .await
        .expect("the committer stops promptly during a store outage")
        .unwrap();
    rig.drain_sent();
    assert_eq!(rig.acked, vec![1], "nothing uncommitted acked");
    assert_eq!(rig.metrics.snapshot().abandoned, 2);
    // What was committed survives: a later open (the next run) finds it, and the disk is fine.
    rig.plan.write_errno.store(0, Ordering::SeqCst);
    drop(rig.store);
    let reopened = opener(rig._dir.path().join("faulty.redb"), rig.plan.clone())().unwrap();
    assert_eq!(reopened.event_count().unwrap(), 1);
}

/// redb writes a commit and then fsyncs once. When that fsync fails the commit reports an
/// error, yet the data is in the file and the reopened store holds it: the retry then finds
/// the alarm stored, so its alert must be sent after the reopen (not raised again, not lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_whose_commit_failed_at_fsync_but_reached_the_file_is_alerted_once() {
    let mut rig = Harness::start();
    rig.plan.sync_failures.store(1, Ordering::SeqCst);
    rig.send(1, "pnd-1", 1, UplinkBody::Alarm(AlarmKind::Fall)).await;
    rig.wait_acked(&[1]).await;
    assert_eq!(
        rig.plan.injected.load(Ordering::SeqCst),
        1,
        "the fault fired at the alarm's commit"
    );
    let (store, changes) = rig.finish().await;
    assert_eq!(changes, vec![AlertId(1)], "alerted once");
    assert_eq!(store.event_count().unwrap(), 1);
    assert_eq!(store.open_alerts().unwrap().len(), 1);
}

/// Operator requests during an outage get an answer, not a hang: an action cannot be
/// committed and says why; the open-alert list is the last one known, never empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_requests_during_an_outage_are_answered() {
    let mut rig = Harness::start();
    rig.send(1, "pnd-1", 1, UplinkBody::Alarm(AlarmKind::PendantPress))
        .await;
    rig.wait_acked(&[1]).await;
    rig.plan.write_errno.store(ENOSPC, Ordering::SeqCst);
    rig.send(2, "pnd-1", 2, heartbeat()).await;
    rig.until("the store has failed twice", |rig| {
        rig.metrics.snapshot().store_errors >= 2
    })
    .await;

    let acknowledge = |reply| Command::Acknowledge {
        alert: AlertId(1),
        operator: "op-1".into(),
        reply,
    };
    let (reply, answer) = oneshot::channel();
    rig.commands.send(acknowledge(reply)).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("answered during the outage")
        .unwrap();
    match refused {
        Err(OperatorError::Unavailable(reason)) => assert!(reason.contains("no_space"), "{reason}"),
        other => panic!("expected the store to be unavailable, got {other:?}"),
    }
    let (reply, answer) = oneshot::channel();
    rig.commands.send(Command::OpenAlerts { reply }).await.unwrap();
    let open = tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.iter().map(|a| a.id).collect::<Vec<_>>(), vec![AlertId(1)]);

    rig.plan.write_errno.store(0, Ordering::SeqCst);
    rig.wait_acked(&[2]).await;
    let (reply, answer) = oneshot::channel();
    rig.commands.send(acknowledge(reply)).await.unwrap();
    let acked = answer.await.unwrap().unwrap();
    assert_eq!(acked.state, gateway::domain::AlertState::Acknowledged);
    let (store, _) = rig.finish().await;
    assert_eq!(store.event_count().unwrap(), 2);
}
