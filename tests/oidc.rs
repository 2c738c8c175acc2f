//! Sender identity at the ingress, with real signed tokens: an issuer
//! made for this run (its own key pair, discovery and JWKS on 127.0.0.1)
//! signs them, and the receiver verifies signature, issuer, audience and
//! lifetime (401 when any fails), then the resource's EventPolicies (403
//! when none admits the sender, or this event). A key the issuer starts
//! publishing is picked up without a restart.

use std::time::Duration;

use ferry_auth::IssuerConfig;
use ferry_harness::{
    bootstrap, broker, eventually,
    http::{self, HttpClient},
    kafka::{create_topic, header, TopicReader},
    oidc::TestIssuer,
    receiver_config, unique, ContractFile, TestReceiver,
};
use ferry_proto::{
    dialected_filter, token_matcher::Matcher, Contract, DialectedFilter, EventPolicy, Exact,
    Prefix, TokenMatcher,
};

const AUDIENCE: &str = "eventing.knative.dev/broker/ns/guarded";

fn attributes(k: &str, v: &str) -> std::collections::HashMap<String, String> {
    [(k.to_owned(), v.to_owned())].into()
}

async fn post(client: &HttpClient, url: &str, token: Option<&str>, ty: &str) -> http::Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-type", ty),
        ("ce-source", "/tests"),
    ];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    http::post(client, url, &headers, "{}").await
}

#[tokio::test]
async fn tokens_are_verified_and_event_policies_applied() {
    let issuer = TestIssuer::start().await.expect("an issuer");
    let b = bootstrap();
    let topic = unique("oidc");
    create_topic(&b, &topic, 1).await;
    let mut guarded = broker("ns", "guarded", &topic, &b);
    let ingress = guarded.ingress.as_mut().unwrap();
    ingress.audience = AUDIENCE.into();
    ingress.event_policies = vec![
        EventPolicy {
            token_matchers: vec![TokenMatcher {
                matcher: Some(Matcher::Exact(Exact {
                    attributes: attributes("sub", "system:serviceaccount:ns:sender"),
                })),
            }],
            filters: vec![],
        },
        EventPolicy {
            token_matchers: vec![TokenMatcher {
                matcher: Some(Matcher::Prefix(Prefix {
                    attributes: attributes("sub", "system:serviceaccount:team:"),
                })),
            }],
            filters: vec![DialectedFilter {
                filter: Some(dialected_filter::Filter::Exact(Exact {
                    attributes: attributes("type", "allowed"),
                })),
            }],
        },
    ];
    // An audience and no policy: no one may send (deny-all).
    let mut closed = broker("ns", "closed", &topic, &b);
    closed.ingress.as_mut().unwrap().audience = "eventing.knative.dev/broker/ns/closed".into();
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![guarded, closed],
        ..Default::default()
    });
    let mut config = receiver_config(&contract, &b);
    config.oidc = Some(IssuerConfig {
        url: issuer.url.clone(),
        ca_file: None,
        token_file: None,
    });
    let receiver = TestReceiver::start(config).await;
    receiver.ready().await;
    let client = http::client();
    let url = receiver.url("/ns/guarded");
    let sender = "system:serviceaccount:ns:sender";

    let ok = post(&client, &url, Some(&issuer.token(sender, AUDIENCE)), "any").await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    let record = &TopicReader::new(&b, &topic, 1)
        .read(1, Duration::from_secs(20))
        .await[0];
    assert_eq!(header(record, "ce_type").as_deref(), Some("any"));

    // 401: no token, or one that does not verify, with the reason.
    let mut expired = issuer.claims(sender, AUDIENCE);
    expired["exp"] = (ferry_harness::oidc::now() - 120).into();
    let mut early = issuer.claims(sender, AUDIENCE);
    early["nbf"] = (ferry_harness::oidc::now() + 600).into();
    let mut other_issuer = issuer.claims(sender, AUDIENCE);
    other_issuer["iss"] = "https://issuer.example".into();
    let cases = [
        (None, "no bearer token"),
        (Some("not-a-jwt".to_owned()), "not a valid JWT"),
        (
            Some(issuer.token(sender, "another/audience")),
            "another audience",
        ),
        (Some(issuer.sign(expired, None)), "expired"),
        (Some(issuer.sign(early, None)), "not valid yet"),
        (Some(issuer.sign(other_issuer, None)), "another issuer"),
        (
            Some(issuer.sign(issuer.claims(sender, AUDIENCE), Some("k1"))),
            "signature",
        ),
        (
            Some(issuer.sign(issuer.claims(sender, AUDIENCE), Some("unpublished"))),
            "does not publish",
        ),
    ];
    for (token, why) in cases {
        let answer = post(&client, &url, token.as_deref(), "any").await;
        assert_eq!(answer.status, 401, "{why}: {}", answer.body);
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        assert!(answer.body.contains(why), "{why}: {}", answer.body);
    }

    // 403: verified, but no policy admits the sender, or this event.
    let stranger = issuer.token("system:serviceaccount:elsewhere:x", AUDIENCE);
    let refused = post(&client, &url, Some(&stranger), "any").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("elsewhere:x"), "{}", refused.body);
    let team = issuer.token("system:serviceaccount:team:a", AUDIENCE);
    assert_eq!(
        post(&client, &url, Some(&team), "allowed").await.status,
        202
    );
    let filtered = post(&client, &url, Some(&team), "other").await;
    assert_eq!(filtered.status, 403, "{}", filtered.body);
    assert!(filtered.body.contains("'other'"), "{}", filtered.body);
    let closed_token = issuer.token(sender, "eventing.knative.dev/broker/ns/closed");
    let closed = post(
        &client,
        &receiver.url("/ns/closed"),
        Some(&closed_token),
        "any",
    )
    .await;
    assert_eq!(closed.status, 403, "{}", closed.body);

    // A key published after the receiver started is fetched when a token
    // names it (at most once per few seconds: the forged key id above made
    // the last fetch).
    issuer.rotate("k2");
    let token = issuer.token(sender, AUDIENCE);
    eventually("the new key fetched", Duration::from_secs(20), || {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        async move { (post(&client, &url, Some(&token), "any").await.status == 202).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_resource_with_an_audience_and_no_issuer_takes_nothing() {
    let b = bootstrap();
    let topic = unique("oidc-none");
    create_topic(&b, &topic, 1).await;
    let mut guarded = broker("ns", "guarded", &topic, &b);
    guarded.ingress.as_mut().unwrap().audience = AUDIENCE.into();
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![guarded],
        ..Default::default()
    });
    let receiver = TestReceiver::start(receiver_config(&contract, &b)).await;
    receiver.ready().await;
    let answer = post(
        &http::client(),
        &receiver.url("/ns/guarded"),
        Some("a.b.c"),
        "t",
    )
    .await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(answer.body.contains("no OIDC issuer"), "{}", answer.body);
}

/// Standalone: the folder's EventPolicy and the issuer the user names lock
/// a broker down, and its address says which audience to ask tokens for.
#[tokio::test]
async fn a_standalone_broker_is_locked_down_by_the_folders_event_policy() {
    use ferry_harness::process::{write_resource, Standalone};
    let issuer = TestIssuer::start().await.expect("an issuer");
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ns = unique("ns");
    write_resource(
        dir.path(),
        "locked.yaml",
        &format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b, namespace: {ns}}}\n---\n\
             apiVersion: eventing.knative.dev/v1alpha1\nkind: EventPolicy\nmetadata: {{name: app, namespace: {ns}}}\n\
             spec: {{from: [{{sub: 'system:serviceaccount:{ns}:app'}}]}}\n"
        ),
    );
    let ferry = Standalone::start_with_env(
        env!("CARGO_BIN_EXE_ferry"),
        dir.path(),
        state.path(),
        &bootstrap(),
        &[
            ("FERRY_AUTHENTICATION_OIDC", "true"),
            ("FERRY_DEFAULT_AUTHORIZATION_MODE", "deny-all"),
            ("FERRY_OIDC_ISSUER_URL", &issuer.url),
        ],
    )
    .await;
    let status = ferry.wait_for_status("Broker", "b", "True").await;
    let audience = format!("eventing.knative.dev/broker/{ns}/b");
    assert_eq!(
        status["addresses"][0]["audience"],
        audience.as_str(),
        "{status}"
    );
    ferry.wait_for_status("EventPolicy", "app", "True").await;
    ferry.ready().await;
    let client = http::client();
    let url = format!("{}/{ns}/b", ferry.ingress);
    let app = issuer.token(&format!("system:serviceaccount:{ns}:app"), &audience);
    assert_eq!(post(&client, &url, Some(&app), "t").await.status, 202);
    let other = issuer.token(&format!("system:serviceaccount:{ns}:other"), &audience);
    assert_eq!(post(&client, &url, Some(&other), "t").await.status, 403);
    assert_eq!(post(&client, &url, None, "t").await.status, 401);
}
