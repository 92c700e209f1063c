//! Rendering: an askama template becomes an HTML response with [`Page`]; every page's frame
//! (title, server name, navigation) comes from one [`Layout`].

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::web::csrf::CsrfToken;

/// What the frame of every page shows: `templates/base.html` reads it as `layout`.
pub struct Layout {
    pub title: String,
    pub server_name: String,
    /// The CSRF token for the forms of the page (and the frame's sign-out button).
    pub csrf: String,
    /// Whether a person is signed in: the frame then offers the dashboard and sign-out.
    pub signed_in: bool,
}

impl Layout {
    /// The server name is the live setting, so a name saved in the console shows at once.
    pub fn new(state: &AppState, title: impl Into<String>, csrf: &CsrfToken, signed_in: bool) -> Layout {
        Layout {
            title: title.into(),
            server_name: state.settings.server_name(),
            csrf: csrf.value().to_owned(),
            signed_in,
        }
    }
}

/// A rendered page with a status. Rendering fails only on a bug in a template's code (askama
/// checks the templates at build time), which becomes a logged 500.
pub struct Page<T>(pub StatusCode, pub T);

impl<T: Template> Page<T> {
    pub fn ok(template: T) -> Page<T> {
        Page(StatusCode::OK, template)
    }
}

impl<T: Template> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        match self.1.render() {
            // Pages hold a person's data and the CSRF token: no cache keeps them.
            Ok(html) => (self.0, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
            Err(err) => ApiError::internal(err).into_response(),
        }
    }
}

/// A page that only says something: results, refusals, "check your mail".
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub message: String,
}

/// A message page with `status`; `title` heads it, `message` explains.
pub fn message(state: &AppState, status: StatusCode, csrf: &CsrfToken, title: &str, message: &str) -> Response {
    let layout = Layout::new(state, title, csrf, false);
    Page(status, MessagePage { layout, message: message.to_owned() }).into_response()
}

/// The page of a path that does not exist (or, like `/register` with registration off, is
/// not there for this server). It has no forms, so it needs no CSRF token.
pub fn not_found(state: &AppState) -> Response {
    let csrf = CsrfToken::none();
    message(state, StatusCode::NOT_FOUND, &csrf, "Not found", "There is no page at this address.")
}
