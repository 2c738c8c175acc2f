//! Delivery to `https://` subscribers, with CAs made for this run: trusted
//! through the destination's own CA certificates (`destinationCACerts`),
//! through the contract's `trustBundles`, and a subscriber whose
//! certificate nothing trusts fails every attempt and is dead-lettered;
//! nothing falls back to plain HTTP.

use std::time::Duration;

use ferry_harness::{
    bootstrap, broker, dispatcher_config, kafka::create_topic, kafka::produce_batch,
    subscriber::Subscriber, tls::Pki, trigger, unique, ContractFile, TestDispatcher,
};
use ferry_proto::{Contract, EgressConfig, InitialOffset};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn https_subscribers_are_trusted_by_their_ca_or_a_bundle_and_others_dead_lettered() {
    let b = bootstrap();
    let topic = unique("tls-egress");
    create_topic(&b, &topic, 1).await;
    let (own_ca, bundled, untrusted) = (Pki::new(), Pki::new(), Pki::new());
    let by_own_ca = Subscriber::accepting_tls(&own_ca).await;
    let by_bundle = Subscriber::accepting_tls(&bundled).await;
    let nobody_trusts = Subscriber::accepting_tls(&untrusted).await;
    let dead_letters = Subscriber::accepting().await;

    let mut own = trigger("ns", "own-ca", &by_own_ca.url());
    own.destination_ca_certs = own_ca.ca_pem.clone();
    let bundle = trigger("ns", "bundle", &by_bundle.url());
    let mut refused = trigger("ns", "untrusted", &nobody_trusts.url());
    refused.egress_config = Some(EgressConfig {
        retry: 1,
        backoff_delay: 10,
        dead_letter: dead_letters.url(),
        ..Default::default()
    });
    let mut resource = broker("ns", "b", &topic, &b);
    resource.egresses = vec![own, bundle, refused];
    // From the start of the topic: the record may be written before the
    // triggers' groups are made.
    for egress in &mut resource.egresses {
        egress.set_initial_offset(InitialOffset::Earliest);
    }
    let contract = Contract {
        generation: 1,
        resources: vec![resource],
        trust_bundles: vec![bundled.ca_pem.clone()],
    };
    let file = ContractFile::new(&contract);
    let dispatcher = TestDispatcher::start(dispatcher_config(&file, &b)).await;
    produce_batch(&b, &topic, &["over-tls".to_owned()]).await;

    for subscriber in [&by_own_ca, &by_bundle] {
        let got = subscriber.wait_for(1, WAIT).await;
        assert_eq!(got[0].header("ce-id"), Some("over-tls"));
    }
    let dead = dead_letters.wait_for(1, WAIT).await;
    assert_eq!(dead[0].header("ce-id"), Some("over-tls"));
    assert_eq!(
        dead[0].header("ce-knativeerrordest"),
        Some(nobody_trusts.url().as_str())
    );
    assert!(
        nobody_trusts.received().is_empty(),
        "no request reached the untrusted subscriber"
    );
    dispatcher.stop().await;
}
