//! Driving a fleet of simulated devices (the real firmware core) from a test: telemetry at a
//! steady rate, and waiting until every outbox has drained (everything receipted). Shared by
//! the fault campaign and the failover test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use protocol::{DeviceId, SensorState};
use simulator::{DeviceHandle, DeviceView};

/// Telemetry to every device in turn at `per_device_s` each, until `running` goes false. Each
/// reading is a new value, so each is an event.
pub async fn drive_telemetry(devices: Arc<Vec<DeviceHandle>>, per_device_s: f64, running: Arc<AtomicBool>) {
    let tick = Duration::from_millis(20);
    let per_tick = per_device_s * devices.len() as f64 * tick.as_secs_f64();
    let mut budget = 0.0;
    let mut cursor = 0usize;
    let mut readings = vec![0i16; devices.len()];
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while running.load(Ordering::SeqCst) {
        interval.tick().await;
        budget += per_tick;
        while budget >= 1.0 {
            budget -= 1.0;
            let index = cursor % devices.len();
            cursor += 1;
            let Some(device) = devices.get(index) else {
                return;
            };
            if let Some(reading) = readings.get_mut(index) {
                *reading = (*reading + 1) % 500;
                device.sensor(
                    1,
                    SensorState::Temperature {
                        centi_celsius: 1_800 + *reading,
                    },
                );
            }
        }
    }
}

/// Waits until every device is connected with an empty outbox; panics (a test's failure)
/// naming the first one still waiting after `timeout`.
pub async fn wait_drained(devices: &[DeviceHandle], timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        let waiting: Vec<(DeviceId, DeviceView)> = devices
            .iter()
            .map(|d| (d.device_id(), d.view()))
            .filter(|(_, v)| !(v.connected && v.outbox_depth == 0))
            .collect();
        if waiting.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} devices still not drained after {timeout:?}, the first: {:?}",
            waiting.len(),
            waiting.first()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
