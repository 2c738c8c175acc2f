//! Golden tests that lock the contract's wire and JSON shape to Knative's.
//! The expected bytes are written out by hand from the field numbers in
//! Knative's contract, so a renumbered or retyped field fails here.

use ferry_proto::{
    egress::ReplyStrategy, resource::Auth, BackoffPolicy, ContentMode, Contract, DeliveryOrder,
    Egress, EgressConfig, Empty, Ingress, Message, Resource,
};

const KNATIVE_JSON: &str = include_str!("golden/knative-contract.json");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn resource_fields_have_knatives_numbers() {
    let resource = Resource {
        uid: "u".into(),               // 1, len: 0a
        topics: vec!["t".into()],      // 2, len: 12
        bootstrap_servers: "b".into(), // 3, len: 1a
        ingress: Some(Ingress {
            // 4, len: 22
            content_mode: ContentMode::Structured as i32, // 1, varint: 08 01
            path: "/p".into(),                            // 2, len: 12
            ..Default::default()
        }),
        auth: Some(Auth::AbsentAuth(Empty {})), // 7, len: 3a 00
        ..Default::default()
    };
    assert_eq!(
        hex(&resource.encode_to_vec()),
        "0a0175".to_owned() + "120174" + "1a0162" + "2206" + "0801" + "12022f70" + "3a00"
    );
}

#[test]
fn egress_fields_have_knatives_numbers() {
    let egress = Egress {
        consumer_group: "g".into(),                                  // 1: 0a
        destination: "d".into(),                                     // 2: 12
        reply_strategy: Some(ReplyStrategy::DiscardReply(Empty {})), // 9, len: 4a 00
        uid: "i".into(),                                             // 6: 32
        egress_config: Some(EgressConfig {
            // 7: 3a
            dead_letter: "x".into(),                      // 1: 0a
            retry: 3,                                     // 2 varint: 10 03
            backoff_policy: BackoffPolicy::Linear as i32, // 3 varint: 18 01
            backoff_delay: 300,                           // 4 varint: 20 ac 02
            timeout: 1,                                   // 5 varint: 28 01
            format: "json".into(),                        // 8: 42
            ..Default::default()
        }),
        delivery_order: DeliveryOrder::Ordered as i32, // 8 varint: 40 01
        v_replicas: 2,                                 // 13 varint: 68 02
        oidc_service_account_name: "s".into(),         // 19 len: 9a 01
        ..Default::default()
    };
    assert_eq!(
        hex(&egress.encode_to_vec()),
        "0a0167".to_owned()
            + "120164"
            + "4a00" // prost writes a oneof where it is declared
            + "320169"
            + "3a12" + "0a0178" + "1003" + "1801" + "20ac02" + "2801" + "42046a736f6e"
            + "4001"
            + "6802"
            + "9a010173"
    );
}

#[test]
fn contract_generation_is_field_one_uint64() {
    let contract = Contract {
        generation: 300,
        ..Default::default()
    };
    assert_eq!(hex(&contract.encode_to_vec()), "08ac02");
}

#[test]
fn reads_knative_json() {
    let contract: Contract = serde_json::from_str(KNATIVE_JSON).unwrap();
    assert_eq!(contract.generation, 7);
    let broker = &contract.resources[0];
    assert_eq!(broker.bootstrap_servers, "kafka-1:9092,kafka-2:9092");
    let ingress = broker.ingress.as_ref().unwrap();
    assert_eq!(ingress.content_mode(), ContentMode::Structured);
    assert_eq!(ingress.path, "/default/my-broker");
    let config = broker.egress_config.as_ref().unwrap();
    assert_eq!(config.backoff_policy(), BackoffPolicy::Linear);
    assert_eq!(
        (config.retry, config.backoff_delay, config.timeout),
        (3, 200, 5000)
    );
    assert_eq!(broker.auth, Some(Auth::AbsentAuth(Empty {})));

    let t1 = &broker.egresses[0];
    assert_eq!(
        t1.reply_strategy,
        Some(ReplyStrategy::ReplyToOriginalTopic(Empty {}))
    );
    assert_eq!(t1.delivery_order(), DeliveryOrder::Ordered);
    assert_eq!(t1.dialected_filter.len(), 2);
    assert_eq!(
        t1.filter.as_ref().unwrap().attributes["type"],
        "com.example.order"
    );
    let t2 = &broker.egresses[1];
    assert_eq!(
        t2.reply_strategy,
        Some(ReplyStrategy::ReplyUrl(
            "http://reply.default.svc.cluster.local".into()
        ))
    );
    assert_eq!(t2.egress_config.as_ref().unwrap().format, "json");
    assert_eq!(
        broker.cloud_event_overrides.as_ref().unwrap().extensions["region"],
        "eu"
    );
}

#[test]
fn json_round_trip_keeps_every_field() {
    let contract: Contract = serde_json::from_str(KNATIVE_JSON).unwrap();
    let written = serde_json::to_value(&contract).unwrap();
    let expected: serde_json::Value = serde_json::from_str(KNATIVE_JSON).unwrap();
    assert_eq!(written, expected);
    // Binary round trip too.
    let decoded = Contract::decode(contract.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, contract);
}

#[test]
fn json_uses_protobuf_mapping_names_and_types() {
    let contract = Contract {
        generation: 12,
        ..Default::default()
    };
    // uint64 is a string in the protobuf JSON mapping.
    assert_eq!(
        serde_json::to_string(&contract).unwrap(),
        r#"{"generation":"12"}"#
    );
    let with_enum = EgressConfig {
        backoff_policy: BackoffPolicy::Linear as i32,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&with_enum).unwrap(),
        r#"{"backoffPolicy":"Linear"}"#
    );
}
