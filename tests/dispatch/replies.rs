//! What a subscriber answers with: replies back into the broker, to a
//! reply URL or discarded, and malformed replies.

use super::*;

fn reply_headers(id: &str, ty: &str) -> [(String, String); 4] {
    [
        ("ce-specversion".into(), "1.0".into()),
        ("ce-id".into(), id.into()),
        ("ce-source".into(), "/replier".into()),
        ("ce-type".into(), ty.into()),
    ]
}

fn replying(ty: &'static str) -> impl Fn(&ferry_harness::subscriber::Received, usize) -> Answer {
    move |r, _| {
        let mut answer = Answer::status(200)
            .with_body("reply body")
            .with_header("content-type", "text/plain");
        for (k, v) in reply_headers(&format!("reply-to-{}", r.id()), ty) {
            answer = answer.with_header(&k, &v);
        }
        answer
    }
}

#[tokio::test]
async fn replies_re_enter_the_broker_and_reach_another_trigger() {
    let replier = Subscriber::scripted(replying("reply")).await;
    let second = Subscriber::accepting().await;
    let mut first = trigger("ns", "first", &replier.url());
    first.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "request")]),
    });
    let mut then = trigger("ns", "then", &second.url());
    then.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "reply")]),
    });
    let mesh = Mesh::start(2, vec![first, then]).await;
    mesh.send("q-1", "request").await;
    let got = &second.wait_for(1, WAIT).await[0];
    assert_eq!(got.id(), "reply-to-q-1");
    assert_eq!(got.header("ce-source"), Some("/replier"));
    assert_eq!(got.body.as_ref(), b"reply body");
}

#[tokio::test]
async fn replies_go_to_reply_url_or_are_discarded() {
    let replier_a = Subscriber::scripted(replying("reply")).await;
    let replier_b = Subscriber::scripted(replying("reply")).await;
    let reply_sink = Subscriber::accepting().await;
    let everything_else = Subscriber::accepting().await;
    let mut to_url = trigger("ns", "to-url", &replier_a.url());
    to_url.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "request")]),
    });
    to_url.reply_strategy = Some(ReplyStrategy::ReplyUrl(reply_sink.url()));
    let mut discard = trigger("ns", "discard", &replier_b.url());
    discard.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "request")]),
    });
    discard.reply_strategy = Some(ReplyStrategy::DiscardReply(Empty {}));
    let watcher = trigger("ns", "watcher", &everything_else.url());
    let mesh = Mesh::start(1, vec![to_url, discard, watcher]).await;
    mesh.send("q-2", "request").await;
    mesh.send("marker", "marker").await;

    let got = &reply_sink.wait_for(1, WAIT).await[0];
    assert_eq!(got.id(), "reply-to-q-2");
    replier_b.wait_for(1, WAIT).await;
    // Nothing replied into the broker: the watcher sees exactly the two events sent.
    everything_else
        .wait_for_ids(&["q-2".into(), "marker".into()], WAIT)
        .await;
    assert_eq!(ids(&everything_else.received()), ["marker", "q-2"]);
}

#[tokio::test]
async fn a_malformed_reply_is_a_failed_delivery() {
    let broken = Subscriber::scripted(|_, _| {
        Answer::status(200)
            .with_header("ce-specversion", "1.0")
            .with_body("x")
    })
    .await;
    let dls = Subscriber::accepting().await;
    let config = EgressConfig {
        dead_letter: dls.url(),
        ..Default::default()
    };
    let mesh = Mesh::start(
        1,
        vec![with_config(trigger("ns", "t", &broken.url()), config)],
    )
    .await;
    mesh.send("m-1", "t").await;
    let dead = &dls.wait_for(1, WAIT).await[0];
    assert_eq!(dead.id(), "m-1");
    assert_eq!(dead.header("ce-knativeerrorcode"), Some("200"));
}
