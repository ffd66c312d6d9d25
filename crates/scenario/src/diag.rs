//! Diagnostics with `file:line:col`, the way compilers print them.

use std::fmt;

/// A position in a source file: 1-based line and column. `line == 0` means "the whole file".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub fn new(line: usize, col: usize) -> Self {
        Self { line, col }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub pos: Pos,
    pub message: String,
    /// A hint such as "did you mean `timeout`?".
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: escape_controls(file),
            pos,
            message: escape_controls(&message.into()),
            help: None,
        }
    }

    pub fn warning(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(file, pos, message)
        }
    }

    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(escape_controls(&help.into()));
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.pos.line == 0 {
            write!(f, "{}: {level}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {level}: {}",
                self.file, self.pos.line, self.pos.col, self.message
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Text with its control characters (escape sequences, line breaks, NUL) written as `\u{..}`,
/// so what a file says can neither move the terminal's cursor nor fake another diagnostic line.
pub(crate) fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Every diagnostic of one parse, in source order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn sort(&mut self) {
        self.0.sort_by_key(|a| a.pos);
    }

    /// Writes the value of every `${NAME}` that `text` uses back as `${NAME}` in the messages,
    /// so a diagnostic never shows a secret taken from the environment.
    pub(crate) fn redact_env(&mut self, text: &str) {
        let mut secrets: Vec<(String, String)> = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else { break };
            let name = &after[..end];
            if let Ok(value) = std::env::var(name)
                && !value.is_empty()
                && !secrets.iter().any(|(n, _)| n == name)
            {
                secrets.push((name.to_owned(), escape_controls(&value)));
            }
            rest = &after[end + 1..];
        }
        if secrets.is_empty() {
            return;
        }
        // Longest first, so a value that contains another is replaced whole.
        secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let redact = |s: &mut String| {
            for (name, value) in &secrets {
                if s.contains(value.as_str()) {
                    *s = s.replace(value.as_str(), &format!("${{{name}}}"));
                }
            }
        };
        for d in &mut self.0 {
            redact(&mut d.message);
            if let Some(h) = &mut d.help {
                redact(h);
            }
        }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// "did you mean" for a misspelt name, using Jaro-Winkler similarity.
pub(crate) fn did_you_mean<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lower = got.to_ascii_lowercase();
    // Only a near word: a typo is an edit or two (a swap counts as one), never a word that shares
    // a prefix or suffix (`CONNECTED` is not `DISCONNECTED`, `SendBye` is not `SendMessage`).
    let allowed = match lower.chars().count() {
        0..=4 => 1,
        5..=12 => 2,
        n => n / 5,
    };
    // Bounded, so a file with thousands of misspelt ids stays linear to check.
    candidates
        .into_iter()
        .take(2_000)
        .map(|c| (strsim::osa_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}
