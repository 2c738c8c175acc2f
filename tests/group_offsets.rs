//! `GroupOffsets` writes and reads the positions of consumer groups that
//! have no members, in the same place a consumer of the group finds them.

use ferry_common::group_offsets::GroupOffsets;
use ferry_harness::{bootstrap, kafka, unique};
use rdkafka::ClientConfig;

fn client() -> GroupOffsets {
    GroupOffsets::new(ClientConfig::new().set("bootstrap.servers", bootstrap())).expect("client")
}

#[tokio::test]
async fn altered_offsets_are_what_the_group_commits_and_lists() {
    let topic = unique("offsets");
    let group = unique("knative-trigger-test");
    kafka::create_topic(&bootstrap(), &topic, 3).await;
    let offsets = client();

    let before = offsets
        .list(&group, &topic, &[0, 1, 2])
        .await
        .expect("list");
    assert_eq!(before.len(), 3);
    assert!(
        before.values().all(Option::is_none),
        "a new group has no position: {before:?}"
    );

    offsets
        .alter(&group, &topic, &[(0, 0), (2, 7)])
        .await
        .expect("alter");
    let listed = offsets
        .list(&group, &topic, &[0, 1, 2])
        .await
        .expect("list");
    assert_eq!(listed[&0], Some(0));
    assert_eq!(listed[&1], None);
    assert_eq!(listed[&2], Some(7));

    // A consumer of the group (what Kafka's tools and the reference use)
    // sees the same positions.
    let seen = kafka::group_offsets(&bootstrap(), &group, &topic, 3).await;
    assert_eq!(seen, vec![Some(0), None, Some(7)]);

    // Moving back is allowed: the position is the group's, not a high mark.
    offsets
        .alter(&group, &topic, &[(2, 3)])
        .await
        .expect("alter");
    assert_eq!(
        offsets.list(&group, &topic, &[2]).await.expect("list")[&2],
        Some(3)
    );
}

#[tokio::test]
async fn many_groups_through_one_client_at_once() {
    let topic = unique("offsets-many");
    kafka::create_topic(&bootstrap(), &topic, 1).await;
    let offsets = client();
    let groups: Vec<String> = (0..50).map(|i| unique(&format!("group-{i}"))).collect();
    let writes = groups.iter().enumerate().map(|(i, g)| {
        let offsets = offsets.clone();
        let topic = topic.clone();
        async move { offsets.alter(g, &topic, &[(0, i as i64)]).await }
    });
    for result in futures::future::join_all(writes).await {
        result.expect("alter");
    }
    for (i, g) in groups.iter().enumerate() {
        let listed = offsets.list(g, &topic, &[0]).await.expect("list");
        assert_eq!(listed[&0], Some(i as i64), "group {g}");
    }
}

#[tokio::test]
async fn offsets_for_a_time_are_the_first_written_at_or_after_it() {
    let topic = unique("offsets-time");
    kafka::create_topic(&bootstrap(), &topic, 1).await;
    kafka::produce_ids(&bootstrap(), &topic, &["before".into()]).await;
    let at = kafka::a_moment_later().await;
    kafka::produce_ids(&bootstrap(), &topic, &["after-1".into(), "after-2".into()]).await;
    let offsets = client();
    let at_time = |ms| {
        offsets
            .at_time(&topic, &[0], ms)
            .expect("offsets for times")
    };
    assert_eq!(at_time(0), [(0, 0)], "before the first");
    assert_eq!(at_time(at), [(0, 1)], "the first written after the moment");
}

/// Many groups of one topic pinned at once: each partition without a
/// position gets the group's start, a position already there stays.
#[tokio::test]
async fn groups_without_positions_are_pinned_at_their_starts() {
    use ferry_common::group_start::{pin_all, Point};
    let topic = unique("offsets-pin");
    kafka::create_topic(&bootstrap(), &topic, 2).await;
    for (partition, payload) in [(0, "a"), (0, "b"), (1, "c")] {
        kafka::produce_raw(&bootstrap(), &topic, partition, payload).await;
    }
    let ends = kafka::high_watermarks(&bootstrap(), &topic, 2).await;
    assert_eq!(ends, [2, 1]);
    let offsets = client();
    let (half, latest, earliest) = (unique("half"), unique("latest"), unique("earliest"));
    offsets
        .alter(&half, &topic, &[(0, 1)])
        .await
        .expect("alter");

    let groups = [
        (half.as_str(), Point::Latest),
        (latest.as_str(), Point::Latest),
        (earliest.as_str(), Point::Earliest),
    ];
    let pinned = pin_all(&offsets, &topic, &[0, 1], &groups).await;
    let pinned: Vec<usize> = pinned.into_iter().map(|p| p.expect("pinned")).collect();
    assert_eq!(pinned, [1, 2, 2], "partitions pinned per group");
    for (group, expected) in [
        (&half, [Some(1), Some(1)]),
        (&latest, [Some(2), Some(1)]),
        (&earliest, [Some(0), Some(0)]),
    ] {
        let seen = kafka::group_offsets(&bootstrap(), group, &topic, 2).await;
        assert_eq!(seen, expected, "{group}");
    }

    // Pinned already: nothing moves.
    let again = pin_all(&offsets, &topic, &[0, 1], &groups).await;
    assert!(again.iter().all(|p| matches!(p, Ok(0))), "{again:?}");
}
