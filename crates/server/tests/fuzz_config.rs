//! Fuzzing of configuration files: TOML text into `config::Settings`, then `Config::resolve`,
//! driven like core's targets (the driver is core's, included by path). Properties: neither
//! panics, whatever the keys, types and values.

#[path = "../../core/tests/fuzz/driver.rs"]
mod driver;

use arbitrary::{Result as ArbResult, Unstructured};
use clap::CommandFactory;
use concord_server::config::{Cli, Config, Settings};

/// Values that reach the validators' edges: empty, zero, negative, huge, malformed addresses,
/// URLs, intervals and networks, and the words the enumerated settings accept.
const WORDS: &[&str] = &[
    "",
    "0",
    "-1",
    "18446744073709551616",
    "dev",
    "smtp",
    "tls",
    "starttls",
    "none",
    "text",
    "json",
    "0.0.0.0",
    "::",
    "127.0.0.1:0",
    "[::1]:99999",
    "http://",
    "https://x/",
    "ftp://x",
    "*",
    ",",
    "a,,b",
    "6h",
    "0s",
    "1",
    "99999999999999999999d",
    "h",
    "10.0.0.0/8",
    "10.0.0.0/33",
    "::/0",
    "1.2.3.4/",
    " ",
    "\u{0}",
    "é",
    "localhost",
];

fn value(u: &mut Unstructured<'_>, key: &str) -> ArbResult<String> {
    // Settings naming files are read by `resolve`: point them nowhere, so the run reads no file.
    if key.ends_with("_file") || key == "credentials_directory" {
        return Ok("\"/nonexistent/concord-fuzz\"".to_owned());
    }
    Ok(match u.int_in_range(0..=6u8)? {
        0 => u.arbitrary::<i64>()?.to_string(),
        1 => u.int_in_range(0..=70_000u32)?.to_string(),
        2 => u.arbitrary::<bool>()?.to_string(),
        3 => format!("{}", u.arbitrary::<f64>()?),
        4 => toml::Value::String(u.arbitrary::<String>()?).to_string(),
        5 => "[1, \"a\"]".to_owned(),
        _ => toml::Value::String((*u.choose(WORDS)?).to_owned()).to_string(),
    })
}

fn config_toml(data: &[u8]) {
    let _ = config_toml_inner(&mut Unstructured::new(data));
}

fn config_toml_inner(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let keys: Vec<String> = Cli::command().get_arguments().map(|arg| arg.get_id().to_string()).collect();
    let text = if u.ratio(1, 8)? {
        u.arbitrary::<String>()?
    } else {
        let mut text = String::new();
        for _ in 0..u.int_in_range(0..=12)? {
            let key = u.choose(&keys)?;
            text.push_str(&format!("{key} = {}\n", value(u, key)?));
        }
        text
    };
    let Ok(mut settings) = toml::from_str::<Settings>(&text) else { return Ok(()) };
    // Raw text may name real files too (a mutation could spell `/dev/zero`): point them nowhere.
    for path in [
        &mut settings.admin_pass_file,
        &mut settings.secret_file,
        &mut settings.smtp_password_file,
        &mut settings.credentials_directory,
    ] {
        if path.is_some() {
            *path = Some("/nonexistent/concord-fuzz".into());
        }
    }
    let _ = Config::resolve(settings);
    Ok(())
}

#[test]
fn fuzz_config_toml() {
    driver::fuzz("config_toml", config_toml);
}
