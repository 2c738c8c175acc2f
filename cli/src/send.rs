//! `ferry send`: posts one CloudEvent and prints the answer; a non-2xx
//! answer is a failure.

use anyhow::{bail, Context};
use bytes::Bytes;
use ferry_event::{Event, Value};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

#[derive(clap::Args)]
pub struct Args {
    /// Where to post: a broker's address, a channel, any CloudEvents sink.
    url: http::Uri,
    #[arg(long = "type")]
    ty: String,
    #[arg(long)]
    source: String,
    /// Default: a fresh unique id.
    #[arg(long)]
    id: Option<String>,
    /// The data: JSON text, or @FILE to read it from a file.
    #[arg(long)]
    data: Option<String>,
    /// The data's content type [default: application/json when the data is
    /// JSON, application/octet-stream otherwise].
    #[arg(long)]
    content_type: Option<String>,
    /// An extension attribute, name=value; repeatable.
    #[arg(long = "extension", value_parser = parse_extension)]
    extensions: Vec<(String, String)>,
    /// Send in structured mode (application/cloudevents+json) instead of binary.
    #[arg(long)]
    structured: bool,
}

fn parse_extension(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{text}' is not name=value"))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let id = args.id.clone().unwrap_or_else(fresh_id);
    let mut event = Event::new(&id, &args.source, &args.ty);
    for (name, value) in &args.extensions {
        event.set(name, Value::String(value.clone()));
    }
    if let Some(data) = &args.data {
        let bytes = match data.strip_prefix('@') {
            Some(path) => {
                Bytes::from(std::fs::read(path).with_context(|| format!("cannot read {path}"))?)
            }
            None => Bytes::from(data.clone()),
        };
        let is_json = serde_json::from_slice::<&serde_json::value::RawValue>(&bytes).is_ok();
        let content_type = args.content_type.clone().unwrap_or_else(|| {
            if is_json {
                "application/json"
            } else {
                "application/octet-stream"
            }
            .to_owned()
        });
        event.set_data(Some(&content_type), Some(bytes));
    }
    event.validate().context("the event is not valid")?;

    let mut request = Request::post(args.url.clone());
    let body = if args.structured {
        request = request.header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json"),
        );
        ferry_event::json::encode(&event)
    } else {
        for (name, value) in ferry_event::http::encode_binary_headers(&event).iter() {
            request = request.header(name, value);
        }
        event.data().cloned().unwrap_or_default()
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(request.body(Full::new(body))?)
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "{} {} (id {id})",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    if !body.is_empty() {
        println!("{}", String::from_utf8_lossy(&body).trim_end());
    }
    if !status.is_success() {
        bail!("the event was not accepted");
    }
    Ok(())
}

/// Unique enough for an event id: time and process.
fn fresh_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("ferry-{}-{nanos:x}", std::process::id())
}
