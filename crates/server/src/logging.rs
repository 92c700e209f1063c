//! Log setup and the rule that secrets in URLs never reach a log line.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::extract::query_pairs;

/// Query parameter names whose values are credentials. Clients put tokens in URLs (WebSocket
/// upgrades, magic links), so every URL is passed through [`redact_uri`] before it is logged. A
/// name matches ignoring ASCII case and surrounding spaces, and also as the last word of a longer
/// name (`client_secret`, `x-api-key`): a false positive costs a log detail, a miss leaks a key.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "code",
    "password",
    "passwd",
    "secret",
    "session",
    "auth",
    "authorization",
    "signature",
];

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

/// The path and query of a request with the values of credential parameters replaced. Names are
/// decoded by [`query_pairs`], the function authentication reads them with, so `%74oken` is
/// redacted exactly because it authenticates as `token`.
pub fn redact_uri(uri: &axum::http::Uri) -> String {
    let Some(query) = uri.query() else { return uri.path().to_owned() };
    let redacted: Vec<String> = query_pairs(query)
        .map(|pair| {
            if is_secret_name(&pair.name) {
                let raw_name = pair.raw.split('=').next().unwrap_or_default();
                format!("{raw_name}=[redacted]")
            } else {
                pair.raw.to_owned()
            }
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

fn is_secret_name(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|secret| {
        name.strip_suffix(secret).is_some_and(|prefix| prefix.is_empty() || prefix.ends_with(['_', '-', '.']))
    })
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
        check("/x?tokens=visible&keyword=visible&monkey=visible", "/x?tokens=visible&keyword=visible&monkey=visible");
    }

    #[test]
    fn every_credential_name_is_redacted_however_it_is_spelled() {
        for name in SECRET_PARAMS {
            check(&format!("/x?{name}=s"), &format!("/x?{name}=[redacted]"));
        }
        for name in ["client_secret", "x-api-key", "session_token", "user.password", "Access_Token"] {
            check(&format!("/x?{name}=s"), &format!("/x?{name}=[redacted]"));
        }
    }

    #[test]
    fn encoded_names_are_decoded_as_authentication_decodes_them() {
        // Each of these names reads as `token` (or a spacing of it) to `query_param`.
        check("/auth/me?%74oken=s", "/auth/me?%74oken=[redacted]");
        check("/auth/me?%74%6F%6B%65%6E=s", "/auth/me?%74%6F%6B%65%6E=[redacted]");
        check("/auth/me?%74%6f%6b%65%6e=s", "/auth/me?%74%6f%6b%65%6e=[redacted]");
        check("/auth/me?to%6Ben=s&x=1", "/auth/me?to%6Ben=[redacted]&x=1");
        check("/auth/me?+token+=s", "/auth/me?+token+=[redacted]");
        check("/auth/me?TOKEN=s", "/auth/me?TOKEN=[redacted]");
        check("/auth/me?api%5Fkey=s", "/auth/me?api%5Fkey=[redacted]");
    }

    #[test]
    fn repeated_empty_and_malformed_parameters() {
        check("/x?token=a&token=b", "/x?token=[redacted]&token=[redacted]");
        check("/x?a=1&&token=b&", "/x?a=1&token=[redacted]");
        check("/x?%zz=1&%7=2&token=%", "/x?%zz=1&%7=2&token=[redacted]");
        check("/x?token=a=b=c", "/x?token=[redacted]");
        check("/x?=token", "/x?=token");
        check("/x?", "/x?");
    }

    #[test]
    fn the_fragment_never_carries_a_credential_into_the_log() {
        // Clients do not send fragments; if one arrives, the query before it is still redacted.
        let uri: axum::http::Uri = "/x?token=secret#frag".parse().unwrap();
        assert!(!redact_uri(&uri).contains("secret"), "{}", redact_uri(&uri));
    }

    #[test]
    fn redaction_covers_whatever_authentication_accepts() {
        // Any name `query_param(.., "token")` finds must come out redacted.
        for query in ["%74oken=s", "t%6Fken=s", "%74%6F%6B%65%6E=s", "a=1&%74oken=s", "%74oken=s&%74oken=t"] {
            assert_eq!(crate::extract::query_param(query, "token").as_deref(), Some("s"), "{query}");
            let uri: axum::http::Uri = format!("/auth/me?{query}").parse().unwrap();
            let logged = redact_uri(&uri);
            assert!(!logged.contains("=s") && !logged.contains("=t"), "{query} logged as {logged}");
        }
    }
}
