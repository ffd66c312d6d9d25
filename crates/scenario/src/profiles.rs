//! PBX profiles: named PBX settings that scenarios refer to (`pbx: lab`), so a lab's address,
//! realm and credentials live in one file instead of in every instance of every scenario.
//!
//! They are read from [`PROFILES_FILE`] in the scenario's folder (the `callflow serve`
//! workspace):
//!
//! ```yaml
//! profiles:
//!   lab:
//!     host: 127.0.0.1
//!     port: 5060
//!     transport: udp
//!     realm: callflow.test
//!     password: ${LAB_PASSWORD}   # expanded when the scenario is read, never written back
//! ```

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::model::{Format, Pbx};
use crate::spanned::{Fields, SNode, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The file PBX profiles are read from, in the scenario's folder.
pub const PROFILES_FILE: &str = "pbx-profiles.yaml";

/// A profile has the keys of an instance's `pbx` but `profile`.
const PROFILE_KEYS: &[&str] = crate::native::PBX_KEYS.split_at(1).1;

/// The PBX profiles scenarios can name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profiles {
    /// Where they were read from (for diagnostics), if from a file.
    pub file: Option<String>,
    pub profiles: BTreeMap<String, Pbx>,
}

impl Profiles {
    /// Parses a profiles file's text (its diagnostics with `${VAR}` values written back).
    pub fn parse(text: &str, file: &str) -> Result<Self, Diagnostics> {
        Self::parse_unredacted(text, file).map_err(|mut d| {
            d.redact_env(text);
            d
        })
    }

    fn parse_unredacted(text: &str, file: &str) -> Result<Self, Diagnostics> {
        if text.trim_start_matches('\u{feff}').trim().is_empty() {
            return Ok(Self {
                file: Some(file.to_owned()),
                profiles: BTreeMap::new(),
            });
        }
        let root = crate::spanned::parse(text, file, Format::Native)?;
        let mut diags = Diagnostics::default();
        let mut f = Fields {
            file,
            diags: &mut diags,
            keep: &[],
        };
        let mut profiles = BTreeMap::new();
        if root.value != Value::Null {
            f.unknown_keys(&root, &["profiles"], "the profiles file", true);
            match root.get("profiles") {
                Some(SNode {
                    value: Value::Map(entries),
                    ..
                }) => {
                    for (key, body) in entries {
                        f.unknown_keys(
                            body,
                            PROFILE_KEYS,
                            &format!("profile `{}`", key.name),
                            true,
                        );
                        let transport = crate::native::transport(&mut f, body, "transport");
                        if let Some(mut pbx) =
                            crate::native::pbx_settings(&mut f, body, None, Some(transport))
                        {
                            pbx.profile = Some(key.name.clone());
                            profiles.insert(key.name.clone(), pbx);
                        }
                    }
                }
                Some(other) => f.error(
                    other.pos,
                    "`profiles` is a mapping from profile name to PBX settings",
                ),
                None => f.error(root.pos, "a profiles file has a `profiles` mapping"),
            }
        }
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(Self {
            file: Some(file.to_owned()),
            profiles,
        })
    }

    /// Reads [`PROFILES_FILE`] in `dir`; no file is no profiles.
    pub fn load_dir(dir: &Path) -> Result<Self, Diagnostics> {
        Self::load_dir_with(dir, crate::Symlinks::Follow)
    }

    /// [`Self::load_dir`], refusing a symbolic link where `symlinks` says so.
    pub fn load_dir_with(dir: &Path, symlinks: crate::Symlinks) -> Result<Self, Diagnostics> {
        let path = dir.join(PROFILES_FILE);
        if std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            return Ok(Self::default());
        }
        let text = crate::read_source(&path, symlinks)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The profile `name`, or an error at `pos` naming the ones there are.
    pub(crate) fn get(&self, f: &mut Fields<'_>, name: &str, pos: Pos) -> Option<Pbx> {
        if let Some(p) = self.profiles.get(name) {
            return Some(p.clone());
        }
        let mut d = Diagnostic::error(f.file, pos, format!("there is no PBX profile `{name}`"));
        let help = crate::diag::did_you_mean(name, self.profiles.keys().map(String::as_str))
            .unwrap_or_else(|| match (&self.file, self.profiles.is_empty()) {
                (Some(file), false) => format!(
                    "{file} defines {}",
                    self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                _ => format!("profiles are read from {PROFILES_FILE} next to the scenario"),
            });
        d = d.with_help(help);
        f.diags.push(d);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILES: &str = "profiles:\n  lab:\n    host: 127.0.0.1\n    port: 5070\n    realm: callflow.test\n    password: ${CALLFLOW_TEST_UNSET_SECRET_X}x\n";

    #[test]
    fn a_profile_needs_its_secret_set_and_keeps_it_unexpanded() {
        let err = Profiles::parse(PROFILES, "p.yaml").unwrap_err();
        assert!(
            err.to_string().contains("p.yaml:6:15") && err.to_string().contains("not set"),
            "{err}"
        );
        let text = PROFILES.replace("${CALLFLOW_TEST_UNSET_SECRET_X}", "${PATH}");
        let p = Profiles::parse(&text, "p.yaml").unwrap();
        let lab = &p.profiles["lab"];
        assert_eq!(lab.profile.as_deref(), Some("lab"));
        assert_eq!(lab.port, Some(5070));
        assert_eq!(lab.password_text.as_deref(), Some("${PATH}x"));
        assert_eq!(
            lab.password().unwrap().unwrap(),
            format!("{}x", std::env::var("PATH").unwrap())
        );
    }

    #[test]
    fn scenarios_name_profiles_and_override_fields() {
        let p = Profiles::parse(
            "profiles:\n  lab:\n    host: 127.0.0.1\n    port: 5070\n    realm: r\n",
            "p.yaml",
        )
        .unwrap();
        let text = "instances:\n  a:\n    dn: '1'\n    pbx: lab\n  b:\n    dn: '2'\n    pbx: {profile: lab, auth_user: bob, port: 5080}\n    steps:\n      - event: INCOMING\n";
        let s = crate::parse_with_profiles(text, "s.yaml", &p).unwrap().0;
        let a = s.instances[0].pbx.as_ref().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", Some(5070)));
        assert!(s.instances[0].register);
        let b = s.instances[1].pbx.as_ref().unwrap();
        assert_eq!(b.port, Some(5080));
        assert_eq!(b.auth_user.as_deref(), Some("bob"));
        assert_eq!(b.realm.as_deref(), Some("r"));
        assert_eq!(b.profile.as_deref(), Some("lab"));

        let err = crate::parse_with_profiles(&text.replace("pbx: lab", "pbx: lba"), "s.yaml", &p)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.yaml:4:10")
                && err.contains("no PBX profile `lba`")
                && err.contains("lab"),
            "{err}"
        );
    }

    #[test]
    fn sipflow_instances_name_profiles_too() {
        let p = Profiles::parse("profiles:\n  lab:\n    host: 127.0.0.1\n", "p.yaml").unwrap();
        let flow = r#"{"nodes":[{"id":"i1","type":"sipInstance","data":{"dn":"100","pbxProfile":"lab","authUser":"u"}}],"edges":[]}"#;
        let s = crate::parse_with_profiles(flow, "f.json", &p).unwrap().0;
        let pbx = s.instances[0].pbx.as_ref().unwrap();
        assert_eq!(pbx.host, "127.0.0.1");
        assert_eq!(pbx.auth_user.as_deref(), Some("u"));
        assert!(s.instances[0].register);
    }
}
