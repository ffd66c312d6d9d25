//! A small value tree in which every node knows its `line:col`, built from saphyr's marked YAML.
//!
//! JSON is a subset of YAML 1.2, so sipflow's flow JSON goes through the same loader (after
//! serde_json has checked its syntax, whose messages are the better ones for JSON).

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::model::Format;
use saphyr::{MarkedYaml, Scalar, YamlData};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<SNode>),
    /// Keys keep their own position, in document order.
    Map(Vec<(SKey, SNode)>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SKey {
    pub(crate) name: String,
    pub(crate) pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SNode {
    pub(crate) pos: Pos,
    pub(crate) value: Value,
}

impl SNode {
    pub(crate) fn get(&self, key: &str) -> Option<&Self> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn entries(&self) -> &[(SKey, Self)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The value as text, for scalars (numbers and booleans are written back as text).
    pub(crate) fn as_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// How deep lists and mappings may nest. The deepest real scenario is about 8 levels (a sipflow
/// node's `data.headers` list of maps); the limit keeps a crafted file from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

/// The longest duration a scenario may write (a timer further out than this is a typo, and
/// `Instant + Duration` must not overflow).
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

pub(crate) fn parse(text: &str, file: &str, format: Format) -> Result<SNode, Diagnostics> {
    let text = text.trim_start_matches('\u{feff}');
    if text.trim().is_empty() {
        return Err(Diagnostic::error(
            file,
            Pos::new(1, 1),
            "the file is empty: a scenario needs `instances` (or a sipflow flow's `nodes` and `edges`)",
        )
        .into());
    }
    // JSON's own messages are the better ones for JSON (serde_json bounds its nesting itself;
    // the tree is dropped at once).
    if format == Format::SipflowJson
        && let Err(e) = serde_json::from_str::<serde_json::Value>(text)
    {
        return Err(Diagnostic::error(
            file,
            Pos::new(e.line().max(1), e.column().max(1)),
            format!("invalid JSON: {e}"),
        )
        .into());
    }
    let docs = load_bounded(text).map_err(|(m, what)| {
        Diagnostics::from(Diagnostic::error(
            file,
            Pos::new(m.line(), m.col() + 1),
            what,
        ))
    })?;
    match docs.len() {
        0 => Err(Diagnostic::error(file, Pos::new(1, 1), "the file holds no YAML document").into()),
        1 => convert(&docs[0], file),
        _ => Err(Diagnostic::error(
            file,
            pos_of(&docs[1]),
            "one scenario per file: a second YAML document starts here",
        )
        .into()),
    }
}

/// saphyr's loader fed event by event (its own `load` recurses once per nesting level), with
/// the nesting bounded by [`MAX_DEPTH`].
fn load_bounded(text: &str) -> Result<Vec<MarkedYaml<'_>>, (saphyr::Marker, String)> {
    use saphyr_parser::{Event, Parser, SpannedEventReceiver};
    let mut loader = saphyr::YamlLoader::<MarkedYaml<'_>>::default();
    let mut depth = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) =
            item.map_err(|e| (*e.marker(), format!("invalid YAML: {}", e.info())))?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err((
                        span.start,
                        format!(
                            "lists and mappings nest more than {MAX_DEPTH} deep here; a scenario needs far fewer levels"
                        ),
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        loader.on_event(event, span);
        if let Some(e) = loader.error() {
            return Err((*e.marker(), format!("invalid YAML: {}", e.info())));
        }
    }
    Ok(loader.into_documents())
}

fn pos_of(node: &MarkedYaml<'_>) -> Pos {
    Pos::new(node.span.start.line(), node.span.start.col() + 1)
}

fn convert(node: &MarkedYaml<'_>, file: &str) -> Result<SNode, Diagnostics> {
    let pos = pos_of(node);
    let value = match &node.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(raw, _, _) => Value::Str(raw.to_string()),
        YamlData::Sequence(items) => Value::Seq(
            items
                .iter()
                .map(|i| convert(i, file))
                .collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (k, v) in map {
                let name = match &k.data {
                    YamlData::Value(s) => match scalar(s) {
                        Value::Str(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => format!("{other:?}"),
                    },
                    _ => {
                        return Err(Diagnostic::error(
                            file,
                            pos_of(k),
                            "mapping keys must be plain names",
                        )
                        .into());
                    }
                };
                entries.push((
                    SKey {
                        name,
                        pos: pos_of(k),
                    },
                    convert(v, file)?,
                ));
            }
            Value::Map(entries)
        }
        YamlData::Tagged(_, inner) => return convert(inner, file),
        YamlData::Alias(_) => {
            return Err(Diagnostic::error(
                file,
                pos,
                "YAML aliases are not supported in scenarios",
            )
            .into());
        }
        YamlData::BadValue => {
            return Err(Diagnostic::error(file, pos, "this value cannot be read").into());
        }
    };
    Ok(SNode { pos, value })
}

fn scalar(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Int(*i),
        Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
        Scalar::String(s) => Value::Str(s.to_string()),
    }
}

/// Reads typed fields out of spanned mappings and records what is wrong with them.
pub(crate) struct Fields<'a> {
    pub(crate) file: &'a str,
    pub(crate) diags: &'a mut Diagnostics,
    /// `${NAME}`s left as written (a load's per-iteration data, `--inf`), not taken from the
    /// environment.
    pub(crate) keep: &'a [String],
}

impl Fields<'_> {
    pub(crate) fn error(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(self.file, pos, msg));
    }

    pub(crate) fn warn(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(Diagnostic::warning(self.file, pos, msg));
    }

    /// A string field; numbers are accepted and written as text (DNs are often written as numbers).
    /// `${NAME}` is replaced by the environment variable NAME (for secrets).
    pub(crate) fn string(&mut self, map: &SNode, key: &str) -> Option<String> {
        let node = map.get(key)?;
        match &node.value {
            Value::Null => None,
            Value::Str(s) if s.contains("${") => match expand_env_keeping(s, self.keep) {
                Ok(v) => Some(v),
                Err(name) => {
                    self.diags.push(
                        Diagnostic::error(
                            self.file,
                            node.pos,
                            format!("`{key}`: the environment variable `{name}` is not set"),
                        )
                        .with_help(format!(
                            "export {name}=... before running, or write the value itself"
                        )),
                    );
                    None
                }
            },
            Value::Str(_) | Value::Int(_) | Value::Float(_) => node.as_text(),
            _ => {
                let ty = node.type_name();
                self.error(node.pos, format!("`{key}` must be a string, not {ty}"));
                None
            }
        }
    }

    /// A secret as written (`${NAME}` kept), after checking that it expands.
    pub(crate) fn secret(&mut self, map: &SNode, key: &str) -> Option<String> {
        self.string(map, key)?;
        map.get(key)?.as_text().filter(|s| !s.is_empty())
    }

    pub(crate) fn required_string(&mut self, map: &SNode, key: &str, what: &str) -> Option<String> {
        match self.string(map, key) {
            Some(s) if !s.trim().is_empty() => Some(s),
            _ if map
                .get(key)
                .is_some_and(|n| !matches!(n.value, Value::Null | Value::Str(_))) =>
            {
                None
            }
            _ => {
                self.error(
                    map.get(key).map_or(map.pos, |n| n.pos),
                    format!("{what} needs `{key}`"),
                );
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, map: &SNode, key: &str) -> Option<bool> {
        let node = map.get(key)?;
        match node.value {
            Value::Bool(b) => Some(b),
            Value::Null => None,
            _ => {
                let ty = node.type_name();
                self.error(node.pos, format!("`{key}` must be true or false, not {ty}"));
                None
            }
        }
    }

    fn too_long(&mut self, pos: Pos, key: &str) {
        self.error(
            pos,
            format!(
                "`{key}` is longer than {} days, the longest a step may wait",
                MAX_DURATION.as_secs() / 86_400
            ),
        );
    }

    /// A number of milliseconds (sipflow stores every duration as a JSON number of ms).
    pub(crate) fn millis(&mut self, map: &SNode, key: &str) -> Option<(std::time::Duration, Pos)> {
        let node = map.get(key)?;
        let ms = match node.value {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
            Value::Null => return None,
            _ => {
                let ty = node.type_name();
                self.error(
                    node.pos,
                    format!("`{key}` must be a number of milliseconds, not {ty}"),
                );
                return None;
            }
        };
        if !(ms > 0.0 && ms.is_finite()) {
            self.error(
                node.pos,
                format!("`{key}` must be more than 0 ms, got {ms}"),
            );
            return None;
        }
        match std::time::Duration::try_from_secs_f64(ms / 1000.0) {
            Ok(d) if d <= MAX_DURATION => Some((d, node.pos)),
            _ => {
                self.too_long(node.pos, key);
                None
            }
        }
    }

    /// A duration with a unit, such as `10s`, `500ms` or `1m 30s`.
    pub(crate) fn duration(
        &mut self,
        map: &SNode,
        key: &str,
    ) -> Option<(std::time::Duration, Pos)> {
        let node = map.get(key)?;
        match &node.value {
            Value::Str(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) if d > MAX_DURATION => {
                    self.too_long(node.pos, key);
                    None
                }
                Ok(d) if !d.is_zero() => Some((d, node.pos)),
                Ok(_) => {
                    self.error(node.pos, format!("`{key}` must be more than 0"));
                    None
                }
                Err(e) => {
                    self.diags.push(
                        Diagnostic::error(
                            self.file,
                            node.pos,
                            format!("`{key}`: cannot read `{s}` as a duration: {e}"),
                        )
                        .with_help("write a number with a unit, such as `10s`, `500ms` or `2m`"),
                    );
                    None
                }
            },
            Value::Int(i) => {
                self.diags.push(
                    Diagnostic::error(self.file, node.pos, format!("`{key}` needs a unit"))
                        .with_help(format!(
                            "write `{i}s` for seconds or `{i}ms` for milliseconds"
                        )),
                );
                None
            }
            Value::Null => None,
            _ => {
                let ty = node.type_name();
                self.error(
                    node.pos,
                    format!("`{key}` must be a duration such as `10s`, not {ty}"),
                );
                None
            }
        }
    }

    /// Reports every key of `map` not in `known`, with a "did you mean" where one is close.
    pub(crate) fn unknown_keys(&mut self, map: &SNode, known: &[&str], what: &str, as_error: bool) {
        self.unknown_keys_except(map, known, &[], what, as_error);
    }

    /// [`Fields::unknown_keys`], leaving the keys of `except` alone (they are known elsewhere,
    /// and reported there), without offering them as what was meant.
    pub(crate) fn unknown_keys_except(
        &mut self,
        map: &SNode,
        known: &[&str],
        except: &[&str],
        what: &str,
        as_error: bool,
    ) {
        for (k, _) in map.entries() {
            if known.contains(&k.name.as_str()) || except.contains(&k.name.as_str()) {
                continue;
            }
            let help = crate::diag::did_you_mean(&k.name, known.iter().copied());
            if !as_error && help.is_none() {
                continue;
            }
            let msg = format!("unknown key `{}` in {what}", k.name);
            let mut d = if as_error {
                Diagnostic::error(self.file, k.pos, msg)
            } else {
                Diagnostic::warning(self.file, k.pos, format!("{msg} (ignored)"))
            };
            if let Some(h) = help {
                d = d.with_help(h);
            } else {
                d = d.with_help(format!("known keys: {}", known.join(", ")));
            }
            self.diags.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_goes_through_the_yaml_loader_with_positions() {
        let text = "{\n  \"nodes\": [\n    {\"id\": \"a\", \"n\": 1}\n  ]\n}";
        let root = parse(text, "f.json", Format::SipflowJson).unwrap();
        let nodes = root.get("nodes").unwrap();
        let Value::Seq(items) = &nodes.value else {
            panic!()
        };
        assert_eq!(items[0].pos.line, 3);
        assert_eq!(items[0].get("n").unwrap().value, Value::Int(1));
        assert_eq!(items[0].entries()[0].0.pos, Pos::new(3, 6));
    }

    #[test]
    fn json_syntax_error_has_line_and_column() {
        let err = parse("{\n \"nodes\": [,]\n}", "f.json", Format::SipflowJson).unwrap_err();
        assert_eq!(err.0[0].pos.line, 2);
        assert!(
            err.0[0].message.starts_with("invalid JSON"),
            "{}",
            err.0[0].message
        );
    }

    #[test]
    fn yaml_duplicate_key_is_an_error() {
        let err = parse("a: 1\na: 2\n", "f.yaml", Format::Native).unwrap_err();
        assert!(err.to_string().contains("f.yaml:2:"), "{err}");
    }
}

/// Replaces every `${NAME}` with the environment variable NAME; the error is the first name unset.
pub(crate) fn expand_env(s: &str) -> Result<String, String> {
    expand_env_keeping(s, &[])
}

/// [`expand_env`], leaving each `${NAME}` whose NAME is in `keep` as written.
pub fn expand_env_keeping(s: &str, keep: &[String]) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        if keep.iter().any(|k| k == name) {
            out.push_str(&rest[start..start + 2 + end + 1]);
        } else {
            match std::env::var(name) {
                Ok(v) => out.push_str(&v),
                Err(_) => return Err(name.to_owned()),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod env_tests {
    #[test]
    fn expands_set_variables_and_names_missing_ones() {
        // PATH is set wherever tests run.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(super::expand_env("a${PATH}b").unwrap(), format!("a{path}b"));
        assert_eq!(
            super::expand_env("${CALLFLOW_SURELY_UNSET_VAR}"),
            Err("CALLFLOW_SURELY_UNSET_VAR".to_owned())
        );
        assert_eq!(super::expand_env("plain").unwrap(), "plain");
    }
}
