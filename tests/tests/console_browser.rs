//! The console in a real browser (headless Chromium through chromedriver), against the real
//! gateway in process, a private Mosquitto with the production ACL, and a simulated pendant
//! running the real firmware core. Users are made with the real `user add` command and choose
//! their own password on the console's form.
//!
//! A care-staff user is refused the alert queue. An operator has the queue open when the
//! resident presses: the alert appears without a reload; the operator opens it and
//! acknowledges it, and the pendant shows "help is on the way"; the operator resolves it with
//! an outcome and a note, and the store holds exactly that, by that operator. Screenshots of
//! the queue, the call-handling view and the resident's page are saved (see tests/README.md).
//!
//! Fails, never skips, without Mosquitto, Chromium or chromedriver. On a failed step the page
//! (PNG) and its source are saved under the target directory, and the test prints where.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser_support;
mod sim_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use browser_support::{Browser, Chromedriver, PAGE_WAIT};
use e2e::{Broker, BrokerAuth, BrokerOptions};
use fantoccini::Locator;
use firmware::Indication;
use gateway::app::GatewayHandle;
use gateway::domain::{AlertKind, AlertState, CareProfile, Change, Outcome, Resident, ResidentId, Responder};
use protocol::DeviceId;
use sim_support::{device_spec, next_alert, register_home, start_gateway};
use simulator::{DeviceHandle, DeviceKind as SimKind, spawn_device};

/// Device-side waits (MQTT round trips through the broker).
const DEVICE_WAIT: Duration = Duration::from_secs(20);
const PENDANT: &str = "sim-h00042-pendant";
const RESIDENT: &str = "res-browser";
const OPERATOR: &str = "olive";
const CARE_STAFF: &str = "carl";
const OUTCOME: Outcome = Outcome::KeyHolderAttended;
const NOTE: &str = "Daughter Sue attended within 20 minutes; Mrs Ellis had slipped in the hall, no injury.";

/// `tec-gateway user add NAME --role ROLE --data DIR` (the real command line, gateway
/// stopped); the one-time password it prints.
fn add_user(data: &Path, name: &str, role: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
        .args(["user", "add", name, "--role", role, "--data"])
        .arg(data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "user add {name}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("one-time password: "))
        .unwrap_or_else(|| panic!("no one-time password in {stdout:?}"))
        .trim()
        .to_owned()
}

/// A resident worth a screenshot: the made-up person the README's pictures show.
async fn describe_resident(gateway: &GatewayHandle, id: &ResidentId) {
    gateway
        .put_resident(Resident {
            id: id.clone(),
            display_name: "Margaret Ellis".into(),
            address: "14 Orchard Close, Anytown AB1 2CD".into(),
            access_notes: "Key safe by the back door.".into(),
            responders: vec![Responder {
                name: "Sue Ellis".into(),
                phone: "07700 900123".into(),
                relationship: "daughter".into(),
            }],
            care: CareProfile {
                phone: "01632 960001".into(),
                risks: "Falls history; lives alone.".into(),
                medical_summary: "Type 2 diabetes.".into(),
                communication_needs: "Hard of hearing: speak slowly.".into(),
            },
        })
        .await
        .unwrap();
}

struct World {
    // Field order is drop order: the browser's driver first, the broker last.
    driver: Chromedriver,
    device: DeviceHandle,
    gateway: GatewayHandle,
    _data: tempfile::TempDir,
    _broker: sim_support::LoggedBroker,
    passwords: Passwords,
}

struct Passwords {
    operator: String,
    care_staff: String,
}

async fn world() -> World {
    sim_support::init_tracing();
    let id = DeviceId::new(PENDANT).unwrap();
    let broker = tokio::task::block_in_place(|| {
        Broker::start_with(BrokerOptions {
            auth: Some(BrokerAuth::for_devices([id.as_str()])),
            ..BrokerOptions::default()
        })
    })
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    // Users first, offline, as an administrator would before the gateway ever ran.
    let passwords = Passwords {
        operator: add_user(data.path(), OPERATOR, "operator"),
        care_staff: add_user(data.path(), CARE_STAFF, "care_staff"),
    };
    let gateway = start_gateway(&broker, data.path()).await;
    let resident = register_home(&gateway, RESIDENT, &[(id, SimKind::Pendant)]).await;
    describe_resident(&gateway, &resident).await;
    let mut device = spawn_device(device_spec(&broker, id)).unwrap();
    device
        .wait_for(DEVICE_WAIT, |v| v.connected && v.outbox_depth == 0 && v.next_seq > 0)
        .await
        .unwrap();
    let driver = tokio::task::block_in_place(Chromedriver::start).unwrap();
    World {
        driver,
        device,
        gateway,
        _data: data,
        _broker: sim_support::LoggedBroker(broker),
        passwords,
    }
}

fn base_url(gateway: &GatewayHandle) -> String {
    format!("http://{}", gateway.http_addr())
}

/// Ends a browser session; when its steps failed, saves the page and its source first and
/// fails the test.
async fn finish(browser: Browser, name: &str, steps: anyhow::Result<()>) {
    if let Err(e) = steps {
        browser.dump_failure(name).await;
        let _ = browser.close().await;
        panic!("{name}: {e:#}");
    }
    browser.close().await.unwrap();
}

async fn care_staff_steps(browser: &Browser, one_time_password: &str) -> anyhow::Result<()> {
    browser
        .log_in(CARE_STAFF, one_time_password, Some("carl's own password 1"))
        .await?;
    browser.open("/queue").await?;
    let refusal = browser.text("main").await?;
    ensure!(
        refusal.contains("cannot open this page"),
        "care staff on /queue saw {refusal:?}"
    );
    ensure!(
        browser.client.find_all(Locator::Css("table#queue")).await?.is_empty(),
        "the refusal page shows a queue"
    );
    // The refusal offers the way back: to care staff's own home page, still logged in.
    let back = browser.click_and_leave("main a[href='/']").await?;
    ensure!(back == "/residents", "care staff's way back led to {back}");
    browser.text("#whoami").await?;
    browser.log_out().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn care_staff_cannot_open_the_alert_queue() {
    let world = world().await;
    let browser = world.driver.browser(base_url(&world.gateway)).await.unwrap();
    let steps = care_staff_steps(&browser, &world.passwords.care_staff).await;
    finish(browser, "care_staff_queue", steps).await;
    world.gateway.shutdown().await.unwrap();
}

async fn operator_steps(
    browser: &Browser,
    one_time_password: &str,
    device: &mut DeviceHandle,
    gateway: &GatewayHandle,
) -> anyhow::Result<()> {
    let outcome_code = serde_json::to_value(OUTCOME)?;
    let outcome_code = outcome_code.as_str().context("an outcome code is a string")?;
    let mut alerts = gateway.subscribe_alerts();

    let landed = browser
        .log_in(OPERATOR, one_time_password, Some("olive's own password 1"))
        .await?;
    ensure!(landed == "/queue", "an operator lands on /queue, not {landed}");
    browser.element("table#queue").await?;
    browser.wait_for_text("#stream-state", "live").await?;
    // A mark on this very document: a reload or a navigation would lose it.
    browser
        .client
        .execute(
            "document.body.dataset.browserTest = 'before-press'; return null;",
            vec![],
        )
        .await?;

    device.press();
    let alert = next_alert(&mut alerts, "the pendant alert", DEVICE_WAIT, |a| {
        a.device.is_some_and(|d| d.as_str() == PENDANT) && a.kind == AlertKind::PendantPress
    })
    .await;
    let row_css = format!("tr.alert-row[data-alert-id=\"{}\"]", alert.id.0);
    let row = browser
        .wait_for(format!("the alert's row `{row_css}`"), PAGE_WAIT, || async {
            Ok(browser
                .client
                .find_all(Locator::Css(&row_css))
                .await?
                .into_iter()
                .next())
        })
        .await?;
    let mark = browser
        .client
        .execute("return document.body.dataset.browserTest || null;", vec![])
        .await?;
    ensure!(
        mark == "before-press",
        "the queue reloaded to show the alert (mark {mark})"
    );
    let state = row.attr("data-state").await?;
    ensure!(state.as_deref() == Some("raised"), "a new alert's row reads {state:?}");
    browser.screenshot("queue").await?;

    let from = browser.path().await?;
    row.find(Locator::Css("a.open-alert")).await?.click().await?;
    let opened = browser
        .wait_for("the call-handling page", PAGE_WAIT, || async {
            let now = browser.path().await?;
            Ok((now != from).then_some(now))
        })
        .await?;
    let expected = format!("/alerts/{}", alert.id.0);
    ensure!(opened == expected, "a.open-alert led to {opened}, not {expected}");
    browser.wait_for_text("#alert-state", "raised").await?;

    browser.click("button#acknowledge").await?;
    browser.wait_for_text("#alert-state", "acknowledged").await?;
    browser.screenshot("call").await?;
    device
        .wait_for(DEVICE_WAIT, |v| v.indication == Indication::HelpOnTheWay)
        .await
        .context("the pendant shows help is on the way")?;

    browser
        .element("form#resolve-form select#outcome")
        .await?
        .select_by_value(outcome_code)
        .await
        .with_context(|| format!("choosing the outcome {outcome_code}"))?;
    browser.fill("form#resolve-form textarea#resolve-note", NOTE).await?;
    browser.click("form#resolve-form button#resolve").await?;
    browser.wait_for_text("#alert-state", "resolved").await?;
    device
        .wait_for(DEVICE_WAIT, |v| v.indication == Indication::Resolved)
        .await
        .context("the pendant shows the alert resolved")?;

    // The store agrees: acknowledged and resolved by this operator, with this outcome and note.
    let stored = gateway.alert(alert.id)?.context("the alert is stored")?;
    ensure!(stored.state == AlertState::Resolved, "stored state {:?}", stored.state);
    let acknowledged_by: Vec<&str> = stored
        .transitions
        .iter()
        .filter_map(|t| match &t.change {
            Change::Acknowledged { operator } => Some(operator.as_str()),
            _ => None,
        })
        .collect();
    ensure!(acknowledged_by == [OPERATOR], "acknowledged by {acknowledged_by:?}");
    let resolution = stored.transitions.iter().find_map(|t| match &t.change {
        Change::Resolved {
            operator,
            outcome,
            note,
        } => Some((operator.clone(), *outcome, note.clone())),
        _ => None,
    });
    ensure!(
        resolution == Some((Some(OPERATOR.to_owned()), OUTCOME, Some(NOTE.to_owned()))),
        "stored resolution {resolution:?}"
    );

    browser.open(&format!("/residents/{RESIDENT}")).await?;
    browser.element("svg#activity-chart").await?;
    browser.element("table#timeline").await?;
    let page = browser.text("main").await?;
    if !page.contains("Margaret Ellis") {
        bail!("the resident page does not name the resident: {page:?}");
    }
    browser.screenshot("resident").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_takes_a_pendant_alarm_from_queue_to_resolution() {
    let mut world = world().await;
    let browser = world.driver.browser(base_url(&world.gateway)).await.unwrap();
    let steps = operator_steps(&browser, &world.passwords.operator, &mut world.device, &world.gateway).await;
    finish(browser, "operator_flow", steps).await;
    world.device.stop().await.unwrap();
    world.gateway.shutdown().await.unwrap();
}
