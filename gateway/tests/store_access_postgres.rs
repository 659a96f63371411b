#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! User accounts, login sessions and the audit chain on PostgreSQL (a private cluster) against
//! the redb store: the same access changes give the same answers from every read, the same
//! refusals and the same audit bytes, so the chain verifies on either; a refused change and a
//! replaced leader write nothing; a stored record that does not decode is reported, never a
//! panic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::access::{Role, Username, verify_chain};
use gateway::domain::{ResidentId, Timestamp};
use gateway::store::postgres::PgStoreOptions;
use gateway::store::{
    AccessChange, AccessOp, AccessRefusal, AccessStore, AuditDraft, AuditEntry, AuditHead, PgBlocking, SessionRecord,
    Store, StoreError, UserRecord,
};
use gateway::writer::backend::{CommitterStore, LeadingPg};
use gateway::writer::leadership::Role as LeaderRole;
use testkit::Postgres;

mod seam_support;

const LONG_LEASE: Duration = Duration::from_secs(60);

fn name(name: &str) -> Username {
    Username::new(name).unwrap()
}

fn resident(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

fn user(username: &str, role: Role, at: i64) -> UserRecord {
    UserRecord {
        username: name(username),
        role,
        // Not a real argon2 string: the stores keep it as given.
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{username}"),
        must_change_password: true,
        disabled: false,
        created_at: Timestamp(at),
        changed_at: Timestamp(at),
    }
}

fn session(username: &str, role: Role, created: i64, expires: i64) -> SessionRecord {
    SessionRecord {
        username: name(username),
        role,
        created_at: Timestamp(created),
        expires_at: Timestamp(expires),
        revoked_at: None,
    }
}

/// A token hash as the access module makes them (64 hex digits).
fn token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn entry(at: i64, username: &str, action: &str, resident_id: Option<&str>, target: Option<&str>) -> AuditDraft {
    AuditDraft {
        at: Timestamp(at),
        username: username.to_owned(),
        role: Some(Role::Admin),
        action: action.to_owned(),
        resident: resident_id.map(resident),
        target: target.map(str::to_owned),
        client: Some("192.0.2.7".to_owned()),
    }
}

fn change(ops: Vec<AccessOp>, audit: Vec<AuditDraft>) -> AccessChange {
    AccessChange { ops, audit }
}

/// Users, sessions, refusals and entries naming residents, in the order the access module
/// would send them; each step is `(change, refused?)`.
fn steps() -> Vec<(AccessChange, bool)> {
    let mut bob_disabled = user("bob", Role::Operator, 1_000);
    bob_disabled.disabled = true;
    bob_disabled.changed_at = Timestamp(8_000);
    let mut alice_changed = user("alice", Role::Admin, 1_000);
    alice_changed.must_change_password = false;
    alice_changed.password_hash.push_str("-changed");
    alice_changed.changed_at = Timestamp(3_000);
    vec![
        (
            change(
                vec![AccessOp::CreateUser(Box::new(user("alice", Role::Admin, 1_000)))],
                vec![entry(1_000, "cli", "user_created", None, Some("alice (admin)"))],
            ),
            false,
        ),
        (
            change(
                vec![AccessOp::CreateUser(Box::new(user("bob", Role::Operator, 1_100)))],
                vec![entry(1_100, "alice", "user_created", None, Some("bob (operator)"))],
            ),
            false,
        ),
        // Taken: refused, and its audit entry is not written either.
        (
            change(
                vec![AccessOp::CreateUser(Box::new(user("alice", Role::Operator, 1_200)))],
                vec![entry(1_200, "bob", "user_created", None, Some("alice"))],
            ),
            true,
        ),
        (
            change(
                vec![AccessOp::UpdateUser(Box::new(user("carol", Role::Manager, 1_300)))],
                vec![entry(1_300, "alice", "user_reset", None, Some("carol"))],
            ),
            true,
        ),
        // A change that would create a user before its refused op: all or nothing.
        (
            change(
                vec![
                    AccessOp::CreateUser(Box::new(user("dave", Role::CareStaff, 1_400))),
                    AccessOp::CreateUser(Box::new(user("bob", Role::CareStaff, 1_400))),
                ],
                vec![entry(1_400, "alice", "user_created", None, Some("dave"))],
            ),
            true,
        ),
        (
            change(
                vec![AccessOp::CreateSession {
                    token_hash: token(1),
                    session: session("bob", Role::Operator, 2_000, 5_000),
                }],
                vec![entry(2_000, "bob", "login", None, None)],
            ),
            false,
        ),
        (
            change(
                vec![
                    AccessOp::UpdateUser(Box::new(alice_changed)),
                    AccessOp::CreateSession {
                        token_hash: token(2),
                        session: session("alice", Role::Admin, 3_000, 20_000),
                    },
                ],
                vec![
                    entry(3_000, "alice", "password_changed", None, None),
                    entry(3_000, "alice", "login", None, None),
                ],
            ),
            false,
        ),
        (
            change(
                vec![AccessOp::CreateSession {
                    token_hash: token(3),
                    session: session("bob", Role::Operator, 4_000, 30_000),
                }],
                vec![entry(4_000, "bob", "login", None, None)],
            ),
            false,
        ),
        // Entries naming residents, several in one change.
        (
            change(
                Vec::new(),
                vec![
                    entry(
                        4_500,
                        "alice",
                        "resident_viewed",
                        Some("r-0001"),
                        Some("/residents/r-0001"),
                    ),
                    entry(4_600, "alice", "resident_viewed", Some("r-0002"), None),
                    entry(4_700, "bob", "resident_changed", Some("r-0001"), Some("address")),
                ],
            ),
            false,
        ),
        // Created after token 1 expired: token 1 is dropped.
        (
            change(
                vec![AccessOp::CreateSession {
                    token_hash: token(4),
                    session: session("alice", Role::Admin, 6_000, 40_000),
                }],
                vec![entry(6_000, "alice", "login", None, None)],
            ),
            false,
        ),
        (
            change(
                vec![
                    AccessOp::RevokeSession {
                        token_hash: token(2),
                        at: Timestamp(7_000),
                    },
                    // Unknown: nothing to revoke, not a refusal.
                    AccessOp::RevokeSession {
                        token_hash: token(99),
                        at: Timestamp(7_000),
                    },
                ],
                vec![entry(7_000, "alice", "logout", None, None)],
            ),
            false,
        ),
        // Disabling a user revokes their sessions in the same transaction.
        (
            change(
                vec![AccessOp::UpdateUser(Box::new(bob_disabled))],
                vec![entry(8_000, "alice", "user_disabled", None, Some("bob"))],
            ),
            false,
        ),
        (
            change(
                vec![AccessOp::RevokeUserSessions {
                    username: name("alice"),
                    at: Timestamp(9_000),
                }],
                vec![entry(9_000, "alice", "logout_everywhere", Some("r-0002"), None)],
            ),
            false,
        ),
        // An empty change commits and appends nothing.
        (change(Vec::new(), Vec::new()), false),
    ]
}

/// Every `AccessStore` read, for the names, tokens and residents the steps use.
#[derive(Debug, PartialEq)]
struct Reads {
    users: Vec<UserRecord>,
    each_user: Vec<Option<UserRecord>>,
    sessions: Vec<Option<SessionRecord>>,
    /// The stored bytes, as text (exactly: they are UTF-8 JSON) so a difference reads.
    audit_raw: Vec<(u64, String)>,
    audit_head: Option<AuditHead>,
    by_resident: Vec<Vec<AuditEntry>>,
}

const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
const TOKENS: [u8; 5] = [1, 2, 3, 4, 99];
const RESIDENTS: [&str; 3] = ["r-0001", "r-0002", "r-0003"];

fn as_text(raw: Vec<(u64, Vec<u8>)>) -> Vec<(u64, String)> {
    raw.into_iter()
        .map(|(seq, bytes)| (seq, String::from_utf8(bytes).unwrap()))
        .collect()
}

fn redb_reads(store: &Store) -> Reads {
    Reads {
        users: store.users().unwrap(),
        each_user: NAMES.iter().map(|n| store.user(&name(n)).unwrap()).collect(),
        sessions: TOKENS.iter().map(|&t| store.session(&token(t)).unwrap()).collect(),
        audit_raw: as_text(store.audit_raw().unwrap()),
        audit_head: store.audit_head().unwrap(),
        by_resident: RESIDENTS
            .iter()
            .map(|r| store.audit_for_resident(&resident(r)).unwrap())
            .collect(),
    }
}

fn pg_reads(store: &PgBlocking) -> Reads {
    Reads {
        users: store.users().unwrap(),
        each_user: NAMES.iter().map(|n| store.user(&name(n)).unwrap()).collect(),
        sessions: TOKENS.iter().map(|&t| store.session(&token(t)).unwrap()).collect(),
        audit_raw: as_text(store.audit_raw().unwrap()),
        audit_head: store.audit_head().unwrap(),
        by_resident: RESIDENTS
            .iter()
            .map(|r| store.audit_for_resident(&resident(r)).unwrap())
            .collect(),
    }
}

fn leading_pg(runtime: &tokio::runtime::Runtime, server: &Postgres, holder: &str, lease: Duration) -> PgBlocking {
    PgBlocking::new(
        seam_support::leading_store(runtime, server, holder, lease),
        runtime.handle().clone(),
    )
}

/// Applies every step to a store holding the lease, checking it answers as redb does.
fn apply_steps_to_both(redb: &Store, pg: &mut PgBlocking) {
    for (n, (change, refused)) in steps().iter().enumerate() {
        let before = pg_reads(pg);
        let on_redb = redb.apply_access(change).unwrap();
        let on_pg = pg.apply_access(change).unwrap();
        assert_eq!(on_pg, on_redb, "step {n}: the stores answered differently");
        assert_eq!(on_pg.is_err(), *refused, "step {n}: {on_pg:?}");
        let after = pg_reads(pg);
        if *refused {
            assert_eq!(after, before, "step {n}: a refused change wrote something");
        }
        assert_eq!(after, redb_reads(redb), "step {n}: the stores read differently");
    }
}

#[test]
fn the_same_access_changes_read_the_same_on_redb_and_postgres_and_the_chain_verifies() {
    let runtime = seam_support::runtime();
    let server = Postgres::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redb = Store::open_in_dir(dir.path()).unwrap();
    let mut pg = leading_pg(&runtime, &server, "gw-1", LONG_LEASE);

    apply_steps_to_both(&redb, &mut pg);

    let reads = pg_reads(&pg);
    // What the steps should have left, so the comparison above cannot pass on two empty stores.
    assert_eq!(
        reads.users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert!(reads.each_user[1].as_ref().unwrap().disabled);
    assert!(reads.each_user[3].is_none(), "dave was in a refused change");
    let [t1, t2, t3, t4, t99] = reads.sessions.clone().try_into().unwrap();
    assert_eq!(
        (t1, t99),
        (None, None),
        "token 1 expired and was dropped; 99 never existed"
    );
    assert_eq!(t2.unwrap().revoked_at, Some(Timestamp(7_000)));
    assert_eq!(
        t3.unwrap().revoked_at,
        Some(Timestamp(8_000)),
        "revoked when bob was disabled"
    );
    assert_eq!(t4.unwrap().revoked_at, Some(Timestamp(9_000)));
    assert_eq!(reads.audit_raw.len(), 13);
    assert_eq!(
        reads.audit_head.as_ref().map(|head| head.seq),
        Some(13),
        "the head names the last entry"
    );
    let seqs = |entries: &[AuditEntry]| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&reads.by_resident[0]), [7, 9]);
    assert_eq!(seqs(&reads.by_resident[1]), [8, 13]);
    assert!(reads.by_resident[2].is_empty());

    let raw = pg.audit_raw().unwrap();
    let report = verify_chain(&raw, None, reads.audit_head.as_ref());
    assert!(report.intact, "{report:?}");
    assert_eq!(report.entries, 13);

    // The check can fail: an entry altered in place breaks the chain there.
    server
        .psql("UPDATE audit_log SET entry = convert_to(replace(convert_from(entry, 'UTF8'), 'logout', 'login'), 'UTF8') WHERE seq = 11")
        .unwrap();
    let report = verify_chain(&pg.audit_raw().unwrap(), None, pg.audit_head().unwrap().as_ref());
    assert_eq!(report.first_break.map(|b| b.seq), Some(11));
}

#[test]
fn a_replaced_leader_writes_no_user_session_or_audit_entry() {
    let first = change(
        vec![AccessOp::CreateUser(Box::new(user("alice", Role::Admin, 1_000)))],
        vec![entry(1_000, "cli", "user_created", None, Some("alice"))],
    );
    // The old leader writes, stops renewing, and another gateway takes the lease.
    let seam_support::Fenced {
        mut core,
        new,
        taken,
        runtime,
        server: _server,
    } = seam_support::fenced_core(Duration::from_secs(1), Timestamp(1_000), |core| {
        core.store_mut().apply_access(&first).unwrap().unwrap();
    });
    let new = PgBlocking::new(new, runtime.handle().clone());
    let before = pg_reads(&new);
    assert_eq!(before.audit_raw.len(), 1);

    let late = change(
        vec![
            AccessOp::CreateUser(Box::new(user("bob", Role::Operator, 2_000))),
            AccessOp::CreateSession {
                token_hash: token(1),
                session: session("alice", Role::Admin, 2_000, 9_000),
            },
        ],
        vec![entry(2_000, "alice", "user_created", Some("r-0001"), Some("bob"))],
    );
    let old = core.store_mut();
    match old.apply_access(&late) {
        Err(StoreError::Fenced { current, .. }) => {
            assert_eq!(current, Some(("gw-new".to_string(), taken.epoch)));
        }
        other => panic!("the replaced leader was not fenced: {other:?}"),
    }
    assert!(matches!(old.apply_access(&late), Err(StoreError::NotLeader)));
    assert_eq!(pg_reads(&new), before, "the fenced change wrote something");
}

#[test]
fn the_leading_gateway_applies_access_changes_and_a_standby_is_refused() {
    let runtime = seam_support::runtime();
    let server = Postgres::start().unwrap();
    let config: tokio_postgres::Config = server.connection_string("postgres").parse().unwrap();
    let connect = |holder: &str| {
        LeadingPg::connect(
            &config,
            PgStoreOptions::new(holder, LONG_LEASE),
            Arc::new(Mutex::new(None)),
            runtime.handle().clone(),
        )
    };
    let mut leader = connect("gw-a").unwrap();
    assert_eq!(leader.role(), LeaderRole::Leader);
    let create = change(
        vec![AccessOp::CreateUser(Box::new(user("alice", Role::Admin, 1_000)))],
        vec![entry(1_000, "cli", "user_created", Some("r-0001"), Some("alice"))],
    );
    let appended = CommitterStore::apply_access(&mut leader, &create).unwrap().unwrap();
    assert_eq!(appended.len(), 1);
    assert_eq!(
        CommitterStore::apply_access(&mut leader, &create).unwrap(),
        Err(AccessRefusal::UserExists(name("alice")))
    );
    assert!(
        matches!(connect("gw-b"), Err(StoreError::NotLeader)),
        "a second gateway stands by"
    );
    let stored = leader.store().audit_for_resident(&resident("r-0001")).unwrap();
    assert_eq!(stored, appended);
}

#[test]
fn a_stored_row_that_does_not_decode_is_reported_unreadable() {
    let runtime = seam_support::runtime();
    let server = Postgres::start().unwrap();
    let mut pg = leading_pg(&runtime, &server, "gw-1", LONG_LEASE);
    pg.apply_access(&change(
        vec![
            AccessOp::CreateUser(Box::new(user("alice", Role::Admin, 1_000))),
            AccessOp::CreateUser(Box::new(user("bob", Role::Operator, 1_000))),
            AccessOp::CreateSession {
                token_hash: token(1),
                session: session("alice", Role::Admin, 1_000, 9_000),
            },
        ],
        vec![
            entry(1_000, "cli", "user_created", Some("r-0001"), Some("alice")),
            entry(1_000, "cli", "user_created", Some("r-0001"), Some("bob")),
        ],
    ))
    .unwrap()
    .unwrap();

    server
        .psql(
            r#"UPDATE users SET record = '{"username": 5}' WHERE username = 'bob';
               UPDATE sessions SET record = '[]';
               UPDATE audit_log SET entry = '\x00ff' WHERE seq = 1;
               UPDATE audit_head SET record = '"head"';"#,
        )
        .unwrap();

    match pg.user(&name("bob")) {
        Err(StoreError::Unreadable(unreadable)) => {
            assert_eq!((unreadable.table, unreadable.key.as_str()), ("users", "bob"))
        }
        other => panic!("expected Unreadable: {other:?}"),
    }
    assert_eq!(
        pg.users()
            .unwrap()
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        ["alice"],
        "an unreadable user is left out of the list"
    );
    match pg.session(&token(1)) {
        Err(StoreError::Unreadable(unreadable)) => {
            assert_eq!(unreadable.table, "sessions");
            assert_eq!(
                unreadable.key,
                token(1)[..8],
                "a token hash is named by its prefix only"
            );
        }
        other => panic!("expected Unreadable: {other:?}"),
    }
    assert!(matches!(
        pg.audit_head(),
        Err(StoreError::Unreadable(unreadable)) if unreadable.table == "audit_head"
    ));
    let readable = pg.audit_for_resident(&resident("r-0001")).unwrap();
    assert_eq!(readable.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    let raw = pg.audit_raw().unwrap();
    assert_eq!(raw[0], (1, vec![0x00, 0xff]), "the raw log gives the bytes as stored");
    let report = verify_chain(&raw, None, None);
    assert_eq!(report.first_break.map(|b| b.seq), Some(1));

    // With the head unreadable, the chain goes on from the last entry in the log (redb's rule),
    // and an unreadable session cannot be revoked: it is left as it is.
    let appended = pg
        .apply_access(&change(
            vec![AccessOp::RevokeUserSessions {
                username: name("alice"),
                at: Timestamp(2_000),
            }],
            vec![entry(2_000, "alice", "logout", None, None)],
        ))
        .unwrap()
        .unwrap();
    assert_eq!(appended[0].seq, 3);
    assert_eq!(appended[0].prev_hash, readable[0].hash);
    assert_eq!(
        pg.audit_head().unwrap(),
        Some(AuditHead {
            seq: 3,
            hash: appended[0].hash.clone()
        })
    );
    assert_eq!(server.psql("SELECT record::text FROM sessions").unwrap(), "[]");
}
