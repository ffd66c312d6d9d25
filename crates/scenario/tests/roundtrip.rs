//! Every fixture written back as native YAML and as a sipflow flow reads back into the same
//! scenario (what the editor's save and its graph view rely on).

use callflow_scenario::{Profiles, Scenario, parse_with_profiles, to_flow, to_native};
use std::fmt::Write;
use std::path::Path;

/// The scenario as text that ignores what writing may change: node ids nobody names, the order
/// nodes are listed in, positions and the format.
fn canon(s: &Scenario) -> String {
    let mut out = String::new();
    let mut number = vec![usize::MAX; s.nodes.len()];
    let mut order = Vec::new();
    for inst in &s.instances {
        let mut stack: Vec<usize> = inst.starts.iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            if number[n] != usize::MAX {
                continue;
            }
            number[n] = order.len();
            order.push(n);
            stack.extend(s.nodes[n].on_failure);
            stack.extend(s.nodes[n].on_success);
        }
    }
    let num = |n: Option<usize>| n.map(|n| number[n]);
    for inst in &s.instances {
        let mut inst = inst.clone();
        inst.pos = Default::default();
        inst.tls.pos = Default::default();
        inst.starts = inst.starts.iter().map(|&n| number[n]).collect();
        writeln!(out, "{inst:?}").unwrap();
    }
    for &n in &order {
        let mut node = s.nodes[n].clone();
        node.id.clear();
        node.pos = Default::default();
        node.on_success = num(node.on_success);
        node.on_failure = num(node.on_failure);
        node.opts.after = num(node.opts.after);
        writeln!(out, "#{} {node:?}", number[n]).unwrap();
    }
    for c in &s.sidecars {
        let mut c = c.clone();
        c.pos = Default::default();
        writeln!(out, "{c:?}").unwrap();
    }
    out
}

fn fixtures() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    // The suite and the demonstrations (a failing call, a long one).
    let mut files: Vec<_> = [dir.clone(), dir.join("demo")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    files
}

#[test]
fn every_fixture_reads_back_the_same_from_yaml_and_from_a_flow() {
    let profiles = Profiles::default();
    let mut checked = 0;
    for path in fixtures() {
        // A fixture that does not load here (sipflow's absolute WAV paths) has nothing to write.
        let Ok((original, _)) = callflow_scenario::load(&path) else {
            continue;
        };
        checked += 1;
        let file = path.display().to_string();
        let want = canon(&original);

        let yaml = to_native(&original, &profiles).unwrap();
        let (back, _) = parse_with_profiles(&yaml, &file, &profiles)
            .unwrap_or_else(|d| panic!("{file} as YAML does not read back: {d}\n{yaml}"));
        assert_eq!(canon(&back), want, "{file} as YAML:\n{yaml}");
        assert_eq!(back.name, original.name, "{file}");
        // Writing what was read back gives the same text (the writer is stable).
        assert_eq!(to_native(&back, &profiles).unwrap(), yaml, "{file}");

        let flow = serde_json::to_string_pretty(&to_flow(&original, &profiles)).unwrap();
        let (back, _) = parse_with_profiles(&flow, &file, &profiles)
            .unwrap_or_else(|d| panic!("{file} as a flow does not read back: {d}\n{flow}"));
        let mut want_flow = original.clone();
        want_flow.sidecars.clear();
        assert_eq!(canon(&back), canon(&want_flow), "{file} as a flow:\n{flow}");
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn a_profile_is_written_by_name_with_only_what_the_instance_changes() {
    let profiles = Profiles::parse(
        "profiles:\n  lab:\n    host: 127.0.0.1\n    port: 5070\n    password: ${PATH}\n",
        "p.yaml",
    )
    .unwrap();
    let text = "name: p\ninstances:\n  a:\n    dn: '100'\n    pbx: lab\n  b:\n    dn: '200'\n    pbx:\n      profile: lab\n      auth_user: bob\n";
    let (s, _) = parse_with_profiles(text, "s.yaml", &profiles).unwrap();
    let yaml = to_native(&s, &profiles).unwrap();
    assert!(yaml.contains("pbx: lab\n"), "{yaml}");
    assert!(
        yaml.contains("profile: lab\n      auth_user: bob\n"),
        "{yaml}"
    );
    assert!(
        !yaml.contains("5070") && !yaml.contains("password"),
        "{yaml}"
    );
    let flow = to_flow(&s, &profiles).to_string();
    assert!(flow.contains(r#""pbxProfile":"lab""#), "{flow}");
    assert!(!flow.contains("PATH") && !flow.contains("5070"), "{flow}");
}

#[test]
fn a_password_from_the_environment_is_written_as_written() {
    let text = "name: p\ninstances:\n  a:\n    dn: '100'\n    pbx: {host: 127.0.0.1, password: '${PATH}'}\n";
    let (s, _) = parse_with_profiles(text, "s.yaml", &Profiles::default()).unwrap();
    let yaml = to_native(&s, &Profiles::default()).unwrap();
    assert!(yaml.contains("${PATH}"), "{yaml}");
    let path = std::env::var("PATH").unwrap();
    assert!(!yaml.contains(&path), "{yaml}");
}
