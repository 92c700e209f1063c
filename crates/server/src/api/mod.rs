//! HTTP surfaces, one module per wire surface; each exposes `routes()` merged by [`crate::app::router`].

pub mod admin;
pub mod blobs;
pub mod diaryx_auth;
pub mod docs;
pub mod events;
pub mod health;
pub mod history;
pub mod oplog;
pub mod shares;
pub mod user_api;
pub mod verstak_client;
