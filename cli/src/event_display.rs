//! `ferry event-display`: prints every CloudEvent it receives, as Knative's
//! event_display does, and answers 202; with `--append NAME=VALUE` it
//! answers with the event and that extension instead, as Knative's
//! appender sample does (a step of a Sequence).

use std::{net::SocketAddr, sync::Arc};

use ferry_common::{
    server::{self, Body, Handler},
    shutdown::Shutdown,
};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

#[derive(clap::Args)]
pub struct Args {
    /// Where to receive events.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Reply with each event, this extension added (NAME=VALUE).
    #[arg(long, value_parser = parse_extension)]
    append: Option<(String, String)>,
}

fn parse_extension(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("NAME=VALUE")?;
    if !ferry_event::is_valid_name(name) {
        return Err(format!("'{name}' is not a CloudEvents attribute name"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

struct Display {
    append: Option<(String, String)>,
}

impl Handler for Display {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return server::text(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}\n"),
                )
            }
        };
        match ferry_event::http::decode(&parts.headers, body) {
            Ok(events) => {
                for event in &events {
                    println!("{}", ferry_event::display::display(event));
                }
                match (&self.append, events.into_iter().next()) {
                    (Some((name, value)), Some(mut event)) => {
                        event.set(name, ferry_event::Value::String(value.clone()));
                        reply(&event)
                    }
                    _ => server::text(StatusCode::ACCEPTED, ""),
                }
            }
            Err(error) => {
                eprintln!("not a CloudEvent: {error}");
                server::text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid CloudEvent: {error}\n"),
                )
            }
        }
    }
}

/// The event as a binary-mode answer.
fn reply(event: &ferry_event::Event) -> Response<Body> {
    let mut response = Response::new(server::full(event.data().cloned().unwrap_or_default()));
    *response.headers_mut() = ferry_event::http::encode_binary_headers(event);
    response
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener = server::bind(args.listen).await?;
    eprintln!(
        "event-display listening on http://{}",
        listener.local_addr()?
    );
    let display = Display {
        append: args.append,
    };
    server::serve(listener, Arc::new(display), shutdown).await;
    Ok(())
}
