//! The API on a real socket: save scenarios, run one, follow its events over the WebSocket to
//! `run_finished`, refuse a second run, stop a long one.

use callflow_web as web;
use futures::StreamExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), web::WebError>>,
    dir: PathBuf,
    token: String,
}

impl Server {
    async fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("callflow-web-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self::restart(dir).await
    }

    /// A server on a workspace that may hold files already.
    async fn restart(dir: PathBuf) -> Self {
        Self::with_options(dir, web::ServeOptions::default()).await
    }

    /// A server started with `options`, whose token the helpers send (taken from the page, as
    /// the browser does).
    async fn with_options(dir: PathBuf, options: web::ServeOptions) -> Self {
        let listener = web::bind("127.0.0.1:0".parse().unwrap(), false)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(web::serve(listener, dir.clone(), options, shutdown.clone()));
        let mut server = Self {
            addr,
            shutdown,
            task,
            dir,
            token: String::new(),
        };
        let (status, page) = server
            .raw(&format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 200);
        let marker = "name=\"callflow-token\" content=\"";
        let at = page.find(marker).expect("the token in the page") + marker.len();
        server.token = page[at..at + 32].to_owned();
        server
    }

    /// A request written out whole; the status and the body (read to its Content-Length, so
    /// a connection the server keeps open does not matter).
    async fn raw(&self, request: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        let (head, len) = loop {
            let n = s.read(&mut buf).await.unwrap();
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some((head, _)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                break (head.to_owned(), len);
            }
            assert!(n > 0, "the server closed the connection mid-response");
        };
        while out.len() < head.len() + 4 + len {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed the connection mid-body");
            out.extend_from_slice(&buf[..n]);
        }
        let body = String::from_utf8(out[head.len() + 4..].to_vec()).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body)
    }

    /// A request with these extra header lines (each ending in \r\n).
    async fn with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> (u16, String) {
        self.raw(&format!(
            "{method} {path} HTTP/1.1\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await
    }

    /// One HTTP/1.1 request as the page makes it (its Host, its token; JSON, or a scenario's
    /// text as YAML); the status and the body.
    async fn http(&self, method: &str, path: &str, body: &str, json: bool) -> (u16, String) {
        let ctype = if json || path.contains(".json") {
            "application/json"
        } else {
            "application/yaml"
        };
        let headers = format!(
            "Host: {}\r\nX-Callflow-Token: {}\r\nContent-Type: {ctype}\r\n",
            self.addr, self.token
        );
        self.with_headers(method, path, &headers, body).await
    }

    /// Saves fixture `fixture` into the workspace as `name`; its validation.
    async fn put_fixture(&self, name: &str, fixture_name: &str) -> String {
        let path = format!("/api/scenarios/{name}");
        let (status, body) = self.http("PUT", &path, &fixture(fixture_name), false).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let (status, text) = self.http(method, path, &body.to_string(), true).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The run's event stream, with the token the page would add.
    fn events_url(&self) -> String {
        format!(
            "ws://{}/api/runs/current/events?token={}",
            self.addr, self.token
        )
    }

    /// Follows the current run's events to the end (the server closes the socket after
    /// `run_finished`), with a deadline.
    async fn follow(&self, deadline: Duration) -> Vec<Value> {
        let (mut ws, _) = tokio_tungstenite::connect_async(self.events_url())
            .await
            .unwrap();
        let mut events = Vec::new();
        tokio::time::timeout(deadline, async {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    events.push(serde_json::from_str(t.as_str()).unwrap());
                }
            }
        })
        .await
        .expect("run_finished within the deadline");
        events
    }

    async fn stop(self) {
        std::fs::remove_dir_all(self.stop_keeping_files().await).ok();
    }

    /// Stops the server, leaving its workspace; returns its folder.
    async fn stop_keeping_files(self) -> PathBuf {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.dir
    }
}

fn finished(events: &[Value]) -> &Value {
    let last = events.last().expect("events");
    assert_eq!(last["event"]["type"], "run_finished", "{last}");
    &last["event"]["data"]
}

#[tokio::test(flavor = "multi_thread")]
async fn save_run_and_follow_a_scenario() {
    let server = Server::start("run").await;
    let body = server.put_fixture("basic.yaml", "basic-call.yaml").await;
    assert_eq!(body, r#"{"valid":true}"#);
    let (status, bad) = server
        .http(
            "PUT",
            "/api/scenarios/bad.yaml",
            "version: 1\ninstances:\n  alice:\n    dn: 100\n    steps:\n      - command: MakeCal\n",
            false,
        )
        .await;
    assert_eq!(status, 200);
    let bad: Value = serde_json::from_str(&bad).unwrap();
    assert_eq!(bad["valid"], false);
    assert!(
        bad["diagnostics"].as_str().unwrap().contains("bad.yaml:6:"),
        "{bad}"
    );
    let (_, list) = server.json("GET", "/api/scenarios", Value::Null).await;
    assert_eq!(list, json!({ "scenarios": ["bad.yaml", "basic.yaml"] }));
    // Nothing outside the workspace.
    let (status, _) = server
        .http("GET", "/api/scenarios/..%2Fpasswd.yaml", "", false)
        .await;
    assert_eq!(status, 400);

    let (status, refused) = server
        .json("POST", "/api/runs", json!({ "scenario": "bad.yaml" }))
        .await;
    assert_eq!(status, 422, "{refused}");

    let (status, started) = server
        .json("POST", "/api/runs", json!({ "scenario": "basic.yaml" }))
        .await;
    assert_eq!(status, 202, "{started}");
    let events = server.follow(Duration::from_secs(20)).await;
    assert_eq!(events[0]["event"]["type"], "run_started");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "no gaps");
    }
    let done = finished(&events);
    assert_eq!(done["outcome"], "passed", "{done}");
    assert_eq!(done["leaks"], json!({ "dialogs": 0, "ports": 0 }));
    let sip: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["type"] == "sip_message")
        .collect();
    assert!(sip.iter().any(|e| e["event"]["data"]["method"] == "BYE"));

    // A late follower gets the whole run again; the run is still readable.
    assert_eq!(server.follow(Duration::from_secs(5)).await, events);
    let (_, current) = server.json("GET", "/api/runs/current", Value::Null).await;
    assert_eq!(current["running"], false);
    assert_eq!(current["finished"]["outcome"], "passed");

    // The run is in the history with its events, and re-renders.
    let run_id = started["run_id"].as_str().unwrap();
    let (_, history) = server.json("GET", "/api/history", Value::Null).await;
    let row = &history["runs"][0];
    assert_eq!(row["id"], run_id, "{history}");
    assert_eq!(row["scenario"], "basic.yaml");
    assert_eq!(row["outcome"], "passed");
    assert_eq!(row["events"], events.len() as u64);
    assert!(row["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(row["started_us"].as_u64().unwrap() > 1_700_000_000_000_000);
    let (status, stored) = server
        .json("GET", &format!("/api/history/{run_id}"), Value::Null)
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored["events"], Value::Array(events.clone()));
    let (status, ladder) = server
        .http("GET", &format!("/api/history/{run_id}/ladder"), "", false)
        .await;
    assert_eq!(status, 200);
    for m in ["INVITE", "180 Ringing", "200 OK", "ACK", "BYE"] {
        assert!(ladder.contains(m), "{m} in the re-rendered ladder");
    }
    let dir = server.stop_keeping_files().await;

    // The history outlives the server; older runs can be deleted.
    let server = Server::restart(dir).await;
    let (_, history) = server.json("GET", "/api/history", Value::Null).await;
    assert_eq!(history["runs"][0]["id"], run_id);
    let (status, _) = server
        .http("DELETE", &format!("/api/history/{run_id}"), "", false)
        .await;
    assert_eq!(status, 204);
    let (_, history) = server.json("GET", "/api/history", Value::Null).await;
    assert_eq!(history["runs"], json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graph_editor_reads_checks_and_saves_flows() {
    let server = Server::start("flow").await;
    server.put_fixture("basic.yaml", "basic-call.yaml").await;
    let (status, got) = server
        .json("GET", "/api/scenarios/basic.yaml/flow", Value::Null)
        .await;
    assert_eq!(status, 200, "{got}");
    let flow = got["flow"].clone();
    let nodes = flow["nodes"].as_array().unwrap();
    assert_eq!(
        nodes.iter().filter(|n| n["type"] == "sipInstance").count(),
        2
    );
    assert!(got["yaml"].as_str().unwrap().contains("command: MakeCall"));

    // A broken node: the diagnostic names it.
    let mut broken = flow.clone();
    let make_call = broken["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["data"]["command"] == "MakeCall")
        .unwrap();
    make_call["data"]["command"] = json!("MakeCal");
    let id = make_call["id"].clone();
    let (_, checked) = server
        .json(
            "POST",
            "/api/flow/check",
            json!({ "flow": broken, "name": "basic.yaml" }),
        )
        .await;
    assert_eq!(checked["valid"], false);
    let d = &checked["diagnostics"][0];
    assert_eq!(d["node"], id, "{checked}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("unknown command `MakeCal`")
    );
    assert!(d["help"].as_str().unwrap().contains("MakeCall"));
    // Not saved as YAML while broken; the file is untouched.
    let (status, _) = server
        .json(
            "PUT",
            "/api/scenarios/basic.yaml/flow",
            json!({ "flow": broken }),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        std::fs::read_to_string(server.dir.join("basic.yaml")).unwrap(),
        fixture("basic-call.yaml")
    );

    // An edit (a timeout and a call id) saves as YAML and reads back.
    let mut edited = flow.clone();
    let release = edited["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["data"]["command"] == "Release")
        .unwrap();
    release["data"]["timeout"] = json!(2500);
    let (status, saved) = server
        .json(
            "PUT",
            "/api/scenarios/basic.yaml/flow",
            json!({ "flow": edited }),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let text = std::fs::read_to_string(server.dir.join("basic.yaml")).unwrap();
    assert!(text.contains("timeout: 2s 500ms"), "{text}");
    assert!(
        text.starts_with("name: Basic call"),
        "the name is kept: {text}"
    );
    let (_, valid) = server
        .http("PUT", "/api/scenarios/basic.yaml", &text, false)
        .await;
    assert_eq!(valid, r#"{"valid":true}"#);
    // A JSON file saves as the flow itself.
    let (status, _) = server
        .json(
            "PUT",
            "/api/scenarios/copy.json/flow",
            json!({ "flow": edited }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, valid) = server
        .http("GET", "/api/scenarios/copy.json", "", false)
        .await;
    assert!(valid.contains("\"nodes\""));
    // Text is validated without being saved.
    let (status, v) = server
        .http(
            "POST",
            "/api/scenarios/basic.yaml/validate",
            "instances:\n  a:\n    dn: 1\n    stepz: []\n",
            false,
        )
        .await;
    assert_eq!(status, 200);
    assert!(v.contains("basic.yaml:4:5") && v.contains("steps"), "{v}");
    assert_eq!(
        std::fs::read_to_string(server.dir.join("basic.yaml")).unwrap(),
        text
    );
    // Files are listed, renamed (never over another) and deleted.
    let (status, _) = server
        .json(
            "POST",
            "/api/scenarios/copy.json/rename",
            json!({ "to": "basic.yaml" }),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = server
        .json(
            "POST",
            "/api/scenarios/copy.json/rename",
            json!({ "to": "renamed.json" }),
        )
        .await;
    assert_eq!(status, 204);
    let (_, list) = server.json("GET", "/api/scenarios", Value::Null).await;
    assert_eq!(list, json!({ "scenarios": ["basic.yaml", "renamed.json"] }));
    let (status, _) = server
        .http("DELETE", "/api/scenarios/renamed.json", "", false)
        .await;
    assert_eq!(status, 204);
    let (_, list) = server.json("GET", "/api/scenarios", Value::Null).await;
    assert_eq!(list, json!({ "scenarios": ["basic.yaml"] }));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pbx_profiles_are_settings_scenarios_name() {
    let server = Server::start("profiles").await;
    let (_, empty) = server.json("GET", "/api/profiles", Value::Null).await;
    assert_eq!(empty["profiles"], json!({}));
    let scenario = "name: p\ninstances:\n  a:\n    dn: '100'\n    pbx: lab\n    register: false\n";
    let (_, v) = server
        .http("PUT", "/api/scenarios/p.yaml", scenario, false)
        .await;
    assert!(v.contains("no PBX profile `lab`"), "{v}");
    let (status, _) = server
        .json(
            "PUT",
            "/api/profiles",
            json!({ "profiles": { "lab": { "host": "127.0.0.1", "port": 5070, "password": "${CALLFLOW_UNSET_SECRET_Y}" } } }),
        )
        .await;
    assert_eq!(status, 422, "an unset secret is refused");
    let (status, saved) = server
        .json(
            "PUT",
            "/api/profiles",
            json!({ "profiles": { "lab": { "host": "127.0.0.1", "port": 5070, "realm": "r", "password": "${PATH}" } } }),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let file = std::fs::read_to_string(server.dir.join("pbx-profiles.yaml")).unwrap();
    assert!(
        file.contains("password: ${PATH}") || file.contains("password: \"${PATH}\""),
        "{file}"
    );
    let (_, back) = server.json("GET", "/api/profiles", Value::Null).await;
    assert_eq!(back["profiles"]["lab"]["port"], 5070);
    assert_eq!(back["profiles"]["lab"]["password"], "${PATH}");
    let (_, v) = server
        .http("PUT", "/api/scenarios/p.yaml", scenario, false)
        .await;
    assert_eq!(v, r#"{"valid":true}"#);
    let (_, flow) = server
        .json("GET", "/api/scenarios/p.yaml/flow", Value::Null)
        .await;
    assert_eq!(flow["flow"]["nodes"][0]["data"]["pbxProfile"], "lab");
    // The profiles file is settings, not a scenario.
    let (_, list) = server.json("GET", "/api/scenarios", Value::Null).await;
    assert_eq!(list, json!({ "scenarios": ["p.yaml"] }));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_run_at_a_time_and_stop_within_ten_seconds() {
    let server = Server::start("stop").await;
    server.put_fixture("long.yaml", "demo/long-call.yaml").await;
    let (status, _) = server
        .json("POST", "/api/runs", json!({ "scenario": "long.yaml" }))
        .await;
    assert_eq!(status, 202);
    let (status, second) = server
        .json("POST", "/api/runs", json!({ "scenario": "long.yaml" }))
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        second["error"],
        "a run of `long.yaml` is in progress: stop it or wait for it to finish"
    );
    // Stop once the call is up (bob answered), and the run ends stopped, cleaned up.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.events_url())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(Message::Text(t))) = ws.next().await {
            let e: Value = serde_json::from_str(t.as_str()).unwrap();
            if e["event"]["data"]["node"] == "bob.2" && e["event"]["data"]["to"] == "passed" {
                return;
            }
        }
        panic!("the socket closed before bob answered");
    })
    .await
    .expect("bob answers");
    let asked = Instant::now();
    let (status, _) = server
        .json("POST", "/api/runs/current/stop", Value::Null)
        .await;
    assert_eq!(status, 202);
    let events = server.follow(Duration::from_secs(10)).await;
    assert!(asked.elapsed() < Duration::from_secs(10));
    let done = finished(&events);
    assert_eq!(done["outcome"], "stopped", "{done}");
    assert_eq!(done["leaks"], json!({ "dialogs": 0, "ports": 0 }));
    assert!(events.iter().any(|e| e["event"]["type"] == "sip_message"
        && e["event"]["data"]["method"] == "BYE"
        && e["event"]["data"]["direction"] == "sent"));
    // Once `run_finished` is out, the run is over: nothing to stop, and a new run starts.
    let (status, _) = server
        .json("POST", "/api/runs/current/stop", Value::Null)
        .await;
    assert_eq!(status, 404);
    let (status, again) = server
        .json("POST", "/api/runs", json!({ "scenario": "long.yaml" }))
        .await;
    assert_eq!(status, 202, "{again}");
    let (status, _) = server
        .json("POST", "/api/runs/current/stop", Value::Null)
        .await;
    assert_eq!(status, 202);
    let events = server.follow(Duration::from_secs(10)).await;
    let done = finished(&events);
    assert_eq!(done["outcome"], "stopped", "{done}");
    assert_eq!(done["leaks"], json!({ "dialogs": 0, "ports": 0 }));
    server.stop().await;
}

#[tokio::test]
async fn refuses_a_non_loopback_address_without_the_flag() {
    let err = web::bind("0.0.0.0:0".parse().unwrap(), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a loopback address"), "{err}");
}

/// A scenario whose sidecar would leave a mark outside the workspace if it ever ran.
fn sidecar_scenario(mark: &Path) -> String {
    format!(
        "name: probe\nsidecars:\n  - name: probe\n    command: [touch, {}]\n    health:\n      log: never\n    timeout: 1s\ninstances:\n  a:\n    dn: \"100\"\n    steps:\n      - command: Release\n",
        mark.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_on_another_origin_cannot_drive_the_server() {
    let server = Server::start("forged").await;
    let mark = server.dir.with_extension("sidecar-ran");
    let _ = std::fs::remove_file(&mark);
    let token = server.token.clone();
    let body = sidecar_scenario(&mark);
    // DNS rebinding: the browser sends the attacker's name as Host. Refused before any handler,
    // reads included, with the token or without.
    for (method, path) in [
        ("GET", "/api/scenarios"),
        ("GET", "/"),
        ("PUT", "/api/scenarios/x.yaml"),
        ("POST", "/api/runs"),
    ] {
        let headers = format!(
            "Host: evil.example:{}\r\nX-Callflow-Token: {token}\r\nContent-Type: application/json\r\n",
            server.addr.port()
        );
        let (status, text) = server.with_headers(method, path, &headers, &body).await;
        assert_eq!(status, 421, "{method} {path}: {text}");
        assert!(text.contains("--allow-host"), "{text}");
    }
    let host = format!("Host: {}\r\n", server.addr);
    // Right Host, but a foreign Origin, no token, a wrong token, or a "simple" content type.
    let cases = [
        (
            "PUT",
            "/api/scenarios/x.yaml",
            format!("Origin: http://evil.example\r\nX-Callflow-Token: {token}\r\nContent-Type: application/yaml\r\n"),
            403,
        ),
        (
            "PUT",
            "/api/scenarios/x.yaml",
            "Content-Type: application/yaml\r\n".to_owned(),
            403,
        ),
        (
            "PUT",
            "/api/scenarios/x.yaml",
            "X-Callflow-Token: 0123456789abcdef0123456789abcdef\r\nContent-Type: application/yaml\r\n".to_owned(),
            403,
        ),
        (
            "POST",
            "/api/runs",
            format!("Sec-Fetch-Site: cross-site\r\nX-Callflow-Token: {token}\r\nContent-Type: application/json\r\n"),
            403,
        ),
        (
            "POST",
            "/api/scenarios/x.yaml/validate",
            format!("X-Callflow-Token: {token}\r\nContent-Type: text/plain\r\n"),
            415,
        ),
        (
            "POST",
            "/api/runs/current/stop",
            format!("X-Callflow-Token: {token}\r\nContent-Type: text/plain\r\n"),
            415,
        ),
        (
            "POST",
            "/api/runs",
            format!("X-Callflow-Token: {token}\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
            415,
        ),
        (
            "PUT",
            "/api/scenarios/x.yaml",
            format!("X-Callflow-Token: {token}\r\nContent-Type: text/plain; charset=utf-8\r\n"),
            415,
        ),
        (
            "DELETE",
            "/api/scenarios/x.yaml",
            "Origin: null\r\n".to_owned(),
            403,
        ),
    ];
    for (method, path, headers, want) in cases {
        let (status, text) = server
            .with_headers(method, path, &format!("{host}{headers}"), &body)
            .await;
        assert_eq!(status, want, "{method} {path} with {headers:?}: {text}");
    }
    assert!(
        !server.dir.join("x.yaml").exists(),
        "no refused request wrote anything"
    );
    // The WebSocket: a foreign Origin, or no token, gets no 101 (the events carry raw SIP).
    for (origin, query) in [
        ("http://evil.example", format!("?token={token}")),
        (&format!("http://{}", server.addr) as &str, String::new()),
    ] {
        let req = format!(
            "GET /api/runs/current/events{query} HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.addr
        );
        let (status, _) = server.raw(&req).await;
        assert_eq!(status, 403, "origin {origin}, query {query:?}");
    }
    // The page itself, same origin, works; loopback names are accepted as Host.
    let (status, _) = server
        .with_headers(
            "GET",
            "/api/scenarios",
            &format!("Host: localhost:{}\r\n", server.addr.port()),
            "",
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .with_headers(
            "PUT",
            "/api/scenarios/ok.yaml",
            &format!(
                "{host}Origin: http://{}\r\nX-Callflow-Token: {token}\r\nContent-Type: application/yaml\r\n",
                server.addr
            ),
            &fixture("basic-call.yaml"),
        )
        .await;
    assert_eq!(status, 200);
    assert!(!mark.exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecars_run_only_when_the_server_allows_them() {
    let server = Server::start("sidecars").await;
    let mark = server.dir.with_extension("sidecar-ran");
    let _ = std::fs::remove_file(&mark);
    let (status, _) = server
        .http(
            "PUT",
            "/api/scenarios/probe.yaml",
            &sidecar_scenario(&mark),
            false,
        )
        .await;
    assert_eq!(status, 200);
    let (status, refused) = server
        .json("POST", "/api/runs", json!({ "scenario": "probe.yaml" }))
        .await;
    assert_eq!(status, 403, "{refused}");
    let msg = refused["error"].as_str().unwrap();
    assert!(
        msg.contains("--allow-sidecars") && msg.contains("`probe`"),
        "{msg}"
    );
    let (_, flow) = server
        .json("GET", "/api/scenarios/probe.yaml/flow", Value::Null)
        .await;
    assert_eq!(flow["sidecars"], 1);
    assert_eq!(flow["sidecars_allowed"], false);
    assert!(!mark.exists(), "the sidecar never ran");
    let dir = server.stop_keeping_files().await;
    // Started with the flag, the same file runs its sidecar.
    let server = Server::with_options(
        dir,
        web::ServeOptions {
            allow_sidecars: true,
            ..Default::default()
        },
    )
    .await;
    let (status, started) = server
        .json("POST", "/api/runs", json!({ "scenario": "probe.yaml" }))
        .await;
    assert_eq!(status, 202, "{started}");
    server.follow(Duration::from_secs(20)).await;
    assert!(mark.exists(), "the allowed sidecar ran");
    std::fs::remove_file(&mark).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_never_echoes_an_environment_value() {
    let server = Server::start("secrets").await;
    // PATH stands in for a secret: it is set wherever tests run.
    let secret = std::env::var("PATH").unwrap();
    let text = "instances:\n  a:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: \"${PATH}\"\n";
    let (status, body) = server
        .http("POST", "/api/scenarios/s.yaml/validate", text, false)
        .await;
    assert_eq!(status, 200);
    assert!(!body.contains(&secret), "{body}");
    assert!(body.contains("${PATH}"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workspace_boundary_holds_against_links_fifos_and_floods() {
    let server = Server::start("boundary").await;
    let outside = server.dir.with_extension("outside.yaml");
    std::fs::write(&outside, "secret: outside the workspace\n").unwrap();
    std::os::unix::fs::symlink(&outside, server.dir.join("link.yaml")).unwrap();
    // A link is not listed, not read, not written through.
    let (_, listed) = server.json("GET", "/api/scenarios", Value::Null).await;
    assert_eq!(listed["scenarios"], json!([]));
    let (status, body) = server
        .http("GET", "/api/scenarios/link.yaml", "", false)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("outside the workspace"), "{body}");
    let (status, body) = server
        .http(
            "PUT",
            "/api/scenarios/link.yaml",
            &fixture("basic-call.yaml"),
            false,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "secret: outside the workspace\n"
    );
    std::os::unix::fs::symlink(
        &outside,
        server.dir.join(web::HISTORY_FILE.replace("sqlite", "yaml")),
    )
    .ok();
    let (status, _) = server
        .json("GET", "/api/scenarios/link.yaml/flow", Value::Null)
        .await;
    assert_eq!(status, 403);
    // A FIFO as a scenario, and as the WAV two validations name: answered, not waited on.
    let mkfifo = |p: PathBuf| {
        assert!(
            std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap()
                .success()
        )
    };
    mkfifo(server.dir.join("fifo.yaml"));
    mkfifo(server.dir.join("audio.wav"));
    let (status, body) = server
        .http("GET", "/api/scenarios/fifo.yaml", "", false)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("FIFO"), "{body}");
    let play = "instances:\n  a:\n    dn: \"100\"\n    steps:\n      - command: PlayAudio\n        file: audio.wav\n";
    let (status, _) = server
        .http("PUT", "/api/scenarios/play.yaml", play, false)
        .await;
    assert_eq!(status, 200);
    let validate = || server.http("POST", "/api/scenarios/play.yaml/validate", play, false);
    let (a, b) = tokio::join!(validate(), validate());
    for (status, body) in [a, b] {
        assert_eq!(status, 200);
        assert!(body.contains("FIFO"), "{body}");
    }
    // Two 2 MB step lists at once, while the page is still served; over the size limit is 413.
    let mut big = String::from("instances:\n  a:\n    dn: \"100\"\n    steps:\n");
    while big.len() < 2 << 20 {
        big.push_str("      - command: Release\n");
    }
    let v = || server.http("POST", "/api/scenarios/big.yaml/validate", &big, false);
    let page = async {
        server
            .with_headers("GET", "/", &format!("Host: {}\r\n", server.addr), "")
            .await
    };
    let ((s1, b1), (s2, _), (s3, _)) = tokio::join!(v(), v(), page);
    assert_eq!((s1, s2, s3), (200, 200, 200), "{b1}");
    let huge = "#".repeat((4 << 20) + 1);
    let (status, _) = server
        .http("POST", "/api/scenarios/huge.yaml/validate", &huge, false)
        .await;
    assert_eq!(status, 413);
    server.stop().await;
    std::fs::remove_file(&outside).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_history_does_not_stop_the_server() {
    let dir = std::env::temp_dir().join(format!("callflow-web-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(web::HISTORY_FILE), "not a database").unwrap();
    let server = Server::restart(dir.clone()).await;
    let (status, runs) = server.json("GET", "/api/history", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(runs["runs"], json!([]));
    assert_eq!(
        std::fs::read_to_string(dir.join(format!("{}.bad-1", web::HISTORY_FILE))).unwrap(),
        "not a database"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_editor_reads_every_command_and_its_keys_from_the_server() {
    let server = Server::start("schema").await;
    let (status, schema) = server.json("GET", "/api/schema", Value::Null).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = schema["commands"]
        .as_array()
        .unwrap()
        .iter()
        .chain(schema["events"].as_array().unwrap())
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), scenario::schema::ACTIONS.len());
    assert!(
        names.contains(&"MakeCall") && names.contains(&"INCOMING"),
        "{names:?}"
    );
    let dtmf = schema["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "SendDTMF")
        .unwrap();
    assert_eq!(
        dtmf["keys"][1],
        json!({"yaml": "interval", "json": "intervalMs", "type": "duration", "required": false, "default": 100})
    );
    // The page holds no copy of the table.
    let (_, page) = server.http("GET", "/app.js", "", false).await;
    assert!(
        !page.contains("MakeCall:"),
        "app.js has its own table again"
    );
    server.stop().await;
}
