//! The console's front door: the login form and its CSRF cookie, the session cookie's
//! attributes, the one-time password, logout, CSRF on forms and on cookie-authenticated API
//! calls, and every console page walked for its rule (no session, wrong role).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod access_support;
mod store_support;

use access_support::{Gateway, form};
use gateway::access::{Allowed, ApiState, Role};
use gateway::http::console_routes;

const NEW: &str = "a-long-enough-new-password";

/// Four users, one per role, with their passwords changed (through the API).
async fn staffed() -> Gateway {
    let (gw, passwords) = Gateway::start(&[
        ("olive", "operator"),
        ("carl", "care_staff"),
        ("mona", "manager"),
        ("ada", "admin"),
    ])
    .await;
    for (name, password) in ["olive", "carl", "mona", "ada"].iter().zip(&passwords) {
        gw.first_login(name, password, NEW).await;
    }
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_login_through_the_form_sets_a_strict_cookie_and_asks_for_a_new_password() {
    let (gw, passwords) = Gateway::start(&[("olive", "operator")]).await;
    let one_time = &passwords[0];
    // A wrong password: the form again, 401, no session.
    let (reply, session) = gw.console_login_reply("olive", "wrong-password-here").await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(session.is_none());
    assert!(reply.body.contains("Invalid username or password"), "{}", reply.body);
    // The right one: a session cookie with the console's attributes, then /password first.
    let (reply, session) = gw.console_login_reply("olive", one_time).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    assert_eq!(reply.header("location"), Some("/password"));
    let cookie_line = reply
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("tec_session="))
        .map(|(_, v)| v.clone())
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie_line.contains(attribute), "{cookie_line}");
    }
    assert!(!cookie_line.contains("Secure"), "plain HTTP: {cookie_line}");
    let cookie = session.unwrap();
    // Every other page sends them back to /password until it is changed.
    let reply = gw.page("GET", "/password", Some(&cookie), None).await;
    assert_eq!(reply.status, 200);
    let csrf = access_support::csrf_of(&reply.body).unwrap();
    assert!(reply.body.contains("one-time password"), "{}", reply.body);
    // The form without its CSRF token, or with a wrong one: refused, nothing changed.
    let change = |csrf: &str| {
        form(&[
            ("csrf", csrf),
            ("old_password", one_time),
            ("new_password", NEW),
            ("confirm_password", NEW),
        ])
    };
    let body = form(&[
        ("old_password", one_time),
        ("new_password", NEW),
        ("confirm_password", NEW),
    ]);
    let reply = gw.page("POST", "/password", Some(&cookie), Some(&body)).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = gw
        .page("POST", "/password", Some(&cookie), Some(&change(&"0".repeat(64))))
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    // Mismatched confirmation: 400 and the form again.
    let mismatched = form(&[
        ("csrf", &csrf),
        ("old_password", one_time),
        ("new_password", NEW),
        ("confirm_password", "something-else-entirely"),
    ]);
    let reply = gw.page("POST", "/password", Some(&cookie), Some(&mismatched)).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    // With it: changed, and home.
    let reply = gw.page("POST", "/password", Some(&cookie), Some(&change(&csrf))).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    assert_eq!(reply.header("location"), Some("/queue"));
    // The old password no longer works; the new one does, through the API too.
    assert_eq!(gw.console_login_reply("olive", one_time).await.0.status, 401);
    gw.login("olive", NEW).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_form_needs_its_csrf_cookie_and_open_redirects_are_refused() {
    let gw = staffed().await;
    // No CSRF cookie: 403 and no session.
    let body = form(&[("username", "olive"), ("password", NEW), ("csrf", "abc")]);
    let reply = gw
        .raw(
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded".to_owned())],
            body.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(access_support::set_cookie(&reply, "tec_session").is_none());
    // A cookie that differs from the field: 403.
    let reply = gw
        .raw(
            "POST",
            "/login",
            &[
                ("Content-Type", "application/x-www-form-urlencoded".to_owned()),
                ("Cookie", "tec_login_csrf=xyz".to_owned()),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    // Junk bodies: the form again, never a panic or a 500.
    for junk in ["%%%", "username=%FF%FE", "", "a=b&&&&=c"] {
        let reply = gw
            .raw(
                "POST",
                "/login",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded".to_owned()),
                    ("Cookie", "tec_login_csrf=xyz".to_owned()),
                ],
                junk.as_bytes(),
            )
            .await;
        assert_eq!(reply.status, 403, "{junk:?}: {reply:?}");
    }
    // A page without a session sends the browser to the login form and back.
    let reply = gw.page("GET", "/password?x=1", None, None).await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/?next=%2Fpassword%3Fx%3D1"));
    // `next` is followed only to our own paths.
    let session = gw.console_login("olive", NEW).await;
    for (next, expected) in [
        ("/password", "/password"),
        ("//evil.example/", "/queue"),
        ("https://evil.example/", "/queue"),
        ("/\\evil.example", "/queue"),
    ] {
        let reply = gw
            .page(
                "GET",
                &format!("/?next={}", gateway::console::url_encode(next)),
                Some(&session.cookie),
                None,
            )
            .await;
        assert_eq!(reply.status, 303, "{next}");
        assert_eq!(reply.header("location"), Some(expected), "{next}");
    }
    // Pages carry the security headers.
    let reply = gw.page("GET", "/password", Some(&session.cookie), None).await;
    let csp = reply.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    // Behind a TLS proxy the cookie is Secure.
    let form_page = gw
        .raw("GET", "/", &[("X-Forwarded-Proto", "https".to_owned())], b"")
        .await;
    let line = form_page
        .headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .unwrap()
        .1
        .clone();
    assert!(line.contains("; Secure"), "{line}");
    // An unknown page is a page; an unknown API route is JSON.
    let reply = gw.page("GET", "/no-such-page", Some(&session.cookie), None).await;
    assert_eq!(reply.status, 404);
    assert!(reply.body.contains("There is no such page"), "{reply:?}");
    let reply = gw.call("GET", "/api/v1/no-such-route", None, None).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error(), "no such API route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_accepts_the_console_cookie_only_with_the_csrf_header_on_changes() {
    let gw = staffed().await;
    let session = gw.console_login("ada", NEW).await;
    // Reads need no CSRF token.
    let reply = gw.api_with_cookie("GET", "/api/v1/me", &session, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["username"], "ada");
    // A change without the header (what a cross-site form could send): 403, nothing made.
    let body = r#"{"username": "newbie", "role": "operator"}"#;
    let reply = gw
        .raw(
            "POST",
            "/api/v1/users",
            &[
                ("Cookie", format!("tec_session={}", session.cookie)),
                ("Content-Type", "application/json".to_owned()),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.error().contains("CSRF"), "{reply:?}");
    let wrong = access_support::ConsoleSession {
        csrf: "f".repeat(64),
        ..session.clone()
    };
    assert_eq!(
        gw.api_with_cookie("POST", "/api/v1/users", &wrong, Some(body))
            .await
            .status,
        403
    );
    // With it: made.
    let reply = gw.api_with_cookie("POST", "/api/v1/users", &session, Some(body)).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    // Logging out of the console ends the session for the API as well.
    let reply = gw
        .page(
            "POST",
            "/logout",
            Some(&session.cookie),
            Some(&form(&[("csrf", &session.csrf)])),
        )
        .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    assert!(
        reply
            .headers
            .iter()
            .any(|(k, v)| k == "set-cookie" && v.starts_with("tec_session=;") && v.contains("Max-Age=0")),
        "{reply:?}"
    );
    assert_eq!(
        gw.api_with_cookie("GET", "/api/v1/me", &session, None).await.status,
        401
    );
    assert_eq!(
        gw.page("GET", "/password", Some(&session.cookie), None).await.status,
        303
    );
}

/// Concrete paths for a page rule's placeholders.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1").replace("{name}", "olive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_page_redirects_without_a_session_and_refuses_the_wrong_role() {
    let gw = staffed().await;
    let state = ApiState::new(gw.handle().client(), gw.clock.clone(), Default::default());
    let rules = console_routes(state).rules().to_vec();
    let mut sessions = Vec::new();
    for (role, name) in [
        (Role::Operator, "olive"),
        (Role::CareStaff, "carl"),
        (Role::Manager, "mona"),
        (Role::Admin, "ada"),
    ] {
        sessions.push((role, name, gw.console_login(name, NEW).await));
    }
    for rule in &rules {
        let method = rule.method.as_str();
        let path = concrete(&rule.path);
        let Allowed::Roles(allowed) = rule.allowed else {
            assert!(
                ["/", "/login"].contains(&rule.path.as_str()),
                "only the front door is public: {rule:?}"
            );
            continue;
        };
        let reply = gw.page(method, &path, None, None).await;
        if method == "GET" {
            assert_eq!(reply.status, 303, "{method} {path} without a session: {reply:?}");
            assert!(reply.header("location").unwrap().starts_with("/?next="), "{reply:?}");
        } else {
            assert_eq!(reply.status, 401, "{method} {path} without a session: {reply:?}");
        }
        for (role, name, session) in &sessions {
            if rule.path == "/logout" {
                continue;
            }
            let body = (method != "GET").then(|| form(&[("csrf", &session.csrf)]));
            let reply = gw.page(method, &path, Some(&session.cookie), body.as_deref()).await;
            if allowed.contains(role) {
                assert!(
                    ![401, 403].contains(&reply.status) && reply.status < 500,
                    "{method} {path} as {name} is allowed: {reply:?}"
                );
            } else {
                assert_eq!(reply.status, 403, "{method} {path} as {name}: {reply:?}");
                assert!(reply.body.contains("cannot open this page"), "{reply:?}");
            }
        }
    }
}
