//! Server-rendered pages for people (and, in `admin/`, for operators), beside the JSON APIs of
//! `api/`. Pages call the same account rules as the JSON handlers (`crate::accounts`); this module
//! only reads forms, renders templates and sets cookies.
//!
//! - [`page`]: the template glue: [`page::Layout`] (what every page's frame shows) and
//!   [`page::Page`], which renders an askama template into a response.
//! - [`assets`]: the stylesheet, compiled into the binary and served from `/assets/`.
//! - [`session`]: session cookies (`user_session`; the admin console adds its own) backed by
//!   Concord devices, stored as token hashes like every other credential.
//! - [`csrf`]: the token and Origin check applied to every form and cookie-authenticated call.
//! - [`people`]: people's pages (sign-in, registration, recovery, the dashboard).
//! - [`admin`]: the admin console under `/admin`, over the operations of `api::admin`.
//!
//! Architecture invariant: pages work without JavaScript and carry no inline script or style, so
//! the strict Content-Security-Policy of `app.rs` applies to them unchanged. Templates escape
//! every value by default (askama, `.html` files); nothing is marked safe.

pub mod admin;
pub mod assets;
pub mod csrf;
pub mod page;
pub mod people;
pub mod session;

use axum::Router;

use crate::app::AppState;

/// Every page route of this module.
pub fn routes() -> Router<AppState> {
    Router::new().merge(assets::routes()).merge(people::routes()).merge(admin::routes())
}
