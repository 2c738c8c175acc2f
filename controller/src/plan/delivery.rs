//! An egress's delivery: retries, backoff, timeout and dead-letter sink
//! (Knative's DeliverySpec) into the contract's EgressConfig, and its
//! delivery order.

use ferry_proto::{
    replay::To, BackoffPolicy, DeliveryOrder, Egress, EgressConfig, InitialOffset, Replay,
};

use super::{addresses::resolve, settings::Settings, status::Status};
use crate::{
    duration,
    resources::{
        DeliverySpec, Metadata, BACKOFF_MAX_ANNOTATION, DELIVERY_ORDER_ANNOTATION,
        MAX_IN_FLIGHT_ANNOTATION, PAUSED_ANNOTATION, REPLAY_ANNOTATION, START_ANNOTATION,
    },
};

/// Why a trigger is not ready: Knative's reason, and a message.
pub(super) type NotReady = (&'static str, String);

/// An egress's own delivery settings (which replace its resource's) and
/// its delivery order (annotation `kafka.eventing.knative.dev/delivery.order`,
/// else `default`; Ferry's `ordered-by-key` is `Ordered` here and
/// `orderedByKey` in [`ferry_annotations`]); the status shows the
/// dead-letter sink.
pub(super) fn egress_delivery(
    delivery: Option<&DeliverySpec>,
    metadata: &Metadata,
    default: DeliveryOrder,
    settings: &Settings,
    status: &mut Status,
) -> Result<(Option<EgressConfig>, DeliveryOrder), NotReady> {
    let config = delivery_config(delivery, metadata.namespace(), settings, status)
        .map_err(|m| ("DeliveryInvalid", m))?;
    let order = match metadata
        .annotations
        .get(DELIVERY_ORDER_ANNOTATION)
        .map(String::as_str)
    {
        None => default,
        Some("unordered") => DeliveryOrder::Unordered,
        Some("ordered" | ORDERED_BY_KEY) => DeliveryOrder::Ordered,
        Some(other) => {
            return Err((
                "DeliveryOrderInvalid",
                format!(
                    "delivery order '{other}' is not one of ordered, unordered, {ORDERED_BY_KEY}"
                ),
            ))
        }
    };
    Ok((config, order))
}

/// The longest wait between attempts its annotation
/// `delivery.ferry.dev/backoff-max` allows, in milliseconds; 0 without one.
fn backoff_max(metadata: &Metadata) -> Result<u64, NotReady> {
    let Some(text) = metadata.annotations.get(BACKOFF_MAX_ANNOTATION) else {
        return Ok(0);
    };
    match duration::parse(text) {
        Ok(d) if !d.is_zero() => Ok(d.as_millis() as u64),
        Ok(_) => Err(invalid(BACKOFF_MAX_ANNOTATION, "must be longer than zero")),
        Err(e) => Err(invalid(BACKOFF_MAX_ANNOTATION, e)),
    }
}

/// Ferry's delivery order: per record key.
const ORDERED_BY_KEY: &str = "ordered-by-key";

/// The contract fields of Ferry's delivery annotations
/// (`delivery.ferry.dev/`, and `ordered-by-key`) on an egress's object,
/// for the rest of an Egress to be written over; the status records a
/// replay passed on.
pub(super) fn ferry_annotations(
    metadata: &Metadata,
    status: &mut Status,
) -> Result<Egress, NotReady> {
    let (initial_offset, start_time) = match metadata.annotations.get(START_ANNOTATION) {
        None => (InitialOffset::Unset, 0),
        Some(text) => match point(text).map_err(|e| invalid(START_ANNOTATION, e))? {
            To::Offset(offset) => (InitialOffset::try_from(offset).unwrap_or_default(), 0),
            To::Time(ms) => (InitialOffset::Unset, ms),
        },
    };
    let replay = replay(metadata)?;
    if let Some(replay) = &replay {
        status
            .annotations
            .insert(REPLAY_ANNOTATION.to_owned(), replay.id.clone());
    }
    Ok(Egress {
        backoff_max: backoff_max(metadata)?,
        max_in_flight: max_in_flight(metadata)?,
        initial_offset: initial_offset as i32,
        start_time,
        ordered_by_key: metadata
            .annotations
            .get(DELIVERY_ORDER_ANNOTATION)
            .is_some_and(|o| o == ORDERED_BY_KEY),
        paused: paused(metadata)?,
        replay,
        ..Default::default()
    })
}

fn invalid(annotation: &str, message: impl std::fmt::Display) -> NotReady {
    (
        "DeliveryInvalid",
        format!("annotation {annotation}: {message}"),
    )
}

/// `earliest`, `latest` or an RFC 3339 time (to the millisecond).
fn point(text: &str) -> Result<To, String> {
    match text.trim() {
        "earliest" => Ok(To::Offset(InitialOffset::Earliest as i32)),
        "latest" => Ok(To::Offset(InitialOffset::Latest as i32)),
        other => chrono::DateTime::parse_from_rfc3339(other)
            .map(|t| To::Time(t.timestamp_millis().max(1)))
            .map_err(|e| format!("'{other}' is not earliest, latest or an RFC 3339 time ({e})")),
    }
}

/// Its annotation `delivery.ferry.dev/replay`: `<point>` or `<point>#<tag>`,
/// the whole value being the replay's id, so that a new tag asks for the
/// same point again.
fn replay(metadata: &Metadata) -> Result<Option<Replay>, NotReady> {
    let Some(value) = metadata.annotations.get(REPLAY_ANNOTATION) else {
        return Ok(None);
    };
    let target = value.split_once('#').map_or(value.as_str(), |(t, _)| t);
    let to = point(target).map_err(|e| invalid(REPLAY_ANNOTATION, e))?;
    Ok(Some(Replay {
        id: value.trim().to_owned(),
        to: Some(to),
    }))
}

/// Its annotation `delivery.ferry.dev/paused`.
fn paused(metadata: &Metadata) -> Result<bool, NotReady> {
    match metadata
        .annotations
        .get(PAUSED_ANNOTATION)
        .map(|p| p.trim())
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(invalid(
            PAUSED_ANNOTATION,
            format!("'{other}' is neither true nor false"),
        )),
    }
}

/// Its annotation `delivery.ferry.dev/max-in-flight`; 0 without one.
fn max_in_flight(metadata: &Metadata) -> Result<u32, NotReady> {
    let Some(text) = metadata.annotations.get(MAX_IN_FLIGHT_ANNOTATION) else {
        return Ok(0);
    };
    match text.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(
            MAX_IN_FLIGHT_ANNOTATION,
            format!("'{text}' is not a positive integer"),
        )),
    }
}

/// Delivery settings (a resource's, or an egress's own), if any; the
/// status shows the dead-letter sink.
pub(super) fn delivery_config(
    delivery: Option<&DeliverySpec>,
    namespace: &str,
    settings: &Settings,
    status: &mut Status,
) -> Result<Option<EgressConfig>, String> {
    let config = delivery
        .map(|d| egress_config(d, namespace, settings))
        .transpose()?;
    if let Some(c) = &config {
        status.dead_letter_sink_uri = Some(c.dead_letter.clone()).filter(|d| !d.is_empty());
    }
    Ok(config)
}

pub(super) fn egress_config(
    delivery: &DeliverySpec,
    namespace: &str,
    settings: &Settings,
) -> Result<EgressConfig, String> {
    let millis = |field: &str, value: &Option<String>| -> Result<u64, String> {
        value
            .as_deref()
            .map(|v| {
                duration::parse(v)
                    .map(|d| d.as_millis() as u64)
                    .map_err(|e| format!("{field}: {e}"))
            })
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let retry = match delivery.retry {
        None => 0,
        Some(r) if r < 0 => return Err(format!("retry must not be negative (got {r})")),
        Some(r) => u32::try_from(r).map_err(|_| format!("retry {r} is too large"))?,
    };
    let backoff_policy = match delivery
        .backoff_policy
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("exponential") => BackoffPolicy::Exponential,
        Some("linear") => BackoffPolicy::Linear,
        Some(other) => {
            return Err(format!(
                "backoffPolicy '{other}' is neither linear nor exponential"
            ))
        }
    };
    let backoff_delay = match &delivery.backoff_delay {
        // Knative's default backoffDelay when retries are asked for without
        // one; a user's explicit `PT0S` retries at once, as in the reference.
        None if retry > 0 => 200,
        delay => millis("backoffDelay", delay)?,
    };
    let dead_letter = match &delivery.dead_letter_sink {
        Some(sink) => {
            resolve(sink, namespace, settings).map_err(|e| format!("deadLetterSink: {e}"))?
        }
        None => String::new(),
    };
    let dead_letter_ca_certs = delivery
        .dead_letter_sink
        .as_ref()
        .and_then(|s| s.ca_certs.clone())
        .unwrap_or_default();
    let dead_letter_audience = delivery
        .dead_letter_sink
        .as_ref()
        .map(|s| super::policies::of_destination(s, namespace, settings))
        .unwrap_or_default();
    Ok(EgressConfig {
        dead_letter,
        dead_letter_ca_certs,
        dead_letter_audience,
        retry,
        backoff_policy: backoff_policy as i32,
        backoff_delay,
        timeout: millis("timeout", &delivery.timeout)?,
        ..Default::default()
    })
}
