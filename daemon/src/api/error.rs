//! API errors: every failure answers JSON `{"error":{"code","message"}}` with a fitting status
//! (contract section 4). Internal details go to the log, never to the client.

use agentd_wire::{ErrorBody, ErrorDetail};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// `400`, naming the parameter at fault.
    pub fn bad_request(param: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: format!("`{param}`: {message}"),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message:
                "send `Authorization: Bearer <token>`; the token is in the state dir's `token` file"
                    .into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: "this route does not accept that method".into(),
        }
    }

    /// `409`: the request cannot be carried out in the agent's state (`already_finished`,
    /// `not_cancelable`); the message says why and what to do instead.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code,
            message: message.into(),
        }
    }

    /// `502`: the cloud API failed (its error says how: a refused key, unavailable, …).
    pub fn upstream(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_GATEWAY,
            code: "upstream",
            message: message.into(),
        }
    }

    /// `503`: the writer hit an I/O error (a full disk, say) and the database cannot be read
    /// right now: a state that passes, said as such (`/v1/health` says why).
    pub fn store_unavailable() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "the database cannot be read right now (a write failed, the disk may be full); /v1/health says why; try again shortly".into(),
        }
    }

    /// `500`; the cause is logged here and not sent.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error answering a request: {cause}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; see the agentd log".into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        use crate::store::StoreError;
        match e {
            // The writer hit an I/O error (a full disk, say) and the database is being
            // reopened: a state that passes, said as such (`/v1/health` says why).
            StoreError::Reopening
            | StoreError::Db(redb::Error::PreviousIo | redb::Error::Io(_)) => {
                ApiError::store_unavailable()
            }
            // A moment after a large backfill: the file is given back its free space.
            StoreError::Compacting => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "unavailable",
                message: "the database file is being compacted (a second or so); try again shortly"
                    .into(),
            },
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}
