//! Flows in `ferry standalone`, on the real broker: a Sequence chains its
//! steps through KafkaChannels (each step's reply is the next one's
//! input), retries a flaky step, rewires when a step is removed and takes
//! its channels, topics and groups away when deleted; a Parallel sends
//! each event to the branches whose filter passes it, and their replies
//! to its reply.

use std::{collections::HashSet, time::Duration};

use ferry_harness::{
    bootstrap, eventually,
    http::{self, HttpClient},
    kafka::topic_exists,
    process::{write_resource, Standalone},
    subscriber::{Answer, Received, Subscriber},
    unique,
};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const WAIT: Duration = Duration::from_secs(60);

/// The event received, as a binary-mode reply, with `extra` ce- headers
/// (and the type changed when `ty` is given).
fn echo(received: &Received, extra: &[(&str, &str)], ty: Option<&str>) -> Answer {
    let mut answer =
        Answer::status(200).with_body(std::str::from_utf8(&received.body).unwrap_or("{}"));
    for (name, value) in received.headers.iter() {
        let name = name.as_str();
        let keep = name.starts_with("ce-") && !(ty.is_some() && name == "ce-type");
        if keep || name == "content-type" {
            answer = answer.with_header(name, value.to_str().unwrap_or_default());
        }
    }
    if let Some(ty) = ty {
        answer = answer.with_header("ce-type", ty);
    }
    for (name, value) in extra {
        answer = answer.with_header(name, value);
    }
    answer
}

async fn post(client: &HttpClient, url: &str, id: &str, ty: &str) {
    ferry_harness::post_event(client, url, id, ty, "/flows").await
}

fn ids(received: &[Received]) -> HashSet<String> {
    received
        .iter()
        .map(|r| r.header("ce-id").unwrap().to_owned())
        .collect()
}

fn sequence_yaml(ns: &str, steps: &[String], reply: &str) -> String {
    let steps: String = steps
        .iter()
        .map(|url| {
            format!("    - uri: {url}\n      delivery: {{retry: 5, backoffPolicy: linear, backoffDelay: PT0.05S}}\n")
        })
        .collect();
    format!(
        "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {{name: seq, namespace: {ns}}}\nspec:\n  \
         channelTemplate:\n    apiVersion: messaging.knative.dev/v1beta1\n    kind: KafkaChannel\n    spec: {{numPartitions: 1}}\n  \
         steps:\n{steps}  reply: {{uri: \"{reply}\"}}\n"
    )
}

#[tokio::test]
async fn a_sequence_chains_its_steps_retries_rewires_and_cleans_up() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    let step0 = Subscriber::scripted(|r, _| echo(r, &[("ce-step0", "done")], None)).await;
    // Fails every other request: its delivery retries.
    let step1 = Subscriber::scripted(|r, n| match n % 2 {
        0 => Answer::status(503),
        _ => echo(r, &[("ce-step1", "done")], None),
    })
    .await;
    let step2 = Subscriber::scripted(|r, _| echo(r, &[("ce-step2", "done")], None)).await;
    let sink = Subscriber::accepting().await;
    let steps = [step0.url(), step1.url(), step2.url()];
    write_resource(
        dir.path(),
        "seq.yaml",
        &sequence_yaml(&ns, &steps, &sink.url()),
    );
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    let status = ferry.wait_for_status("Sequence", "seq", "True").await;
    let address = status["address"].as_str().expect("an address").to_owned();
    assert!(
        address.ends_with(&format!("/channels/{ns}/seq-kn-sequence-0")),
        "{status}"
    );
    assert_eq!(
        status["channelStatuses"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    assert_eq!(
        status["subscriptionStatuses"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    let generated = ferry
        .wait_for_status("Subscription", "seq-kn-sequence-1", "True")
        .await;
    assert_eq!(
        generated["generatedBy"],
        format!("Sequence {ns}/seq"),
        "{generated}"
    );
    ferry.ready().await;

    let client = http::client();
    // A first event may come before the first step's group starts.
    let mut sent = Vec::new();
    eventually("the sequence delivering", WAIT, || {
        let id = format!("warm-{}", sent.len());
        sent.push(id.clone());
        let (client, address) = (client.clone(), address.clone());
        let got = !sink.received().is_empty();
        async move {
            post(&client, &address, &id, "dev.example.order").await;
            got.then_some(())
        }
    })
    .await;
    for i in 0..20 {
        let id = format!("order-{i}");
        post(&client, &address, &id, "dev.example.order").await;
        sent.push(id);
    }
    let wanted: HashSet<String> = sent
        .iter()
        .filter(|i| i.starts_with("order-"))
        .cloned()
        .collect();
    let got = eventually("every order through three steps", WAIT, || {
        let got = sink.received();
        let done = ids(&got).is_superset(&wanted);
        async move { done.then_some(got) }
    })
    .await;
    for r in got
        .iter()
        .filter(|r| r.header("ce-id").unwrap().starts_with("order-"))
    {
        for step in ["ce-step0", "ce-step1", "ce-step2"] {
            assert_eq!(
                r.header(step),
                Some("done"),
                "{step} on {:?}",
                r.header("ce-id")
            );
        }
    }
    // In order: each step saw what the steps before it did.
    assert!(step1
        .received()
        .iter()
        .all(|r| r.header("ce-step0") == Some("done")));
    assert!(step2
        .received()
        .iter()
        .all(|r| r.header("ce-step1") == Some("done")));
    assert!(step2
        .received()
        .iter()
        .all(|r| r.header("ce-step2").is_none()));

    // Without the flaky middle step, the Sequence is rewired: new events
    // go through the first and the last.
    write_resource(
        dir.path(),
        "seq.yaml",
        &sequence_yaml(&ns, &[step0.url(), step2.url()], &sink.url()),
    );
    eventually("two steps", WAIT, || async {
        let resources = ferry.resources().await;
        resources
            .iter()
            .find(|r| r["kind"] == "Sequence" && r["name"] == "seq" && r["ready"] == "True")
            .filter(|s| {
                s["channelStatuses"]
                    .as_array()
                    .is_some_and(|c| c.len() == 2)
            })
            .map(|_| ())
    })
    .await;
    let before = step1.received().len();
    let rewired: HashSet<String> = (0..5).map(|i| format!("after-{i}")).collect();
    for id in &rewired {
        post(&client, &address, id, "dev.example.order").await;
    }
    let got = eventually("the rewired sequence delivering", WAIT, || {
        let got = sink.received();
        let rewired = rewired.clone();
        async move { ids(&got).is_superset(&rewired).then_some(got) }
    })
    .await;
    for r in got
        .iter()
        .filter(|r| r.header("ce-id").unwrap().starts_with("after-"))
    {
        assert_eq!(r.header("ce-step0"), Some("done"));
        assert_eq!(r.header("ce-step2"), Some("done"));
        assert_eq!(r.header("ce-step1"), None, "the removed step is skipped");
    }
    assert_eq!(
        step1.received().len(),
        before,
        "the removed step gets nothing new"
    );

    // Deleting the flow takes its channels, subscriptions and topics away.
    std::fs::remove_file(dir.path().join("seq.yaml")).unwrap();
    eventually("the generated resources gone", WAIT, || async {
        let resources = ferry.resources().await;
        (!resources
            .iter()
            .any(|r| r["generatedBy"].is_string() || r["kind"] == "Sequence"))
        .then_some(())
    })
    .await;
    let topic = format!("knative-messaging-kafka.{ns}.seq-kn-sequence-0");
    eventually("the first channel's topic deleted", WAIT, || {
        let gone = !topic_exists(&bootstrap(), &topic);
        async move { gone.then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_parallel_sends_each_event_to_the_branches_that_pass_it() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    // A filter passes an event by replying with it, drops it with a bare 202.
    let only = |ty: &'static str| {
        move |r: &Received, _: usize| match r.header("ce-type") == Some(ty) {
            true => echo(r, &[], None),
            false => Answer::status(202),
        }
    };
    let (filter_a, filter_b) = (
        Subscriber::scripted(only("a")).await,
        Subscriber::scripted(only("b")).await,
    );
    let replying = |name: &'static str| {
        move |r: &Received, _: usize| echo(r, &[("ce-branch", name)], Some("reply"))
    };
    let (sub_a, sub_b, sub_all) = (
        Subscriber::scripted(replying("a")).await,
        Subscriber::scripted(replying("b")).await,
        Subscriber::scripted(replying("all")).await,
    );
    let reply = Subscriber::accepting().await;
    let yaml = format!(
        "apiVersion: flows.knative.dev/v1\nkind: Parallel\nmetadata: {{name: par, namespace: {ns}}}\nspec:\n  branches:\n    \
         - {{filter: {{uri: \"{fa}\"}}, subscriber: {{uri: \"{sa}\"}}}}\n    \
         - {{filter: {{uri: \"{fb}\"}}, subscriber: {{uri: \"{sb}\"}}}}\n    \
         - {{subscriber: {{uri: \"{sall}\"}}}}\n  reply: {{uri: \"{reply}\"}}\n",
        fa = filter_a.url(), sa = sub_a.url(), fb = filter_b.url(), sb = sub_b.url(),
        sall = sub_all.url(), reply = reply.url()
    );
    write_resource(dir.path(), "par.yaml", &yaml);
    let ferry = Standalone::start(FERRY, dir.path(), state.path(), &bootstrap()).await;
    let status = ferry.wait_for_status("Parallel", "par", "True").await;
    let address = status["address"].as_str().expect("an address").to_owned();
    assert!(
        address.ends_with(&format!("/channels/{ns}/par-kn-parallel")),
        "{status}"
    );
    assert_eq!(
        status["branchStatuses"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    ferry.ready().await;
    let client = http::client();
    let mut warm = 0;
    eventually("the unfiltered branch delivering", WAIT, || {
        warm += 1;
        let (client, address, id) = (client.clone(), address.clone(), format!("warm-{warm}"));
        let got = !sub_all.received().is_empty()
            && !filter_a.received().is_empty()
            && !filter_b.received().is_empty();
        async move {
            post(&client, &address, &id, "warm").await;
            got.then_some(())
        }
    })
    .await;
    let events = [
        ("a1", "a"),
        ("a2", "a"),
        ("a3", "a"),
        ("b1", "b"),
        ("b2", "b"),
        ("c1", "c"),
    ];
    for (id, ty) in events {
        post(&client, &address, id, ty).await;
    }
    let of = |sub: &Subscriber, prefix: &[&str]| -> HashSet<String> {
        ids(&sub.received())
            .into_iter()
            .filter(|i| prefix.iter().any(|p| i.starts_with(p)))
            .collect()
    };
    let set = |ids: &[&str]| -> HashSet<String> { ids.iter().map(|s| s.to_string()).collect() };
    eventually("each branch's events", WAIT, || {
        let done = of(&sub_all, &["a", "b", "c"]).len() == 6
            && of(&sub_a, &["a", "b", "c"]).len() == 3
            && of(&sub_b, &["a", "b", "c"]).len() == 2;
        async move { done.then_some(()) }
    })
    .await;
    assert_eq!(of(&sub_a, &["a", "b", "c"]), set(&["a1", "a2", "a3"]));
    assert_eq!(of(&sub_b, &["a", "b", "c"]), set(&["b1", "b2"]));
    assert_eq!(
        of(&sub_all, &["a", "b", "c"]),
        set(&["a1", "a2", "a3", "b1", "b2", "c1"])
    );
    // Every branch's reply reaches the Parallel's reply: 3 + 2 + 6.
    let replies = eventually("the branches' replies", WAIT, || {
        let got: Vec<Received> = reply
            .received()
            .into_iter()
            .filter(|r| !r.header("ce-id").unwrap().starts_with("warm"))
            .collect();
        async move { (got.len() >= 11).then_some(got) }
    })
    .await;
    let count = |branch: &str| {
        replies
            .iter()
            .filter(|r| r.header("ce-branch") == Some(branch))
            .count()
    };
    assert_eq!((count("a"), count("b"), count("all")), (3, 2, 6));
    assert!(replies.iter().all(|r| r.header("ce-type") == Some("reply")));
}
