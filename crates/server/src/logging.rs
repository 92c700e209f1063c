//! Log setup and the rule that secrets in URLs never reach a log line.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Query parameters whose values are credentials. Clients put tokens in URLs (WebSocket
/// upgrades, magic links), so every URL is passed through [`redact_uri`] before it is logged.
const SECRET_PARAMS: &[&str] = &["token", "api_key", "code", "password"];

/// Installs the global subscriber. `CONCORD_LOG` (or `RUST_LOG`) sets the filter.
pub fn init(format: LogFormat) {
    let filter = std::env::var("CONCORD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info,sqlx=warn,hyper=warn,tower_http=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The path and query of a request with the values of credential parameters replaced.
pub fn redact_uri(uri: &axum::http::Uri) -> String {
    let Some(query) = uri.query() else { return uri.path().to_owned() };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            if SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s)) {
                format!("{key}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(redact_uri(&input.parse().unwrap()), expected);
    }

    #[test]
    fn credentials_are_redacted_and_the_rest_kept() {
        check("/api/v1/health", "/api/v1/health");
        check("/sync?doc=a%3Ab&token=secret", "/sync?doc=a%3Ab&token=[redacted]");
        check("/x?API_KEY=secret&y=1&code=123456", "/x?API_KEY=[redacted]&y=1&code=[redacted]");
        check("/x?token", "/x?token=[redacted]");
        check("/x?tokens=visible", "/x?tokens=visible");
    }
}
