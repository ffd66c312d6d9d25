//! Per-iteration data under load (`callflow load --inf users.csv`, SIPp's `-inf`): a CSV whose
//! first line names the fields; each iteration takes a row (in sequence, or at random) and every
//! `${field}` (and `${iteration}`) in a DN, a PBX's auth user and password, a MakeCall's target
//! and a node's headers is replaced by that row's value.

use std::path::Path;

/// How an iteration picks its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Iteration k takes row (k - 1) mod rows.
    Sequential,
    /// Each iteration a row at random (the same iteration always the same row).
    Random,
    /// One row per user: an iteration takes the first row no iteration in flight holds, and
    /// gives it back when it ends (SIPp's USER: with `--users U`, U rows in turn).
    User,
}

/// The rows of a CSV, for the iterations of a load.
#[derive(Debug)]
pub struct Data {
    fields: Vec<String>,
    rows: Vec<Vec<String>>,
    order: Order,
    /// [`Order::User`]: the row each iteration in flight holds.
    held: std::sync::Mutex<std::collections::HashMap<u32, usize>>,
}

/// Why a data file cannot be used: where, and what.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Bad {
        file: String,
        line: u64,
        message: String,
    },
}

impl Data {
    /// Reads a CSV (`,` or `;` between fields, whichever the first line uses).
    pub fn read(path: &Path, order: Order) -> Result<Self, DataError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file, order)
    }

    pub fn parse(text: &str, file: &str, order: Order) -> Result<Self, DataError> {
        let bad = |line: u64, message: String| DataError::Bad {
            file: file.to_owned(),
            line,
            message,
        };
        let first = text.lines().next().unwrap_or_default();
        let delimiter = if first.contains(';') && !first.contains(',') {
            b';'
        } else {
            b','
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let fields: Vec<String> = reader
            .headers()
            .map_err(|e| bad(1, e.to_string()))?
            .iter()
            .map(str::to_owned)
            .collect();
        for (i, f) in fields.iter().enumerate() {
            if f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(
                    1,
                    format!(
                        "field {} is named `{f}`: a name is letters, digits and _",
                        i + 1
                    ),
                ));
            }
            if f == "iteration" {
                return Err(bad(
                    1,
                    "`iteration` is the iteration's number: name the field otherwise".into(),
                ));
            }
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, csv::Position::line);
                bad(line, e.to_string())
            })?;
            rows.push(record.iter().map(str::to_owned).collect());
        }
        if rows.is_empty() {
            return Err(bad(1, "no rows after the line of field names".into()));
        }
        Ok(Self {
            fields,
            rows,
            order,
            held: std::sync::Mutex::default(),
        })
    }

    /// The names a scenario may use: the fields and `iteration`.
    pub fn names(&self) -> Vec<String> {
        let mut v = self.fields.clone();
        v.push("iteration".to_owned());
        v
    }

    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// The row of `iteration` (1 and up).
    fn row(&self, iteration: u32) -> &[String] {
        let n = self.rows.len() as u64;
        let k = u64::from(iteration.max(1) - 1);
        let i = match self.order {
            Order::Sequential => k % n,
            Order::User => {
                let mut held = self
                    .held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(&row) = held.get(&iteration) {
                    return &self.rows[row];
                }
                // Its first ask: the first row nobody in flight holds.
                let taken: std::collections::HashSet<usize> = held.values().copied().collect();
                let row = (0..self.rows.len())
                    .find(|r| !taken.contains(r))
                    .unwrap_or(k as usize % self.rows.len());
                held.insert(iteration, row);
                row as u64
            }
            // SplitMix64 of the iteration: spread, and the same every time it is asked.
            Order::Random => {
                let mut z = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) % n
            }
        };
        &self.rows[i as usize]
    }

    /// `text` with every `${field}` of `iteration`'s row, and `${iteration}`, replaced; other
    /// `${...}` are left as written.
    pub fn expand(&self, iteration: u32, text: &str) -> String {
        if !text.contains("${") {
            return text.to_owned();
        }
        self.expand_row(self.row(iteration), iteration, text)
    }

    fn expand_row(&self, row: &[String], iteration: u32, text: &str) -> String {
        let mut out = text.replace("${iteration}", &iteration.to_string());
        for (name, value) in self.fields.iter().zip(row) {
            out = out.replace(&format!("${{{name}}}"), value);
        }
        out
    }

    /// `iteration` has ended: the row it held ([`Order::User`]) is free again.
    pub fn release(&self, iteration: u32) {
        if self.order == Order::User {
            self.held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&iteration);
        }
    }

    /// Every distinct expansion of `text` over the rows (the users a role registers).
    pub fn each_row(&self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        for row in &self.rows {
            let v = self.expand_row(row, 0, text);
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen
    }
}

/// Whether `text` uses per-iteration data.
pub(crate) fn templated(text: &str) -> bool {
    text.contains("${")
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "caller,password,callee\n100,alicepw,200\n300, carolpw ,200\n";

    #[test]
    fn each_iteration_takes_its_row_in_sequence() {
        let d = Data::parse(USERS, "users.csv", Order::Sequential).expect("valid");
        assert_eq!(d.names(), ["caller", "password", "callee", "iteration"]);
        assert_eq!(d.expand(1, "${caller}:${password}"), "100:alicepw");
        assert_eq!(d.expand(2, "${caller}:${password}"), "300:carolpw");
        assert_eq!(d.expand(3, "${caller} #${iteration}"), "100 #3");
        assert_eq!(d.expand(1, "${OTHER}"), "${OTHER}");
        assert_eq!(d.each_row("${callee}"), ["200"]);
        assert_eq!(d.each_row("${caller}"), ["100", "300"]);
    }

    #[test]
    fn random_rows_are_the_same_for_the_same_iteration() {
        let d = Data::parse(USERS, "users.csv", Order::Random).expect("valid");
        for i in 1..50 {
            assert_eq!(d.expand(i, "${caller}"), d.expand(i, "${caller}"));
        }
        let picked: std::collections::BTreeSet<String> =
            (1..50).map(|i| d.expand(i, "${caller}")).collect();
        assert_eq!(picked.len(), 2, "both rows come up");
    }

    #[test]
    fn one_row_per_user_in_flight() {
        let d = Data::parse(USERS, "users.csv", Order::User).expect("valid");
        assert_eq!(d.expand(1, "${caller}"), "100");
        assert_eq!(
            d.expand(2, "${caller}"),
            "300",
            "row 1 is held by iteration 1"
        );
        assert_eq!(
            d.expand(1, "${caller}"),
            "100",
            "an iteration keeps its row"
        );
        d.release(1);
        assert_eq!(
            d.expand(3, "${caller}"),
            "100",
            "iteration 1 gave its row back"
        );
    }

    #[test]
    fn a_bad_file_says_where() {
        let e = Data::parse("a,b\n1,2,3\n", "u.csv", Order::Sequential).unwrap_err();
        assert!(e.to_string().starts_with("u.csv:2:"), "{e}");
        let e = Data::parse("a b,c\n1,2\n", "u.csv", Order::Sequential).unwrap_err();
        assert!(
            e.to_string().contains("u.csv:1: field 1 is named `a b`"),
            "{e}"
        );
        let e = Data::parse("a,c\n", "u.csv", Order::Sequential).unwrap_err();
        assert!(e.to_string().contains("no rows"), "{e}");
    }
}
