//! Traces through OpenTelemetry, exported over OTLP/HTTP when the standard
//! `OTEL_*` variables ask for it, and off otherwise.
//!
//! Off (the default), nothing here runs on the data path: [`span`] returns
//! `None` and the event's W3C context travels on unchanged. On, the
//! receiver starts a span for each event (a child of the producer's
//! `traceparent`, or the root of a new trace), the Kafka record carries
//! that span's context, and the dispatcher's delivery span is its child,
//! so the subscriber sees the same trace id with the dispatcher as parent.
//!
//! Export is on when `OTEL_TRACES_EXPORTER` is `otlp`, or when it is unset
//! and `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! is; `OTEL_SDK_DISABLED=true` turns it off. The exporter and SDK read the
//! rest themselves (endpoint, headers, timeout, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`).
//! `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` picks `http/protobuf` (default)
//! or `http/json`; `grpc` is not built in.

use std::{borrow::Cow, str::FromStr, sync::OnceLock};

pub use opentelemetry::{trace::SpanKind, KeyValue};
use opentelemetry::{
    trace::{
        Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
        Tracer as _, TracerProvider as _,
    },
    Context,
};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use ferry_event::trace::TraceContext;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP protocol '{0}' is not supported (use http/protobuf or http/json)")]
    Protocol(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Flushes and stops export when dropped: keep it alive for the process.
pub struct Guard(SdkTracerProvider);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(error) = self.0.shutdown() {
            tracing::warn!(%error, "spans not flushed at exit");
        }
    }
}

/// Whether the environment asks for trace export.
pub fn wanted(env: impl Fn(&str) -> Option<String>) -> bool {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    match env("OTEL_TRACES_EXPORTER") {
        Some(exporter) => exporter.split(',').any(|e| e.trim() == "otlp"),
        None => {
            env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
    }
}

/// Starts export if the environment asks for it. Call once, outside the
/// async runtime (the exporter's HTTP client runs on a thread of its own).
pub fn init(service: &'static str) -> Result<Option<Guard>, TelemetryError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if !wanted(env) {
        return Ok(None);
    }
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    let protocol = match protocol.as_str() {
        "http/protobuf" => Protocol::HttpBinary,
        "http/json" => Protocol::HttpJson,
        other => return Err(TelemetryError::Protocol(other.into())),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let _ = TRACER.set(provider.tracer("ferry"));
    tracing::info!("exporting traces over OTLP");
    Ok(Some(Guard(provider)))
}

/// A span of Ferry's own, when export is on.
pub struct Span {
    inner: opentelemetry_sdk::trace::Span,
    state: Option<String>,
}

/// Starts a span, the child of `parent` (or a new trace's root); `None`
/// when export is off. Attributes are only built when it is on.
pub fn span(
    name: &'static str,
    kind: SpanKind,
    parent: Option<&TraceContext>,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Option<Span> {
    let tracer = TRACER.get()?;
    let parent_cx = match parent {
        Some(p) => Context::new().with_remote_span_context(span_context(p)),
        None => Context::new(),
    };
    let inner = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes())
        .start_with_context(tracer, &parent_cx);
    Some(Span {
        inner,
        state: parent.and_then(|p| p.state.clone()),
    })
}

impl Span {
    /// The context its children carry: this span's id as their parent.
    pub fn context(&self) -> TraceContext {
        let cx = self.inner.span_context();
        TraceContext {
            trace_id: cx.trace_id().to_bytes(),
            span_id: cx.span_id().to_bytes(),
            flags: cx.trace_flags().to_u8(),
            state: self.state.clone(),
        }
    }

    pub fn set(&mut self, attribute: KeyValue) {
        self.inner.set_attribute(attribute);
    }

    pub fn fail(&mut self, reason: impl Into<Cow<'static, str>>) {
        self.inner.set_status(Status::error(reason));
    }
}

/// The context a span should continue: its own when there is one, else
/// the one that came with the event.
/// Borrowed when it is the incoming one, so that without export nothing
/// is copied per event.
pub fn continued<'a>(
    span: Option<&Span>,
    incoming: Option<&'a TraceContext>,
) -> Option<Cow<'a, TraceContext>> {
    match span {
        Some(span) => Some(Cow::Owned(span.context())),
        None => incoming.map(Cow::Borrowed),
    }
}

fn span_context(parent: &TraceContext) -> SpanContext {
    let state = parent
        .state
        .as_deref()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        state,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_is_off_unless_asked_for() {
        assert!(!wanted(env(&[])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://c:4318"
        )])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(wanted(env(&[("OTEL_TRACES_EXPORTER", "otlp")])));
        assert!(!wanted(env(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")
        ])));
        assert!(!wanted(env(&[
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "otlp")
        ])));
    }

    #[test]
    fn without_export_spans_cost_nothing_and_the_context_goes_on_unchanged() {
        let incoming = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("k=v"),
        )
        .unwrap();
        let span = span("x", SpanKind::Server, Some(&incoming), || {
            panic!("attributes are not built when export is off")
        });
        assert!(span.is_none());
        assert_eq!(continued(None, Some(&incoming)).as_deref(), Some(&incoming));
    }
}
