//! People's pages: the landing page, sign-in and registration, confirming an address, forgotten
//! passwords, and the dashboard of one's devices, workspaces and vaults.
//!
//! Handlers read forms and render templates; every account rule (validation, limits, what a
//! sign-in creates, what a revocation closes) is a call into `crate::accounts`, the same one the
//! JSON handlers make.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::accounts::request::ClientIp;
use crate::accounts::{recovery, registration};
use crate::app::AppState;
use crate::web::csrf::CsrfToken;
use crate::web::page::{self, Layout, Page};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/confirm", post(confirm))
        .route("/confirm/result", get(confirm_result))
        .route("/reset", get(reset_form).post(reset))
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    layout: Layout,
    token: String,
}

/// The page of the confirmation link: a button that posts the token (see `api::user_api`).
pub fn confirm_page(csrf: &CsrfToken, token: String) -> Response {
    Page::ok(ConfirmPage { layout: Layout::new("Confirm your email address", csrf, false), token }).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
}

/// Confirms, then shows the outcome at `/confirm/result`, so a reload does not post again.
async fn confirm(State(state): State<AppState>, Form(form): Form<TokenForm>) -> Response {
    match registration::confirm(&state, &form.token).await {
        Ok(()) => Redirect::to("/confirm/result?status=confirmed").into_response(),
        Err(err) if err.status().is_client_error() => Redirect::to("/confirm/result?status=invalid").into_response(),
        Err(err) => err.into_response(),
    }
}

#[derive(Deserialize)]
struct ResultQuery {
    #[serde(default)]
    status: String,
}

/// The outcome of a confirmation; the query names one of two fixed messages, never any text.
async fn confirm_result(csrf: CsrfToken, Query(query): Query<ResultQuery>) -> Response {
    if query.status == "confirmed" {
        page::message(
            StatusCode::OK,
            &csrf,
            "Address confirmed",
            "Your address is confirmed. You can now sign in and pair devices.",
        )
    } else {
        page::message(
            StatusCode::BAD_REQUEST,
            &csrf,
            "Link not valid",
            "This confirmation link is unknown, used or expired. Sign in, or ask for a new link through \"forgot password\".",
        )
    }
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    layout: Layout,
    token: String,
    error: Option<String>,
}

/// The form of a reset link; `error` says why the last attempt was refused.
pub fn reset_page(status: StatusCode, csrf: &CsrfToken, token: String, error: Option<String>) -> Response {
    Page(status, ResetPage { layout: Layout::new("Choose a new password", csrf, false), token, error }).into_response()
}

async fn reset_form(csrf: CsrfToken, Query(form): Query<TokenForm>) -> Response {
    reset_page(StatusCode::OK, &csrf, form.token, None)
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

async fn reset(State(state): State<AppState>, ip: ClientIp, csrf: CsrfToken, Form(form): Form<ResetForm>) -> Response {
    match recovery::reset(&state, &ip, &form.token, form.new_password).await {
        Ok(()) => page::message(
            StatusCode::OK,
            &csrf,
            "Password changed",
            "Your password is changed and all your devices are signed out. Sign in with the new password.",
        ),
        Err(err) if err.status().is_client_error() => {
            reset_page(err.status(), &csrf, form.token, Some(err.message().to_owned()))
        }
        Err(err) => err.into_response(),
    }
}
