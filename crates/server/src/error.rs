//! The one error type HTTP handlers return, and its JSON wire shape `{"error": …, "code": …}`.
//!
//! Both client families read this shape: Diaryx clients read `error`, the Verstak desktop reads
//! `code`. Internal failures are logged once, here, with their cause, and reach the client only as
//! `internal error`.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use concord_store::{Cap, StoreError};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    /// Seconds, sent as `Retry-After` with 429 answers.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 429 with `Retry-After`; `message` lets each surface keep its own wording.
    pub fn rate_limited(retry_after_secs: u64, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// 503 with `Retry-After`: the server is saturated (e.g. every password-hashing slot is busy)
    /// and the request was not attempted, so retrying later is safe.
    pub fn unavailable(retry_after_secs: u64, code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs.max(1)),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// Logs `cause` and answers 500 without revealing it.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The client-facing message (never an internal cause).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Full(_) => ApiError::storage_full(err),
            // A per-user cap is the caller's to resolve, so it gets a precise 403, whichever route hit it.
            StoreError::CapReached(Cap::DevicesPerUser) => ApiError::new(
                StatusCode::FORBIDDEN,
                "device_limit_reached",
                "device limit reached: revoke a device or sign out of a session first",
            ),
            StoreError::CapReached(Cap::WorkspacesPerUser) => ApiError::new(
                StatusCode::FORBIDDEN,
                "workspace_limit_reached",
                "workspace limit reached: delete a workspace first",
            ),
            err => ApiError::internal(err),
        }
    }
}

impl ApiError {
    /// Storage: logs `cause` and answers 507 `insufficient_storage`. Nothing of the request was
    /// stored; the client may retry once an operator has freed space.
    pub fn storage_full(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "storage full");
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", "storage is full; try again later")
    }

    /// Storage: a filesystem error as a client sees it: 507 when the disk is full, else 500.
    pub fn io(err: std::io::Error) -> ApiError {
        if err.kind() == std::io::ErrorKind::StorageFull {
            ApiError::storage_full(err)
        } else {
            ApiError::internal(err)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = crate::openapi::ErrorBody { error: &self.message, code: self.code };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
