#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! A broker that accepts TCP and then never answers must not freeze the device: presses are
//! still queued during the handshake, and the attempt is abandoned and retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use firmware::Indication;
use protocol::DeviceId;
use simulator::{DeviceSpec, spawn_device};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_broker_neither_freezes_the_device_nor_stalls_reconnecting() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut sink = [0u8; 256];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });

    let mut spec = DeviceSpec::new(DeviceId::new("sim-h00009-pendant").unwrap(), "pw", "127.0.0.1", port);
    // Ten times real speed: the 10 s handshake timeout is 1 s of real time.
    spec.speed = 10.0;
    let mut device = spawn_device(spec).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while accepted.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the device connects");
    // The handshake is under way (and will never finish): a press must still be queued.
    device.press();
    let view = device
        .wait_for(Duration::from_secs(2), |v| v.outbox_depth >= 2)
        .await
        .unwrap();
    assert!(!view.connected);
    assert_eq!(view.indication, Indication::Sending);
    // Abandoned after the timeout and tried again with backoff.
    tokio::time::timeout(Duration::from_secs(10), async {
        while accepted.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("reconnect attempts continue");
    device.stop().await.unwrap();
}
