//! Checks of the tree itself: the invariants ARCHITECTURE.md promises that a test can verify.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() && name != "target" && name != "node_modules" && !name.starts_with('.') {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_by_saying_what_it_owns() {
    let mut files = Vec::new();
    for top in ["crates", "bench"] {
        let dir = workspace_root().join(top);
        if dir.exists() {
            rust_files(&dir, &mut files);
        }
    }
    assert!(files.len() > 10, "found only {files:?}");
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().trim_start().starts_with("//!"))
        .map(|f| f.strip_prefix(workspace_root()).unwrap().display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading //! line: {missing:?}");
}

#[test]
fn core_depends_on_no_runtime_database_or_web_crate() {
    let manifest = std::fs::read_to_string(workspace_root().join("crates/core/Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    let deps = manifest["dependencies"].as_table().unwrap();
    for forbidden in ["tokio", "sqlx", "axum", "hyper", "reqwest", "lettre", "tower", "concord-store"] {
        assert!(!deps.contains_key(forbidden), "concord-core must stay free of I/O, but depends on {forbidden}");
    }
    let store: toml::Table =
        std::fs::read_to_string(workspace_root().join("crates/store/Cargo.toml")).unwrap().parse().unwrap();
    for forbidden in ["axum", "hyper", "serde_json", "lettre"] {
        assert!(
            !store["dependencies"].as_table().unwrap().contains_key(forbidden),
            "concord-store must not know HTTP or JSON ({forbidden})"
        );
    }
}

/// A merge that was committed with its conflict unresolved leaves markers that neither the
/// compiler nor a Markdown renderer necessarily complains about (the README carried some once).
#[test]
fn no_tracked_file_holds_merge_conflict_markers() {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(workspace_root())
        .output()
        .expect("git is installed");
    assert!(listed.status.success(), "git ls-files: {}", String::from_utf8_lossy(&listed.stderr));
    let files: Vec<String> = listed
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert!(files.len() > 10, "found only {files:?}");
    let marked: Vec<String> = files
        .iter()
        .filter(|file| {
            // Binary and non-UTF-8 files cannot hold a marker a person would read.
            std::fs::read_to_string(workspace_root().join(file))
                .is_ok_and(|text| text.lines().any(|line| line.starts_with("<<<<<<< ") || line.starts_with(">>>>>>> ")))
        })
        .cloned()
        .collect();
    assert!(marked.is_empty(), "unresolved merge conflicts in {marked:?}");
}

/// The README's settings table as the settings' definitions say it: flag and value name,
/// environment variable, default (clap's `default_value`, else the `[default: …]` the help text
/// states for a computed one, else unset) and help. The one place a setting is described is its
/// clap attribute in `config.rs`; this rendering keeps the README from drifting from it.
fn settings_table() -> String {
    use clap::CommandFactory;
    let mut table = String::from("| Flag | Environment | Default | Meaning |\n|---|---|---|---|\n");
    for arg in concord_server::config::Cli::command().get_arguments() {
        let long = arg.get_long().expect("every setting has a long flag");
        let takes_value = arg.get_action().takes_values();
        let flag = match arg.get_value_names().filter(|_| takes_value) {
            Some(names) => format!("`--{long} {}`", names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" ")),
            None => format!("`--{long}`"),
        };
        let env = arg.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default();
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let (meaning, stated) = match help.rsplit_once(" [default: ") {
            Some((meaning, rest)) => (meaning.to_owned(), rest.strip_suffix(']').map(str::to_owned)),
            None => (help.clone(), None),
        };
        let defaults: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        let default = match (takes_value && !defaults.is_empty(), stated) {
            (true, _) => format!("`{}`", defaults.join(",")),
            (false, Some(stated)) => stated,
            (false, None) => "unset".to_owned(),
        };
        table.push_str(&format!("| {flag} | {env} | {default} | {} |\n", meaning.replace('|', "\\|")));
    }
    table
}

#[test]
fn the_readme_settings_table_is_the_settings_definitions() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let start = readme.find("| Flag | Environment | Default | Meaning |").expect("README has the settings table");
    let end = readme[start..].find("\n\n").map_or(readme.len(), |i| start + i + 1);
    let expected = settings_table();
    assert!(
        readme[start..end] == expected,
        "README's settings table differs from the settings in config.rs; replace it with:\n\n{expected}"
    );
}
