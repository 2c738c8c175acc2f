//! `ferry event-display`: prints every CloudEvent it receives, as Knative's
//! event_display does, and answers 202.

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
}

struct Display;

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
                for event in events {
                    println!("{}", ferry_event::display::display(&event));
                }
                server::text(StatusCode::ACCEPTED, "")
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

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener = server::bind(args.listen).await?;
    eprintln!(
        "event-display listening on http://{}",
        listener.local_addr()?
    );
    server::serve(listener, Arc::new(Display), shutdown).await;
    Ok(())
}
