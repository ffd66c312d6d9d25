//! The UI in headless Chromium, driven over WebDriver (Debian's `chromium` and `chromium-driver`,
//! installed by `.ci/run`): build a two-party scenario in the graph editor, run it, see every
//! node pass and the ladder show INVITE through 200 BYE, then stop a long scenario.
//!
//! `CALLFLOW_SCREENSHOTS=docs/screenshots` writes the editor and the finished run there (the
//! README shows them). `CALLFLOW_SKIP_BROWSER=1` skips the test on a machine without Chromium.

use callflow_web as web;
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

const CHROMEDRIVER: &str = "chromedriver";

/// chromedriver on a free port, ready (it said so on stdout).
async fn chromedriver() -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {CHROMEDRIVER} ({e}): install chromium and chromium-driver (.ci/run does), or set CALLFLOW_SKIP_BROWSER=1")
        });
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("started successfully") {
                return;
            }
        }
        panic!("chromedriver exited before it was ready");
    })
    .await
    .expect("chromedriver ready within 20 s");
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://127.0.0.1:{port}"))
}

async fn browser(webdriver: &str) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1600,1040", "--force-device-scale-factor=1"],
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a Chromium session")
}

async fn css(c: &Client, sel: &str) -> Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(sel))
        .await
        .unwrap_or_else(|e| panic!("no `{sel}` within 10 s: {e}"))
}

/// Waits for an element matching `sel`, up to `limit`.
async fn until(c: &Client, sel: &str, limit: Duration) -> Element {
    c.wait()
        .at_most(limit)
        .for_element(Locator::Css(sel))
        .await
        .unwrap_or_else(|e| panic!("no `{sel}` within {limit:?}: {e}"))
}

async fn click(c: &Client, sel: &str) {
    css(c, sel).await.click().await.unwrap();
}

/// Presses on `from`, moves onto `to` (offset from its centre) and releases there. The graph
/// is drawn anew after each validation (300 ms after an edit), so an element found just before
/// that is stale: both are then found again and the drag retried (WebDriver resolves the
/// elements before it moves the pointer, so a stale one means nothing happened).
async fn drag(c: &Client, from: &str, to: &str, dx: f64, dy: f64) {
    for _ in 0..20 {
        let (from_el, to_el) = (css(c, from).await, css(c, to).await);
        let moves = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: from_el,
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveToElement {
                element: to_el.clone(),
                duration: Some(Duration::from_millis(120)),
                x: dx / 2.0,
                y: dy / 2.0,
            })
            .then(PointerAction::MoveToElement {
                element: to_el,
                duration: Some(Duration::from_millis(120)),
                x: dx,
                y: dy,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        match c.perform_actions(moves).await {
            Ok(()) => return,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
            {
                let _ = c.release_actions().await;
            }
            Err(e) => panic!("drag {from} -> {to}: {e}"),
        }
    }
    panic!("drag {from} -> {to}: the elements kept going stale");
}

/// Drops a palette item into an instance's column, `below` px under the instance box; returns
/// the new node's id (it is selected once dropped).
async fn drop_node(c: &Client, item: &str, instance: &str, below: f64) -> String {
    drag(
        c,
        &format!(".palette-item[data-type='{item}']"),
        &format!(".node.instance[data-id='{instance}'] rect"),
        0.0,
        below,
    )
    .await;
    let sel = css(c, ".node.sel").await;
    let id = sel.attr("data-id").await.unwrap().unwrap();
    assert_eq!(
        css(c, "#props h2").await.text().await.unwrap(),
        format!(
            "{item} ({})",
            if item.chars().all(|ch| ch.is_ascii_uppercase()) {
                "event"
            } else {
                "command"
            }
        )
    );
    id
}

/// Connects `from`'s success (or failure) dot to node `to` by dragging.
async fn connect(c: &Client, from: &str, handle: &str, to: &str) {
    drag(
        c,
        &format!(".port.{handle}[data-node='{from}']"),
        &format!(".node[data-id='{to}'] rect"),
        0.0,
        0.0,
    )
    .await;
    css(c, &format!(".edge-hit[data-edge='e-{from}-{handle}-{to}']")).await;
}

async fn set_field(c: &Client, node: &str, field: &str, value: &str) {
    click(c, &format!(".node[data-id='{node}'] rect")).await;
    let input = css(c, &format!("#props [data-field='{field}']")).await;
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn screenshot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("CALLFLOW_SCREENSHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), c.screenshot().await.unwrap()).unwrap();
    }
}

async fn texts(c: &Client, sel: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(sel)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn build_run_and_stop_scenarios_in_the_browser() {
    if std::env::var_os("CALLFLOW_SKIP_BROWSER").is_some() {
        eprintln!("skipped: CALLFLOW_SKIP_BROWSER is set");
        return;
    }
    let dir = std::env::temp_dir().join(format!("callflow-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    std::fs::copy(
        fixtures.join("demo/long-call.yaml"),
        dir.join("long-call.yaml"),
    )
    .unwrap();
    let listener = web::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(web::serve(
        listener,
        dir.clone(),
        web::ServeOptions::default(),
        shutdown.clone(),
    ));

    let (mut driver, webdriver) = chromedriver().await;
    let c = browser(&webdriver).await;
    c.goto(&format!("http://{addr}/")).await.unwrap();
    css(&c, "li[data-name='long-call.yaml']").await;

    // A new scenario, two instances.
    css(&c, "#new-name")
        .await
        .send_keys("two-party.yaml")
        .await
        .unwrap();
    click(&c, "#create").await;
    css(&c, "li.sel[data-name='two-party.yaml']").await;
    click(&c, "#add-instance").await;
    click(&c, "#add-instance").await;
    css(&c, ".node.instance[data-id='alice']").await;
    css(&c, ".node.instance[data-id='bob']").await;

    // alice: MakeCall to bob's DN, then Release.
    let call = drop_node(&c, "MakeCall", "alice", 110.0).await;
    // An empty target is an error, shown on the node.
    until(
        &c,
        &format!(".node.has-error[data-id='{call}']"),
        Duration::from_secs(10),
    )
    .await;
    set_field(&c, &call, "targetUri", "200").await;
    let release = drop_node(&c, "Release", "alice", 230.0).await;
    connect(&c, &call, "success", &release).await;
    // Every field is in the panel, callId and timeouts included.
    set_field(&c, &release, "timeout", "5000").await;
    set_field(&c, &release, "callId", "call-1").await;

    // bob: INCOMING, Answer, DISCONNECTED (the last edge through the panel's select).
    let incoming = drop_node(&c, "INCOMING", "bob", 110.0).await;
    let answer = drop_node(&c, "Answer", "bob", 230.0).await;
    let gone = drop_node(&c, "DISCONNECTED", "bob", 350.0).await;
    connect(&c, &incoming, "success", &answer).await;
    click(&c, &format!(".node[data-id='{answer}'] rect")).await;
    css(&c, "#props select[data-edge='success']")
        .await
        .select_by_value(&gone)
        .await
        .unwrap();
    set_field(&c, &gone, "timeout", "15000").await;
    // The error is gone once the target is set; nothing else is wrong.
    css(&c, "#dirty").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#diagnostics:empty"))
        .await
        .expect("no diagnostics left");
    screenshot(&c, "editor.png").await;

    click(&c, "#save").await;
    until(&c, "#dirty[hidden]", Duration::from_secs(10)).await;
    let saved = std::fs::read_to_string(dir.join("two-party.yaml")).unwrap();
    assert!(
        saved.contains("command: MakeCall") && saved.contains("target: \"200\""),
        "{saved}"
    );
    assert!(
        saved.contains("timeout: 15s") && saved.contains("timeout: 5s"),
        "{saved}"
    );

    // Run it: every node passes; the ladder shows INVITE ... 200, BYE, 200.
    let t0 = Instant::now();
    click(&c, "#run").await;
    until(&c, "#status.passed", Duration::from_secs(30)).await;
    eprintln!("two-party run passed in the UI after {:?}", t0.elapsed());
    let states: Vec<String> = {
        let mut v = Vec::new();
        for n in c
            .find_all(Locator::Css("g.node:not(.instance)"))
            .await
            .unwrap()
        {
            v.push(n.attr("data-state").await.unwrap().unwrap_or_default());
        }
        v
    };
    assert_eq!(states.len(), 5, "{states:?}");
    assert!(states.iter().all(|s| s == "passed"), "{states:?}");
    let ladder = texts(&c, "#ladder .arrow-label").await;
    let want = ["INVITE", "200 OK", "ACK", "BYE", "200 OK"];
    let mut at = 0;
    for label in &ladder {
        if at < want.len() && label == want[at] {
            at += 1;
        }
    }
    assert_eq!(
        at,
        want.len(),
        "INVITE ... 200, ACK, BYE, 200 in {ladder:?}"
    );
    assert!(ladder.contains(&"180 Ringing".to_owned()), "{ladder:?}");
    let log = css(&c, "#log").await.text().await.unwrap();
    assert!(
        log.contains("PASSED") && log.contains("leaks: 0 dialogs, 0 ports"),
        "{log}"
    );
    // Level filters hide only their own level.
    for level in ["debug", "info", "warning", "error"] {
        css(&c, &format!("input.level[value='{level}']:checked")).await;
    }
    click(&c, "input.level[value='debug']").await;
    assert!(
        !css(&c, "#log div.debug")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    assert!(css(&c, "#log div.info").await.is_displayed().await.unwrap());
    click(&c, "input.level[value='debug']").await;
    screenshot(&c, "run.png").await;
    let history = texts(&c, "#history li").await;
    assert!(
        history[0].contains("passed") && history[0].contains("two-party.yaml"),
        "{history:?}"
    );

    // A long scenario: a second run is refused with a message; Stop ends it within 10 s.
    click(&c, "li[data-name='long-call.yaml']").await;
    css(&c, "li.sel[data-name='long-call.yaml']").await;
    click(&c, "#run").await;
    until(&c, "g.node[data-state='running']", Duration::from_secs(10)).await;
    until(&c, "#status.running", Duration::from_secs(5)).await;
    click(&c, "#run").await;
    let msg = until(&c, "#message", Duration::from_secs(5)).await;
    c.wait()
        .at_most(Duration::from_secs(5))
        .for_element(Locator::XPath(
            "//span[@id='message'][contains(., 'in progress')]",
        ))
        .await
        .unwrap_or_else(|_| panic!("a second run is refused"));
    drop(msg);
    let stop_at = Instant::now();
    click(&c, "#stop").await;
    until(&c, "#status.stopped", Duration::from_secs(10)).await;
    let took = stop_at.elapsed();
    eprintln!("stopped in the UI after {took:?}");
    let log = css(&c, "#log").await.text().await.unwrap();
    assert!(
        log.contains("STOPPED") && log.contains("leaks: 0 dialogs, 0 ports"),
        "{log}"
    );

    // Settings: a PBX profile, written to the workspace, offered to instances by name.
    click(&c, "#settings-open").await;
    click(&c, "#profile-add").await;
    for (key, value) in [
        ("name", "lab"),
        ("host", "127.0.0.1"),
        ("port", "5070"),
        ("realm", "callflow.test"),
    ] {
        css(
            &c,
            &format!("#profiles tbody tr:last-child [data-key='{key}']"),
        )
        .await
        .send_keys(value)
        .await
        .unwrap();
    }
    click(&c, "#profiles-save").await;
    c.wait()
        .at_most(Duration::from_secs(5))
        .for_element(Locator::XPath(
            "//span[@id='profiles-message'][contains(., 'saved')]",
        ))
        .await
        .expect("the profiles are saved");
    let profiles = std::fs::read_to_string(dir.join("pbx-profiles.yaml")).unwrap();
    assert!(
        profiles.contains("lab:") && profiles.contains("port: 5070"),
        "{profiles}"
    );
    click(&c, "#settings-close").await;
    click(&c, ".node.instance[data-id='alice'] rect").await;
    css(
        &c,
        "#props select[data-field='pbxProfile'] option[value='lab']",
    )
    .await;

    c.close().await.unwrap();
    driver.kill().await.ok();
    shutdown.cancel();
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
