//! Tokens on egress: a destination with an audience gets `Authorization:
//! Bearer` with a token of the egress's `oidcServiceAccountName` for that
//! audience, from Kubernetes' TokenRequest API, requested once and reused.
//! kmock has no TokenRequest, so the API here is a stand-in that answers
//! TokenRequests with real tokens signed by a test issuer; the subscriber
//! side verifies them against that issuer's published keys.

use std::{sync::Arc, time::Duration};

use ferry_auth::{Issuer, IssuerConfig, Verifier};
use ferry_harness::{
    bootstrap, broker, dispatcher_config,
    kafka::{create_topic, produce_batch},
    oidc::TestIssuer,
    subscriber::{Answer, Subscriber},
    trigger, unique, ContractFile, TestDispatcher,
};
use ferry_proto::{Contract, EgressConfig, InitialOffset};

const WAIT: Duration = Duration::from_secs(30);
const AUDIENCE: &str = "https://subscriber.example/audience";

#[tokio::test]
async fn destinations_with_an_audience_get_the_accounts_token() {
    let issuer = Arc::new(TestIssuer::start().await.expect("an issuer"));
    // The TokenRequest API: a token for the account and the audience asked.
    let minting = issuer.clone();
    let api = Subscriber::scripted(move |request, _| {
        let path = request.path.trim_start_matches('/');
        let parts: Vec<&str> = path.split('/').collect();
        let ["api", "v1", "namespaces", ns, "serviceaccounts", sa, "token"] = parts[..] else {
            return Answer::status(404);
        };
        let asked: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let audience = asked["spec"]["audiences"][0].as_str().unwrap_or_default();
        let token = minting.token(&format!("system:serviceaccount:{ns}:{sa}"), audience);
        let expires = (chrono::Utc::now() + chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [audience]},
            "status": {"token": token, "expirationTimestamp": expires},
        });
        Answer::status(201)
            .with_header("content-type", "application/json")
            .with_body(&body.to_string())
    })
    .await;
    let client = kube::Client::try_from(kube::Config::new(
        api.url().trim_end_matches('/').parse().unwrap(),
    ))
    .unwrap();

    let b = bootstrap();
    let topic = unique("oidc-egress");
    create_topic(&b, &topic, 1).await;
    let subscriber = Subscriber::accepting().await;
    let dead_letters = Subscriber::accepting().await;
    let mut with_account = trigger("ns", "with-account", &subscriber.url());
    with_account.destination_audience = AUDIENCE.into();
    with_account.oidc_service_account_name = "sender".into();
    let mut without = trigger("ns", "without-account", &subscriber.url());
    without.destination_audience = AUDIENCE.into();
    without.egress_config = Some(EgressConfig {
        retry: 1,
        backoff_delay: 10,
        dead_letter: dead_letters.url(),
        ..Default::default()
    });
    let mut resource = broker("ns", "b", &topic, &b);
    resource.egresses = vec![with_account, without];
    for egress in &mut resource.egresses {
        egress.set_initial_offset(InitialOffset::Earliest);
    }
    let file = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![resource],
        ..Default::default()
    });
    let mut config = dispatcher_config(&file, &b);
    config.tokens = ferry_dispatcher::tokens::Source::Kube(client);
    let dispatcher = TestDispatcher::start(config).await;
    produce_batch(&b, &topic, &["e1".to_owned(), "e2".to_owned()]).await;

    let got = subscriber.wait_for(2, WAIT).await;
    let verifier = Verifier::new(
        Issuer::new(IssuerConfig {
            url: issuer.url.clone(),
            ca_file: None,
            token_file: None,
        })
        .unwrap(),
    );
    for delivery in &got {
        let bearer = delivery.header("authorization").expect("a token");
        let token = bearer.strip_prefix("Bearer ").expect("a bearer token");
        let claims = verifier
            .verify(token, AUDIENCE)
            .await
            .expect("a valid token");
        assert_eq!(claims["sub"], "system:serviceaccount:ns:sender");
    }
    assert_eq!(
        api.received().len(),
        1,
        "one token request for both deliveries"
    );
    // Without an account there is no token: the attempts fail with the
    // reason and the event is dead-lettered.
    let dead = dead_letters.wait_for(2, WAIT).await;
    assert!(dead.iter().all(|d| d.header("authorization").is_none()));
    assert_eq!(
        subscriber.received().len(),
        2,
        "nothing sent without a token"
    );
    dispatcher.stop().await;
}
