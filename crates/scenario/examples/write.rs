//! Prints a scenario file as native YAML, or with `--flow` as a sipflow flow:
//! `cargo run -p callflow-scenario --example write -- fixtures/blind-transfer.json`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flow = args.iter().any(|a| a == "--flow");
    for path in args.iter().filter(|a| *a != "--flow") {
        let path = std::path::Path::new(path);
        let profiles = callflow_scenario::Profiles::load_dir(path.parent().unwrap_or(path))
            .unwrap_or_default();
        match callflow_scenario::load(path) {
            Ok((s, _)) if flow => println!(
                "{}",
                serde_json::to_string_pretty(&callflow_scenario::to_flow(&s, &profiles))
                    .unwrap_or_default()
            ),
            Ok((s, _)) => match callflow_scenario::to_native(&s, &profiles) {
                Ok(text) => print!("{text}"),
                Err(e) => eprintln!("{e}"),
            },
            Err(d) => eprintln!("{d}"),
        }
    }
}
