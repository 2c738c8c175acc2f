//! Channels and Subscriptions through `ferry standalone`: every subscription
//! gets every event; a failing one retries and dead-letters without
//! holding the others back; replies chain channels; deleting a
//! subscription stops it and removes its group; bad specs are reported.

use std::time::Duration;

use ferry_harness::{
    bootstrap, http,
    kafka::wait_for_group_deleted,
    process::{write_resource, Standalone},
    send_event,
    subscriber::{Answer, Subscriber},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(45);

fn channel(ns: &str, name: &str, extra: &str) -> String {
    format!("apiVersion: messaging.knative.dev/v1beta1\nkind: KafkaChannel\nmetadata: {{ name: {name}, namespace: {ns} }}\nspec:\n  numPartitions: 2\n{extra}")
}

fn subscription(ns: &str, name: &str, channel: &str, subscriber: &str, extra: &str) -> String {
    format!(
        "apiVersion: messaging.knative.dev/v1\nkind: Subscription\nmetadata: {{ name: {name}, namespace: {ns}, uid: uid-{name} }}\nspec:\n  \
         channel: {{ apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: {channel} }}\n  subscriber: {{ uri: '{subscriber}' }}\n{extra}"
    )
}

#[tokio::test]
async fn channels_fan_out_chain_and_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let ns = unique("ns");
    let subs = [
        Subscriber::accepting().await,
        Subscriber::accepting().await,
        Subscriber::accepting().await,
    ];
    let failing = Subscriber::scripted(|_, _| Answer::status(500)).await;
    let dls = Subscriber::accepting().await;
    let replier = Subscriber::scripted(|r, _| {
        Answer::status(200)
            .with_header("ce-specversion", "1.0")
            .with_header("ce-id", &format!("reply-{}", r.id()))
            .with_header("ce-source", "/replier")
            .with_header("ce-type", "reply")
    })
    .await;
    let final_sink = Subscriber::accepting().await;

    write_resource(dir.path(), "ch.yaml", &channel(&ns, "ch", ""));
    for (i, sub) in subs.iter().enumerate() {
        write_resource(
            dir.path(),
            &format!("s{i}.yaml"),
            &subscription(&ns, &format!("s{i}"), "ch", &sub.url(), ""),
        );
    }
    let failing_delivery = format!(
        "  delivery: {{ retry: 2, backoffPolicy: linear, backoffDelay: PT0.05S, deadLetterSink: {{ uri: '{}' }} }}\n",
        dls.url()
    );
    write_resource(
        dir.path(),
        "failing.yaml",
        &subscription(&ns, "failing", "ch", &failing.url(), &failing_delivery),
    );
    // The chain: ch → replier → (reply) → second → final sink.
    write_resource(dir.path(), "second.yaml", &channel(&ns, "second", ""));
    let reply_to_second = "  reply: { ref: { apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: second } }\n";
    write_resource(
        dir.path(),
        "replier.yaml",
        &subscription(&ns, "replier", "ch", &replier.url(), reply_to_second),
    );
    write_resource(
        dir.path(),
        "final.yaml",
        &subscription(&ns, "final", "second", &final_sink.url(), ""),
    );
    write_resource(
        dir.path(),
        "bad.yaml",
        &channel(&ns, "bad", "  retentionDuration: forever\n"),
    );
    // The models compose: a broker's trigger delivers into the channel.
    let broker_yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{ name: b, namespace: {ns} }}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{ name: into-channel, namespace: {ns} }}\n\
         spec:\n  broker: b\n  filter: {{ attributes: {{ type: via-broker }} }}\n  \
         subscriber: {{ ref: {{ apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, name: ch }} }}\n"
    );
    write_resource(dir.path(), "broker.yaml", &broker_yaml);

    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    let client = http::client();
    let ch = ferry.wait_for_status("KafkaChannel", "ch", "True").await;
    let address = ch["address"].as_str().unwrap().to_owned();
    assert_eq!(address, format!("{}/channels/{ns}/ch", ferry.ingress));
    let bad = ferry.wait_for_status("KafkaChannel", "bad", "False").await;
    assert_eq!(bad["reason"], "InvalidSpec");
    ferry.wait_for_status("Subscription", "final", "True").await;
    ferry.ready().await;
    let ch_status = ferry.wait_for_status("KafkaChannel", "ch", "True").await;
    assert_eq!(
        ch_status["subscribers"].as_array().unwrap().len(),
        5,
        "{ch_status}"
    );

    let ids: Vec<String> = (0..20).map(|i| format!("c-{i:02}")).collect();
    // One partition key: one partition, so the order is the sending order.
    for id in &ids {
        send_event(&client, &address, id, "t", &[("ce-partitionkey", "one")]).await;
    }
    // Every subscription gets every event, once, in order.
    for sub in &subs {
        let got = sub.wait_for_ids(&ids, WAIT).await;
        assert_eq!(
            got.iter().map(|r| r.id().to_owned()).collect::<Vec<_>>(),
            ids
        );
    }
    // The failing one retried each event (1 + 2 attempts) and dead-lettered it,
    // without holding the others back.
    let dead = dls.wait_for_ids(&ids, WAIT).await;
    assert_eq!(dead.len(), ids.len());
    assert_eq!(dead[0].header("ce-knativeerrorcode"), Some("500"));
    assert_eq!(failing.received().len(), 3 * ids.len());
    // Replies went through the second channel to the final sink.
    let replies: Vec<String> = ids.iter().map(|id| format!("reply-{id}")).collect();
    final_sink.wait_for_ids(&replies, WAIT).await;

    // Broker → trigger → channel → every subscription.
    let broker = ferry.wait_for_status("Broker", "b", "True").await;
    let trigger = ferry
        .wait_for_status("Trigger", "into-channel", "True")
        .await;
    assert_eq!(trigger["subscriberUri"], address.as_str());
    send_event(
        &client,
        broker["address"].as_str().unwrap(),
        "through-broker",
        "via-broker",
        &[],
    )
    .await;
    for sub in &subs {
        sub.wait_for_ids(&["through-broker".into()], WAIT).await;
    }

    // Delete a subscription: it stops, its group goes, the others go on.
    std::fs::remove_file(dir.path().join("s0.yaml")).unwrap();
    let group = format!("kafka.{ns}.ch.uid-s0");
    let topic = format!("knative-messaging-kafka.{ns}.ch");
    wait_for_group_deleted(&bootstrap(), &group, &topic, 2).await;
    let before = subs[0].received().len();
    send_event(&client, &address, "after", "t", &[]).await;
    subs[1].wait_for_ids(&["after".into()], WAIT).await;
    subs[2].wait_for_ids(&["after".into()], WAIT).await;
    assert_eq!(
        subs[0].received().len(),
        before,
        "a deleted subscription gets nothing more"
    );
    drop(ferry);
}
