//! Scenario model, parsers and validation for callflow.
//!
//! Two input formats parse into one [`Scenario`] model:
//! - sipflow's flow JSON (`{nodes, edges}` with `sipInstance`, `command` and `event` nodes), imported as-is;
//! - the native YAML format, written by hand and kept in git (see `docs/scenario-format.md`).
//!
//! The format is detected from the content: a document whose top level has `nodes` and `edges` is a
//! sipflow flow; anything else is native. Every problem is reported as a [`Diagnostic`] with
//! `file:line:col`, before anything touches the network.
//!
//! ```
//! let text = r#"
//! name: demo
//! instances:
//!   alice:
//!     dn: "100"
//!     steps:
//!       - command: MakeCall
//!         target: "200"
//!       - command: Release
//!   bob:
//!     dn: "200"
//!     steps:
//!       - event: INCOMING
//!       - command: Answer
//!       - event: DISCONNECTED
//! "#;
//! let scenario = callflow_scenario::parse_str(text, "demo.yaml").unwrap();
//! assert_eq!(scenario.instances.len(), 2);
//! ```

mod diag;
mod model;
mod native;
mod options;
mod profiles;
pub mod schema;
mod sipflow;
mod spanned;
mod validate;
mod write;

pub use diag::{Diagnostic, Diagnostics, Pos, Severity};
pub use model::{
    Action, Check, DEFAULT_CALL_ID, DEFAULT_MIN_SE, DEFAULT_REDIRECTS, DEFAULT_TIMEOUT, Format,
    HeaderTest, Health, Instance, InstanceIdx, Node, NodeIdx, NodeOptions, Pbx, Rel100, Scenario,
    Sidecar, SipTransport, TlsSettings, Until, WsSettings,
};
pub use profiles::{PROFILES_FILE, Profiles};
pub use write::{WriteError, to_flow, to_native};

use std::path::Path;

pub use media::file::Symlinks;
pub use spanned::{MAX_DEPTH, MAX_DURATION, expand_env_keeping};

/// The largest scenario file read: 4 MiB, some 20,000 steps (the largest bundled file is 4 KB).
pub const MAX_SCENARIO_BYTES: u64 = 4 << 20;

/// Reads and parses a scenario file, then validates it.
///
/// Returns the scenario with any warnings, or every error found.
pub fn load(path: &Path) -> Result<(Scenario, Diagnostics), Diagnostics> {
    let file = path.display().to_string();
    let text = read_source(path, Symlinks::Follow)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let profiles = Profiles::load_dir(dir)?;
    parse_with_profiles(&text, &file, &profiles)
}

/// The text of a scenario (or settings) file: a regular file of at most
/// [`MAX_SCENARIO_BYTES`] in UTF-8; anything else is an error at its position (a FIFO or a
/// device is refused at once, never waited on).
pub fn read_source(path: &Path, symlinks: Symlinks) -> Result<String, Diagnostics> {
    let file = path.display().to_string();
    let bytes = media::file::read_regular(path, MAX_SCENARIO_BYTES, symlinks).map_err(|e| {
        Diagnostics::from(Diagnostic::error(
            &file,
            Pos::new(1, 1),
            format!("cannot read the file: {e}"),
        ))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // Safe: the prefix up to `valid_up_to` is UTF-8 by definition.
        let valid = std::str::from_utf8(valid).unwrap_or_default();
        let line = valid.matches('\n').count() + 1;
        let col = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Diagnostics::from(Diagnostic::error(
            &file,
            Pos::new(line, col),
            "the file is not UTF-8 text: an invalid byte is here",
        ))
    })
}

/// Parses and validates scenario text; `file` names it in diagnostics. Warnings are dropped.
pub fn parse_str(text: &str, file: &str) -> Result<Scenario, Diagnostics> {
    parse_with_warnings(text, file).map(|(s, _)| s)
}

/// Parses and validates scenario text, keeping warnings (no PBX profiles).
pub fn parse_with_warnings(text: &str, file: &str) -> Result<(Scenario, Diagnostics), Diagnostics> {
    parse_with_profiles(text, file, &Profiles::default())
}

/// Parses and validates scenario text whose instances may name PBX `profiles`, keeping warnings.
pub fn parse_with_profiles(
    text: &str,
    file: &str,
    profiles: &Profiles,
) -> Result<(Scenario, Diagnostics), Diagnostics> {
    parse_keeping(text, file, profiles, &[])
}

/// Reads, parses and validates a scenario file like [`load`], leaving each `${NAME}` whose NAME
/// is in `keep` as written (a load's per-iteration data: `callflow load --inf`), where
/// [`load`] takes every `${NAME}` from the environment.
pub fn load_keeping(path: &Path, keep: &[String]) -> Result<(Scenario, Diagnostics), Diagnostics> {
    let file = path.display().to_string();
    let text = read_source(path, Symlinks::Follow)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let profiles = Profiles::load_dir(dir)?;
    parse_keeping(&text, &file, &profiles, keep)
}

/// [`parse_with_profiles`], leaving the `${NAME}`s of `keep` as written.
pub fn parse_keeping(
    text: &str,
    file: &str,
    profiles: &Profiles,
    keep: &[String],
) -> Result<(Scenario, Diagnostics), Diagnostics> {
    // Every diagnostic, error or warning, leaves with its `${VAR}` values written back.
    let redact = |mut d: Diagnostics| {
        d.redact_env(text);
        d
    };
    parse_unredacted(text, file, profiles, keep)
        .map(|(s, warnings)| (s, redact(warnings)))
        .map_err(redact)
}

fn parse_unredacted(
    text: &str,
    file: &str,
    profiles: &Profiles,
    keep: &[String],
) -> Result<(Scenario, Diagnostics), Diagnostics> {
    let format = detect_format(text, file)?;
    let root = spanned::parse(text, file, format)?;
    let mut diags = Diagnostics::default();
    let scenario = match format {
        Format::SipflowJson => sipflow::convert(&root, file, profiles, keep, &mut diags),
        Format::Native => native::convert(&root, file, profiles, keep, &mut diags),
    };
    let Some(scenario) = scenario else {
        return Err(diags);
    };
    validate::validate(&scenario, &mut diags);
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok((scenario, diags))
    }
}

/// Detects the format: JSON text (starting with `{`) is sipflow's flow; anything else is native YAML.
fn detect_format(text: &str, _file: &str) -> Result<Format, Diagnostics> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        Ok(Format::SipflowJson)
    } else {
        Ok(Format::Native)
    }
}

/// A path a scenario names, relative to the scenario file's folder (or to the working
/// directory for a scenario that is not a file).
pub fn resolve_path(scenario_file: &str, path: &str) -> std::path::PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match Path::new(scenario_file).parent() {
        Some(dir) if !scenario_file.contains(':') || Path::new(scenario_file).exists() => {
            dir.join(p)
        }
        _ => p.to_path_buf(),
    }
}
