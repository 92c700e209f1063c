//! HTTP surfaces, one module per wire surface; each exposes `routes()` merged by [`crate::app::router`].

pub mod blobs;
pub mod events;
pub mod health;
pub mod oplog;
