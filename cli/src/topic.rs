//! `ferry topic`: create a topic, or print a topic's events. Small tools for
//! trying Ferry out and for debugging (Debian's kcat is too old for some
//! brokers).

use std::time::Duration;

use anyhow::{bail, Context};
use ferry_common::{kafka::partition_count, shutdown::Shutdown};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
    types::RDKafkaErrorCode,
    ClientConfig, Message, Offset, TopicPartitionList,
};

#[derive(clap::Args)]
pub struct Args {
    /// Kafka's address.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    bootstrap_servers: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Creates a topic (an existing one is left as it is).
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
    },
    /// Prints the events of a topic from its beginning.
    Tail {
        name: String,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after the event with this id.
        #[arg(long)]
        until_id: Option<String>,
    },
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &args.bootstrap_servers);
    match args.command {
        Command::Create {
            name,
            partitions,
            replication_factor,
        } => {
            let admin: AdminClient<DefaultClientContext> = config.create()?;
            let topic = NewTopic::new(
                &name,
                partitions,
                TopicReplication::Fixed(replication_factor),
            );
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            for result in admin.create_topics(&[topic], &options).await? {
                match result {
                    Ok(_) => println!("created topic {name} with {partitions} partition(s)"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        println!("topic {name} exists")
                    }
                    Err((_, code)) => bail!("cannot create topic {name}: {code}"),
                }
            }
            Ok(())
        }
        Command::Tail {
            name,
            count,
            until_id,
        } => tail(config, &name, count, until_id, shutdown).await,
    }
}

async fn tail(
    mut config: ClientConfig,
    topic: &str,
    count: Option<usize>,
    until_id: Option<String>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    // No consumer group: read at once from every partition's beginning.
    let consumer: StreamConsumer = config
        .set("group.id", "ferry-topic-tail")
        .set("enable.auto.commit", "false")
        .create()?;
    let partitions = partition_count(consumer.client(), topic, Duration::from_secs(10))
        .with_context(|| format!("no metadata for topic {topic}"))?;
    if partitions == 0 {
        bail!("topic {topic} does not exist");
    }
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = 0;
    while count.is_none_or(|c| seen < c) {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m?,
        };
        let headers = message
            .headers()
            .map(|h| h.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>())
            .unwrap_or_default();
        match ferry_event::kafka::decode(headers, message.payload()) {
            Ok(event) => {
                println!(
                    "partition {} offset {}\n{}",
                    message.partition(),
                    message.offset(),
                    ferry_event::display::display(&event)
                );
                if until_id.as_deref() == Some(event.id()) {
                    break;
                }
            }
            Err(error) => println!(
                "(partition {} offset {}: not a CloudEvent: {error})",
                message.partition(),
                message.offset()
            ),
        }
        seen += 1;
    }
    Ok(())
}
