//! Counters the gateway keeps about itself: exported as Prometheus text on /metrics, and as
//! [`IngestStats`] for tests and the operator UI.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::{AlertKind, RejectReason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Why the store is not taking commits, for /healthz.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoreFault {
    kind: String,
    error: String,
    consecutive: u64,
}

/// A snapshot of ingest counters since start.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestStats {
    /// Publishes taken from the broker (all topics, good and bad).
    pub received: u64,
    /// Events newly stored.
    pub stored: u64,
    /// Events that were already stored (redelivery or device retransmission).
    pub duplicates: u64,
    /// Publishes quarantined, by reason (every reason listed, zeros included).
    pub rejected: Vec<(RejectReason, u64)>,
    /// Events stored from devices the register does not know.
    pub unregistered: u64,
    /// Receipt downlinks published.
    pub receipts_sent: u64,
    /// Successful write transactions.
    pub commits: u64,
    pub commit_failures: u64,
    /// Publishes per successful ingest commit.
    pub mean_batch_size: f64,
    /// From a publish leaving the MQTT task to its commit returning.
    pub receive_to_commit_p50: Option<Duration>,
    pub receive_to_commit_p99: Option<Duration>,
    pub mqtt_connected: bool,
    /// The alarm session (SPEC 2.1) connected and subscribed.
    pub alarm_session_connected: bool,
    /// Uplinks on the alarm topic that were not alarms (stored all the same).
    pub off_lane: u64,
    /// Store operations that failed, all kinds (I/O, closed, ...).
    pub store_errors: u64,
    /// Attempts to reopen the store after a fault, successful or not.
    pub store_reopens: u64,
    /// False from a store fault until a commit succeeds again.
    pub store_healthy: bool,
    /// Publishes given up unacked at shutdown because the store was down (the broker
    /// redelivers them to the next run).
    pub abandoned: u64,
}

impl IngestStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    pub fn rejected_for(&self, reason: RejectReason) -> u64 {
        self.rejected.iter().find(|(r, _)| *r == reason).map_or(0, |(_, n)| *n)
    }
}

/// All of the gateway's metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received: Counter,
    stored: Counter,
    duplicates: Counter,
    rejected: Family<ReasonLabel, Counter>,
    unregistered: Counter,
    device_time_out_of_range: Counter,
    key_conflicts: Counter,
    receipts_sent: Counter,
    commits: Counter,
    commit_failures: Counter,
    alerts_changed: Family<KindLabel, Counter>,
    batch_size: Histogram,
    receive_to_commit: Histogram,
    mqtt_connected: Gauge,
    alarm_session_connected: Gauge,
    off_lane: Counter,
    open_alerts: Gauge,
    unreadable_records: Gauge,
    store_errors: Family<KindLabel, Counter>,
    store_reopens: Family<OutcomeLabel, Counter>,
    store_healthy: Gauge,
    standby: Gauge,
    abandoned: Counter,
    retention_removed: Family<ClassLabel, Counter>,
    /// Set while the store refuses work; cleared by the next successful commit.
    store_fault: Mutex<Option<StoreFault>>,
    store_error_total: AtomicU64,
    connected: AtomicBool,
    alarm_connected: AtomicBool,
    /// The latest commit attempt failed (cleared by the next success).
    failing: AtomicBool,
    ingest_commits: AtomicU64,
    ingest_publishes: AtomicU64,
    /// Exact quantiles for [`IngestStats`], in microseconds.
    latency_us: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let received = Counter::default();
        let stored = Counter::default();
        let duplicates = Counter::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let unregistered = Counter::default();
        let device_time_out_of_range = Counter::default();
        let key_conflicts = Counter::default();
        let receipts_sent = Counter::default();
        let commits = Counter::default();
        let commit_failures = Counter::default();
        let alerts_changed = Family::<KindLabel, Counter>::default();
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 17));
        let receive_to_commit = Histogram::new(exponential_buckets(0.000_25, 2.0, 18));
        let mqtt_connected = Gauge::default();
        let alarm_session_connected = Gauge::default();
        let off_lane = Counter::default();
        let open_alerts = Gauge::default();
        let unreadable_records = Gauge::default();
        let store_errors = Family::<KindLabel, Counter>::default();
        let store_reopens = Family::<OutcomeLabel, Counter>::default();
        let store_healthy = Gauge::default();
        store_healthy.set(1);
        let standby = Gauge::default();
        let abandoned = Counter::default();
        let retention_removed = Family::<ClassLabel, Counter>::default();
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "tec_ingest_received",
            "Publishes taken from the broker",
            received.clone(),
        );
        registry.register("tec_events_stored", "Events newly stored", stored.clone());
        registry.register(
            "tec_events_duplicate",
            "Events received again after they were stored",
            duplicates.clone(),
        );
        registry.register(
            "tec_ingest_rejected",
            "Publishes quarantined, by reason",
            rejected.clone(),
        );
        registry.register(
            "tec_unregistered_device_events",
            "Events stored from devices not in the register",
            unregistered.clone(),
        );
        registry.register(
            "tec_device_time_out_of_range",
            "Uplinks whose device time was outside the protocol's range (stored as unknown)",
            device_time_out_of_range.clone(),
        );
        registry.register(
            "tec_key_conflicts",
            "Events whose (device, boot, seq) was already stored with other content: kept as copies, alerted, device told its boot floor",
            key_conflicts.clone(),
        );
        registry.register(
            "tec_receipts_sent",
            "Receipt downlinks published",
            receipts_sent.clone(),
        );
        registry.register("tec_commits", "Successful store commits", commits.clone());
        registry.register(
            "tec_commit_failures",
            "Store commits that failed (nothing acked)",
            commit_failures.clone(),
        );
        registry.register(
            "tec_alerts_changed",
            "Alert changes committed, by alert kind",
            alerts_changed.clone(),
        );
        registry.register(
            "tec_commit_batch_size",
            "Publishes per ingest commit",
            batch_size.clone(),
        );
        registry.register(
            "tec_receive_to_commit_seconds",
            "Time from receiving a publish to its durable commit",
            receive_to_commit.clone(),
        );
        registry.register(
            "tec_mqtt_connected",
            "1 while connected and subscribed to the broker",
            mqtt_connected.clone(),
        );
        registry.register(
            "tec_mqtt_alarm_session_connected",
            "1 while the alarm session (its own client id, reading tec/v1/dev/+/alarm) is connected and subscribed",
            alarm_session_connected.clone(),
        );
        registry.register(
            "tec_uplinks_off_lane",
            "Uplinks that came on the alarm topic but were not alarms or cancels (stored as usual)",
            off_lane.clone(),
        );
        registry.register("tec_open_alerts", "Alerts not yet resolved", open_alerts.clone());
        registry.register(
            "tec_store_unreadable_records",
            "Stored records this gateway could not decode since the store was opened (listed, not fatal)",
            unreadable_records.clone(),
        );
        registry.register(
            "tec_store_errors",
            "Store operations that failed, by kind (no_space, io, previous_io, closed, ...)",
            store_errors.clone(),
        );
        registry.register(
            "tec_store_reopens",
            "Attempts to reopen the store after a fault, by outcome",
            store_reopens.clone(),
        );
        registry.register(
            "tec_store_healthy",
            "1 while the store takes commits; 0 from a store fault until a commit succeeds",
            store_healthy.clone(),
        );
        registry.register(
            "tec_store_standby",
            "1 while this gateway stands by (PostgreSQL: another holds the writer lease; reads only)",
            standby.clone(),
        );
        registry.register(
            "tec_ingest_abandoned",
            "Publishes left unacked at shutdown because the store was down (redelivered by the broker)",
            abandoned.clone(),
        );
        registry.register(
            "tec_retention_removed",
            "Records removed by the retention purge, by class",
            retention_removed.clone(),
        );
        for outcome in ["ok", "failed"] {
            store_reopens.get_or_create(&OutcomeLabel { outcome }).inc_by(0);
        }
        for reason in RejectReason::ALL {
            rejected
                .get_or_create(&ReasonLabel {
                    reason: reason.as_str(),
                })
                .inc_by(0);
        }
        Self {
            registry,
            received,
            stored,
            duplicates,
            rejected,
            unregistered,
            device_time_out_of_range,
            key_conflicts,
            receipts_sent,
            commits,
            commit_failures,
            alerts_changed,
            batch_size,
            receive_to_commit,
            mqtt_connected,
            alarm_session_connected,
            off_lane,
            open_alerts,
            unreadable_records,
            store_errors,
            store_reopens,
            store_healthy,
            standby,
            abandoned,
            retention_removed,
            store_fault: Mutex::new(None),
            store_error_total: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            alarm_connected: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            ingest_commits: AtomicU64::new(0),
            ingest_publishes: AtomicU64::new(0),
            latency_us: Mutex::new(hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).ok()),
        }
    }

    /// Records the retention purge removed, by class (`crate::retention`).
    pub fn retention_removed(&self, class: &'static str, n: u64) {
        self.retention_removed.get_or_create(&ClassLabel { class }).inc_by(n);
    }

    pub fn received(&self, n: u64) {
        self.received.inc_by(n);
    }

    pub fn stored(&self, n: u64) {
        self.stored.inc_by(n);
    }

    pub fn duplicates(&self, n: u64) {
        self.duplicates.inc_by(n);
    }

    pub fn rejected(&self, reason: RejectReason) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn unregistered(&self, n: u64) {
        self.unregistered.inc_by(n);
    }

    pub fn device_time_out_of_range(&self, n: u64) {
        self.device_time_out_of_range.inc_by(n);
    }

    pub fn key_conflicts(&self, n: u64) {
        self.key_conflicts.inc_by(n);
    }

    pub fn receipts_sent(&self, n: u64) {
        self.receipts_sent.inc_by(n);
    }

    pub fn commit_failed(&self) {
        self.commit_failures.inc();
        self.failing.store(true, Ordering::Relaxed);
    }

    /// True while the store refuses commits (nothing is being acked).
    pub fn commit_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// A successful commit; `publishes` and `latencies` are empty for timer and operator commits.
    pub fn committed(&self, publishes: usize, latencies: impl IntoIterator<Item = Duration>) {
        self.commits.inc();
        self.failing.store(false, Ordering::Relaxed);
        if publishes == 0 {
            return;
        }
        self.ingest_commits.fetch_add(1, Ordering::Relaxed);
        self.ingest_publishes.fetch_add(publishes as u64, Ordering::Relaxed);
        self.batch_size.observe(publishes as f64);
        let mut guard = self
            .latency_us
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for latency in latencies {
            self.receive_to_commit.observe(latency.as_secs_f64());
            if let Some(hist) = guard.as_mut() {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
                hist.saturating_record(micros);
            }
        }
    }

    /// A store operation failed with an error of `kind`; `error` says what, for /healthz.
    pub fn store_failed(&self, kind: &str, error: &str) {
        self.store_errors
            .get_or_create(&KindLabel { kind: kind.to_owned() })
            .inc();
        self.store_error_total.fetch_add(1, Ordering::Relaxed);
        self.store_healthy.set(0);
        let mut fault = self
            .store_fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let consecutive = fault.as_ref().map_or(0, |f| f.consecutive).saturating_add(1);
        *fault = Some(StoreFault {
            kind: kind.to_owned(),
            error: error.to_owned(),
            consecutive,
        });
    }

    /// The store committed again: clears the fault /healthz reports.
    pub fn store_recovered(&self) {
        self.store_healthy.set(1);
        let mut fault = self
            .store_fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *fault = None;
    }

    pub fn store_reopened(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.store_reopens.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Why the store is not taking commits, or `None` while it is.
    pub fn store_fault(&self) -> Option<String> {
        let fault = self
            .store_fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        fault.as_ref().map(|fault| {
            let plural = if fault.consecutive == 1 { "" } else { "s" };
            format!(
                "store fault ({}): {}; nothing is acked; reopening and retrying ({} failure{plural} in a row)",
                fault.kind, fault.error, fault.consecutive
            )
        })
    }

    pub fn abandoned(&self, n: u64) {
        self.abandoned.inc_by(n);
    }

    pub fn alert_changed(&self, kind: AlertKind) {
        let kind = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{kind:?}"));
        self.alerts_changed.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn set_open_alerts(&self, n: usize) {
        self.open_alerts.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_unreadable_records(&self, n: u64) {
        self.unreadable_records.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_mqtt_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.mqtt_connected.set(i64::from(connected));
    }

    /// This gateway stands by (PostgreSQL): it serves reads and takes no publishes.
    pub fn set_standby(&self, standby: bool) {
        self.standby.set(i64::from(standby));
    }

    pub fn standing_by(&self) -> bool {
        self.standby.get() == 1
    }

    pub fn set_alarm_session_connected(&self, connected: bool) {
        self.alarm_connected.store(connected, Ordering::Relaxed);
        self.alarm_session_connected.set(i64::from(connected));
    }

    pub fn off_lane(&self, n: u64) {
        self.off_lane.inc_by(n);
    }

    pub fn mqtt_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn snapshot(&self) -> IngestStats {
        let commits = self.ingest_commits.load(Ordering::Relaxed);
        let publishes = self.ingest_publishes.load(Ordering::Relaxed);
        let (p50, p99) = {
            let guard = self
                .latency_us
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match guard.as_ref() {
                Some(hist) if !hist.is_empty() => (
                    Some(Duration::from_micros(hist.value_at_quantile(0.5))),
                    Some(Duration::from_micros(hist.value_at_quantile(0.99))),
                ),
                _ => (None, None),
            }
        };
        IngestStats {
            received: self.received.get(),
            stored: self.stored.get(),
            duplicates: self.duplicates.get(),
            rejected: RejectReason::ALL
                .iter()
                .map(|reason| {
                    let count = self
                        .rejected
                        .get_or_create(&ReasonLabel {
                            reason: reason.as_str(),
                        })
                        .get();
                    (*reason, count)
                })
                .collect(),
            unregistered: self.unregistered.get(),
            receipts_sent: self.receipts_sent.get(),
            commits: self.commits.get(),
            commit_failures: self.commit_failures.get(),
            mean_batch_size: if commits == 0 {
                0.0
            } else {
                publishes as f64 / commits as f64
            },
            receive_to_commit_p50: p50,
            receive_to_commit_p99: p99,
            mqtt_connected: self.mqtt_connected(),
            alarm_session_connected: self.alarm_connected.load(Ordering::Relaxed),
            off_lane: self.off_lane.get(),
            store_errors: self.store_error_total.load(Ordering::Relaxed),
            store_reopens: ["ok", "failed"]
                .into_iter()
                .map(|outcome| self.store_reopens.get_or_create(&OutcomeLabel { outcome }).get())
                .sum(),
            store_healthy: self.store_healthy.get() == 1,
            abandoned: self.abandoned.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_every_metric_name() {
        let metrics = Metrics::new();
        metrics.received(3);
        metrics.rejected(RejectReason::Oversize);
        metrics.alert_changed(AlertKind::PendantPress);
        metrics.committed(2, [Duration::from_millis(2), Duration::from_millis(4)]);
        metrics.set_mqtt_connected(true);
        let text = metrics.encode();
        for name in [
            "tec_ingest_received_total 3",
            "tec_events_stored_total",
            "tec_events_duplicate_total",
            "tec_ingest_rejected_total{reason=\"oversize\"} 1",
            "tec_ingest_rejected_total{reason=\"malformed\"} 0",
            "tec_unregistered_device_events_total",
            "tec_device_time_out_of_range_total",
            "tec_key_conflicts_total",
            "tec_receipts_sent_total",
            "tec_commit_failures_total",
            "tec_alerts_changed_total{kind=\"pendant_press\"} 1",
            "tec_commit_batch_size_bucket",
            "tec_receive_to_commit_seconds_bucket",
            "tec_mqtt_connected 1",
            "tec_open_alerts 0",
            "tec_store_unreadable_records 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        let stats = metrics.snapshot();
        assert_eq!(stats.received, 3);
        assert_eq!(stats.rejected_for(RejectReason::Oversize), 1);
        assert_eq!(stats.rejected_total(), 1);
        assert!((stats.mean_batch_size - 2.0).abs() < f64::EPSILON);
        let p99 = stats.receive_to_commit_p99.unwrap();
        assert!(
            p99 >= Duration::from_millis(3) && p99 <= Duration::from_millis(5),
            "{p99:?}"
        );
        assert!(stats.mqtt_connected);
    }
}
