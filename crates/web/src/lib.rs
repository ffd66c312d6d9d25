//! `callflow serve`: an HTTP + WebSocket API over a workspace folder of scenario files, one run
//! at a time, and the page that uses it (built into the binary).
//!
//! API (JSON unless noted):
//! - `GET /api/scenarios`: the scenario files of the workspace (`.yaml`, `.yml`, `.json`).
//! - `GET /api/scenarios/{name}` (text), `PUT` (text body: save, answered with its validation),
//!   `DELETE`, `POST /api/scenarios/{name}/rename` (`{"to": "new.yaml"}`).
//! - `POST /api/runs` (`{"scenario": "name.yaml"}`): starts a run; 409 while one is in progress,
//!   422 with the diagnostics when the file is invalid (nothing is sent then).
//! - `GET /api/runs/current`, `POST /api/runs/current/stop`.
//! - `GET /api/runs/current/events` (WebSocket): every event of the run as a JSON text message,
//!   from its first (`run_started`) to `run_finished`, then the socket closes. A client that
//!   connects late gets the events so far first, so nothing is missed.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use events::{Event, EventKind};
use orchestrator::{EventBus, EventSink, RunOptions};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "refusing to listen on {0}: not a loopback address (add --allow-remote to serve other machines)"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("workspace {path}: not a folder")]
    Workspace { path: String },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Binds `addr`, refusing a non-loopback address unless `allow_remote`.
pub async fn bind(
    addr: SocketAddr,
    allow_remote: bool,
) -> Result<tokio::net::TcpListener, WebError> {
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(WebError::NotLoopback(addr));
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Bind { addr, source })
}

/// Serves the UI and the API for the scenarios in `workspace` until `shutdown` is cancelled
/// (a run in progress is stopped and its cleanup awaited).
pub async fn serve(
    listener: tokio::net::TcpListener,
    workspace: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    if !workspace.is_dir() {
        return Err(WebError::Workspace {
            path: workspace.display().to_string(),
        });
    }
    let app = App {
        workspace,
        current: Mutex::new(None),
    };
    let app = Arc::new(app);
    let stop_runs = app.clone();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            if let Some(run) = stop_runs.current() {
                run.stop.cancel();
                run.done.cancelled().await;
            }
        })
        .await
        .map_err(WebError::Serve)
}

struct App {
    workspace: PathBuf,
    current: Mutex<Option<Arc<Run>>>,
}

impl App {
    fn current(&self) -> Option<Arc<Run>> {
        self.current.lock().expect("current run lock").clone()
    }
}

/// A run started from the UI: its events so far and a channel for the ones to come.
struct Run {
    id: String,
    scenario: String,
    events: Mutex<Vec<Event>>,
    tx: broadcast::Sender<Event>,
    stop: CancellationToken,
    /// Cancelled when the run has finished (cleanup included).
    done: CancellationToken,
}

struct RunSink(Arc<Run>);

impl EventSink for RunSink {
    fn event(&self, event: &Event) {
        // Stored and sent under one lock, so a follower's snapshot plus subscription misses nothing.
        let mut events = self.0.events.lock().expect("events lock");
        events.push(event.clone());
        let _ = self.0.tx.send(event.clone());
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("index.html")) }))
        .route("/api/scenarios", get(list))
        .route("/api/scenarios/{name}", get(read).put(save).delete(remove))
        .route("/api/scenarios/{name}/rename", post(rename))
        .route("/api/runs", post(start))
        .route("/api/runs/current", get(current))
        .route("/api/runs/current/stop", post(stop))
        .route("/api/runs/current/events", get(follow))
        .with_state(app)
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// The workspace path of a scenario named by a client: a plain file name with a scenario
/// extension, never a path out of the workspace.
fn scenario_path(app: &App, name: &str) -> Result<PathBuf, BadName> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e));
    if plain {
        Ok(app.workspace.join(name))
    } else {
        Err(BadName(name.to_owned()))
    }
}

/// A scenario name that is not a plain file name in the workspace: 400.
struct BadName(String);

impl IntoResponse for BadName {
    fn into_response(self) -> Response {
        error(
            StatusCode::BAD_REQUEST,
            format!(
                "`{}` is not a scenario file name (name.yaml, name.yml or name.json)",
                self.0
            ),
        )
    }
}

fn validation(text: &str, name: &str) -> serde_json::Value {
    match scenario::parse_str(text, name) {
        Ok(_) => json!({ "valid": true }),
        Err(d) => json!({ "valid": false, "diagnostics": d.to_string() }),
    }
}

async fn list(State(app): State<Arc<App>>) -> Response {
    let Ok(dir) = std::fs::read_dir(&app.workspace) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read the workspace",
        );
    };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| scenario_path(&app, n).is_ok())
        .collect();
    names.sort();
    Json(json!({ "scenarios": names })).into_response()
}

async fn read(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let path = match scenario_path(&app, &name) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(_) => error(StatusCode::NOT_FOUND, format!("no scenario `{name}`")),
    }
}

async fn save(State(app): State<Arc<App>>, Path(name): Path<String>, text: String) -> Response {
    let path = match scenario_path(&app, &name) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = std::fs::write(&path, &text) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot save {name}: {e}"),
        );
    }
    Json(validation(&text, &name)).into_response()
}

async fn remove(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let path = match scenario_path(&app, &name) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    match std::fs::remove_file(path) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => error(StatusCode::NOT_FOUND, format!("no scenario `{name}`")),
    }
}

#[derive(Deserialize)]
struct RenameTo {
    to: String,
}

async fn rename(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Json(body): Json<RenameTo>,
) -> Response {
    let (from, to) = match (scenario_path(&app, &name), scenario_path(&app, &body.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    if to.exists() {
        return error(
            StatusCode::CONFLICT,
            format!("`{}` exists already", body.to),
        );
    }
    match std::fs::rename(from, to) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => error(StatusCode::NOT_FOUND, format!("no scenario `{name}`")),
    }
}

#[derive(Deserialize)]
struct StartRun {
    scenario: String,
}

async fn start(State(app): State<Arc<App>>, Json(body): Json<StartRun>) -> Response {
    let path = match scenario_path(&app, &body.scenario) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    if !path.is_file() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no scenario `{}`", body.scenario),
        );
    }
    let scenario = match scenario::load(&path) {
        Ok((s, _)) => s,
        Err(d) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "the scenario is invalid", "diagnostics": d.to_string() })),
            )
                .into_response();
        }
    };
    let opts = RunOptions::default();
    let run = {
        let mut current = app.current.lock().expect("current run lock");
        if let Some(r) = current.as_ref().filter(|r| !r.done.is_cancelled()) {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "a run of `{}` is in progress: stop it or wait for it to finish",
                    r.scenario
                ),
            );
        }
        let run = Arc::new(Run {
            id: opts.run_id.clone(),
            scenario: body.scenario,
            events: Mutex::new(Vec::new()),
            tx: broadcast::channel(4096).0,
            stop: opts.stop.clone(),
            done: CancellationToken::new(),
        });
        *current = Some(run.clone());
        run
    };
    let bus = EventBus::new(vec![Arc::new(RunSink(run.clone()))]);
    let id = run.id.clone();
    tokio::spawn(async move {
        let _report = orchestrator::run(&scenario, opts, bus).await;
        run.done.cancel();
    });
    (StatusCode::ACCEPTED, Json(json!({ "run_id": id }))).into_response()
}

async fn current(State(app): State<Arc<App>>) -> Response {
    let Some(run) = app.current() else {
        return error(StatusCode::NOT_FOUND, "no run yet");
    };
    let finished = run
        .events
        .lock()
        .expect("events lock")
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            EventKind::RunFinished(f) => Some(f.clone()),
            _ => None,
        });
    Json(json!({
        "run_id": run.id,
        "scenario": run.scenario,
        "running": !run.done.is_cancelled(),
        "finished": finished,
    }))
    .into_response()
}

async fn stop(State(app): State<Arc<App>>) -> Response {
    match app.current().filter(|r| !r.done.is_cancelled()) {
        Some(run) => {
            run.stop.cancel();
            StatusCode::ACCEPTED.into_response()
        }
        None => error(StatusCode::NOT_FOUND, "no run in progress"),
    }
}

async fn follow(State(app): State<Arc<App>>, ws: WebSocketUpgrade) -> Response {
    let Some(run) = app.current() else {
        return error(StatusCode::NOT_FOUND, "no run yet");
    };
    ws.on_upgrade(move |socket| stream_events(socket, run))
}

/// Sends the run's events so far, then each new one, until `run_finished`.
async fn stream_events(mut socket: WebSocket, run: Arc<Run>) {
    let (past, mut rx) = {
        let events = run.events.lock().expect("events lock");
        (events.clone(), run.tx.subscribe())
    };
    let mut next_seq = 0;
    let mut send_all = async |socket: &mut WebSocket, events: Vec<Event>| -> Option<bool> {
        for e in events {
            if e.seq < next_seq {
                continue;
            }
            next_seq = e.seq + 1;
            let last = matches!(e.event, EventKind::RunFinished(_));
            let text = serde_json::to_string(&e).ok()?;
            socket.send(Message::Text(text.into())).await.ok()?;
            if last {
                return Some(true);
            }
        }
        Some(false)
    };
    if send_all(&mut socket, past).await != Some(false) {
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    loop {
        let batch = match rx.recv().await {
            Ok(e) => vec![e],
            // Fell behind: catch up from the stored events.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                run.events.lock().expect("events lock").clone()
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        if send_all(&mut socket, batch).await != Some(false) {
            break;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
