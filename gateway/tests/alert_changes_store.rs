#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The store's alert-change log: one gap-free, increasing seq per committed change, written in
//! the change's own transaction, continuing across reopens and restarts, bounded by its
//! retention with a clear "too old" answer.

use std::sync::Arc;

use gateway::alerts::EngineConfig;
use gateway::domain::*;
use gateway::store::*;
use gateway::writer::Core;
use protocol::DeviceId;

fn raised(id: u64, at: i64) -> Alert {
    Alert {
        id: AlertId(id),
        kind: AlertKind::PendantPress,
        priority: Priority::LifeSafety,
        state: AlertState::Raised,
        resident: None,
        device: Some(DeviceId::new("pnd-1").unwrap()),
        unregistered_device: false,
        raised_at: Timestamp(at),
        late_by_ms: None,
        escalation_level: 0,
        affected_devices: Vec::new(),
        transitions: vec![Transition {
            at: Timestamp(at),
            change: Change::Raised { event: None },
        }],
    }
}

fn with_note(mut alert: Alert, at: i64, text: &str) -> Alert {
    alert.transitions.push(Transition {
        at: Timestamp(at),
        change: Change::Note {
            operator: "op-1".into(),
            text: text.into(),
        },
    });
    alert
}

/// Stores `alert` and its change in one transaction; returns the seq.
fn commit_change(store: &Store, alert: &Alert, at: i64) -> u64 {
    let mut batch = store.begin_write().unwrap();
    batch.put_alert(alert).unwrap();
    let seq = batch.record_alert_change(alert, Timestamp(at)).unwrap();
    batch.commit().unwrap();
    seq
}

fn page(found: AlertChangesSince) -> AlertChangePage {
    match found {
        AlertChangesSince::Changes(page) => page,
        other => panic!("expected changes, got {other:?}"),
    }
}

fn seqs(page: &AlertChangePage) -> Vec<u64> {
    page.changes.iter().map(|change| change.seq).collect()
}

#[test]
fn seqs_are_gap_free_increasing_and_carry_the_alert_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    assert_eq!(store.last_alert_change_seq().unwrap(), 0);
    assert_eq!(page(store.alert_changes_since(0, 10).unwrap()).changes, Vec::new());

    let first = raised(1, 1_000);
    let noted = with_note(first.clone(), 2_000, "rang the resident");
    let other = raised(2, 2_500);
    assert_eq!(commit_change(&store, &first, 1_000), 1);
    assert_eq!(commit_change(&store, &noted, 2_000), 2);
    assert_eq!(commit_change(&store, &other, 2_500), 3);
    assert_eq!(store.last_alert_change_seq().unwrap(), 3);

    let all = page(store.alert_changes_since(0, 10).unwrap());
    assert_eq!(seqs(&all), [1, 2, 3]);
    assert_eq!((all.next_after, all.last_seq), (3, 3));
    // Each change holds the alert as it was then, history included (not as it is now).
    assert_eq!(all.changes[0].alert, first);
    assert_eq!(all.changes[0].committed_at, Timestamp(1_000));
    assert_eq!(all.changes[1].alert, noted);
    assert_eq!(all.changes[2].alert, other);

    let rest = page(store.alert_changes_since(1, 10).unwrap());
    assert_eq!(seqs(&rest), [2, 3]);
    let caught_up = page(store.alert_changes_since(3, 10).unwrap());
    assert!(caught_up.changes.is_empty());
    assert_eq!(caught_up.next_after, 3);
}

#[test]
fn a_change_and_its_seq_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    commit_change(&store, &raised(1, 1_000), 1_000);

    // A transaction that never commits (a failed commit aborts the same way) leaves
    // neither the alert change nor its seq behind.
    let noted = with_note(raised(1, 1_000), 2_000, "lost");
    {
        let mut batch = store.begin_write().unwrap();
        batch.put_alert(&noted).unwrap();
        assert_eq!(batch.record_alert_change(&noted, Timestamp(2_000)).unwrap(), 2);
    }
    assert_eq!(store.alert(AlertId(1)).unwrap().unwrap().transitions.len(), 1);
    assert_eq!(store.last_alert_change_seq().unwrap(), 1);
    assert_eq!(seqs(&page(store.alert_changes_since(0, 10).unwrap())), [1]);

    // The seq is not burnt: the next committed change takes it, so the log has no gap.
    assert_eq!(commit_change(&store, &noted, 3_000), 2);
    assert_eq!(seqs(&page(store.alert_changes_since(0, 10).unwrap())), [1, 2]);
}

#[test]
fn the_sequence_continues_after_a_reopen_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_in_dir(dir.path()).unwrap();
        commit_change(&store, &raised(1, 1_000), 1_000);
        commit_change(&store, &raised(2, 1_100), 1_100);
    }
    // Reopened (as the committer does after a fault).
    let store = Store::open_in_dir(dir.path()).unwrap();
    assert_eq!(store.last_alert_change_seq().unwrap(), 2);
    assert_eq!(commit_change(&store, &raised(3, 1_200), 1_200), 3);
    drop(store);

    // A restart: the writer's core rebuilt from the store numbers its changes on from there.
    let store = Arc::new(Store::open_in_dir(dir.path()).unwrap());
    let mut core = Core::open(store.clone(), EngineConfig::default(), Timestamp(5_000)).unwrap();
    let committed = core
        .operator(Timestamp(5_000), |engine| {
            engine.acknowledge(AlertId(2), "op-1", Timestamp(5_000))
        })
        .unwrap();
    let numbered: Vec<(u64, AlertId, AlertState)> = committed
        .alerts
        .iter()
        .map(|change| (change.seq, change.alert.id, change.alert.state))
        .collect();
    assert_eq!(numbered, [(4, AlertId(2), AlertState::Acknowledged)]);
    assert_eq!(committed.alerts[0].committed_at, Timestamp(5_000));
    let stored = page(store.alert_changes_since(3, 10).unwrap());
    assert_eq!(stored.changes, committed.alerts);
}

#[test]
fn retention_by_count_prunes_the_oldest_and_says_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path())
        .unwrap()
        .with_alert_change_retention(AlertChangeRetention {
            max_age_ms: i64::MAX,
            max_count: 5,
        });
    for n in 1..=12 {
        assert_eq!(commit_change(&store, &raised(n, 1_000), 1_000), n);
    }
    assert_eq!(
        store.alert_changes_since(0, 100).unwrap(),
        AlertChangesSince::TooOld {
            oldest_kept: 8,
            last_seq: 12
        }
    );
    assert_eq!(
        store.alert_changes_since(6, 100).unwrap(),
        AlertChangesSince::TooOld {
            oldest_kept: 8,
            last_seq: 12
        }
    );
    // A client that saw 7 misses nothing: 8 is the oldest kept.
    assert_eq!(
        seqs(&page(store.alert_changes_since(7, 100).unwrap())),
        [8, 9, 10, 11, 12]
    );
    // A seq this store never gave out: reload, not silence.
    assert_eq!(
        store.alert_changes_since(13, 100).unwrap(),
        AlertChangesSince::Ahead { last_seq: 12 }
    );
}

#[test]
fn retention_by_age_keeps_what_is_recent_and_always_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path())
        .unwrap()
        .with_alert_change_retention(AlertChangeRetention {
            max_age_ms: 10_000,
            max_count: u64::MAX,
        });
    for (n, at) in [(1, 0), (2, 1_000), (3, 5_000)] {
        commit_change(&store, &raised(n, at), at);
    }
    assert_eq!(seqs(&page(store.alert_changes_since(0, 10).unwrap())), [1, 2, 3]);
    // 12 s later: 1 and 2 are older than 10 s, 3 is not.
    commit_change(&store, &raised(4, 12_000), 12_000);
    assert_eq!(
        store.alert_changes_since(0, 10).unwrap(),
        AlertChangesSince::TooOld {
            oldest_kept: 3,
            last_seq: 4
        }
    );
    assert_eq!(seqs(&page(store.alert_changes_since(2, 10).unwrap())), [3, 4]);
    // Long idle: everything before is old, the newest change itself is still kept.
    commit_change(&store, &raised(5, 1_000_000), 1_000_000);
    assert_eq!(seqs(&page(store.alert_changes_since(4, 10).unwrap())), [5]);
}

#[test]
fn limits_are_honoured_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    let count = MAX_ALERT_CHANGES_PAGE as u64 + 5;
    let mut batch = store.begin_write().unwrap();
    for n in 1..=count {
        let alert = raised(n, 1_000);
        batch.put_alert(&alert).unwrap();
        batch.record_alert_change(&alert, Timestamp(1_000)).unwrap();
    }
    batch.commit().unwrap();

    let none = page(store.alert_changes_since(0, 0).unwrap());
    assert!(none.changes.is_empty());
    assert_eq!((none.next_after, none.last_seq), (0, count));

    let three = page(store.alert_changes_since(10, 3).unwrap());
    assert_eq!(seqs(&three), [11, 12, 13]);
    assert_eq!(three.next_after, 13);

    let capped = page(store.alert_changes_since(0, usize::MAX).unwrap());
    assert_eq!(capped.changes.len(), MAX_ALERT_CHANGES_PAGE);
    assert_eq!(capped.next_after, MAX_ALERT_CHANGES_PAGE as u64);
    let rest = page(store.alert_changes_since(capped.next_after, usize::MAX).unwrap());
    assert_eq!(rest.changes.len(), 5);
    assert_eq!(rest.next_after, count);
}

/// redb's file backend with a full disk on cue.
#[derive(Debug)]
struct FillingDisk {
    inner: redb::backends::FileBackend,
    full: Arc<std::sync::atomic::AtomicBool>,
}

impl FillingDisk {
    fn check(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        Ok(())
    }
}

impl redb::StorageBackend for FillingDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
}

#[test]
fn a_commit_that_fails_on_a_full_disk_leaves_neither_and_the_reopened_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE_NAME);
    let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        let backend = FillingDisk {
            inner: redb::backends::FileBackend::new(file).unwrap(),
            full: full.clone(),
        };
        let store = Store::open_with_backend(backend, &path).unwrap();
        commit_change(&store, &raised(1, 1_000), 1_000);

        full.store(true, std::sync::atomic::Ordering::SeqCst);
        let noted = with_note(raised(1, 1_000), 2_000, "lost to the full disk");
        let mut batch = store.begin_write().unwrap();
        batch.put_alert(&noted).unwrap();
        assert_eq!(batch.record_alert_change(&noted, Timestamp(2_000)).unwrap(), 2);
        assert!(batch.commit().is_err(), "the commit fails on the full disk");
    }
    // Reopened (as the committer does after a fault): neither the change nor its seq.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.alert(AlertId(1)).unwrap().unwrap().transitions.len(), 1);
    assert_eq!(store.last_alert_change_seq().unwrap(), 1);
    assert_eq!(seqs(&page(store.alert_changes_since(0, 10).unwrap())), [1]);
    let noted = with_note(raised(1, 1_000), 3_000, "after the reopen");
    assert_eq!(commit_change(&store, &noted, 3_000), 2);
    let all = page(store.alert_changes_since(0, 10).unwrap());
    assert_eq!(seqs(&all), [1, 2]);
    assert_eq!(all.changes[1].alert, noted);
}
