//! A real disk that fills: the gateway's data directory on a 2 MiB tmpfs, against a real
//! Mosquitto. Fill the disk: /healthz says the store has no space and nothing new is acked.
//! Free it: ingest resumes in the same process, everything sent stored exactly once.
//! Needs root (to mount); otherwise it says loudly that it was skipped, and why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod ingest_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gateway::app;
use gateway::config::{BrokerUrl, Config};
use gateway::domain::SystemClock;
use ingest_support::{Device, Mosquitto, eventually, http};
use protocol::{AlarmKind, DeviceStatus, DownlinkBody, FirmwareVersion, UplinkBody};

/// A size-limited tmpfs, unmounted on drop.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    /// `Err(why)` when this environment cannot mount (not root, no tmpfs, a sandbox).
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Self { _dir: dir, mount })
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) -> PathBuf {
        let path = self.mount.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xA5u8; 16 * 1024];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // Whatever is left is smaller than a chunk: take it too.
        for _ in 0..16 * 1024 {
            if file.write_all(&[0]).is_err() {
                break;
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: still unmounts if something holds a file open.
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn heartbeat(uptime_s: u32) -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2950,
        battery_percent: 87,
        rssi_dbm: -70,
        uptime_s,
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

fn config(broker: &Mosquitto, data: &Path) -> Config {
    let mut config = Config::default();
    config.mqtt.broker = BrokerUrl::parse(&broker.url()).unwrap();
    config.mqtt.client_id = "gw.tmpfs".into();
    config.data_dir = data.to_owned();
    config.http = "127.0.0.1:0".parse().unwrap();
    config.ingest.commit_retry_ms = 20;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_ingest_resumes_once_space_is_freed() {
    let disk = match SmallDisk::mount("2m") {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!();
            eprintln!("************************************************************************");
            eprintln!("SKIPPED store_faults_tmpfs: cannot mount a small tmpfs here: {why}");
            eprintln!("(run as root, as CI does, to test a real disk that fills)");
            eprintln!("************************************************************************");
            return;
        }
    };
    let broker = Mosquitto::start();
    let gateway = app::spawn(config(&broker, &disk.mount.join("data")), Arc::new(SystemClock))
        .await
        .unwrap();
    eventually("gateway connected and subscribed", || gateway.mqtt_ready()).await;
    let addr = gateway.http_addr();
    assert_eq!(http(addr, "GET", "/healthz").await.0, 200);
    let mut device = Device::connect(broker.port, "pnd-1").await;
    device.send(1, 1, UplinkBody::Alarm(AlarmKind::PendantPress)).await;
    device
        .expect(
            "receipt for the alarm",
            |d| matches!(&d.body, DownlinkBody::Receipt { seqs, .. } if seqs.contains(&1)),
        )
        .await;

    let filler = disk.fill();
    // Keep sending until a commit needs a page the disk no longer has.
    let mut sent = 1u32;
    let mut reported = None;
    while reported.is_none() {
        assert!(sent < 5_000, "the disk never filled up");
        sent += 1;
        device.send(1, sent, heartbeat(sent)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (status, body) = http(addr, "GET", "/healthz").await;
        if status == 503 && body.contains("No space left on device") {
            reported = Some(body);
        }
    }
    let body = reported.unwrap_or_default();
    eprintln!("full disk after {sent} publishes; /healthz: {}", body.trim());
    assert!(body.contains("store"), "{body}");
    let metrics = gateway.metrics_text();
    assert!(metrics.contains("tec_store_healthy 0"), "{metrics}");
    assert!(
        metrics.contains("tec_store_errors_total{kind=\"no_space\"}"),
        "{metrics}"
    );
    // One more while full: it must wait, not vanish.
    sent += 1;
    device.send(1, sent, UplinkBody::Alarm(AlarmKind::Fall)).await;

    std::fs::remove_file(filler).unwrap();
    let total = u64::from(sent);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stored = gateway.store().ok().and_then(|store| store.event_count().ok());
        if stored == Some(total) && http(addr, "GET", "/healthz").await.0 == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ingest did not resume: stored {stored:?} of {total}, /healthz {:?}",
            http(addr, "GET", "/healthz").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every publish receipted (so it was committed), and a new one goes straight through.
    let mut receipted = std::collections::BTreeSet::from([1]);
    while receipted.len() < sent as usize {
        if let DownlinkBody::Receipt { seqs, .. } = device.expect("receipts", |_| true).await.body {
            receipted.extend(seqs);
        }
    }
    device.send(1, sent + 1, heartbeat(0)).await;
    eventually("a publish after the fault stored", || {
        gateway.store().ok().and_then(|store| store.event_count().ok()) == Some(total + 1)
    })
    .await;
    let stats = gateway.stats();
    assert!(stats.store_healthy);
    assert!(stats.store_reopens >= 1);

    // Full again, and a shutdown (SIGTERM) while the store is down: prompt and clean, the
    // uncommitted publish not acked, so the broker hands it to the next run.
    let filler = disk.fill();
    let mut next = sent + 1;
    loop {
        next += 1;
        assert!(next < sent + 5_000, "the disk never filled up again");
        device.send(1, next, heartbeat(next)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        if http(addr, "GET", "/healthz").await.0 == 503 {
            break;
        }
    }
    gateway
        .shutdown()
        .await
        .expect("a clean shutdown during a store outage, not the timeout");
    std::fs::remove_file(filler).unwrap();
    let gateway = app::spawn(config(&broker, &disk.mount.join("data")), Arc::new(SystemClock))
        .await
        .unwrap();
    let all = u64::from(next);
    eventually("the next run stores what the last one could not", || {
        gateway.store().ok().and_then(|store| store.event_count().ok()) == Some(all)
    })
    .await;
    gateway.shutdown().await.unwrap();
    drop(broker);
    drop(disk);
}
