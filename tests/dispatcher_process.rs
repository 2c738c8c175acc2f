//! The dispatcher as a separate process, killed and stopped for real.

use std::{collections::HashMap, time::Duration};

use ferry_harness::{
    bootstrap, broker, eventually,
    http::{self},
    kafka::{create_topic, wait_for_group},
    process::FerryProcess,
    receiver_config, send_event,
    subscriber::{Answer, Subscriber},
    trigger, unique, ContractFile, TestReceiver,
};
use ferry_proto::Contract;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

struct Setup {
    receiver: TestReceiver,
    contract: ContractFile,
    url: String,
    group: String,
    topic: String,
}

async fn setup(destination: &str, partitions: i32) -> Setup {
    let bootstrap = bootstrap();
    let topic = unique("knative-broker-ns-proc");
    create_topic(&bootstrap, &topic, partitions).await;
    let mut b = broker("ns", "proc", &topic, "");
    let t = trigger("ns", "t", destination);
    let group = t.consumer_group.clone();
    b.egresses = vec![t];
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![b],
        ..Default::default()
    });
    let receiver = TestReceiver::start(receiver_config(&contract, &bootstrap)).await;
    receiver.ready().await;
    let url = receiver.url("/ns/proc");
    Setup {
        receiver,
        contract,
        url,
        group,
        topic,
    }
}

#[tokio::test]
async fn sigkill_mid_stream_loses_nothing() {
    let sink =
        Subscriber::scripted(|_, _| Answer::status(202).after(Duration::from_millis(2))).await;
    let s = setup(&sink.url(), 3).await;
    let mut dispatcher = FerryProcess::dispatcher(FERRY, &s.contract.path(), &bootstrap());
    wait_for_group(&bootstrap(), &s.group, &s.topic, 3).await;

    let total = 300;
    let ids: Vec<String> = (0..total).map(|i| format!("k-{i:04}")).collect();
    let sender = {
        let (client, url, ids) = (http::client(), s.url.clone(), ids.clone());
        tokio::spawn(async move {
            for id in ids {
                send_event(&client, &url, &id, "t", &[]).await;
                tokio::time::sleep(Duration::from_millis(5)).await; // a steady stream, not a burst
            }
        })
    };
    // Kill it twice while events are flowing.
    for round in 1..=2 {
        let seen = sink.received().len();
        eventually(
            "deliveries before the kill",
            Duration::from_secs(60),
            || {
                let n = sink.received().len();
                async move { (n >= seen + 50).then_some(()) }
            },
        )
        .await;
        dispatcher.kill();
        tracing::info!(round, "dispatcher killed");
        dispatcher = FerryProcess::dispatcher(FERRY, &s.contract.path(), &bootstrap());
    }
    sender.await.unwrap();
    let got = sink.wait_for_ids(&ids, Duration::from_secs(90)).await;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        *counts.entry(r.id()).or_default() += 1;
    }
    assert!(
        ids.iter().all(|id| counts.contains_key(id.as_str())),
        "every accepted event delivered"
    );
    // At-least-once: some events are delivered twice after a kill. How many
    // is measured, not bounded here yet (the fault-injection suite will).
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!("duplicates after 2 kills: {duplicates}");
    drop(dispatcher);
    drop(s.receiver);
}

#[tokio::test]
async fn sigterm_finishes_deliveries_in_flight_and_commits() {
    let slow = Subscriber::scripted(|r, _| {
        if r.id().starts_with("slow") {
            Answer::status(202).after(Duration::from_millis(1500))
        } else {
            Answer::status(202)
        }
    })
    .await;
    let s = setup(&slow.url(), 1).await;
    let client = http::client();
    let dispatcher = FerryProcess::dispatcher(FERRY, &s.contract.path(), &bootstrap());
    wait_for_group(&bootstrap(), &s.group, &s.topic, 1).await;
    for i in 0..3 {
        send_event(&client, &s.url, &format!("slow-{i}"), "t", &[]).await;
    }
    slow.wait_for(3, Duration::from_secs(30)).await;
    // All three are in flight now; SIGTERM lets them finish, then commits.
    let status = dispatcher.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");

    let dispatcher = FerryProcess::dispatcher(FERRY, &s.contract.path(), &bootstrap());
    send_event(&client, &s.url, "after-restart", "t", &[]).await;
    slow.wait_for_ids(&["after-restart".into()], Duration::from_secs(60))
        .await;
    let slow_ones = slow
        .received()
        .iter()
        .filter(|r| r.id().starts_with("slow"))
        .count();
    assert_eq!(
        slow_ones, 3,
        "finished deliveries were committed, not redelivered"
    );
    drop(dispatcher);
}
