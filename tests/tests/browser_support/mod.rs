//! A real browser for the console tests: Debian's headless Chromium driven through its
//! chromedriver (packages `chromium` and `chromium-driver`, installed by `scripts/test`), started by
//! the test on a free port with a fresh profile, and killed when dropped. Without them the
//! test fails with the install command; it never skips.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The flags the brief fixes: headless, no sandbox (the tests run as root), and nothing that
/// reaches out to the network by itself (updates, sync, QUIC probes).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    // Screenshots the same size on every machine.
    "--window-size=1280,900", // = WINDOW
    "--force-device-scale-factor=1",
    "--lang=en-GB",
];

/// How long a page may take to show what a step waits for. Generous: it only guards a hang.
pub const PAGE_WAIT: Duration = Duration::from_secs(10);

/// The window's size (as `--window-size` gives it), in CSS pixels.
const WINDOW: (u32, u32) = (1280, 900);

/// The tallest window a screenshot grows to, in CSS pixels.
const MAX_SCREENSHOT_HEIGHT: u64 = 3000;

/// Where a run's screenshots and failure dumps go (always under the target directory).
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-browser")
}

/// `docs/screenshots/` in the repository: written only with `UPDATE_SCREENSHOTS=1`.
pub fn docs_screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

/// A chromedriver process on a free port, in a process group of its own with the browsers it
/// starts; the whole group is killed on drop (chromedriver killed alone leaves its Chromium
/// running, e.g. when a test panics before closing its session).
pub struct Chromedriver {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Chromedriver {
    pub fn start() -> anyhow::Result<Self> {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            if !Path::new(path).exists() {
                bail!(
                    "{path} is missing: `apt-get install -y chromium chromium-driver` (scripts/test does); package {package}"
                );
            }
        }
        let dir = tempfile::Builder::new().prefix("tec-chromedriver-").tempdir()?;
        let port = e2e::net::free_port()?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.path().join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting chromedriver")?;
        let mut driver = Self { child, port, dir };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ready = e2e::net::wait_until("chromedriver to listen", Duration::from_secs(10), || {
            e2e::net::accepts_connections(addr)
        });
        if let Err(e) = ready {
            let exited = driver.child.try_wait().ok().flatten();
            bail!("{e} (exited: {exited:?}); log:\n{}", driver.log_tail(40));
        }
        Ok(driver)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all.iter()
            .skip(all.len().saturating_sub(lines))
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A new headless Chromium session with its own throwaway profile.
    pub async fn browser(&self, base: String) -> anyhow::Result<Browser> {
        let profile = tempfile::Builder::new().prefix("tec-chromium-profile-").tempdir()?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|flag| (*flag).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url())
            .await
            .with_context(|| format!("a Chromium session; chromedriver log:\n{}", self.log_tail(40)))?;
        Ok(Browser {
            client,
            base,
            _profile: profile,
        })
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session on the console at `base` (`http://127.0.0.1:<port>`).
pub struct Browser {
    pub client: Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn open(&self, path: &str) -> anyhow::Result<()> {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .with_context(|| format!("opening {path}"))
    }

    /// The path (and query) the browser is on.
    pub async fn path(&self) -> anyhow::Result<String> {
        let url = self.client.current_url().await?;
        Ok(match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        })
    }

    /// Polls `probe` every 50 ms until it gives `Some`, or fails after `timeout`. WebDriver
    /// errors while polling (the element not there yet, a page being replaced) count as "not
    /// yet"; the last one is reported on timeout.
    pub async fn wait_for<T, F, Fut>(&self, what: impl Display, timeout: Duration, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let started = Instant::now();
        let mut last_error = None;
        loop {
            match probe().await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
            if started.elapsed() > timeout {
                let path = self.path().await.unwrap_or_default();
                match last_error {
                    Some(e) => bail!("timed out after {timeout:?} waiting for {what} on {path}: last error {e:#}"),
                    None => bail!("timed out after {timeout:?} waiting for {what} on {path}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element `css`, once it is on the page.
    pub async fn element(&self, css: &str) -> anyhow::Result<Element> {
        self.wait_for(format!("`{css}`"), PAGE_WAIT, || async {
            Ok(Some(self.client.find(Locator::Css(css)).await?))
        })
        .await
    }

    /// Waits until `css`'s text (trimmed) is `expected`.
    pub async fn wait_for_text(&self, css: &str, expected: &str) -> anyhow::Result<()> {
        self.wait_for(format!("`{css}` to read {expected:?}"), PAGE_WAIT, || async {
            let text = self.client.find(Locator::Css(css)).await?.text().await?;
            Ok((text.trim() == expected).then_some(()))
        })
        .await
    }

    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.element(css).await?.text().await?.trim().to_owned())
    }

    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.element(css).await?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.element(css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking `{css}`"))
    }

    /// Clicks `css` and waits until the browser has left `from` (a form posted, a link followed).
    pub async fn click_and_leave(&self, css: &str) -> anyhow::Result<String> {
        let from = self.path().await?;
        self.click(css).await?;
        self.wait_for(format!("to leave {from} after clicking `{css}`"), PAGE_WAIT, || async {
            let now = self.path().await?;
            Ok((now != from).then_some(now))
        })
        .await
    }

    /// Logs in through the login form; a user with a one-time password then chooses
    /// `new_password` on the console's own password form. Returns the page they land on.
    pub async fn log_in(&self, username: &str, password: &str, new_password: Option<&str>) -> anyhow::Result<String> {
        self.open("/").await?;
        self.fill("#username", username).await?;
        self.fill("#password", password).await?;
        let mut landed = self.click_and_leave("#login").await?;
        if let Some(new_password) = new_password {
            if landed != "/password" {
                bail!("{username} with a one-time password landed on {landed}, not /password");
            }
            self.fill("#old_password", password).await?;
            self.fill("#new_password", new_password).await?;
            self.fill("#confirm_password", new_password).await?;
            landed = self.click_and_leave("#change-password").await?;
        }
        let whoami = self.text("#whoami").await?;
        if !whoami.starts_with(username) {
            bail!("logged in as {username}, but the page says {whoami:?}");
        }
        Ok(landed)
    }

    /// Logs out with the page's own button.
    pub async fn log_out(&self) -> anyhow::Result<()> {
        self.click_and_leave("form[action='/logout'] button").await?;
        self.element("#login").await?;
        Ok(())
    }

    /// Saves a PNG of the viewport as `<name>.png` under [`artifacts_dir`], and into
    /// `docs/screenshots/` as well with `UPDATE_SCREENSHOTS=1`.
    /// The whole page is in the picture: the window grows to the page's height first (WebDriver
    /// screenshots show only the viewport), up to [`MAX_SCREENSHOT_HEIGHT`].
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        // Back to the usual size first: a window grown for a long page would pad a short one.
        self.client.set_window_size(WINDOW.0, WINDOW.1).await?;
        let heights = self
            .client
            .execute(
                "return [document.documentElement.scrollHeight, window.innerHeight];",
                vec![],
            )
            .await?;
        let height = |i: usize| heights.get(i).and_then(serde_json::Value::as_u64);
        let (page, viewport) = (height(0), height(1));
        if let (Some(page), Some(viewport)) = (page, viewport)
            && page > viewport
        {
            let (width, window) = self.client.get_window_size().await?;
            let grown = (window + page - viewport).min(MAX_SCREENSHOT_HEIGHT);
            self.client.set_window_size(width as u32, grown as u32).await?;
        }
        let png = self.client.screenshot().await?;
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png)?;
        if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
            let docs = docs_screenshots_dir();
            std::fs::create_dir_all(&docs)?;
            std::fs::write(docs.join(format!("{name}.png")), &png)?;
        }
        Ok(path)
    }

    /// After a failed step: the page as it looked and its source, saved under the target
    /// directory; says where.
    pub async fn dump_failure(&self, name: &str) {
        let dir = artifacts_dir().join("failures");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("could not create {}: {e}", dir.display());
            return;
        }
        let path = self.path().await.unwrap_or_else(|e| format!("(unknown: {e})"));
        eprintln!("the browser was on {path}");
        match self.client.screenshot().await {
            Ok(png) => {
                let file = dir.join(format!("{name}.png"));
                match std::fs::write(&file, png) {
                    Ok(()) => eprintln!("screenshot of the failure: {}", file.display()),
                    Err(e) => eprintln!("could not write {}: {e}", file.display()),
                }
            }
            Err(e) => eprintln!("no screenshot of the failure: {e}"),
        }
        match self.client.source().await {
            Ok(html) => {
                let file = dir.join(format!("{name}.html"));
                match std::fs::write(&file, html) {
                    Ok(()) => eprintln!("page source at the failure: {}", file.display()),
                    Err(e) => eprintln!("could not write {}: {e}", file.display()),
                }
            }
            Err(e) => eprintln!("no page source of the failure: {e}"),
        }
    }

    pub async fn close(self) -> anyhow::Result<()> {
        Ok(self.client.close().await?)
    }
}
