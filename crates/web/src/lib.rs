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
//! - `GET /api/scenarios/{name}/flow`: the scenario as a sipflow flow for the graph editor (a
//!   YAML file is laid out; a JSON file is itself), with its native YAML text.
//! - `POST /api/flow/check` (`{"flow": {...}, "name": "x.yaml"}`): validation of an edited flow,
//!   each diagnostic with the id of the node it concerns, and the native YAML when valid.
//! - `PUT /api/scenarios/{name}/flow` (`{"flow": {...}}`): saves an edited flow (YAML files
//!   as native YAML, JSON files as the flow).
//! - `GET /api/history`, `GET /api/history/{id}` (the run and its events),
//!   `GET /api/history/{id}/ladder` (the ladder re-rendered as HTML), `DELETE /api/history/{id}`,
//!   `POST /api/history/prune` (`{"keep": 20}`).
//! - `GET /api/profiles`, `PUT /api/profiles` (`{"profiles": {"lab": {"host": ...}}}`): the PBX
//!   profiles scenarios name (`pbx-profiles.yaml` in the workspace).
//! - `GET /api/schema`: every command and event with its keys, their types, defaults and which
//!   are required (`scenario::schema::to_json`); the editor builds its palette and panels from it.

//!
//! What the server trusts and refuses is in docs/security.md: requests must name the server as
//! their Host, state-changing ones (and the WebSocket) must come from its own page (Origin,
//! the per-start token the page carries, a JSON or scenario body), files are the workspace's
//! own (no links out of it), and blocking work runs off the runtime, bounded in size and time.

// A handler's early answer is its `Err(Response)`: boxing each would only add noise.
#![allow(clippy::result_large_err)]

mod guard;
mod history;
pub use guard::{ServeOptions, TOKEN_HEADER, guard_router};
pub use history::{HISTORY_FILE, History, RunRow};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use events::{Event, EventKind, Retained};
use orchestrator::{EventBus, EventSink, RunOptions};
use scenario::Symlinks;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast};
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
    #[error("run history {path}: {source}")]
    History {
        path: String,
        source: rusqlite::Error,
    },
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
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    let workspace = std::fs::canonicalize(&workspace)
        .ok()
        .filter(|w| w.is_dir())
        .ok_or_else(|| WebError::Workspace {
            path: workspace.display().to_string(),
        })?;
    let (history, moved) = History::open(&workspace).map_err(|source| WebError::History {
        path: workspace.join(HISTORY_FILE).display().to_string(),
        source,
    })?;
    if let Some(aside) = moved {
        eprintln!(
            "callflow serve: warning: {} could not be read as a run history; it was moved to {} and a new history begun",
            workspace.join(HISTORY_FILE).display(),
            aside.display()
        );
    }
    let addr = listener.local_addr().map_err(WebError::Serve)?;
    let app = App {
        workspace,
        current: Mutex::new(None),
        history,
        guard: guard::Guard::new(addr, &options),
        allow_sidecars: options.allow_sidecars,
        blocking: Arc::new(Semaphore::new(BLOCKING_SLOTS)),
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

/// How many blocking jobs (file reads, validations, SQLite) run at once; more wait.
const BLOCKING_SLOTS: usize = 4;
/// How long one request may wait for and do its blocking work before it is answered 503.
const BLOCKING_LIMIT: Duration = Duration::from_secs(10);

struct App {
    workspace: PathBuf,
    current: Mutex<Option<Arc<Run>>>,
    history: History,
    guard: guard::Guard,
    allow_sidecars: bool,
    blocking: Arc<Semaphore>,
}

impl App {
    /// The workspace's PBX profiles (none if the file is broken: the scenario then says which
    /// profile it misses, and the Settings tab says what is wrong with the file).
    fn profiles(&self) -> scenario::Profiles {
        scenario::Profiles::load_dir_with(&self.workspace, Symlinks::Refuse).unwrap_or_default()
    }

    fn current(&self) -> Option<Arc<Run>> {
        self.current.lock().expect("current run lock").clone()
    }
}

/// Runs `f` on the blocking pool, at most [`BLOCKING_SLOTS`] at once and within
/// [`BLOCKING_LIMIT`] (waiting included), so no request can stall the runtime's threads. A job
/// past the limit is answered 503; it keeps its slot until it really ends.
async fn offload<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(Arc<App>) -> T + Send + 'static,
) -> Result<T, Response> {
    let app = app.clone();
    let slots = app.blocking.clone();
    let work = async move {
        let permit = slots.acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(app)
        })
        .await
        .ok()
    };
    match tokio::time::timeout(BLOCKING_LIMIT, work).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request failed inside the server",
        )),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took more than {} s and was given up",
                BLOCKING_LIMIT.as_secs()
            ),
        )),
    }
}

/// [`offload`] for a handler whose whole work is blocking.
async fn offloaded(
    app: &Arc<App>,
    f: impl FnOnce(Arc<App>) -> Response + Send + 'static,
) -> Response {
    offload(app, f).await.unwrap_or_else(|r| r)
}

/// A run started from the UI: its events so far and a channel for the ones to come.
struct Run {
    id: String,
    scenario: String,
    /// Within a budget ([`events::Retained`]): a flood of messages to the run's UAs must not
    /// grow the server; past it, messages and packets are counted, not kept.
    events: Mutex<Retained>,
    tx: broadcast::Sender<Event>,
    stop: CancellationToken,
    /// Cancelled when the run has finished (cleanup included).
    done: CancellationToken,
}

struct RunSink {
    run: Arc<Run>,
    app: Arc<App>,
}

impl EventSink for RunSink {
    fn event(&self, event: &Event) {
        // Stored and sent under one lock, so a follower's snapshot plus subscription misses nothing.
        let mut events = self.run.events.lock().expect("events lock");
        events.push(event);
        // `run_finished` is the last event, after the cleanup: the run is in the history and
        // over (a new one may start) before anyone hears of it.
        if matches!(event.event, EventKind::RunFinished(_)) {
            if let Err(e) = self.app.history.finished(&self.run.id, events.events()) {
                eprintln!("callflow serve: run history: {e}");
            }
            self.run.done.cancel();
        }
        let _ = self.run.tx.send(event.clone());
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/scenarios", get(list))
        .route("/api/scenarios/{name}", get(read).put(save).delete(remove))
        .route("/api/scenarios/{name}/rename", post(rename))
        .route("/api/scenarios/{name}/validate", post(validate_text))
        .route("/api/runs", post(start))
        .route("/api/runs/current", get(current))
        .route("/api/runs/current/stop", post(stop))
        .route("/api/runs/current/events", get(follow))
        .route("/api/scenarios/{name}/flow", get(read_flow).put(save_flow))
        .route("/api/flow/check", post(check_flow))
        .route("/api/history", get(history_list))
        .route("/api/history/prune", post(history_prune))
        .route("/api/history/{id}", get(history_get).delete(history_delete))
        .route("/api/history/{id}/ladder", get(history_ladder))
        .route("/api/profiles", get(profiles_get).put(profiles_put))
        .route("/api/schema", get(schema_get))
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    include_str!("app.js"),
                )
            }),
        )
        .route(
            "/app.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    include_str!("app.css"),
                )
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            scenario::MAX_SCENARIO_BYTES as usize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::check,
        ))
        .with_state(app)
}

/// The page, carrying this start's token for the requests it makes.
async fn page(State(app): State<Arc<App>>) -> Response {
    Html(include_str!("index.html").replace("__CALLFLOW_TOKEN__", app.guard.token()))
        .into_response()
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
        && [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e))
        // The PBX profiles live next to the scenarios but are settings, not a scenario.
        && name != scenario::PROFILES_FILE;
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

/// How `text` reads as the workspace file `path` (paths it names resolve next to it).
fn validation(app: &App, text: &str, path: &std::path::Path) -> serde_json::Value {
    match scenario::parse_with_profiles(text, &path.display().to_string(), &app.profiles()) {
        Ok(_) => json!({ "valid": true }),
        Err(d) => json!({ "valid": false, "diagnostics": d.to_string() }),
    }
}

/// A workspace file's text: 404 if there is none, 403 for a link or what is not a regular file
/// within the size limit (it is never opened through a link, never waited on).
fn read_text(path: &std::path::Path, name: &str) -> Result<String, Response> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no scenario `{name}`"),
        ));
    }
    scenario::read_source(path, Symlinks::Refuse).map_err(|d| {
        let why = d
            .errors()
            .next()
            .map_or("cannot be read", |e| e.message.as_str());
        error(StatusCode::FORBIDDEN, format!("`{name}`: {why}"))
    })
}

/// Writes a workspace file whole (a new file renamed over the old one, so a save is never half
/// done), refusing to write through a link or over what is not a regular file.
fn write_text(path: &std::path::Path, name: &str, text: &str) -> Result<(), Response> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let what = if meta.file_type().is_symlink() {
            Some("a symbolic link")
        } else if !meta.is_file() {
            Some("not a regular file")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(error(
                StatusCode::FORBIDDEN,
                format!("`{name}` is {what}; callflow serve writes only the workspace's own files"),
            ));
        }
    }
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(".{name}.saving-{}", guard::random_hex(8)));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot save {name}: {e}"),
        ));
    }
    Ok(())
}

async fn list(State(app): State<Arc<App>>) -> Response {
    offloaded(&app, |app| {
        let Ok(dir) = std::fs::read_dir(&app.workspace) else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the workspace",
            );
        };
        // Regular files only: a link is not followed, so it is not listed.
        let mut names: Vec<String> = dir
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| scenario_path(&app, n).is_ok())
            .collect();
        names.sort();
        Json(json!({ "scenarios": names })).into_response()
    })
    .await
}

async fn read(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let path = match scenario_path(&app, &name) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    offloaded(&app, move |_| match read_text(&path, &name) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(r) => r,
    })
    .await
}

async fn save(State(app): State<Arc<App>>, Path(name): Path<String>, text: String) -> Response {
    let path = match scenario_path(&app, &name) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    offloaded(&app, move |app| {
        if let Err(r) = write_text(&path, &name, &text) {
            return r;
        }
        Json(validation(&app, &text, &path)).into_response()
    })
    .await
}

/// Validates text as the scenario `name` would be read, without saving it.
async fn validate_text(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    text: String,
) -> Response {
    match scenario_path(&app, &name) {
        Ok(path) => {
            offloaded(&app, move |app| {
                Json(validation(&app, &text, &path)).into_response()
            })
            .await
        }
        Err(r) => r.into_response(),
    }
}

async fn remove(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let path = match scenario_path(&app, &name) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    // A link is removed itself, never what it leads to.
    offloaded(&app, move |_| match std::fs::remove_file(path) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => error(StatusCode::NOT_FOUND, format!("no scenario `{name}`")),
    })
    .await
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
    offloaded(&app, move |_| {
        if std::fs::symlink_metadata(&to).is_ok() {
            return error(
                StatusCode::CONFLICT,
                format!("`{}` exists already", body.to),
            );
        }
        match std::fs::rename(from, to) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(_) => error(StatusCode::NOT_FOUND, format!("no scenario `{name}`")),
        }
    })
    .await
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
    let name = body.scenario.clone();
    let parsed = match offload(&app, move |app| {
        read_scenario(&path, &name, &app.profiles())
    })
    .await
    {
        Ok(Ok((_, parsed))) => parsed,
        Ok(Err(r)) | Err(r) => return r,
    };
    let scenario = match parsed {
        Ok((s, _)) => s,
        Err(d) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "the scenario is invalid", "diagnostics": d.to_string() })),
            )
                .into_response();
        }
    };
    if !scenario.sidecars.is_empty() && !app.allow_sidecars {
        let commands: Vec<String> = scenario
            .sidecars
            .iter()
            .map(|s| format!("`{}`", s.name))
            .collect();
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "`{}` starts sidecar processes ({}); this server was started without --allow-sidecars, so it runs no scenario that starts processes (run it with `callflow run`, or restart the server with --allow-sidecars)",
                body.scenario,
                commands.join(", ")
            ),
        );
    }
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
            events: Mutex::new(Retained::default()),
            tx: broadcast::channel(4096).0,
            stop: opts.stop.clone(),
            done: CancellationToken::new(),
        });
        *current = Some(run.clone());
        run
    };
    let bus = EventBus::new(vec![Arc::new(RunSink {
        run: run.clone(),
        app: app.clone(),
    })]);
    let id = run.id.clone();
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let (row_id, row_scenario) = (id.clone(), run.scenario.clone());
    if let Ok(Err(e)) = offload(&app, move |app| {
        app.history.started(&row_id, &row_scenario, now_us)
    })
    .await
    {
        eprintln!("callflow serve: run history: {e}");
    }
    let app2 = app;
    tokio::spawn(async move {
        let _report = orchestrator::run(&scenario, opts, bus).await;
        let events = run.events.lock().expect("events lock").events().to_vec();
        let finished = events
            .last()
            .is_some_and(|e| matches!(e.event, EventKind::RunFinished(_)));
        if !finished {
            let id = run.id.clone();
            if let Ok(Err(e)) = offload(&app2, move |app| app.history.finished(&id, &events)).await
            {
                eprintln!("callflow serve: run history: {e}");
            }
        }
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
        .events()
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
        (events.events().to_vec(), run.tx.subscribe())
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
                run.events.lock().expect("events lock").events().to_vec()
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        if send_all(&mut socket, batch).await != Some(false) {
            break;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// A flow written one node and one edge per line, so a diagnostic's line names what it concerns.
struct FlowText {
    text: String,
    /// Per line (from 1): the node id it holds (an edge's line holds its source node).
    line_owner: Vec<Option<String>>,
}

fn flow_text(flow: &serde_json::Value) -> FlowText {
    let list = |key: &str| {
        flow.get(key)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let (nodes, edges) = (list("nodes"), list("edges"));
    let mut text = String::from("{\"nodes\": [\n");
    let mut line_owner = vec![None, None];
    let owner =
        |v: &serde_json::Value, key: &str| v.get(key).and_then(|i| i.as_str()).map(str::to_owned);
    for (i, n) in nodes.iter().enumerate() {
        text.push_str(&n.to_string());
        text.push_str(if i + 1 < nodes.len() { ",\n" } else { "\n" });
        line_owner.push(owner(n, "id"));
    }
    text.push_str("],\n\"edges\": [\n");
    line_owner.extend([None, None]);
    for (i, e) in edges.iter().enumerate() {
        text.push_str(&e.to_string());
        text.push_str(if i + 1 < edges.len() { ",\n" } else { "\n" });
        line_owner.push(owner(e, "source"));
    }
    text.push_str("]}\n");
    FlowText { text, line_owner }
}

/// How a scenario's text reads: the scenario and its warnings, or every error.
type Parsed = Result<(scenario::Scenario, scenario::Diagnostics), scenario::Diagnostics>;

/// A scenario file as it stands: its text and how it reads with `profiles`, or the answer
/// saying why it cannot be read.
fn read_scenario(
    path: &std::path::Path,
    name: &str,
    profiles: &scenario::Profiles,
) -> Result<(String, Parsed), Response> {
    let text = read_text(path, name)?;
    let parsed = scenario::parse_with_profiles(&text, &path.display().to_string(), profiles);
    Ok((text, parsed))
}

/// Parses an edited flow; the diagnostics name their nodes.
fn check(
    profiles: &scenario::Profiles,
    flow: &serde_json::Value,
    name: &str,
) -> (Option<scenario::Scenario>, Vec<serde_json::Value>) {
    let ft = flow_text(flow);
    let (scenario, diags) = match scenario::parse_with_profiles(&ft.text, name, profiles) {
        Ok((s, warnings)) => (Some(s), warnings),
        Err(d) => (None, d),
    };
    let list = diags
        .0
        .iter()
        .map(|d| {
            json!({
                "node": ft.line_owner.get(d.pos.line).cloned().flatten(),
                "severity": if d.severity == scenario::Severity::Error { "error" } else { "warning" },
                "message": d.message,
                "help": d.help,
            })
        })
        .collect();
    (scenario, list)
}

async fn read_flow(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let path = match scenario_path(&app, &name) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    offloaded(&app, move |app| {
        let profiles = app.profiles();
        let (text, parsed) = match read_scenario(&path, &name, &profiles) {
            Ok(found) => found,
            Err(r) => return r,
        };
        match parsed {
            Ok((s, _)) => {
                // A sipflow file is its own flow (its positions kept); YAML is laid out.
                let flow = match s.format {
                    scenario::Format::SipflowJson => serde_json::from_str(&text)
                        .unwrap_or_else(|_| scenario::to_flow(&s, &profiles)),
                    scenario::Format::Native => scenario::to_flow(&s, &profiles),
                };
                let yaml = scenario::to_native(&s, &profiles).map_err(|e| e.to_string());
                Json(json!({
                    "flow": flow,
                    "yaml": yaml.as_ref().ok(),
                    "yaml_error": yaml.err(),
                    "sidecars": s.sidecars.len(),
                    "sidecars_allowed": app.allow_sidecars,
                }))
                .into_response()
            }
            Err(d) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "the scenario is invalid: fix it in the text view", "diagnostics": d.to_string() })),
            )
                .into_response(),
        }
    })
    .await
}

#[derive(Deserialize)]
struct FlowBody {
    flow: serde_json::Value,
    #[serde(default)]
    name: Option<String>,
}

async fn check_flow(State(app): State<Arc<App>>, Json(body): Json<FlowBody>) -> Response {
    // Checked as the workspace file it names, so the paths it holds (a PlayAudio `file:`)
    // resolve in the workspace, never elsewhere.
    let name = body.name.as_deref().unwrap_or("scenario.yaml");
    let path = match scenario_path(&app, name) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    offloaded(&app, move |app| {
        let profiles = app.profiles();
        let (s, diagnostics) = check(&profiles, &body.flow, &path.display().to_string());
        let yaml = s
            .as_ref()
            .map(|s| scenario::to_native(s, &profiles).map_err(|e| e.to_string()));
        Json(json!({
            "valid": s.is_some(),
            "diagnostics": diagnostics,
            "yaml": yaml.as_ref().and_then(|y| y.as_ref().ok()),
            "yaml_error": yaml.and_then(|y| y.err()),
        }))
        .into_response()
    })
    .await
}

async fn save_flow(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Json(body): Json<FlowBody>,
) -> Response {
    let path = match scenario_path(&app, &name) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    offloaded(&app, move |app| {
        save_flow_now(&app, &path, &name, &body.flow)
    })
    .await
}

fn save_flow_now(
    app: &App,
    path: &std::path::Path,
    name: &str,
    flow: &serde_json::Value,
) -> Response {
    let profiles = app.profiles();
    let (s, diagnostics) = check(&profiles, flow, &path.display().to_string());
    let valid = s.is_some();
    let text = if name.ends_with(".json") {
        format!("{flow:#}\n")
    } else {
        let Some(mut s) = s else {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "not saved: the scenario has errors (they are on their nodes)", "diagnostics": diagnostics })),
            )
                .into_response();
        };
        // What a flow cannot hold is kept from the file: its name and sidecars.
        if let Ok((_, Ok((old, _)))) = read_scenario(path, name, &profiles) {
            s.name = old.name;
            s.sidecars = old.sidecars;
        } else {
            s.name = name
                .trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .to_owned();
        }
        match scenario::to_native(&s, &profiles) {
            Ok(t) => t,
            Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        }
    };
    if let Err(r) = write_text(path, name, &text) {
        return r;
    }
    Json(json!({ "saved": name, "valid": valid, "diagnostics": diagnostics, "text": text }))
        .into_response()
}

fn db_error(e: rusqlite::Error) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("run history: {e}"),
    )
}

async fn history_list(State(app): State<Arc<App>>) -> Response {
    offloaded(&app, |app| match app.history.list(500) {
        Ok(runs) => Json(json!({ "runs": runs })).into_response(),
        Err(e) => db_error(e),
    })
    .await
}

/// A run of the history with its events, or the answer saying why not.
fn stored_run(app: &App, id: &str) -> Result<(RunRow, Vec<Event>), Response> {
    match app.history.get(id) {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            format!("no run `{id}` in the history"),
        )),
        Err(e) => Err(db_error(e)),
    }
}

async fn history_get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    offloaded(&app, move |app| match stored_run(&app, &id) {
        Ok((run, events)) => Json(json!({ "run": run, "events": events })).into_response(),
        Err(r) => r,
    })
    .await
}

async fn history_ladder(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    offloaded(&app, move |app| match stored_run(&app, &id) {
        Ok((_, events)) => Html(report::Ladder::from_events(&events).to_html()).into_response(),
        Err(r) => r,
    })
    .await
}

async fn history_delete(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    offloaded(&app, move |app| match app.history.delete(&id) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no finished run `{id}` in the history"),
        ),
        Err(e) => db_error(e),
    })
    .await
}

#[derive(Deserialize)]
struct Prune {
    keep: usize,
}

async fn history_prune(State(app): State<Arc<App>>, Json(body): Json<Prune>) -> Response {
    offloaded(&app, move |app| match app.history.prune(body.keep) {
        Ok(n) => Json(json!({ "deleted": n })).into_response(),
        Err(e) => db_error(e),
    })
    .await
}

/// A profile as the Settings tab edits it (passwords as written: `${VAR}` stays).
#[derive(serde::Serialize, Deserialize, Default)]
struct ProfileForm {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    auth_user: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    outbound_proxy: Option<String>,
}

/// The table of every command and event and their keys (`scenario::schema`), which the editor
/// builds its palette and property panels from.
async fn schema_get() -> Response {
    Json(scenario::schema::to_json()).into_response()
}

async fn profiles_get(State(app): State<Arc<App>>) -> Response {
    offloaded(&app, profiles_now).await
}

fn profiles_now(app: Arc<App>) -> Response {
    match scenario::Profiles::load_dir_with(&app.workspace, Symlinks::Refuse) {
        Ok(p) => {
            let forms: std::collections::BTreeMap<&String, ProfileForm> = p
                .profiles
                .iter()
                .map(|(name, pbx)| {
                    (
                        name,
                        ProfileForm {
                            host: pbx.host.clone(),
                            port: pbx.port,
                            transport: Some(pbx.transport.as_str().to_owned()),
                            auth_user: pbx.auth_user.clone(),
                            password: pbx.password_text.clone(),
                            realm: pbx.realm.clone(),
                            outbound_proxy: pbx.outbound_proxy.clone(),
                        },
                    )
                })
                .collect();
            Json(json!({ "file": scenario::PROFILES_FILE, "profiles": forms })).into_response()
        }
        Err(d) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": format!("{} is invalid", scenario::PROFILES_FILE), "diagnostics": d.to_string() })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ProfilesBody {
    profiles: std::collections::BTreeMap<String, ProfileForm>,
}

async fn profiles_put(State(app): State<Arc<App>>, Json(body): Json<ProfilesBody>) -> Response {
    offloaded(&app, move |app| profiles_save(&app, body)).await
}

fn profiles_save(app: &App, body: ProfilesBody) -> Response {
    let mut profiles = scenario::Profiles::default();
    for (name, f) in body.profiles {
        let empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let transport = match f.transport.as_deref().map(str::trim) {
            None | Some("") => scenario::SipTransport::Udp,
            Some(t) => match t.parse::<scenario::SipTransport>() {
                Ok(t) => t,
                Err(e) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("profile `{name}`: {e}"),
                    );
                }
            },
        };
        if name.trim().is_empty() || f.host.trim().is_empty() {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("profile `{name}` needs a name and a host"),
            );
        }
        profiles.profiles.insert(
            name.clone(),
            scenario::Pbx {
                profile: Some(name),
                host: f.host,
                port: f.port,
                transport,
                auth_user: empty(f.auth_user),
                password_text: empty(f.password),
                realm: empty(f.realm),
                outbound_proxy: empty(f.outbound_proxy),
            },
        );
    }
    let text = match profiles.to_yaml() {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // Checked as it will be read (an unset `${VAR}` is an error) before anything is written.
    if let Err(d) = scenario::Profiles::parse(&text, scenario::PROFILES_FILE) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "not saved", "diagnostics": d.to_string() })),
        )
            .into_response();
    }
    match write_text(
        &app.workspace.join(scenario::PROFILES_FILE),
        scenario::PROFILES_FILE,
        &text,
    ) {
        Ok(()) => Json(json!({ "saved": scenario::PROFILES_FILE, "text": text })).into_response(),
        Err(r) => r,
    }
}
