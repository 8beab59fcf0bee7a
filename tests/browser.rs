//! lab-server's inspector in a real browser: Debian's chromium, headless,
//! driven through chromedriver (WebDriver, the `fantoccini` crate).
//!
//! The page is loaded first, then um-sim submits to the incident's store (355
//! roots, the enterprise CA last, Schannel's 16 KB policy): both connections
//! appear without a reload (server-sent events), the page shows the cut right
//! after the name the API says was the last kept, the first dropped name and
//! event 36885; the delivered voicemail's audio element loads the WAV with
//! the header's duration. A root whose subject holds markup is shown as text
//! and runs nothing.
//!
//! chromium and chromedriver come from Debian's `chromium` and
//! `chromium-driver` packages. Without them the tests are skipped with a
//! printed reason, and fail under `CI=true`. With `UMLAB_SCREENSHOTS=DIR` the
//! first test writes `inspector-connections.png` and `inspector-messages.png`
//! there (the README's screenshots).

mod common;

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certgen::name::{AttrType, Attribute, Name};
use certgen::{KeyAlg, Position, Profile};
use common::{start_server, store_with, submit_one};
use fantoccini::{Client, ClientBuilder, Locator};
use lab_server::policy::Policy;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long any one thing may take to appear in the page.
const WAIT: Duration = Duration::from_secs(20);
/// Collects the page's CSP violations in `window.__csp` from now on.
const WATCH_CSP: &str = "(window.__csp = [], document.addEventListener('securitypolicyviolation', \
    (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI)), 1)";
/// The window the screenshots are taken in.
const WINDOW: (u32, u32) = (1280, 900);

/// `name` on `PATH`, if there.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free loopback port, with its own chromium profile
/// folder; killed (with the browsers it started) on drop.
struct Browser {
    driver: Child,
    port: u16,
    chromium: PathBuf,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver, or says why it cannot: `None` (skip) outside CI,
    /// a failure under `CI=true`.
    fn start(test: &str) -> Option<Browser> {
        let (chromium, driver) = match (on_path("chromium"), on_path("chromedriver")) {
            (Some(c), Some(d)) => (c, d),
            (c, d) => {
                let missing: Vec<&str> = [("chromium", c.is_none()), ("chromedriver", d.is_none())]
                    .into_iter()
                    .filter_map(|(n, m)| m.then_some(n))
                    .collect();
                let why = format!(
                    "{} not on PATH (Debian packages chromium and chromium-driver)",
                    missing.join(" and ")
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{test}: {why}");
                }
                eprintln!("skipped {test}: {why}");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // A free port, then chromedriver on it; another process may take the
        // port in between, so try a few.
        for _ in 0..5 {
            let port = StdListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log = std::fs::File::create(dir.path().join("chromedriver.log")).expect("log");
            let mut cmd = Command::new(&driver);
            cmd.arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("log")))
                .stderr(Stdio::from(log));
            // Its own process group: the browsers it starts go with it.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let mut child = cmd.spawn().expect("start chromedriver");
            let deadline = Instant::now() + WAIT;
            loop {
                if StdStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Browser {
                        driver: child,
                        port,
                        chromium,
                        dir,
                    });
                }
                if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "{test}: chromedriver did not start:\n{}",
            std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default()
        );
    }

    /// A new headless chromium session.
    async fn session(&self) -> Client {
        let profile = self.dir.path().join("profile");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!("an object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("a chromium session: {e}\n{}", self.log()));
        client
            .set_window_size(WINDOW.0, WINDOW.1)
            .await
            .expect("window size");
        client
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and any chromium a failed test left.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Runs `script` (a function body) until it returns something truthy, and
/// returns that; fails with `what` and the last value after [`WAIT`].
async fn until(c: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = c
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let truthy = match &v {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if truthy {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {v} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of a JavaScript expression.
async fn js(c: &Client, expr: &str) -> Value {
    c.execute(&format!("return {expr};"), Vec::new())
        .await
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

/// Clicks the element with `id`. The live list redraws its rows when an
/// event arrives, so a row found may be replaced before the click: then it
/// is found again (a few times at most).
async fn click(c: &Client, id: &str) {
    for attempt in 1.. {
        let found = c
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}"));
        match found.click().await {
            Ok(()) => return,
            Err(e) if attempt < 5 && e.to_string().contains("stale element") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("click #{id}: {e}"),
        }
    }
}

/// GET `path` from the inspector over plain HTTP/1.1, as JSON.
async fn api(addr: SocketAddr, path: &str) -> Value {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("a response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Opens the inspector and waits until it is drawn and its live stream open.
async fn open(c: &Client, inspector: SocketAddr) {
    c.goto(&format!("http://{inspector}/"))
        .await
        .expect("load the page");
    until(
        c,
        "the page drawn and live",
        "return document.body.dataset.ready === '1' && document.body.dataset.live === '1';",
    )
    .await;
}

/// Writes a screenshot to `$UMLAB_SCREENSHOTS/name`, when asked.
async fn screenshot(c: &Client, name: &str) {
    let Some(dir) = std::env::var_os("UMLAB_SCREENSHOTS") else {
        return;
    };
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("screenshot folder");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, &png).expect("write screenshot");
    std::fs::rename(&tmp, dir.join(name)).expect("rename screenshot");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_the_incident_live_and_plays_the_voicemail() {
    let Some(browser) = Browser::start("the_page_shows_the_incident_live_and_plays_the_voicemail")
    else {
        return;
    };
    // The incident's store: 354 roots, the enterprise CA last (355 in all).
    let (store, ca) = store_with(354, Profile::Realistic);
    let mut lab = start_server(store, ca, |s| {
        s.policy.policy = Policy::Schannel;
        s.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await
    .expect("lab-server");
    let inspector = lab.server.http_addr().expect("the inspector serves");
    let report = lab.server.report().clone();
    assert!(report.truncated && report.dropped > 0, "{report:?}");

    let c = browser.session().await;
    open(&c, inspector).await;
    assert_eq!(
        js(
            &c,
            "document.querySelectorAll('#connections tr.row').length"
        )
        .await,
        json!(0)
    );
    // A reload would lose this; the page must not trip its own CSP.
    js(&c, "(window.__umlabLoaded = 42)").await;
    js(&c, WATCH_CSP).await;

    // The Exchange 2010 client on 2008 R2 sends no certificate (its CA was
    // cut); a lenient client sends it anyway and delivers.
    let failed = submit_one(&lab, "schannel-2008r2").await;
    assert!(!failed.delivered, "{failed:#?}");
    let failed_id = lab
        .next_event(common::EVENT_TIMEOUT)
        .await
        .expect("server event")
        .id;
    let delivered = submit_one(&lab, "lenient").await;
    assert!(delivered.delivered, "{delivered:#?}");
    let ok_id = lab
        .next_event(common::EVENT_TIMEOUT)
        .await
        .expect("server event")
        .id;

    // Both rows appear live, newest first, without a reload.
    let rows = until(
        &c,
        "both connections listed",
        "const r = [...document.querySelectorAll('#connections tr.row')]; \
         return r.length === 2 && r.map((tr) => [tr.id, tr.dataset.outcome]);",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            [format!("conn-{ok_id}"), "ok"],
            [format!("conn-{failed_id}"), "failed"]
        ])
    );
    assert_eq!(js(&c, "window.__umlabLoaded").await, json!(42), "reloaded");

    // The failed connection: the cut right after the last name kept.
    let d = api(inspector, &format!("/api/connections/{failed_id}")).await;
    let names = d["request"]["names"].as_array().expect("names");
    assert_eq!(names.len(), report.kept);
    let last_kept = names.last().expect("names kept")["subject"].clone();
    let first_dropped = d["request"]["first_dropped"]["subject"].clone();
    assert_eq!(
        d["request"]["first_dropped"]["index"],
        json!(report.kept),
        "the policy keeps the store's first {} names",
        report.kept
    );
    click(&c, &format!("conn-{failed_id}")).await;
    let shown = until(
        &c,
        "the failed connection's cut",
        &format!(
            "const d = document.getElementById('detail'); \
             const last = document.getElementById('last-kept'); \
             const first = document.getElementById('first-dropped'); \
             if (d.dataset.connection !== '{failed_id}' || !last || !first) return null; \
             const lastRow = last.closest('tr'); \
             return {{ last: last.textContent, first: first.textContent, \
               next: lastRow.nextElementSibling && lastRow.nextElementSibling.id, \
               rowsBefore: [...lastRow.parentNode.children].filter((tr) => tr.dataset.index !== undefined).length, \
               lastIndex: lastRow.dataset.index, \
               summary: document.getElementById('cut-summary').textContent, \
               event: (document.getElementById('event-36885') || {{}}).textContent || null }};"
        ),
    )
    .await;
    assert_eq!(shown["last"], last_kept);
    assert_eq!(shown["first"], first_dropped);
    assert_eq!(shown["next"], "cut", "the cut row follows the last kept");
    assert_eq!(shown["rowsBefore"], json!(report.kept));
    assert_eq!(shown["lastIndex"], json!((report.kept - 1).to_string()));
    let summary = shown["summary"].as_str().expect("summary");
    assert!(
        summary.contains(&format!("cut after {} name(s)", report.kept))
            && summary.contains(last_kept.as_str().expect("text"))
            && summary.contains(first_dropped.as_str().expect("text")),
        "{summary}"
    );
    let event = shown["event"].as_str().expect("event 36885 shown");
    assert!(
        event.contains("Event ID:      36885")
            && event.contains(&format!("dropped {}", report.dropped)),
        "{event}"
    );
    assert_eq!(
        js(&c, "document.getElementById('client-chain')").await,
        Value::Null,
        "no certificate was sent"
    );
    // Withheld, not refused: the page says the Certificate was empty.
    let said = js(
        &c,
        "((p) => p && [p.dataset.kind, p.textContent])\
         (document.getElementById('client-certificate-message'))",
    )
    .await;
    assert_eq!(said[0], "empty", "{said}");
    assert!(
        said[1].as_str().is_some_and(|t| t.contains("withheld")),
        "{said}"
    );

    // The delivering connection: its chain, the CA not listed.
    click(&c, &format!("conn-{ok_id}")).await;
    let chain = until(
        &c,
        "the client chain",
        &format!(
            "const d = document.getElementById('detail'); \
             const t = document.getElementById('client-chain'); \
             if (d.dataset.connection !== '{ok_id}' || !t) return null; \
             return [...t.querySelectorAll('tr')].slice(1).map((tr) => \
               [tr.cells[1].textContent, tr.cells[2].textContent, tr.dataset.issuerListed]);"
        ),
    )
    .await;
    let okd = api(inspector, &format!("/api/connections/{ok_id}")).await;
    let leaf = &okd["event"]["client_chain"][0];
    assert_eq!(
        chain,
        json!([[leaf["subject"], leaf["issuer"], "false"]]),
        "{okd:#}"
    );
    // The picture shows this one: the cut, 36885 and the chain it sent.
    screenshot(&c, "inspector-connections.png").await;

    // The message: the audio element loads the WAV.
    let msgs = api(inspector, "/api/messages").await;
    let id = msgs[0]["id"].as_u64().expect("a message");
    let m = api(inspector, &format!("/api/messages/{id}")).await;
    let claimed: f64 = m["headers"]["X-VoiceMessageDuration"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("X-VoiceMessageDuration");
    click(&c, "tab-messages").await;
    until(
        &c,
        "the message listed",
        &format!("return document.getElementById('msg-{id}');"),
    )
    .await;
    click(&c, &format!("msg-{id}")).await;
    let audio = until(
        &c,
        "the audio's metadata",
        "const a = document.getElementById('player'); \
         if (!a) return null; \
         if (a.error) return { error: a.error.code }; \
         return a.readyState >= 1 && { readyState: a.readyState, duration: a.duration, src: a.currentSrc };",
    )
    .await;
    assert!(audio["error"].is_null(), "the WAV did not load: {audio}");
    let duration = audio["duration"].as_f64().expect("a duration");
    assert!(
        (duration - claimed).abs() < 0.05,
        "audio {duration} s, header {claimed} s"
    );
    assert!(
        audio["src"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!("/api/messages/{id}/audio"))),
        "{audio}"
    );
    screenshot(&c, "inspector-messages.png").await;
    assert_eq!(js(&c, "window.__csp").await, json!([]), "CSP violations");
    c.close().await.expect("end the session");
}

#[tokio::test(flavor = "multi_thread")]
async fn markup_in_a_root_subject_is_shown_as_text() {
    let Some(browser) = Browser::start("markup_in_a_root_subject_is_shown_as_text") else {
        return;
    };
    const MARKUP: &str = "<script>window.__pwned=1</script>\
        <img src=x onerror=window.__pwned=2><b id=injected>x</b>";
    let name = Name::from_attrs(vec![
        Attribute::new(AttrType::CommonName, MARKUP).expect("a UTF8String CN"),
    ]);
    let evil = certgen::roots::with_subjects(&[name.to_der()], 1, KeyAlg::Ed25519)
        .expect("the markup root")
        .into_roots();
    let (mut store, _) = store_with(5, Profile::Realistic);
    for root in evil {
        store.insert(root, Position::First);
    }
    let ca = store
        .roots()
        .iter()
        .position(|r| r.subject_der() == common::ca_subject())
        .expect("the CA");
    let mut lab = start_server(store, ca, |s| {
        s.policy.policy = Policy::Full;
        s.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        // A harmless fault, so the page shows the faults a connection got.
        s.faults = lab_server::faults::parse_all(&["tls:delay-before-done=1"]).expect("a fault");
    })
    .await
    .expect("lab-server");
    let inspector = lab.server.http_addr().expect("the inspector serves");
    let c = browser.session().await;
    open(&c, inspector).await;
    js(&c, WATCH_CSP).await;
    let attempt = submit_one(&lab, "schannel-2008r2").await;
    assert!(attempt.delivered, "{attempt:#?}");
    let id = lab
        .next_event(common::EVENT_TIMEOUT)
        .await
        .expect("server event")
        .id;

    // Not pwned: no element came from the name, no handler ran; the text is
    // there, literally, in the store view and in the connection's request.
    let check = "return { pwned: typeof window.__pwned, injected: !!document.getElementById('injected'), \
        scripts: document.scripts.length, images: document.images.length, \
        text: document.body.innerText, csp: window.__csp };";
    click(&c, "tab-store").await;
    until(
        &c,
        "the store view",
        "return document.getElementById('root-0');",
    )
    .await;
    let store_view = js(&c, &format!("(function () {{ {check} }})()")).await;
    until(
        &c,
        "the connection listed",
        &format!("document.getElementById('tab-connections').click(); return document.getElementById('conn-{id}');"),
    )
    .await;
    click(&c, &format!("conn-{id}")).await;
    until(
        &c,
        "the connection's request",
        &format!(
            "const d = document.getElementById('detail'); \
             return d.dataset.connection === '{id}' && document.getElementById('ca-names');"
        ),
    )
    .await;
    let conn_view = js(&c, &format!("(function () {{ {check} }})()")).await;
    let fired = js(
        &c,
        "(document.getElementById('faults-fired') || {}).textContent || null",
    )
    .await;
    assert_eq!(
        fired,
        json!("Faults injected: tls:delay-before-done=1 at handshake 1"),
        "the connection's faults on the page"
    );
    for (view, v) in [("store", store_view), ("connection", conn_view)] {
        assert_eq!(v["pwned"], "undefined", "{view}: {v}");
        assert_eq!(v["injected"], false, "{view}");
        assert_eq!(v["scripts"], 1, "{view}: only the inspector's script");
        assert_eq!(v["images"], 0, "{view}");
        assert_eq!(v["csp"], json!([]), "{view}: markup reached the document");
        let text = v["text"].as_str().expect("text");
        assert!(
            text.contains(&format!("CN={MARKUP}")),
            "{view}: the literal name is not in the page text"
        );
    }
    c.close().await.expect("end the session");
}
