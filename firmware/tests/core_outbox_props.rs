#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Outbox invariants under arbitrary sequences of events, receipts, sends and reconnects.

use firmware::outbox::{Outbox, OutboxError, Queued};
use proptest::prelude::*;
use protocol::{AlarmKind, SensorState, Uplink, UplinkBody, UplinkHeader};

const CAP: usize = 12;
const TELEMETRY: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    Alarm,
    Telemetry,
    Receipt(Vec<u32>),
    Send(u64),
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Alarm),
        5 => Just(Op::Telemetry),
        2 => proptest::collection::vec(0u32..80, 0..6).prop_map(Op::Receipt),
        2 => (0u64..30_000).prop_map(Op::Send),
        1 => Just(Op::Reconnect),
    ]
}

fn uplink(seq: u32, alarm: bool) -> Uplink {
    let body = if alarm {
        UplinkBody::Alarm(AlarmKind::PendantPress)
    } else {
        UplinkBody::SensorChange {
            input: 0,
            state: SensorState::Motion,
        }
    };
    Uplink::new(
        UplinkHeader {
            boot: 1,
            seq,
            device_time_ms: None,
        },
        body,
    )
}

proptest! {
    #[test]
    fn alarms_survive_until_receipted_and_limits_hold(ops in proptest::collection::vec(op(), 1..120)) {
        let mut outbox: Outbox<CAP, TELEMETRY> = Outbox::new();
        let mut seq = 0u32;
        let mut now = 0u64;
        // Alarms we expect to be in the outbox: queued and not receipted.
        let mut alarms: Vec<u32> = Vec::new();
        let mut dropped = 0u32;
        for op in ops {
            match op {
                Op::Alarm => {
                    match outbox.push(uplink(seq, true)) {
                        Ok(Queued::DroppedOldest { .. }) => dropped += 1,
                        Ok(Queued::Stored) => {}
                        Ok(Queued::DroppedNew) => panic!("an alarm was dropped"),
                        Err(OutboxError::FullOfAlarms) => {
                            prop_assert_eq!(alarms.len(), CAP);
                            seq += 1;
                            continue;
                        }
                    }
                    alarms.push(seq);
                }
                Op::Telemetry => match outbox.push(uplink(seq, false)).unwrap() {
                    Queued::Stored => {}
                    Queued::DroppedOldest { .. } | Queued::DroppedNew => dropped += 1,
                },
                Op::Receipt(seqs) => {
                    outbox.receipt(1, &seqs, |_| ());
                    alarms.retain(|s| !seqs.contains(s));
                }
                Op::Send(advance) => {
                    now += advance;
                    let mut last: Option<(bool, u32)> = None;
                    while let Some(sent) = outbox.take_due(now) {
                        let key = (!sent.body.is_alarm(), sent.header.seq);
                        if let Some(previous) = last {
                            prop_assert!(previous < key, "alarms first, each class in seq order");
                        }
                        last = Some(key);
                    }
                }
                Op::Reconnect => outbox.requeue_all(),
            }
            seq += 1;
            let queued_alarms: Vec<u32> = outbox
                .iter()
                .filter(|e| e.uplink.body.is_alarm())
                .map(|e| e.uplink.header.seq)
                .collect();
            prop_assert_eq!(&queued_alarms, &alarms);
            prop_assert!(outbox.len() <= CAP);
            prop_assert!(outbox.telemetry_len() <= TELEMETRY);
            prop_assert_eq!(outbox.events_dropped(), dropped);
        }
    }
}
