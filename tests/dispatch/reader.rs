//! The topic reader: order, overlap, where a new trigger starts, contract
//! reloads, committed positions, a stuck trigger, many triggers on one
//! consumer, and a committed position in the middle of a produce batch.

use super::*;

#[tokio::test]
async fn ordered_delivery_keeps_partition_order_under_a_slow_subscriber() {
    let slow =
        Subscriber::scripted(|_, _| Answer::status(202).after(Duration::from_millis(30))).await;
    let mut t = trigger("ns", "ordered", &slow.url());
    t.delivery_order = DeliveryOrder::Ordered as i32;
    let mesh = Mesh::start(1, vec![t]).await;
    let sent: Vec<String> = (0..15).map(|i| format!("o-{i:02}")).collect();
    for id in &sent {
        mesh.send(id, "t").await;
    }
    let got = slow.wait_for(sent.len(), WAIT).await;
    assert_eq!(
        got.iter().map(|r| r.id().to_owned()).collect::<Vec<_>>(),
        sent
    );
    assert_eq!(slow.max_concurrency(), 1);
}

#[tokio::test]
async fn unordered_delivery_overlaps_deliveries() {
    let slow =
        Subscriber::scripted(|_, _| Answer::status(202).after(Duration::from_millis(300))).await;
    let mesh = Mesh::start(1, vec![trigger("ns", "unordered", &slow.url())]).await;
    let sent: Vec<String> = (0..20).map(|i| format!("u-{i:02}")).collect();
    for id in &sent {
        mesh.send(id, "t").await;
    }
    let got = slow.wait_for(sent.len(), WAIT).await;
    assert_eq!(ids(&got), sent);
    assert!(
        slow.max_concurrency() > 1,
        "max concurrency {}",
        slow.max_concurrency()
    );
}

#[tokio::test]
async fn a_new_trigger_gets_events_from_when_it_was_added() {
    let first = Subscriber::accepting().await;
    let late = Subscriber::accepting().await;
    let mut mesh = Mesh::start(2, vec![trigger("ns", "first", &first.url())]).await;
    mesh.send("before", "t").await;
    first.wait_for_ids(&["before".into()], WAIT).await;

    let added = trigger("ns", "late", &late.url());
    let mut egresses = mesh.broker.egresses.clone();
    egresses.push(added);
    mesh.replace_egresses(egresses, 2);
    mesh.wait_for_triggers().await;
    mesh.send("after", "t").await;
    late.wait_for_ids(&["after".into()], WAIT).await;
    first.wait_for_ids(&["after".into()], WAIT).await;
    assert_eq!(
        ids(&late.received()),
        ["after"],
        "nothing from before it was added"
    );
}

#[tokio::test]
async fn reloads_change_and_remove_triggers_without_disturbing_the_others() {
    let steady = Subscriber::accepting().await;
    let changing = Subscriber::accepting().await;
    let removed = Subscriber::accepting().await;
    let mut change_me = trigger("ns", "changing", &changing.url());
    change_me.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "a")]),
    });
    // A trigger whose filter cannot be used (an invalid CESQL expression).
    let unusable = {
        let mut t = trigger("ns", "unusable", &removed.url());
        t.dialected_filter = vec![dialect(Dialect::Cesql(ferry_proto::Cesql {
            expression: "type = ".into(),
        }))];
        t
    };
    let unusable_group = unusable.consumer_group.clone();
    let mut mesh = Mesh::start(
        1,
        vec![
            trigger("ns", "steady", &steady.url()),
            change_me.clone(),
            trigger("ns", "removed", &removed.url()),
            unusable,
        ],
    )
    .await;
    mesh.send("r1", "a").await;
    mesh.send("r2", "b").await;
    removed
        .wait_for_ids(&["r1".into(), "r2".into()], WAIT)
        .await;
    // The unusable trigger is reported and skipped; the others run.
    let topic = mesh.broker.topics[0].clone();
    assert_eq!(
        ferry_harness::kafka::group_offsets(&bootstrap(), &unusable_group, &topic, 1).await,
        [None]
    );
    changing.wait_for_ids(&["r1".into()], WAIT).await;

    change_me.filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "b")]),
    });
    let steady_trigger = mesh.broker.egresses[0].clone();
    mesh.replace_egresses(vec![steady_trigger, change_me], 2);
    // The changed trigger keeps its group and position. Probes of type b
    // reach it only once the new filter is in force.
    let mut n = 0;
    ferry_harness::eventually("the new filter", WAIT, || {
        n += 1;
        let id = format!("probe-{n}");
        let (client, url, changing) = (mesh.client.clone(), mesh.url(), &changing);
        async move {
            send_event(&client, &url, &id, "b", &[]).await;
            changing
                .received()
                .iter()
                .any(|r| r.id().starts_with("probe-"))
                .then_some(())
        }
    })
    .await;
    let removed_before = removed.received().len();
    mesh.send("r3", "a").await;
    mesh.send("r4", "b").await;
    changing.wait_for_ids(&["r4".into()], WAIT).await;
    steady
        .wait_for_ids(&["r1".into(), "r2".into(), "r3".into(), "r4".into()], WAIT)
        .await;
    assert!(
        !changing.received().iter().any(|r| r.id() == "r3"),
        "the old filter is gone"
    );
    assert_eq!(
        removed.received().len(),
        removed_before,
        "the removed trigger gets nothing more"
    );
    // The steady trigger saw every event exactly once across both reloads.
    let steady_ids = ids(&steady.received());
    let mut unique_ids = steady_ids.clone();
    unique_ids.dedup();
    assert_eq!(steady_ids, unique_ids);
}

#[tokio::test]
async fn positions_are_committed_while_running() {
    let sub = Subscriber::accepting().await;
    let t = trigger("ns", "committing", &sub.url());
    let group = t.consumer_group.clone();
    let mesh = Mesh::start(2, vec![t]).await;
    let ids: Vec<String> = (0..40).map(|i| format!("p-{i}")).collect();
    for id in &ids {
        mesh.send(id, "t").await;
    }
    sub.wait_for_ids(&ids, WAIT).await;
    // Every delivered record is committed by the periodic commit, without a
    // shutdown or rebalance: the positions reach the end of each partition.
    let topic = mesh.broker.topics[0].clone();
    let ends = ferry_harness::kafka::high_watermarks(&bootstrap(), &topic, 2).await;
    assert_eq!(ends.iter().sum::<i64>(), 40);
    ferry_harness::eventually("committed positions at the end", WAIT, || {
        let (group, topic, ends) = (group.clone(), topic.clone(), ends.clone());
        async move {
            let committed =
                ferry_harness::kafka::group_offsets(&bootstrap(), &group, &topic, 2).await;
            (committed.iter().zip(&ends).all(|(c, e)| *c == Some(*e))).then_some(())
        }
    })
    .await;
}

/// A trigger whose subscriber stops answering does not hold back the
/// broker's other triggers: once its window is full it is read for
/// separately, and when it answers again it gets every event.
#[tokio::test]
async fn a_stuck_trigger_does_not_hold_back_the_others() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let stuck = Subscriber::scripted(move |_, _| Answer::status(202).until(gate.clone())).await;
    let fast = Subscriber::accepting().await;
    let stuck_trigger = trigger("ns", "stuck", &stuck.url());
    let mesh = Mesh::start(
        2,
        vec![stuck_trigger.clone(), trigger("ns", "fast", &fast.url())],
    )
    .await;
    // More than the stuck trigger's window (100 in the harness): kept with
    // the reader, it would stop the reader, and the fast trigger with it.
    let ids: Vec<String> = (0..250).map(|i| format!("stuck-{i}")).collect();
    for id in &ids {
        mesh.send(id, "t").await;
    }
    fast.wait_for_ids(&ids, WAIT).await;
    // Distinct events: on a slow machine the first attempts may time out
    // (10 s) and be sent again before the fast trigger is through.
    let received = stuck.received();
    let held: std::collections::HashSet<&str> = received.iter().map(|r| r.id()).collect();
    assert!(
        held.len() <= 100,
        "the stuck trigger holds at most its window, got {}",
        held.len()
    );
    let catching_up = |m: &Scrape| m.sum("ferry_dispatch_kafka_consumers", &[("kind", "catch_up")]);
    let metrics = mesh.metrics().await;
    assert_eq!(
        catching_up(&metrics),
        1.0,
        "a consumer of its own:\n{}",
        metrics.text
    );

    open.send_replace(true);
    stuck.wait_for_ids(&ids, WAIT).await;
    let topic = mesh.broker.topics[0].clone();
    let ends = ferry_harness::kafka::high_watermarks(&bootstrap(), &topic, 2).await;
    let group = stuck_trigger.consumer_group.clone();
    ferry_harness::eventually("the stuck trigger's position at the end", WAIT, || {
        let (topic, group, ends) = (topic.clone(), group.clone(), ends.clone());
        async move {
            let at = ferry_harness::kafka::group_offsets(&bootstrap(), &group, &topic, 2).await;
            (at == ends.iter().map(|&e| Some(e)).collect::<Vec<_>>()).then_some(())
        }
    })
    .await;
    ferry_harness::eventually("back with the reader", WAIT, || async {
        (catching_up(&mesh.metrics().await) == 0.0).then_some(())
    })
    .await;
}

/// All triggers of a broker share one consumer, and each trigger's
/// position is committed in its own group.
/// A rebalance reads every trigger's position; with more triggers than
/// tokio's cooperative budget (128 awaited replies) the reader once never
/// got its partitions.
#[tokio::test]
async fn a_broker_with_hundreds_of_triggers_gets_its_partitions() {
    const TRIGGERS: usize = 150;
    let subscriber = Subscriber::accepting().await;
    let triggers: Vec<Egress> = (0..TRIGGERS)
        .map(|i| trigger("ns", &format!("t{i}"), &format!("{}t{i}", subscriber.url())))
        .collect();
    let mesh = Mesh::start(2, triggers).await;
    mesh.send("hundreds", "t").await;
    let got = subscriber.wait_for(TRIGGERS, WAIT).await;
    let paths: std::collections::BTreeSet<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths.len(), TRIGGERS, "every trigger delivered the event");
    assert!(got.iter().all(|r| r.id() == "hundreds"));
}

#[tokio::test]
async fn a_brokers_triggers_share_one_consumer_and_keep_their_own_positions() {
    let subscribers = futures::future::join_all((0..20).map(|_| Subscriber::accepting())).await;
    let triggers: Vec<Egress> = subscribers
        .iter()
        .enumerate()
        .map(|(i, s)| trigger("ns", &format!("t{i}"), &s.url()))
        .collect();
    let mesh = Mesh::start(2, triggers.clone()).await;
    let ids: Vec<String> = (0..10).map(|i| format!("shared-{i}")).collect();
    for id in &ids {
        mesh.send(id, "t").await;
    }
    for subscriber in &subscribers {
        let got = subscriber.wait_for_ids(&ids, WAIT).await;
        assert_eq!(got.len(), ids.len(), "each trigger gets each event once");
    }
    let metrics = mesh.metrics().await;
    assert_eq!(
        metrics.sum("ferry_dispatch_kafka_consumers", &[("kind", "reader")]),
        1.0,
        "one consumer for the broker's 20 triggers:\n{}",
        metrics.text
    );
    let topic = &mesh.broker.topics[0];
    let ends = ferry_harness::kafka::high_watermarks(&bootstrap(), topic, 2).await;
    let ends: Vec<Option<i64>> = ends.into_iter().map(Some).collect();
    for t in &triggers {
        let group = t.consumer_group.clone();
        ferry_harness::eventually(&format!("{group} committed"), WAIT, || {
            let (topic, group, ends) = (topic.clone(), group.clone(), ends.clone());
            async move {
                let at = ferry_harness::kafka::group_offsets(&bootstrap(), &group, &topic, 2).await;
                (at == ends).then_some(())
            }
        })
        .await;
    }
}

/// A trigger whose committed position lies inside a produce batch gets the
/// rest of that batch and what follows, in order, and nothing before its
/// position. (A broker may answer a fetch from inside a batch with only the
/// batches after it; the dispatcher then reads again from earlier.)
#[tokio::test]
async fn a_position_in_the_middle_of_a_batch_gets_the_rest_of_the_batch() {
    let bootstrap = bootstrap();
    let topic = unique("knative-broker-ns");
    create_topic(&bootstrap, &topic, 1).await;
    let batch: Vec<String> = (0..10).map(|i| format!("mid-{i}")).collect();
    produce_batch(&bootstrap, &topic, &batch).await;
    // (Not the high watermark: Tansu reports a batch's as its first
    // offset + 1.)
    let written = TopicReader::new(&bootstrap, &topic, 1).read(10, WAIT).await;
    let offsets: Vec<i64> = written.iter().map(|m| m.offset()).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());

    let sub = Subscriber::accepting().await;
    let mut t = trigger("ns", "mid-batch", &sub.url());
    t.delivery_order = DeliveryOrder::Ordered as i32;
    let offsets = GroupOffsets::new(ClientConfig::new().set("bootstrap.servers", &bootstrap))
        .expect("offsets client");
    offsets
        .alter(&t.consumer_group, &topic, &[(0, 5)])
        .await
        .expect("position committed");
    let mut broker = broker("ns", &unique("b"), &topic, "");
    broker.egresses = vec![t];
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![broker],
        ..Default::default()
    });
    let dispatcher = TestDispatcher::start(dispatcher_config(&contract, &bootstrap)).await;
    let admin = dispatcher.running.as_ref().unwrap().admin;
    wait_ready(&format!("http://{admin}/readyz")).await;
    produce_batch(&bootstrap, &topic, &["mid-10".to_owned()]).await;

    // Ordered on one partition: anything below the position would come
    // first.
    let got = sub.wait_for(6, WAIT).await;
    let expected: Vec<String> = (5..=10).map(|i| format!("mid-{i}")).collect();
    assert_eq!(
        got.iter().map(|r| r.id().to_owned()).collect::<Vec<_>>(),
        expected
    );
}
