//! Extractors whose refusals are problem+json: query strings (`Q`) and JSON bodies (`Body`).

use super::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Query, Request};
use axum::http::StatusCode;

/// Query strings whose rejections are problems too (a bad date, an unknown parameter).
pub struct Q<T>(pub T);

#[axum::async_trait]
impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}

/// JSON bodies whose rejections are problems too (malformed JSON, wrong types, too large).
pub struct Body<T>(pub T);

#[axum::async_trait]
impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => {
                let status = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        StatusCode::PAYLOAD_TOO_LARGE
                    }
                    // The body stopped arriving (`body_idle_timeout_secs`) or broke off.
                    JsonRejection::BytesRejection(_) => {
                        return Err(ApiError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            "request-timeout",
                            "the request body stopped arriving before it was complete; nothing was done",
                        ))
                    }
                    JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                Err(ApiError::new(status, "bad-request", rejection.body_text()))
            }
        }
    }
}
