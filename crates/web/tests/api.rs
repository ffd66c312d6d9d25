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
        let listener = web::bind("127.0.0.1:0".parse().unwrap(), false)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(web::serve(listener, dir.clone(), shutdown.clone()));
        Self {
            addr,
            shutdown,
            task,
            dir,
        }
    }

    /// One HTTP/1.1 request; the status and the body.
    async fn http(&self, method: &str, path: &str, body: &str, json: bool) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let ctype = if json {
            "application/json"
        } else {
            "text/plain"
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
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

    /// Follows the current run's events to the end (the server closes the socket after
    /// `run_finished`), with a deadline.
    async fn follow(&self, deadline: Duration) -> Vec<Value> {
        let url = format!("ws://{}/api/runs/current/events", self.addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
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
    server.put_fixture("long.yaml", "long-call.yaml").await;
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
    let url = format!("ws://{}/api/runs/current/events", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
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
