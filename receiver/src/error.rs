//! Every way an ingress request can fail, and the one place each becomes an
//! HTTP status.

use ferry_common::{
    producer::ProduceError,
    server::{self, Body},
};
use ferry_event::InvalidEvent;
use http::{
    header::{ALLOW, CONNECTION, WWW_AUTHENTICATE},
    Response, StatusCode,
};

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// Only POST delivers events.
    #[error("method {0} is not allowed; send events with POST")]
    Method(http::Method),
    /// No resource in the contract has this path or host.
    #[error("no broker or channel at {0}")]
    NotFound(String),
    /// The resource requires a sender's token (OIDC) and the request's could
    /// not be verified.
    #[error("{0}")]
    Unauthenticated(String),
    /// The body is larger than the limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The body could not be read.
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// The request is not a valid CloudEvent.
    #[error("invalid CloudEvent: {0}")]
    Invalid(#[from] InvalidEvent),
    /// A verified sender that no EventPolicy admits (for this event).
    #[error("{0}")]
    Forbidden(String),
    /// An event over plain HTTP where only HTTPS is taken.
    #[error("this ingress takes events over HTTPS only (transport-encryption: strict)")]
    PlainHttp,
    /// The resource's Kafka credentials cannot be read.
    #[error("event not stored: the Kafka credentials of {resource} are unavailable: {reason}")]
    Credentials { resource: String, reason: String },
    /// Kafka did not take the event.
    #[error("event not stored: {0}")]
    Produce(#[from] ProduceError),
}

impl IngressError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngressError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            IngressError::NotFound(_) => StatusCode::NOT_FOUND,
            IngressError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            IngressError::PlainHttp | IngressError::Forbidden(_) => StatusCode::FORBIDDEN,
            IngressError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngressError::Body(_) | IngressError::Invalid(_) => StatusCode::BAD_REQUEST,
            IngressError::Produce(_) | IngressError::Credentials { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The answer a client gets: the status, and the reason in words.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut response = server::text(status, format!("{self}\n"));
        let headers = response.headers_mut();
        match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                headers.insert(ALLOW, http::HeaderValue::from_static("POST"));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                // The rest of an oversized body is not read.
                headers.insert(CONNECTION, http::HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_error_has_its_status() {
        let cases = [
            (IngressError::Method(http::Method::GET), 405),
            (IngressError::NotFound("/x".into()), 404),
            (IngressError::Unauthenticated("no token".into()), 401),
            (IngressError::TooLarge { limit: 1 }, 413),
            (IngressError::Invalid(InvalidEvent::Missing("id")), 400),
            (IngressError::Body("eof".into()), 400),
            (
                IngressError::Produce(ProduceError::Timeout(Duration::from_secs(1))),
                503,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
        let r = IngressError::Method(http::Method::PUT).into_response();
        assert_eq!(r.headers()[ALLOW], "POST");
        let r = IngressError::Unauthenticated("no token".into()).into_response();
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
    }
}
