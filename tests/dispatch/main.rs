//! Trigger delivery against a real Kafka broker and real HTTP subscribers,
//! by subject: filters, delivery (retries, dead letters), replies, the
//! reader (order, positions, reloads, many triggers) and what operators
//! observe. Every test starts its own [`Mesh`] on a topic of its own.

mod delivery;
mod filters;
mod observe;
mod reader;
mod replies;

use std::time::Duration;

use base64::Engine;
use ferry_common::group_offsets::GroupOffsets;
use ferry_harness::{
    bootstrap, broker, dispatcher_config,
    http::{self, HttpClient},
    kafka::{create_topic, produce_batch, wait_for_group, TopicReader},
    metrics::Scrape,
    receiver_config, send_event,
    subscriber::{Answer, HangUp, Subscriber},
    trigger, unique, wait_ready, ContractFile, TestDispatcher, TestReceiver,
};
use ferry_proto::{
    dialected_filter::Filter as Dialect, egress::ReplyStrategy, BackoffPolicy, Contract,
    DeliveryOrder, DialectedFilter, Egress, EgressConfig, Empty, Resource,
};
use rdkafka::{ClientConfig, Message};

const WAIT: Duration = Duration::from_secs(30);

/// A broker with a receiver and a dispatcher in this process.
struct Mesh {
    receiver: TestReceiver,
    dispatcher: TestDispatcher,
    contract: ContractFile,
    broker: Resource,
    client: HttpClient,
    partitions: i32,
}

impl Mesh {
    async fn start(partitions: i32, egresses: Vec<Egress>) -> Mesh {
        let bootstrap = bootstrap();
        let topic = unique("knative-broker-ns");
        create_topic(&bootstrap, &topic, partitions).await;
        let mut broker = broker("ns", &unique("b"), &topic, "");
        broker.egresses = egresses;
        let contract = ContractFile::new(&Contract {
            generation: 1,
            resources: vec![broker.clone()],
            ..Default::default()
        });
        let receiver = TestReceiver::start(receiver_config(&contract, &bootstrap)).await;
        let dispatcher = TestDispatcher::start(dispatcher_config(&contract, &bootstrap)).await;
        receiver.ready().await;
        let mesh = Mesh {
            receiver,
            dispatcher,
            contract,
            broker,
            client: http::client(),
            partitions,
        };
        mesh.wait_for_triggers().await;
        mesh
    }

    /// Every dispatched trigger's start positions are pinned: events sent
    /// from now on are theirs. (Triggers with an unusable filter never start.)
    async fn wait_for_triggers(&self) {
        for egress in self.broker.egresses.iter().filter(|e| !has_cesql(e)) {
            wait_for_group(
                &bootstrap(),
                &egress.consumer_group,
                &self.broker.topics[0],
                self.partitions,
            )
            .await;
        }
    }

    fn broker_name(&self) -> &str {
        &self.broker.reference.as_ref().unwrap().name
    }

    fn url(&self) -> String {
        let r = self.broker.reference.as_ref().unwrap();
        self.receiver.url(&format!("/{}/{}", r.namespace, r.name))
    }

    async fn send(&self, id: &str, ty: &str) {
        send_event(&self.client, &self.url(), id, ty, &[]).await;
    }

    async fn send_with(&self, id: &str, ty: &str, extra: &[(&str, &str)]) {
        send_event(&self.client, &self.url(), id, ty, extra).await;
    }

    async fn metrics(&self) -> Scrape {
        let admin = self.dispatcher.running.as_ref().unwrap().admin;
        Scrape::get(&format!("http://{admin}")).await
    }

    fn replace_egresses(&mut self, egresses: Vec<Egress>, generation: u64) {
        self.broker.egresses = egresses;
        self.contract.write(&Contract {
            generation,
            resources: vec![self.broker.clone()],
            ..Default::default()
        });
    }
}

fn has_cesql(egress: &Egress) -> bool {
    // The suite's only unusable CESQL expression ends in an operator.
    egress.dialected_filter.iter().any(
        |f| matches!(&f.filter, Some(Dialect::Cesql(c)) if c.expression.trim_end().ends_with('=')),
    )
}

fn with_config(mut egress: Egress, config: EgressConfig) -> Egress {
    egress.egress_config = Some(config);
    egress
}

fn attributes(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn dialect(filter: Dialect) -> DialectedFilter {
    DialectedFilter {
        filter: Some(filter),
    }
}

fn ids(received: &[ferry_harness::subscriber::Received]) -> Vec<String> {
    let mut ids: Vec<String> = received.iter().map(|r| r.id().to_owned()).collect();
    ids.sort();
    ids
}

/// Waits until `id` arrived `times` times.
async fn eventually_received(sub: &Subscriber, id: &str, times: usize) {
    ferry_harness::eventually(&format!("{id} x{times}"), WAIT, || {
        let n = sub.received().iter().filter(|r| r.id() == id).count();
        async move { (n >= times).then_some(()) }
    })
    .await
}
