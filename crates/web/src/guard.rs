//! What a request must show before any handler runs (docs/security.md):
//! - a `Host` that names this server (its listen address, `localhost`, `127.0.0.1` or `[::1]`
//!   with its port, or a name given with `--allow-host`): a page that rebinds its own DNS name to
//!   127.0.0.1 is refused with 421;
//! - on every state-changing request and on the WebSocket upgrade: no foreign `Origin` (or
//!   `Sec-Fetch-Site: cross-site`), and the token of this start (header `X-Callflow-Token`, or
//!   `?token=` on the WebSocket, which browsers cannot give headers) that only the server's own
//!   page carries: 403;
//! - a body of `application/json` (or the scenario's own YAML/JSON type on the scenario text
//!   routes), so no cross-site "simple" request (`text/plain`, a form) reaches a handler: 415.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// How `callflow serve` is started.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// More names the server answers to (`name` or `name:port`), for a reverse proxy or a host
    /// name; the listen address and the loopback names are always accepted.
    pub allowed_hosts: Vec<String>,
    /// Whether scenarios that start sidecar processes may run (they run any command).
    pub allow_sidecars: bool,
    /// The token the page must send; a random one per start when `None`.
    pub token: Option<String>,
}

/// The header the page sends its token in.
pub const TOKEN_HEADER: &str = "x-callflow-token";

pub(crate) struct Guard {
    /// Accepted `Host` values, lower-case.
    hosts: Vec<String>,
    token: String,
}

impl Guard {
    pub(crate) fn new(addr: SocketAddr, options: &ServeOptions) -> Self {
        let port = addr.port();
        let mut hosts = vec![
            addr.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        for h in &options.allowed_hosts {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() {
                continue;
            }
            // `name:port` or `[v6]:port`; a bare name (or `[v6]`) is accepted with and without
            // the listen port.
            let has_port = h.rsplit_once(':').is_some_and(|(name, p)| {
                (!name.contains(':') || name.ends_with(']')) && p.parse::<u16>().is_ok()
            });
            if has_port {
                hosts.push(h);
            } else {
                hosts.push(format!("{h}:{port}"));
                hosts.push(h);
            }
        }
        for h in &mut hosts {
            *h = h.to_ascii_lowercase();
        }
        Self {
            hosts,
            token: options.token.clone().unwrap_or_else(|| random_hex(16)),
        }
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    fn host_ok(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    fn origin_ok(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        ["http://", "https://"].iter().any(|scheme| {
            origin
                .strip_prefix(scheme)
                .is_some_and(|rest| self.host_ok(rest.trim_end_matches('/')))
        })
    }

    fn token_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|t| constant_time_eq(t.as_bytes(), self.token.as_bytes()))
    }
}

/// `bytes` random bytes from the OS, in hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(code: StatusCode, message: String) -> Response {
    (code, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The body types a route takes: JSON everywhere; a scenario's text routes also take YAML.
fn media_type_ok(path: &str, content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" {
        return true;
    }
    let scenario_text = path.starts_with("/api/scenarios/")
        && (path.matches('/').count() == 3 || path.ends_with("/validate"));
    scenario_text
        && matches!(
            essence.as_str(),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
        )
}

pub(crate) async fn check(
    State(app): State<Arc<crate::App>>,
    req: Request,
    next: Next,
) -> Response {
    guarded(&app.guard, req, next).await
}

/// Guards the routes of another server of this process (`callflow load --metrics`) as
/// `callflow serve`'s are: every request must name the server in its `Host` (a page that
/// rebinds its DNS name to the address cannot read the answers), a state-changing one is
/// refused, and every answer carries the same hardening headers.
pub fn guard_router(router: axum::Router, addr: SocketAddr) -> axum::Router {
    let guard = Arc::new(Guard::new(addr, &ServeOptions::default()));
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let guard = guard.clone();
            async move { guarded(&guard, req, next).await }
        },
    ))
}

/// The checks of docs/security.md, then the route, then the hardening headers.
async fn guarded(guard: &Guard, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = header_str(headers, header::HOST)
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(h) if guard.host_ok(&h) => {}
        Some(h) => {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this server does not answer to the host `{}`; open it as http://localhost:PORT/, or start it with --allow-host NAME",
                    h.escape_default()
                ),
            );
        }
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a request needs a Host header".into(),
            );
        }
    }
    let upgrade =
        header_str(headers, header::UPGRADE).is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes || upgrade {
        if let Some(origin) = header_str(headers, header::ORIGIN)
            && !guard.origin_ok(origin)
        {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request from `{}` refused",
                    origin.escape_default()
                ),
            );
        }
        if header_str(headers, "sec-fetch-site") == Some("cross-site") {
            return refuse(StatusCode::FORBIDDEN, "cross-site request refused".into());
        }
        let token = header_str(headers, TOKEN_HEADER)
            .map(str::to_owned)
            .or_else(|| {
                // Browsers give a WebSocket no headers of its own: the token rides in the query.
                upgrade
                    .then(|| req.uri().query())
                    .flatten()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
                    .map(str::to_owned)
            });
        if !guard.token_ok(token.as_deref()) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "missing or wrong {TOKEN_HEADER}: state-changing requests come from the page this server serves"
                ),
            );
        }
        let has_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
        if has_body && !media_type_ok(req.uri().path(), header_str(headers, header::CONTENT_TYPE)) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be application/json (a scenario's text may also be application/yaml)".into(),
            );
        }
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        let g = Guard::new(
            "127.0.0.1:7070".parse().unwrap(),
            &ServeOptions {
                allowed_hosts: vec!["lab.example".into(), "proxy:8443".into()],
                ..Default::default()
            },
        );
        for ok in [
            "127.0.0.1:7070",
            "LOCALHOST:7070",
            "[::1]:7070",
            "lab.example",
            "lab.example:7070",
            "proxy:8443",
        ] {
            assert!(g.host_ok(ok), "{ok}");
        }
        for bad in [
            "evil.example:7070",
            "127.0.0.1:7071",
            "localhost",
            "proxy",
            "127.0.0.1",
        ] {
            assert!(!g.host_ok(bad), "{bad}");
        }
        assert!(g.origin_ok("http://localhost:7070"));
        assert!(g.origin_ok("https://lab.example"));
        assert!(!g.origin_ok("http://evil.example"));
        assert!(!g.origin_ok("null"));
        assert!(!g.origin_ok("http://localhost:7070.evil.example"));
        assert!(media_type_ok(
            "/api/scenarios/a.yaml",
            Some("application/yaml")
        ));
        assert!(media_type_ok(
            "/api/scenarios/a.yaml/validate",
            Some("text/yaml; charset=utf-8")
        ));
        assert!(!media_type_ok("/api/runs", Some("application/yaml")));
        assert!(!media_type_ok("/api/runs/current/stop", Some("text/plain")));
        assert!(!media_type_ok("/api/scenarios/a.yaml", None));
        assert_eq!(g.token().len(), 32);
    }
}
