#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Alert lists for the operators' API: every filter, combined filters, both orders, paging
//! across pages with no gaps or repeats, an unknown id, a limit of 0 and an absurd limit.
//! Each answer is checked against a plain filter-and-sort of the alerts written.

use gateway::domain::*;
use gateway::store::*;
use protocol::DeviceId;

const KINDS: [AlertKind; 4] = [
    AlertKind::PendantPress,
    AlertKind::Fall,
    AlertKind::Inactivity,
    AlertKind::LowBattery,
];

/// 600 alerts (more than a page can hold) over 4 kinds, 7 residents (and none), 11 devices,
/// all three states and raise times that are not in id order.
fn fleet() -> Vec<Alert> {
    (1..=600u64)
        .map(|n| {
            let kind = KINDS[(n % 4) as usize];
            let state = match n % 3 {
                0 => AlertState::Raised,
                1 => AlertState::Acknowledged,
                _ => AlertState::Resolved,
            };
            let mut transitions = vec![Transition {
                at: Timestamp(0),
                change: Change::Raised { event: None },
            }];
            if state != AlertState::Raised {
                transitions.push(Transition {
                    at: Timestamp(1),
                    change: Change::Acknowledged {
                        operator: "op-1".into(),
                    },
                });
            }
            if state == AlertState::Resolved {
                transitions.push(Transition {
                    at: Timestamp(2),
                    change: Change::Resolved {
                        operator: Some("op-1".into()),
                        outcome: Outcome::FalseAlarm,
                        note: None,
                    },
                });
            }
            Alert {
                id: AlertId(n),
                kind,
                priority: kind.priority(),
                state,
                resident: (n % 8 != 0).then(|| ResidentId::new(format!("R{}", n % 8)).unwrap()),
                device: Some(DeviceId::new(&format!("dev-{}", n % 11)).unwrap()),
                unregistered_device: false,
                // Several alerts share a raise time; later ids are not always raised later.
                raised_at: Timestamp(((n * 37) % 200) as i64 * 1_000),
                late_by_ms: None,
                escalation_level: 0,
                transitions,
                affected_devices: Vec::new(),
            }
        })
        .collect()
}

fn stored_fleet() -> (tempfile::TempDir, Store, Vec<Alert>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(dir.path()).unwrap();
    let alerts = fleet();
    let mut batch = store.begin_write().unwrap();
    for alert in &alerts {
        batch.put_alert(alert).unwrap();
    }
    batch.commit().unwrap();
    (dir, store, alerts)
}

/// What `query` should list, all pages together, by a plain filter and sort.
fn expected(alerts: &[Alert], query: &AlertQuery) -> Vec<AlertId> {
    let mut wanted: Vec<&Alert> = alerts
        .iter()
        .filter(|a| {
            query.state.is_none_or(|state| match state {
                AlertStateFilter::Raised => a.state == AlertState::Raised,
                AlertStateFilter::Acknowledged => a.state == AlertState::Acknowledged,
                AlertStateFilter::Resolved => a.state == AlertState::Resolved,
                AlertStateFilter::Open => a.state != AlertState::Resolved,
            }) && query.priority.is_none_or(|p| a.priority == p)
                && query.kind.is_none_or(|k| a.kind == k)
                && query.resident.as_ref().is_none_or(|r| a.resident.as_ref() == Some(r))
                && query.device.is_none_or(|d| a.device == Some(d))
                && query.raised_from.is_none_or(|from| a.raised_at >= from)
                && query.raised_until.is_none_or(|until| a.raised_at < until)
        })
        .collect();
    match query.order {
        AlertOrder::Queue => wanted.sort_by_key(|a| (a.priority, a.raised_at, a.id)),
        AlertOrder::Id => wanted.sort_by_key(|a| a.id),
    }
    wanted.into_iter().map(|a| a.id).collect()
}

/// Every page of `query` (its `after` is overwritten), checked for full pages and a next.
fn all_pages(store: &Store, alerts: &[Alert], mut query: AlertQuery) -> Vec<AlertId> {
    let mut listed = Vec::new();
    query.after = None;
    for _ in 0..1000 {
        let page = store.alert_page(&query).unwrap();
        assert!(page.unreadable.is_empty());
        assert!(page.alerts.len() <= query.limit.min(MAX_ALERT_PAGE));
        for alert in &page.alerts {
            // The whole history comes with each alert on the page.
            let written = alerts.iter().find(|a| a.id == alert.id).unwrap();
            assert_eq!(alert, written);
        }
        listed.extend(page.alerts.iter().map(|a| a.id));
        match page.next {
            Some(next) => {
                assert_eq!(
                    page.alerts.len(),
                    query.limit.min(MAX_ALERT_PAGE),
                    "only full pages have a next"
                );
                // A cursor survives its trip through a query string.
                query.after = Some(next.to_string().parse().unwrap());
            }
            None => return listed,
        }
    }
    panic!("paging never ended");
}

fn check(store: &Store, alerts: &[Alert], query: AlertQuery) {
    let want = expected(alerts, &query);
    let got = all_pages(store, alerts, query.clone());
    assert_eq!(got, want, "{query:?}");
}

fn res(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

#[test]
fn each_filter_alone_in_both_orders_across_pages() {
    let (_dir, store, alerts) = stored_fleet();
    let filters = [
        AlertQuery::default(),
        AlertQuery {
            state: Some(AlertStateFilter::Raised),
            ..AlertQuery::default()
        },
        AlertQuery {
            state: Some(AlertStateFilter::Acknowledged),
            ..AlertQuery::default()
        },
        AlertQuery {
            state: Some(AlertStateFilter::Resolved),
            ..AlertQuery::default()
        },
        AlertQuery {
            state: Some(AlertStateFilter::Open),
            ..AlertQuery::default()
        },
        AlertQuery {
            priority: Some(Priority::Wellbeing),
            ..AlertQuery::default()
        },
        AlertQuery {
            kind: Some(AlertKind::Fall),
            ..AlertQuery::default()
        },
        AlertQuery {
            resident: Some(res("R3")),
            ..AlertQuery::default()
        },
        AlertQuery {
            resident: Some(res("nobody")),
            ..AlertQuery::default()
        },
        AlertQuery {
            device: Some(DeviceId::new("dev-4").unwrap()),
            ..AlertQuery::default()
        },
        AlertQuery {
            raised_from: Some(Timestamp(50_000)),
            raised_until: Some(Timestamp(120_000)),
            ..AlertQuery::default()
        },
    ];
    for filter in filters {
        for order in [AlertOrder::Queue, AlertOrder::Id] {
            for limit in [7, 200] {
                check(
                    &store,
                    &alerts,
                    AlertQuery {
                        order,
                        limit,
                        ..filter.clone()
                    },
                );
            }
        }
    }
}

#[test]
fn combined_filters() {
    let (_dir, store, alerts) = stored_fleet();
    let combined = [
        AlertQuery {
            state: Some(AlertStateFilter::Open),
            priority: Some(Priority::LifeSafety),
            resident: Some(res("R5")),
            ..AlertQuery::default()
        },
        AlertQuery {
            state: Some(AlertStateFilter::Resolved),
            kind: Some(AlertKind::Inactivity),
            raised_from: Some(Timestamp(10_000)),
            ..AlertQuery::default()
        },
        AlertQuery {
            resident: Some(res("R1")),
            device: Some(DeviceId::new("dev-2").unwrap()),
            raised_until: Some(Timestamp(150_000)),
            ..AlertQuery::default()
        },
        AlertQuery {
            state: Some(AlertStateFilter::Raised),
            kind: Some(AlertKind::PendantPress),
            priority: Some(Priority::Technical),
            ..AlertQuery::default()
        },
    ];
    for query in combined {
        for order in [AlertOrder::Queue, AlertOrder::Id] {
            check(
                &store,
                &alerts,
                AlertQuery {
                    order,
                    limit: 5,
                    ..query.clone()
                },
            );
        }
    }
}

#[test]
fn the_queue_puts_life_safety_first_then_the_oldest() {
    let (_dir, store, _alerts) = stored_fleet();
    let page = store
        .alert_page(&AlertQuery {
            state: Some(AlertStateFilter::Open),
            limit: 500,
            ..AlertQuery::default()
        })
        .unwrap();
    let keys: Vec<(Priority, Timestamp, AlertId)> =
        page.alerts.iter().map(|a| (a.priority, a.raised_at, a.id)).collect();
    assert!(keys.is_sorted());
    assert_eq!(keys.first().unwrap().0, Priority::LifeSafety);
    assert_eq!(keys.last().unwrap().0, Priority::Technical);
}

#[test]
fn zero_absurd_limits_and_unknown_ids() {
    let (_dir, store, alerts) = stored_fleet();
    let none = store
        .alert_page(&AlertQuery {
            limit: 0,
            ..AlertQuery::default()
        })
        .unwrap();
    assert_eq!(none, AlertPage::default());

    let capped = store
        .alert_page(&AlertQuery {
            order: AlertOrder::Id,
            limit: usize::MAX,
            ..AlertQuery::default()
        })
        .unwrap();
    assert_eq!(capped.alerts.len(), MAX_ALERT_PAGE);
    assert_eq!(capped.next.map(|next| next.id), Some(AlertId(MAX_ALERT_PAGE as u64)));

    assert_eq!(store.alert(AlertId(601)).unwrap(), None);
    assert_eq!(store.alert(AlertId(0)).unwrap(), None);
    assert_eq!(store.alert(AlertId(17)).unwrap().as_ref(), alerts.get(16));

    // A cursor beyond every alert: an empty last page, not an error.
    let beyond = store
        .alert_page(&AlertQuery {
            order: AlertOrder::Id,
            after: Some("2.0.999999".parse().unwrap()),
            limit: 10,
            ..AlertQuery::default()
        })
        .unwrap();
    assert_eq!(beyond, AlertPage::default());
}

#[test]
fn bad_cursors_are_refused() {
    for text in [
        "",
        "1",
        "1.2",
        "1.2.3.4",
        "3.0.1",
        "x.0.1",
        "0.abc.1",
        "0.0.-1",
        "0.0.18446744073709551616",
        "0..1",
    ] {
        assert_eq!(text.parse::<AlertCursor>(), Err(InvalidAlertCursor), "{text:?}");
    }
    let cursor = AlertCursor {
        priority: Priority::Wellbeing,
        raised_at: Timestamp(-5),
        id: AlertId(9),
    };
    assert_eq!(cursor.to_string().parse::<AlertCursor>(), Ok(cursor));
}
