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
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        std::fs::remove_dir_all(self.dir).ok();
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
    let (status, body) = server
        .http(
            "PUT",
            "/api/scenarios/basic.yaml",
            &fixture("basic-call.yaml"),
            false,
        )
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"valid":true}"#));
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
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_run_at_a_time_and_stop_within_ten_seconds() {
    let server = Server::start("stop").await;
    server
        .http(
            "PUT",
            "/api/scenarios/long.yaml",
            &fixture("long-call.yaml"),
            false,
        )
        .await;
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
    // A new run may start now.
    let (status, _) = server
        .json("POST", "/api/runs/current/stop", Value::Null)
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn refuses_a_non_loopback_address_without_the_flag() {
    let err = web::bind("0.0.0.0:0".parse().unwrap(), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a loopback address"), "{err}");
}
