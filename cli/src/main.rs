//! `ferry`: one binary, a subcommand per component. It parses flags, sets up
//! logging and hands over to the component's library.

/// Every `ferry` process allocates through mimalloc: glibc's malloc took
/// a seventh of the receiver's CPU under load. Built without transparent
/// huge pages, which cost up to 48 MiB of RSS under fan-out (see
/// BENCHMARKS.md, issue 25).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_client;
mod bench;
mod controller;
mod dispatcher;
mod event_display;
mod eventtypes;
mod mesh;
mod receiver;
mod replay;
mod run;
mod send;
mod served;
mod shared;
mod standalone;
mod topic;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "A Kafka-backed event broker and channel for Knative Eventing"
)]
struct Cli {
    /// Log format: "text" or "json". The level comes from RUST_LOG (default info).
    #[arg(long, env = "FERRY_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The HTTP ingress: CloudEvents in, Kafka records out.
    Receiver(receiver::Args),
    /// Delivers each broker's events to its triggers.
    Dispatcher(dispatcher::Args),
    /// Turns Broker and Trigger resources into topics, groups, the contract and status.
    Controller(controller::Args),
    /// Controller, receiver and dispatcher in one process, resources from a folder.
    Standalone(standalone::Args),
    /// Prints every CloudEvent it receives.
    EventDisplay(event_display::Args),
    /// Posts one CloudEvent.
    Send(send::Args),
    /// Runs a command with a SinkBinding's K_SINK and K_CE_OVERRIDES.
    Run(run::Args),
    /// Prints the EventType registry, with the triggers each type reaches.
    Eventtypes(eventtypes::Args),
    /// Create a topic, or print its events.
    Topic(topic::Args),
    /// Move a trigger's (subscription's, KafkaSource's) positions to a time, the beginning or the end.
    Replay(replay::Args),
    /// Measure: load, sink, baselines and the benchmark suite.
    Bench(bench::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Spans are flushed when the guard drops, after the runtime has stopped.
    let _traces = match cli.command.service() {
        Some(service) => ferry_common::telemetry::init(service)?,
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = ferry_common::shutdown::on_signal();
        match cli.command {
            Command::Receiver(args) => receiver::run(args, shutdown).await,
            Command::Dispatcher(args) => dispatcher::run(args, shutdown).await,
            Command::Controller(args) => controller::run(args, shutdown).await,
            Command::Standalone(args) => standalone::run(args, shutdown).await,
            Command::EventDisplay(args) => event_display::run(args, shutdown).await,
            Command::Send(args) => send::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Eventtypes(args) => eventtypes::run(args).await,
            Command::Topic(args) => topic::run(args, shutdown).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Bench(args) => bench::run(args, shutdown).await,
        }
    })
}

impl Command {
    /// The OpenTelemetry service name of the components that export traces.
    fn service(&self) -> Option<&'static str> {
        match self {
            Command::Receiver(_) => Some("ferry-receiver"),
            Command::Dispatcher(_) => Some("ferry-dispatcher"),
            Command::Standalone(_) => Some("ferry-standalone"),
            _ => None,
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,librdkafka=warn,rdkafka=warn")
    });
    // Logs go to stderr: stdout is for what a command prints (events, answers).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
