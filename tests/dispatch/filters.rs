//! Which events each trigger gets: every filter dialect, and CESQL.

use super::*;

#[tokio::test]
async fn each_dialect_selects_exactly_its_events() {
    use ferry_proto::{All, Any, Exact, Not, Prefix, Suffix};
    let subs = [
        Subscriber::accepting().await, // 0 legacy exact on type
        Subscriber::accepting().await, // 1 exact
        Subscriber::accepting().await, // 2 prefix
        Subscriber::accepting().await, // 3 suffix
        Subscriber::accepting().await, // 4 all
        Subscriber::accepting().await, // 5 any
        Subscriber::accepting().await, // 6 not
        Subscriber::accepting().await, // 7 no filter
        Subscriber::accepting().await, // 8 legacy empty value: attribute present
    ];
    let mut triggers: Vec<Egress> = subs
        .iter()
        .enumerate()
        .map(|(i, s)| trigger("ns", &format!("t{i}"), &s.url()))
        .collect();
    triggers[0].filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("type", "order.created")]),
    });
    triggers[1].dialected_filter = vec![dialect(Dialect::Exact(Exact {
        attributes: attributes(&[("region", "eu")]),
    }))];
    triggers[2].dialected_filter = vec![dialect(Dialect::Prefix(Prefix {
        attributes: attributes(&[("type", "order.")]),
    }))];
    triggers[3].dialected_filter = vec![dialect(Dialect::Suffix(Suffix {
        attributes: attributes(&[("type", ".deleted")]),
    }))];
    triggers[4].dialected_filter = vec![dialect(Dialect::All(All {
        filters: vec![
            dialect(Dialect::Prefix(Prefix {
                attributes: attributes(&[("type", "order.")]),
            })),
            dialect(Dialect::Exact(Exact {
                attributes: attributes(&[("region", "us")]),
            })),
        ],
    }))];
    triggers[5].dialected_filter = vec![dialect(Dialect::Any(Any {
        filters: vec![
            dialect(Dialect::Exact(Exact {
                attributes: attributes(&[("region", "us")]),
            })),
            dialect(Dialect::Suffix(Suffix {
                attributes: attributes(&[("type", ".deleted")]),
            })),
        ],
    }))];
    triggers[6].dialected_filter = vec![dialect(Dialect::Not(Box::new(Not {
        filter: Some(Box::new(dialect(Dialect::Prefix(Prefix {
            attributes: attributes(&[("type", "order.")]),
        })))),
    })))];
    triggers[8].filter = Some(ferry_proto::Filter {
        attributes: attributes(&[("region", "")]),
    });
    let mesh = Mesh::start(3, triggers).await;

    mesh.send_with("e1", "order.created", &[("ce-region", "eu")])
        .await;
    mesh.send_with("e2", "order.created", &[("ce-region", "us")])
        .await;
    mesh.send("e3", "order.deleted").await;
    mesh.send_with("e4", "user.deleted", &[("ce-region", "us")])
        .await;
    mesh.send("e5", "user.created").await;
    // A marker every filter-less trigger gets, sent last.
    let all = ["e1", "e2", "e3", "e4", "e5"].map(String::from);
    subs[7].wait_for_ids(&all, WAIT).await;

    let expected: [&[&str]; 9] = [
        &["e1", "e2"],
        &["e1"],
        &["e1", "e2", "e3"],
        &["e3", "e4"],
        &["e2"],
        &["e2", "e3", "e4"],
        &["e4", "e5"],
        &["e1", "e2", "e3", "e4", "e5"],
        // An empty expected value is no condition (the reference's rule).
        &["e1", "e2", "e3", "e4", "e5"],
    ];
    for (i, (sub, want)) in subs.iter().zip(expected).enumerate() {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        sub.wait_for_ids(&want, WAIT).await;
        assert_eq!(ids(&sub.received()), want, "trigger t{i}");
    }
}

#[tokio::test]
async fn cesql_triggers_receive_exactly_what_their_expressions_select() {
    let expressions = [
        "type LIKE 'order.%' AND region = 'eu'",
        "EXISTS priority AND priority > 5",
        "source IN ('/ferry/tests') AND NOT (type = 'order.created')",
        // Without the EXISTS guard a missing region is an error, and the whole OR is false.
        "(EXISTS region AND LOWER(region) = 'us') OR UPPER(type) LIKE '%DELETED'",
    ];
    let subs = [
        Subscriber::accepting().await,
        Subscriber::accepting().await,
        Subscriber::accepting().await,
        Subscriber::accepting().await,
    ];
    let triggers = expressions
        .iter()
        .zip(&subs)
        .enumerate()
        .map(|(i, (expression, sub))| {
            let mut t = trigger("ns", &format!("sql{i}"), &sub.url());
            t.dialected_filter = vec![dialect(Dialect::Cesql(ferry_proto::Cesql {
                expression: expression.to_string(),
            }))];
            t
        })
        .collect();
    let mesh = Mesh::start(1, triggers).await;
    mesh.send_with(
        "e1",
        "order.created",
        &[("ce-region", "eu"), ("ce-priority", "9")],
    )
    .await;
    mesh.send_with("e2", "order.deleted", &[("ce-region", "US")])
        .await;
    mesh.send_with("e3", "user.created", &[("ce-priority", "2")])
        .await;
    mesh.send_with(
        "e4",
        "order.updated",
        &[("ce-region", "eu"), ("ce-priority", "x")],
    )
    .await;
    // The marker every expression-3 trigger gets goes last; ordering per
    // partition (one partition) means everything before it was decided.
    mesh.send_with("marker", "marker.deleted", &[]).await;
    let expected: [&[&str]; 4] = [
        &["e1", "e4"],
        &["e1"],
        &["e2", "e3", "e4", "marker"],
        &["e2", "marker"],
    ];
    for (i, (sub, want)) in subs.iter().zip(expected).enumerate() {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        sub.wait_for_ids(&want, WAIT).await;
        assert_eq!(ids(&sub.received()), want, "{}", expressions[i]);
    }
}
