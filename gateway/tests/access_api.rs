#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The `/api/v1` API through the real gateway (`app::spawn`, its own data directory, a manual
//! clock): every route's rule, login and its failures, the rate limit, the
//! must-change-password gate, expiry, logout, disabling, users and the audit trail.

mod access_support;
mod store_support;

use access_support::{Gateway, user_cmd};
use gateway::access::audit::Action;
use gateway::access::{Allowed, ApiState, Caller, Role, Username};
use gateway::domain::ResidentId;
use gateway::http::api_routes;

const NEW: &str = "a long enough passphrase";

fn login_body(name: &str, password: &str) -> String {
    serde_json::json!({ "username": name, "password": password }).to_string()
}

/// A gateway with one user per role, each with their password changed; their tokens.
async fn staffed() -> (Gateway, Vec<(Role, String)>) {
    let users = [
        ("olive", "operator"),
        ("carl", "care_staff"),
        ("mona", "manager"),
        ("ada", "admin"),
    ];
    let (gw, passwords) = Gateway::start(&users).await;
    let mut tokens = Vec::new();
    for ((name, role), one_time) in users.iter().zip(&passwords) {
        let token = gw.first_login(name, one_time, NEW).await;
        tokens.push((role.parse().unwrap(), token));
    }
    (gw, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_401_without_a_token_403_for_a_wrong_role_and_serves_the_allowed() {
    let (gw, tokens) = staffed().await;
    let state = ApiState::new(gw.handle().client(), gw.clock.clone(), Default::default());
    let rules = api_routes(state).rules().to_vec();
    assert!(rules.len() >= 8, "{rules:?}");
    let names = [
        (Role::Operator, "olive"),
        (Role::CareStaff, "carl"),
        (Role::Manager, "mona"),
        (Role::Admin, "ada"),
    ];
    for rule in &rules {
        let method = rule.method.as_str();
        let path = if rule.path.ends_with("/audit") {
            format!("{}?resident=R1", rule.path)
        } else if rule.path.ends_with("/alerts/stream") {
            // An event stream stays open: a bad resume point answers (400) at once instead.
            format!("{}?after=x", rule.path)
        } else {
            rule.path.clone()
        };
        let body = (method == "POST").then_some("{}");
        let Allowed::Roles(allowed) = rule.allowed else {
            assert_eq!(rule.path, "/api/v1/login", "only the login is public");
            continue;
        };
        let reply = gw.call(method, &path, None, body).await;
        assert_eq!(reply.status, 401, "{method} {path} without a token: {reply:?}");
        assert!(reply.error().contains("log in"), "{reply:?}");
        let reply = gw.call(method, &path, Some("not-a-token"), body).await;
        assert_eq!(reply.status, 401, "{method} {path} with a bad token: {reply:?}");
        for (role, token) in &tokens {
            // Logging out would end the shared token: use a fresh one there.
            let fresh;
            let token = if rule.path.ends_with("/logout") {
                let name = names.iter().find(|(r, _)| r == role).unwrap().1;
                fresh = gw.login(name, NEW).await["token"].as_str().unwrap().to_owned();
                &fresh
            } else {
                token
            };
            let reply = gw.call(method, &path, Some(token), body).await;
            if allowed.contains(role) {
                assert!(
                    reply.status != 401 && reply.status != 403,
                    "{method} {path} as {role} is allowed: {reply:?}"
                );
            } else {
                assert_eq!(reply.status, 403, "{method} {path} as {role}: {reply:?}");
                assert!(reply.error().contains("role"), "{reply:?}");
            }
        }
    }
    // The matrix the issue asks for.
    let allowed = |path: &str, method: &str| {
        rules
            .iter()
            .find(|r| r.path == path && r.method.as_str() == method)
            .map(|r| r.allowed)
            .unwrap()
    };
    assert_eq!(allowed("/api/v1/me", "GET"), Allowed::Roles(Role::ALL));
    assert_eq!(allowed("/api/v1/users", "GET"), Allowed::Roles(&[Role::Admin]));
    assert_eq!(allowed("/api/v1/users", "POST"), Allowed::Roles(&[Role::Admin]));
    assert_eq!(allowed("/api/v1/audit", "GET"), Allowed::Roles(&[Role::Manager]));
    assert_eq!(allowed("/api/v1/audit/verify", "GET"), Allowed::Roles(&[Role::Manager]));
    // Health and metrics stay open.
    assert_eq!(gw.call("GET", "/metrics", None, None).await.status, 200);
    assert_ne!(gw.call("GET", "/healthz", None, None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_login_must_change_the_one_time_password() {
    let (gw, passwords) = Gateway::start(&[("olive", "operator")]).await;
    let one_time = &passwords[0];
    assert!(one_time.len() >= 16, "{one_time}");
    let login = gw.login("olive", one_time).await;
    assert_eq!(login["must_change_password"], true);
    assert!(
        login["expires_at"].as_str().unwrap().starts_with("2026-11-23T22:00:00"),
        "{login}"
    );
    let token = login["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    let gated = gw.call("GET", "/api/v1/me", Some(token), None).await;
    assert_eq!(gated.status, 403);
    assert!(gated.error().contains("change your one-time password"), "{gated:?}");
    // Bad changes: wrong old password, too short, same as old, bad JSON, missing field.
    let change = |old: &str, new: &str| serde_json::json!({ "old_password": old, "new_password": new }).to_string();
    let reply = gw
        .call(
            "POST",
            "/api/v1/password",
            Some(token),
            Some(&change("wrong-wrong-wrong", NEW)),
        )
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = gw
        .call(
            "POST",
            "/api/v1/password",
            Some(token),
            Some(&change(one_time, "short")),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("at least 12"), "{reply:?}");
    let reply = gw
        .call(
            "POST",
            "/api/v1/password",
            Some(token),
            Some(&change(one_time, one_time)),
        )
        .await;
    assert_eq!(reply.status, 400);
    let reply = gw
        .call("POST", "/api/v1/password", Some(token), Some("{\"old_password\": "))
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("bad JSON"), "{reply:?}");
    let reply = gw
        .call(
            "POST",
            "/api/v1/password",
            Some(token),
            Some("{\"old_password\": \"x\"}"),
        )
        .await;
    assert_eq!(reply.status, 400);
    // Still gated after the failures.
    assert_eq!(gw.call("GET", "/api/v1/me", Some(token), None).await.status, 403);
    let reply = gw
        .call("POST", "/api/v1/password", Some(token), Some(&change(one_time, NEW)))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let me = gw.call("GET", "/api/v1/me", Some(token), None).await;
    assert_eq!(me.status, 200);
    assert_eq!(
        me.json(),
        serde_json::json!({"username": "olive", "role": "operator", "must_change_password": false})
    );
    // The one-time password no longer works; the new one does.
    let reply = gw
        .call("POST", "/api/v1/login", None, Some(&login_body("olive", one_time)))
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(gw.login("olive", NEW).await["must_change_password"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_do_not_say_whether_the_user_exists_and_are_audited() {
    let (gw, passwords) = Gateway::start(&[("olive", "operator")]).await;
    let wrong = gw
        .call(
            "POST",
            "/api/v1/login",
            None,
            Some(&login_body("olive", "not the password")),
        )
        .await;
    let unknown = gw
        .call(
            "POST",
            "/api/v1/login",
            None,
            Some(&login_body("nobody", "not the password")),
        )
        .await;
    let invalid = gw
        .call("POST", "/api/v1/login", None, Some(&login_body("No Body!", "x")))
        .await;
    for reply in [&wrong, &unknown, &invalid] {
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(reply.body, wrong.body);
    }
    gw.login("olive", &passwords[0]).await;
    let raw = gw.read(|store| store.audit_raw().unwrap()).await;
    let text: Vec<String> = raw
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    let actions: Vec<serde_json::Value> = text.iter().map(|t| serde_json::from_str(t).unwrap()).collect();
    let kinds: Vec<&str> = actions.iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "user_created",
            "login_failed",
            "login_failed",
            "login_failed",
            "login_succeeded"
        ]
    );
    assert_eq!(actions[2]["username"], "nobody");
    assert_eq!(actions[3]["username"], "(invalid username)");
    assert_eq!(actions[4]["client"], "127.0.0.1");
    assert_eq!(actions[4]["role"], "operator");
    // No password, one-time or tried, is in the log.
    for entry in &text {
        assert!(
            !entry.contains("not the password") && !entry.contains(&passwords[0]),
            "{entry}"
        );
    }
    // And no token: sessions are stored by hash only.
    let token = gw.login("olive", &passwords[0]).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (by_token, by_hash) = gw
        .read(move |store| {
            let hash = gateway::access::token::token_hash(&token);
            (store.session(&token).unwrap(), store.session(&hash).unwrap())
        })
        .await;
    assert!(by_token.is_none());
    assert!(by_hash.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_rate_limited_until_the_window_passes() {
    let (gw, passwords) = Gateway::start(&[("olive", "operator")]).await;
    for _ in 0..5 {
        let reply = gw
            .call(
                "POST",
                "/api/v1/login",
                None,
                Some(&login_body("olive", "guess-guess-guess")),
            )
            .await;
        assert_eq!(reply.status, 401);
    }
    // Now even the right password is refused, and so is any user from this address.
    for name in ["olive", "someone"] {
        let reply = gw
            .call("POST", "/api/v1/login", None, Some(&login_body(name, &passwords[0])))
            .await;
        assert_eq!(reply.status, 429, "{reply:?}");
        assert!(reply.error().contains("too many"), "{reply:?}");
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
    }
    gw.clock.advance_ms(15 * 60 * 1000);
    gw.login("olive", &passwords[0]).await;
    let raw = gw.read(|store| store.audit_raw().unwrap()).await;
    let limited = raw
        .iter()
        .filter(|(_, b)| String::from_utf8_lossy(b).contains("login_rate_limited"))
        .count();
    // Audited once per block, not once per refused request (a flood must not reach the writer).
    assert_eq!(limited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_logout_revokes_them() {
    let (gw, passwords) = Gateway::start(&[("olive", "operator")]).await;
    let token = gw.first_login("olive", &passwords[0], NEW).await;
    let second = gw.login("olive", NEW).await["token"].as_str().unwrap().to_owned();
    assert_eq!(gw.call("GET", "/api/v1/me", Some(&token), None).await.status, 200);
    let reply = gw.call("POST", "/api/v1/logout", Some(&token), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = gw.call("GET", "/api/v1/me", Some(&token), None).await;
    assert_eq!(reply.status, 401);
    assert!(reply.error().contains("revoked"), "{reply:?}");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    // The other session is untouched, until its 12 hours are up.
    gw.clock.advance_ms(12 * 3600 * 1000 - 1);
    assert_eq!(gw.call("GET", "/api/v1/me", Some(&second), None).await.status, 200);
    gw.clock.advance_ms(1);
    assert_eq!(gw.call("GET", "/api/v1/me", Some(&second), None).await.status, 401);
    // The next login drops the expired sessions from the store.
    gw.login("olive", NEW).await;
    let hash = gateway::access::token::token_hash(&second);
    assert!(gw.read(move |store| store.session(&hash).unwrap()).await.is_none());
    // Malformed Authorization headers are 401 too.
    for value in ["Basic abc", "Bearer", "Bearer ", &format!("Token {second}")] {
        let reply = gw
            .raw("GET", "/api/v1/me", &[("Authorization", value.to_owned())], b"")
            .await;
        assert_eq!(reply.status, 401, "{value}: {reply:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_revokes_their_tokens_and_reset_gates_them_again() {
    let (mut gw, passwords) = Gateway::start(&[("olive", "operator"), ("otto", "operator")]).await;
    let olive = gw.first_login("olive", &passwords[0], NEW).await;
    let otto = gw.first_login("otto", &passwords[1], NEW).await;
    gw.stop().await;
    let [flag, store] = gw.store_args();
    let out = user_cmd(&["disable", "olive", &flag, &store]).unwrap();
    assert!(out.contains("disabled user olive"), "{out}");
    let out = user_cmd(&["reset", "otto", &flag, &store]).unwrap();
    let otto_one_time = access_support::one_time_password(&out);
    gw.restart().await;
    assert_eq!(gw.call("GET", "/api/v1/me", Some(&olive), None).await.status, 401);
    let reply = gw
        .call("POST", "/api/v1/login", None, Some(&login_body("olive", NEW)))
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error(), "invalid username or password");
    // A reset revokes the old tokens and asks for a new password again.
    assert_eq!(gw.call("GET", "/api/v1/me", Some(&otto), None).await.status, 401);
    let login = gw.login("otto", &otto_one_time).await;
    assert_eq!(login["must_change_password"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let (gw, passwords) = Gateway::start(&[("ada", "admin")]).await;
    let token = gw.first_login("ada", &passwords[0], NEW).await;
    let login = "/api/v1/login";
    for body in [
        "",
        "{",
        "[]",
        "{\"username\": 5, \"password\": \"x\"}",
        "{\"username\": \"ada\"}",
    ] {
        let reply = gw.call("POST", login, None, Some(body)).await;
        assert_eq!(reply.status, 400, "{body:?}: {reply:?}");
        assert!(reply.error().contains("JSON"), "{reply:?}");
    }
    let reply = gw
        .raw("POST", login, &[], br#"{"username":"ada","password":"x"}"#)
        .await;
    assert_eq!(reply.status, 415, "{reply:?}");
    assert!(reply.error().contains("Content-Type"), "{reply:?}");
    let huge = format!(r#"{{"username":"ada","password":"{}"}}"#, "x".repeat(20 * 1024));
    let reply = gw.call("POST", login, None, Some(&huge)).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.error().contains("too large"), "{reply:?}");
    let reply = gw.call("POST", "/api/v1/users", Some(&token), Some(&huge)).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    let reply = gw.call("GET", "/api/v1/nothing", Some(&token), None).await;
    assert_eq!(reply.status, 404);
    assert!(reply.error().contains("no such"), "{reply:?}");
    let reply = gw.call("DELETE", "/api/v1/me", Some(&token), None).await;
    assert_eq!(reply.status, 405);
    assert!(reply.error().contains("method"), "{reply:?}");
    // None of it was a login attempt: the user can still log in (and nothing was rate limited).
    gw.login("ada", NEW).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_create_users_with_a_one_time_password_shown_once() {
    let (gw, passwords) = Gateway::start(&[("ada", "admin")]).await;
    let token = gw.first_login("ada", &passwords[0], NEW).await;
    let create = |name: &str, role: &str| serde_json::json!({ "username": name, "role": role }).to_string();
    let reply = gw
        .call(
            "POST",
            "/api/v1/users",
            Some(&token),
            Some(&create("carl", "care_staff")),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let created = reply.json();
    let one_time = created["one_time_password"].as_str().unwrap().to_owned();
    assert!(one_time.len() >= 16);
    assert_eq!(created["must_change_password"], true);
    let reply = gw
        .call("POST", "/api/v1/users", Some(&token), Some(&create("carl", "operator")))
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.error().contains("already exists"), "{reply:?}");
    let reply = gw
        .call(
            "POST",
            "/api/v1/users",
            Some(&token),
            Some(&create("Carl Smith", "operator")),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("invalid username"), "{reply:?}");
    let reply = gw
        .call(
            "POST",
            "/api/v1/users",
            Some(&token),
            Some(&create("root", "superuser")),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("unknown role"), "{reply:?}");
    let users = gw.call("GET", "/api/v1/users", Some(&token), None).await;
    assert_eq!(users.status, 200);
    assert!(!users.body.contains("argon2"), "{users:?}");
    let users = users.json();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "carl"]);
    let carl = gw.first_login("carl", &one_time, NEW).await;
    let me = gw.call("GET", "/api/v1/me", Some(&carl), None).await.json();
    assert_eq!(me["role"], "care_staff");

    // Reset: a new one-time password, carl's token revoked, the old password gone.
    let reply = gw.call("POST", "/api/v1/users/carl/reset", Some(&token), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let again = reply.json()["one_time_password"].as_str().unwrap().to_owned();
    assert_ne!(again, one_time);
    assert_eq!(gw.call("GET", "/api/v1/me", Some(&carl), None).await.status, 401);
    let carl = gw.first_login("carl", &again, NEW).await;
    // Disable: the token is revoked and logging in fails; not one's own account; bad names.
    let reply = gw.call("POST", "/api/v1/users/carl/disable", Some(&token), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(gw.call("GET", "/api/v1/me", Some(&carl), None).await.status, 401);
    let refused = gw
        .call(
            "POST",
            "/api/v1/login",
            None,
            Some(&serde_json::json!({ "username": "carl", "password": NEW }).to_string()),
        )
        .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let reply = gw.call("POST", "/api/v1/users/ada/disable", Some(&token), None).await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert_eq!(
        gw.call("POST", "/api/v1/users/nobody/reset", Some(&token), None)
            .await
            .status,
        404
    );
    assert_eq!(
        gw.call("POST", "/api/v1/users/Bad%20Name/disable", Some(&token), None)
            .await
            .status,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_read_a_residents_audit_trail_and_verify_the_chain() {
    let (gw, passwords) = Gateway::start(&[("mona", "manager"), ("carl", "care_staff")]).await;
    let mona = gw.first_login("mona", &passwords[0], NEW).await;
    gw.first_login("carl", &passwords[1], NEW).await;
    // What a resident handler does before answering.
    let state = ApiState::new(gw.handle().client(), gw.clock.clone(), Default::default());
    let carl = Caller {
        username: Username::new("carl").unwrap(),
        role: Role::CareStaff,
        must_change_password: false,
        token_hash: String::new(),
        client: None,
        csrf: None,
    };
    let r1 = ResidentId::new("R1").unwrap();
    let entry = state
        .audit
        .record(&carl, Action::ReadHistory, Some(&r1), Some("events"))
        .await
        .unwrap();
    state
        .audit
        .record(&carl, Action::ReadResident, Some(&ResidentId::new("R2").unwrap()), None)
        .await
        .unwrap();
    let reply = gw.call("GET", "/api/v1/audit?resident=R1", Some(&mona), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let trail = reply.json();
    let trail = trail.as_array().unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(trail[0]["seq"], entry.seq);
    assert_eq!(trail[0]["action"], "read_history");
    assert_eq!(trail[0]["username"], "carl");
    assert_eq!(trail[0]["target"], "events");
    // The manager's read is itself in the trail.
    assert_eq!(trail[1]["action"], "read_audit_trail");
    assert_eq!(trail[1]["username"], "mona");
    for bad in [
        "/api/v1/audit",
        "/api/v1/audit?resident=",
        "/api/v1/audit?resident=a%2Fb",
    ] {
        let reply = gw.call("GET", bad, Some(&mona), None).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }
    let report = gw.call("GET", "/api/v1/audit/verify", Some(&mona), None).await;
    assert_eq!(report.status, 200);
    let report = report.json();
    assert_eq!(report["intact"], true, "{report}");
    assert!(report["entries"].as_u64().unwrap() >= 8, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_simultaneous_creations_of_one_resident_make_one_record() {
    let (gw, passwords) = Gateway::start(&[("ada", "admin")]).await;
    let token = gw.first_login("ada", &passwords[0], NEW).await;
    for round in 0..10 {
        let id = format!("R-race-{round}");
        let body =
            |name: &str| serde_json::json!({ "id": id, "display_name": name, "address": "1 Street" }).to_string();
        let (one, two) = (body("First"), body("Second"));
        let (first, second) = tokio::join!(
            gw.call("POST", "/api/v1/residents", Some(&token), Some(&one)),
            gw.call("POST", "/api/v1/residents", Some(&token), Some(&two)),
        );
        let mut statuses = [first.status, second.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {first:?} {second:?}");
        // The record is the winner's, whole.
        let winner = if first.status == 201 { "First" } else { "Second" };
        let resident = gateway::domain::ResidentId::new(id.clone()).unwrap();
        let stored = gw.read(move |store| store.resident(&resident).unwrap().unwrap()).await;
        assert_eq!(stored.display_name, winner);
    }
}
