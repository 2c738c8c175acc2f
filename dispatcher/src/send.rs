//! One delivery attempt over HTTP: POST the event (binary mode, or
//! structured when asked), `Prefer: reply`, and read the answer within the
//! attempt's timeout.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferry_event::{trace::TraceContext, Event, InvalidEvent};
use http::{header, HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};

use crate::retry::Outcome;

/// A pool of keep-alive connections, HTTP and HTTPS (whom it trusts: the
/// `trust` module).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The most of a response body that is read (replies are events too).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// A client whose HTTPS connections verify with `tls`.
pub fn client_trusting(tls: rustls::ClientConfig) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    // https_or_http: the scheme decides; an https URL never goes plain.
    http.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        // No cap on idle connections per host: deliveries in flight are
        // bounded already (per trigger, and per broker by
        // --max-deliveries-per-topic, 1,000), and a cap below that closed
        // most connections after one request when a broker's triggers
        // share a subscriber host, so each delivery paid a TCP handshake.
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// A subscriber's answer.
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn outcome(&self) -> Outcome {
        Outcome::Status {
            code: self.code,
            retry_after: retry_after(&self.headers, SystemTime::now()),
        }
    }

    /// The reply event: a 200 whose body is a CloudEvent. `Ok(None)` when
    /// the answer carries no event (202, 204, an empty body, a body without
    /// CloudEvents headers); `Err` when it claims to and is malformed.
    pub fn reply(&self) -> Result<Option<Event>, InvalidEvent> {
        if self.code != 200 {
            return Ok(None);
        }
        let claims_event = self.headers.contains_key("ce-specversion")
            || ferry_event::http::mode(&self.headers) != Ok(ferry_event::http::Mode::Binary);
        if !claims_event || (self.body.is_empty() && !self.headers.contains_key("ce-specversion")) {
            return Ok(None);
        }
        let mut events = ferry_event::http::decode(&self.headers, self.body.clone())?;
        match events.len() {
            1 => Ok(events.pop()),
            n => Err(InvalidEvent::Malformed(format!(
                "a reply is one event, got a batch of {n}"
            ))),
        }
    }
}

/// Why an attempt got no answer.
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    /// The destination requires a token and none could be had.
    #[error("no token: {0}")]
    Token(String),
}

/// How one attempt is sent.
pub struct Attempt<'a> {
    pub structured: bool,
    pub timeout: Duration,
    pub trace: Option<&'a TraceContext>,
    /// `Kn-Namespace`, as the reference sends it.
    pub namespace: Option<&'a HeaderValue>,
    /// `Authorization: Bearer`, for a destination with an audience.
    pub token: Option<&'a str>,
}

/// Posts `event` to `url` and waits for the whole answer, at most the
/// attempt's timeout.
pub async fn attempt(
    client: &HttpClient,
    url: &http::Uri,
    event: &Event,
    how: Attempt<'_>,
) -> Result<Answer, NoAnswer> {
    let timeout = how.timeout;
    let request = request(url, event, &how);
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| NoAnswer::Request(error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| NoAnswer::Request(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Answer {
            code: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| NoAnswer::Timeout(timeout))?
}

fn request(url: &http::Uri, event: &Event, how: &Attempt<'_>) -> Request<Full<Bytes>> {
    let (mut headers, body) = if how.structured {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json; charset=utf-8"),
        );
        (h, ferry_event::json::encode(event))
    } else {
        (
            ferry_event::http::encode_binary_headers(event),
            event.data().cloned().unwrap_or_default(),
        )
    };
    headers.insert("prefer", HeaderValue::from_static("reply"));
    if let Some(namespace) = how.namespace {
        headers.insert("kn-namespace", namespace.clone());
    }
    if let Some(value) = how
        .token
        .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        headers.insert(header::AUTHORIZATION, value);
    }
    for (name, value) in how.trace.iter().flat_map(|t| t.headers()) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    let mut request = Request::post(url.clone())
        .body(Full::new(body))
        .expect("a valid URI makes a valid request");
    *request.headers_mut() = headers;
    request
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// hyper's errors say little at the top; the cause is below.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: u16, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Answer {
            code,
            headers: h,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    const REPLY: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "r"),
        ("ce-source", "/s"),
        ("ce-type", "reply"),
    ];

    #[test]
    fn which_answers_are_replies() {
        assert_eq!(
            answer(200, &REPLY, "x").reply().unwrap().unwrap().ty(),
            "reply"
        );
        assert_eq!(
            answer(200, &REPLY, "").reply().unwrap().unwrap().data(),
            None,
            "a reply without data"
        );
        let structured = r#"{"specversion":"1.0","id":"r","source":"/s","type":"reply"}"#;
        assert!(answer(
            200,
            &[("content-type", "application/cloudevents+json")],
            structured
        )
        .reply()
        .unwrap()
        .is_some());
        assert!(
            answer(202, &REPLY, "x").reply().unwrap().is_none(),
            "202 is never a reply"
        );
        assert!(answer(204, &[], "").reply().unwrap().is_none());
        assert!(
            answer(200, &[], "").reply().unwrap().is_none(),
            "empty body"
        );
        assert!(
            answer(200, &[("content-type", "text/plain")], "ok")
                .reply()
                .unwrap()
                .is_none(),
            "not an event"
        );
        let err = answer(200, &[("ce-specversion", "1.0")], "x")
            .reply()
            .unwrap_err();
        assert_eq!(err.to_string(), "missing required attribute 'id'");
        assert!(answer(
            200,
            &[("content-type", "application/cloudevents+json")],
            "{"
        )
        .reply()
        .is_err());
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(retry_after(&h("7"), now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&h(&date), now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(&h("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn requests_ask_for_a_reply_in_either_mode() {
        let mut e = Event::new("1", "/s", "t");
        e.set_data(Some("text/plain"), Some(Bytes::from_static(b"hi")));
        let url: http::Uri = "http://sub.ns/x".parse().unwrap();
        let namespace = HeaderValue::from_static("ns");
        let how = |structured| Attempt {
            structured,
            timeout: Duration::from_secs(1),
            trace: None,
            namespace: Some(&namespace),
            token: Some("t0k3n"),
        };
        let binary = request(&url, &e, &how(false));
        assert_eq!(binary.headers()["prefer"], "reply");
        assert_eq!(binary.headers()["authorization"], "Bearer t0k3n");
        assert_eq!(binary.headers()["kn-namespace"], "ns");
        assert_eq!(binary.headers()["ce-id"], "1");
        assert_eq!(binary.headers()["content-type"], "text/plain");
        let structured = request(&url, &e, &how(true));
        assert_eq!(
            structured.headers()["content-type"],
            "application/cloudevents+json; charset=utf-8"
        );
        assert!(!structured.headers().contains_key("ce-id"));
    }
}
