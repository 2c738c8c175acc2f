//! `ferry bench`: load, sink, baselines and the benchmark suite.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{bail, Context};
use ferry_bench::{
    baseline::{self, Records},
    compare,
    event::RunId,
    gateway,
    load::{self, Load},
    report::Report,
    sink::{Behaviour, SinkHandle},
    suite,
};
use ferry_common::{server, shutdown::Shutdown};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Send events to an ingress; with --sink, count what triggers deliver.
    Load(LoadArgs),
    /// An HTTP server that answers 202 to everything: the HTTP ceiling.
    Noop {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
    /// An HTTP server writing each request to a topic with a raw producer,
    /// 202 once acknowledged: the ceiling of any HTTP → Kafka ingress.
    Gateway {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
        bootstrap_servers: String,
        #[arg(long)]
        topic: String,
    },
    /// A raw rdkafka producer writing bench records: the Kafka ceiling.
    Produce {
        #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
        bootstrap_servers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 1000)]
        in_flight: usize,
    },
    /// A raw consumer posting each record to a URL: the dispatch ceiling.
    /// It relays `count` records, prints the rate, and waits to be stopped
    /// (so that its CPU time can still be read).
    Relay {
        #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
        bootstrap_servers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        url: String,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 100)]
        in_flight: usize,
        /// Relay only this bench run's records (its id, in hex).
        #[arg(long, value_parser = parse_run, conflicts_with = "new")]
        run: Option<RunId>,
        /// Relay only what is written once the relay's group is assigned.
        #[arg(long)]
        new: bool,
    },
    /// Run the scenarios of BENCHMARKS.md and print their tables.
    Suite(SuiteArgs),
}

#[derive(clap::Args)]
struct LoadArgs {
    /// The ingress URL, e.g. http://127.0.0.1:8080/default/example.
    url: http::Uri,
    /// Events per second [default: as fast as the connections go].
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Stop after this many events...
    #[arg(long, default_value_t = u64::MAX)]
    count: u64,
    /// ...or after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Run the sink here; triggers deliver to http://<sink>/<any path>,
    /// a path per trigger.
    #[arg(long)]
    sink: Option<SocketAddr>,
    /// How many triggers (sink paths) each event must reach.
    #[arg(long, default_value_t = 1)]
    copies: usize,
    /// The sink's answer time (milliseconds): a slow subscriber.
    #[arg(long, default_value_t = 0)]
    sink_delay_ms: u64,
    /// How long to wait for deliveries after the last send (seconds).
    #[arg(long, default_value_t = 30.0)]
    drain_secs: f64,
    /// Exit non-zero when an accepted event was not delivered.
    #[arg(long)]
    fail_on_loss: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct SuiteArgs {
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String,
    /// Which scenarios, e.g. 1,2,5.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3, 4, 5])]
    scenarios: Vec<u8>,
    /// Seconds of sending per measurement.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    partitions: usize,
    /// Trigger counts of the fan-out scenario.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100, 1000])]
    fanout: Vec<usize>,
    /// Events in the dispatch scenario's backlog.
    #[arg(long, default_value_t = 50_000)]
    backlog: u64,
    /// Minutes of the soak (scenario 6, not in the default set).
    #[arg(long, default_value_t = 10)]
    soak_minutes: u64,
    /// PingSources of the sources scenario (7, not in the default set).
    #[arg(long, default_value_t = 1000)]
    pings: usize,
    /// Logs, resources and the contract [default: a fresh temporary folder].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Another build's `ferry`: run the scenarios alternately with it and
    /// this one, and show each figure's ratio (`scripts/bench --compare REV`).
    #[arg(long)]
    compare: Option<PathBuf>,
    /// What to call the other build in the tables.
    #[arg(long, default_value = "other")]
    compare_label: String,
    /// Rounds per build when comparing.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    match args.command {
        Command::Load(args) => load(args).await,
        Command::Noop { listen } => {
            let listener = server::bind(listen).await?;
            baseline::noop_server(listener, shutdown).await;
            Ok(())
        }
        Command::Gateway {
            listen,
            bootstrap_servers,
            topic,
        } => {
            let listener = server::bind(listen).await?;
            gateway::serve(listener, &bootstrap_servers, &topic, shutdown).await
        }
        Command::Produce {
            bootstrap_servers,
            topic,
            count,
            size,
            in_flight,
        } => {
            let rate = baseline::produce(
                &bootstrap_servers,
                &topic,
                RunId::fresh(),
                count,
                size,
                in_flight,
            )
            .await?;
            println!("raw producer: {count} records of {size} bytes, {rate:.0} records/s");
            Ok(())
        }
        Command::Relay {
            bootstrap_servers,
            topic,
            url,
            count,
            in_flight,
            run,
            new,
        } => {
            let records = match (run, new) {
                (Some(run), _) => Records::Run(run),
                (None, true) => Records::New,
                (None, false) => Records::All,
            };
            let relay =
                baseline::relay(&bootstrap_servers, &topic, &url, count, in_flight, records);
            // Stopped before the count too: a relay of new records has no end.
            tokio::select! {
                rate = relay => println!("raw relay: {count} records, {:.0} records/s", rate?),
                _ = shutdown.cancelled() => return Ok(()),
            }
            shutdown.cancelled().await;
            Ok(())
        }
        Command::Suite(args) => {
            let work_dir = match args.work_dir {
                Some(dir) => dir,
                None => std::env::temp_dir().join(format!("ferry-bench-{}", std::process::id())),
            };
            let options = suite::Options {
                ferry: std::env::current_exe().context("where is ferry?")?,
                bootstrap: args.bootstrap_servers,
                work_dir,
                scenarios: args.scenarios,
                duration: Duration::from_secs(args.duration_secs),
                connections: args.connections,
                partitions: args.partitions,
                fanout: args.fanout,
                backlog: args.backlog,
                soak_minutes: args.soak_minutes,
                pings: args.pings,
            };
            let tables = match args.compare {
                None => suite::run(options).await?,
                Some(other) => {
                    let this = compare::Side {
                        label: "this".into(),
                        ferry: options.ferry.clone(),
                    };
                    let other = compare::Side {
                        label: args.compare_label,
                        ferry: other,
                    };
                    compare::run(options, this, other, args.rounds.max(1)).await?
                }
            };
            println!("{tables}");
            Ok(())
        }
    }
}

fn parse_run(hex: &str) -> Result<RunId, String> {
    u32::from_str_radix(hex, 16)
        .map(RunId)
        .map_err(|e| format!("'{hex}' is not a run id: {e}"))
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let run = RunId::fresh();
    let behaviour = Behaviour {
        delay: Duration::from_millis(args.sink_delay_ms),
    };
    let sink = match args.sink {
        Some(addr) => Some(SinkHandle::start(addr, run, behaviour).await?),
        None => None,
    };
    let load = Load {
        url: args.url,
        connections: args.connections,
        rate: args.rate,
        count: args.count,
        duration: Duration::from_secs_f64(args.duration_secs),
        size: args.size,
        tls: None,
        bearer: None,
        keys: None,
    };
    let sent = load::run(&load, run).await?;
    let received = match &sink {
        Some(sink) => {
            let drain = Duration::from_secs_f64(args.drain_secs);
            sink.wait_for(
                &sent.accepted,
                args.copies,
                std::time::Instant::now() + drain,
                drain,
            )
            .await;
            sink.received()
        }
        None => ferry_bench::sink::Received::empty(),
    };
    let copies = if sink.is_some() { args.copies } else { 0 };
    let report = Report::new(&sent, &received, copies);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    if args.fail_on_loss && report.lost > 0 {
        bail!("{} accepted events were not delivered", report.lost);
    }
    Ok(())
}
