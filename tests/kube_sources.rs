//! Sources through an emulated Kubernetes API: PingSources fired by the
//! leader, ApiServerSources watching it, ContainerSources making their
//! Deployment and SinkBinding, SinkBindings patching their subjects.

use ferry_harness::{
    bootstrap, eventually,
    kube::{controller, has_condition, KubeApi, WAIT},
    process::KubeEmulator,
    subscriber::Subscriber,
    unique,
};
use serde_json::{json, Value};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// A PingSource created through the API gets Knative's status, and with
/// two replicas each tick is fired once: by the one holding the Lease.
#[tokio::test]
async fn ping_sources_through_the_api_are_fired_by_the_leader_only() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    let sink = Subscriber::accepting().await;
    let url = format!("/apis/sources.knative.dev/v1/namespaces/{ns}/pingsources");
    k.create(
        &url,
        json!({"apiVersion": "sources.knative.dev/v1", "kind": "PingSource",
               "metadata": {"name": "p", "namespace": ns, "generation": 2},
               "spec": {"schedule": "* * * * * *", "data": "tick", "contentType": "text/plain",
                        "sink": {"uri": sink.url()}}}),
    )
    .await;
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _first = controller(FERRY, &api, one.path(), "controller-1", &[]);
    let _second = controller(FERRY, &api, two.path(), "controller-2", &[]);

    let object = k
        .wait_for(&format!("{url}/p"), "the PingSource's status", |o| {
            o["status"]["conditions"][0]["status"] == "True"
        })
        .await;
    let status = &object["status"];
    assert_eq!(status["sinkUri"], sink.url(), "{status}");
    assert_eq!(status["observedGeneration"], 2, "{status}");
    assert_eq!(
        status["ceAttributes"],
        json!([{"type": "dev.knative.sources.ping",
                "source": format!("/apis/v1/namespaces/{ns}/pingsources/p")}]),
        "{status}"
    );
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "SinkProvided" && c["status"] == "True"),
        "{status}"
    );

    let ticks = sink.wait_for(4, WAIT).await;
    let mut times: Vec<&str> = ticks.iter().map(|t| t.header("ce-time").unwrap()).collect();
    let all = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), all, "a tick fired twice: {times:?}");
    assert!(ticks.iter().all(|t| t.body.as_ref() == b"tick"));
}

/// `ferry standalone` given a kubeconfig runs ApiServerSources against
/// that cluster: a ConfigMap created, updated and deleted becomes the
/// three events, as references and as whole objects.
#[tokio::test]
async fn api_server_sources_turn_changes_into_events() {
    use ferry_harness::process::{write_resource, Standalone};
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    let (refs, whole) = (Subscriber::accepting().await, Subscriber::accepting().await);
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let source = |name: &str, mode: &str, sink: &str| {
        format!(
            "apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  \
             mode: {mode}\n  resources:\n    - apiVersion: v1\n      kind: ConfigMap\n      selector:\n        matchLabels:\n          app: watched\n  \
             ceOverrides:\n    extensions:\n      team: ferry\n  sink:\n    uri: {sink}\n"
        )
    };
    write_resource(
        dir.path(),
        "refs.yaml",
        &source("refs", "Reference", &refs.url()),
    );
    write_resource(
        dir.path(),
        "whole.yaml",
        &source("whole", "Resource", &whole.url()),
    );
    let kubeconfig = api.kubeconfig();
    let ferry = Standalone::start_with_env(
        FERRY,
        dir.path(),
        state.path(),
        &bootstrap(),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
    .await;
    let status = ferry
        .wait_for_status("ApiServerSource", "refs", "True")
        .await;
    assert_eq!(status["sinkUri"], refs.url(), "{status}");
    let api_url = api.url.trim_end_matches('/').to_owned();
    assert_eq!(
        status["ceAttributes"][0],
        json!({"type": "dev.knative.apiserver.ref.add", "source": api_url}),
        "{status}"
    );
    ferry
        .wait_for_status("ApiServerSource", "whole", "True")
        .await;

    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    // One the selector leaves out, then the watched one: created, updated,
    // deleted.
    k.create(
        &configmaps,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "other", "namespace": ns}, "data": {"k": "0"}}),
    )
    .await;
    let watched = |value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": ns, "labels": {"app": "watched"}},
        "data": {"k": value}})
    };
    k.create(&configmaps, watched("1")).await;
    // Both sources have the object (by watch, or by their first list)
    // before it changes.
    eventually("the add, by both sources", WAIT, || {
        let done = !refs.received().is_empty() && !whole.received().is_empty();
        async move { done.then_some(()) }
    })
    .await;
    k.patch(
        &format!("{configmaps}/settings"),
        json!({"data": {"k": "2"}}),
    )
    .await;
    // Seen before the next change (the emulator's watches end at once, so
    // changes are seen by relisting).
    eventually("the update, by both sources", WAIT, || {
        let got: Vec<_> = refs
            .received()
            .into_iter()
            .chain(whole.received())
            .collect();
        async move {
            let seen = |ty| got.iter().any(|r| r.header("ce-type") == Some(ty));
            (seen("dev.knative.apiserver.ref.update")
                && seen("dev.knative.apiserver.resource.update"))
            .then_some(())
        }
    })
    .await;
    k.delete(&format!("{configmaps}/settings")).await;

    let types = |sub: &Subscriber| {
        sub.received()
            .iter()
            .map(|r| r.header("ce-type").unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let got = eventually("add, update and delete as references", WAIT, || {
        let got = refs.received();
        async move {
            got.iter()
                .any(|r| r.header("ce-type") == Some("dev.knative.apiserver.ref.delete"))
                .then_some(got)
        }
    })
    .await;
    assert_eq!(
        types(&refs),
        [
            "dev.knative.apiserver.ref.add",
            "dev.knative.apiserver.ref.update",
            "dev.knative.apiserver.ref.delete"
        ],
        "only the selected ConfigMap, each change once"
    );
    let add = &got[0];
    assert_eq!(add.header("ce-source"), Some(api_url.as_str()));
    assert_eq!(
        add.header("ce-subject"),
        Some(format!("/api/v1/namespaces/{ns}/configmaps/settings").as_str())
    );
    assert_eq!(add.header("ce-kind"), Some("ConfigMap"));
    assert_eq!(add.header("ce-apiversion"), Some("v1"));
    assert_eq!(add.header("ce-name"), Some("settings"));
    assert_eq!(add.header("ce-namespace"), Some(ns.as_str()));
    assert_eq!(add.header("ce-team"), Some("ferry"));
    let data: Value = serde_json::from_slice(&add.body).unwrap();
    assert_eq!(
        data,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "settings", "namespace": ns})
    );

    let got = eventually("the three changes as whole objects", WAIT, || {
        let got = whole.received();
        async move { (got.len() >= 3).then_some(got) }
    })
    .await;
    assert_eq!(
        types(&whole),
        [
            "dev.knative.apiserver.resource.add",
            "dev.knative.apiserver.resource.update",
            "dev.knative.apiserver.resource.delete"
        ]
    );
    let update: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(
        update["data"]["k"], "2",
        "the new object on update: {update}"
    );
    assert_eq!(update["kind"], "ConfigMap");
}

fn env_of(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (text("name"), text("value"))
        })
        .collect()
}

fn env_names(container: &Value) -> Vec<String> {
    env_of(container).into_iter().map(|(n, _)| n).collect()
}

/// A ContainerSource makes Knative's Deployment and SinkBinding, both
/// owned by it; the binding injects the sink into the Deployment; the
/// source is Ready when its Deployment is available; a template edit
/// reaches the Deployment and keeps the binding; deleting the source
/// deletes both.
#[tokio::test]
async fn container_sources_make_their_deployment_and_sink_binding() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    let sources = format!("/apis/sources.knative.dev/v1/namespaces/{ns}/containersources");
    let source = |image: &str| {
        json!({"apiVersion": "sources.knative.dev/v1", "kind": "ContainerSource",
               "metadata": {"name": "heartbeat", "namespace": ns, "uid": "cs-uid", "generation": 1},
               "spec": {"template": {"metadata": {"labels": {"app": "beat"}},
                                     "spec": {"containers": [{"name": "beat", "image": image,
                                                               "env": [{"name": "PERIOD", "value": "1"}]}]}},
                        "ceOverrides": {"extensions": {"team": "ferry"}},
                        "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}}})
    };
    k.create(&sources, source("example.test/beat:1")).await;
    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "controller-1", &[]);

    let deployment_path = format!("/apis/apps/v1/namespaces/{ns}/deployments/heartbeat-deployment");
    let bound = |d: &Value| {
        env_names(&d["spec"]["template"]["spec"]["containers"][0]).contains(&"K_SINK".to_owned())
    };
    let deployment = k
        .wait_for(&deployment_path, "the Deployment, bound to the sink", bound)
        .await;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "example.test/beat:1");
    assert_eq!(
        env_of(container),
        [
            ("PERIOD".to_owned(), "1".to_owned()),
            (
                "K_SINK".to_owned(),
                format!("http://ingress.test/{ns}/default")
            ),
            (
                "K_CE_OVERRIDES".to_owned(),
                r#"{"extensions":{"team":"ferry"}}"#.to_owned()
            ),
        ]
    );
    let labels = json!({"app": "beat", "sources.knative.dev/source": "container-source-controller",
                        "sources.knative.dev/containerSource": "heartbeat"});
    assert_eq!(deployment["metadata"]["labels"], labels);
    assert_eq!(deployment["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["uid"],
        "cs-uid"
    );

    let binding_path =
        format!("/apis/sources.knative.dev/v1/namespaces/{ns}/sinkbindings/heartbeat-sinkbinding");
    let binding = k
        .wait_for(&binding_path, "the SinkBinding's status", |b| {
            b["status"]["conditions"][0]["status"] == "True"
        })
        .await;
    assert_eq!(
        binding["spec"]["subject"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": "heartbeat-deployment"})
    );
    assert_eq!(
        binding["metadata"]["ownerReferences"][0]["kind"],
        "ContainerSource"
    );
    assert!(
        has_condition(&binding["status"], "SinkBindingAvailable", "True"),
        "{binding}"
    );

    // No Deployment controller here: until one says the Deployment is
    // available, neither is the source.
    let path = format!("{sources}/heartbeat");
    let waiting = k
        .wait_for(&path, "the source waiting for its Deployment", |s| {
            has_condition(&s["status"], "SinkBindingReady", "True")
        })
        .await;
    let status = &waiting["status"];
    assert!(
        has_condition(status, "ReceiveAdapterReady", "Unknown"),
        "{status}"
    );
    assert_eq!(status["conditions"][0]["status"], "Unknown", "{status}");
    assert_eq!(
        status["sinkUri"],
        format!("http://ingress.test/{ns}/default")
    );
    k.patch(
        &format!("{deployment_path}/status"),
        json!({"status": {"conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}}),
    )
    .await;
    let ready = k
        .wait_for(&path, "the source Ready", |s| {
            s["status"]["conditions"][0]["status"] == "True"
        })
        .await;
    assert!(
        has_condition(&ready["status"], "ReceiveAdapterReady", "True"),
        "{ready}"
    );
    assert_eq!(ready["status"]["observedGeneration"], 1);

    // An edit of the template reaches the Deployment, which stays bound.
    k.patch(
        &path,
        json!({"spec": source("example.test/beat:2")["spec"]}),
    )
    .await;
    let updated = k
        .wait_for(&deployment_path, "the new image", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] == "example.test/beat:2"
        })
        .await;
    assert!(bound(&updated), "{updated}");

    k.delete(&path).await;
    k.wait_gone(&deployment_path, "the Deployment deleted with its source")
        .await;
    k.wait_gone(&binding_path, "the SinkBinding deleted with its source")
        .await;
}

/// SinkBindings inject `K_SINK`, `K_CA_CERTS` and `K_CE_OVERRIDES` into
/// every container and init container of their subjects, by name or by
/// label selector (a workload made later too), say when a subject is
/// missing, and take the variables out again when they are deleted.
#[tokio::test]
async fn sink_bindings_inject_and_remove_their_variables() {
    let api = KubeEmulator::start();
    let k = KubeApi::new(&api);
    let ns = unique("ns");
    let apps = format!("/apis/apps/v1/namespaces/{ns}/deployments");
    let cronjobs = format!("/apis/batch/v1/namespaces/{ns}/cronjobs");
    let pod = json!({"initContainers": [{"name": "init", "image": "i"}],
                     "containers": [{"name": "app", "image": "a", "env": [{"name": "MINE", "value": "kept"}]},
                                    {"name": "side", "image": "s"}]});
    k.create(
        &apps,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": ns},
               "spec": {"selector": {"matchLabels": {"app": "app"}},
                        "template": {"metadata": {"labels": {"app": "app"}}, "spec": pod}}}),
    )
    .await;
    let cronjob = |name: &str, bind: &str| {
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
               "metadata": {"name": name, "namespace": ns, "labels": {"bind": bind}},
               "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                   "restartPolicy": "Never", "containers": [{"name": "job", "image": "j"}]}}}}}})
    };
    k.create(&cronjobs, cronjob("chosen", "yes")).await;
    k.create(&cronjobs, cronjob("left", "no")).await;
    let bindings = format!("/apis/sources.knative.dev/v1/namespaces/{ns}/sinkbindings");
    let binding = |name: &str, subject: Value, sink: Value| {
        json!({"apiVersion": "sources.knative.dev/v1", "kind": "SinkBinding",
               "metadata": {"name": name, "namespace": ns, "generation": 3},
               "spec": {"subject": subject, "sink": sink, "ceOverrides": {"extensions": {"from": name}}}})
    };
    let pem = ferry_harness::certs::self_signed("sink.test");
    let pem = pem.as_str();
    k.create(
        &bindings,
        binding(
            "by-name",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}),
            json!({"uri": "http://sink.test/events", "CACerts": pem}),
        ),
    )
    .await;
    k.create(
        &bindings,
        binding(
            "by-label",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "selector": {"matchLabels": {"bind": "yes"}}}),
            json!({"ref": {"apiVersion": "v1", "kind": "Service", "name": "display"}}),
        ),
    )
    .await;
    k.create(
        &bindings,
        binding(
            "missing",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "nowhere"}),
            json!({"uri": "http://sink.test"}),
        ),
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let _controller = controller(FERRY, &api, state.path(), "controller-1", &[]);

    let app_path = format!("{apps}/app");
    let is_bound = |c: &Value| env_names(c).contains(&"K_SINK".to_owned());
    let app = k
        .wait_for(&app_path, "the Deployment bound", |d| {
            is_bound(&d["spec"]["template"]["spec"]["containers"][0])
        })
        .await;
    let spec = &app["spec"]["template"]["spec"];
    let overrides = r#"{"extensions":{"from":"by-name"}}"#;
    let injected = [
        ("K_SINK".to_owned(), "http://sink.test/events".to_owned()),
        ("K_CA_CERTS".to_owned(), pem.to_owned()),
        ("K_CE_OVERRIDES".to_owned(), overrides.to_owned()),
    ];
    assert_eq!(
        env_of(&spec["containers"][0])[0],
        ("MINE".to_owned(), "kept".to_owned())
    );
    assert_eq!(env_of(&spec["containers"][0])[1..], injected);
    assert_eq!(env_of(&spec["containers"][1]), injected);
    assert_eq!(env_of(&spec["initContainers"][0]), injected);

    let job_container =
        |c: &Value| c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].clone();
    let chosen = k
        .wait_for(
            &format!("{cronjobs}/chosen"),
            "the selected CronJob bound",
            |c| is_bound(&job_container(c)),
        )
        .await;
    assert_eq!(
        env_of(&job_container(&chosen)),
        [
            (
                "K_SINK".to_owned(),
                format!("http://display.{ns}.svc.cluster.local")
            ),
            (
                "K_CE_OVERRIDES".to_owned(),
                r#"{"extensions":{"from":"by-label"}}"#.to_owned()
            ),
        ],
        "no CA certificates, no K_CA_CERTS"
    );
    let status = k
        .wait_for(&format!("{bindings}/by-name"), "by-name's status", |b| {
            b["status"]["conditions"][0]["status"] == "True"
        })
        .await["status"]
        .clone();
    assert_eq!(status["sinkUri"], "http://sink.test/events");
    assert_eq!(status["sinkCACerts"], pem);
    assert_eq!(status["observedGeneration"], 3);
    assert!(has_condition(&status, "SinkProvided", "True"), "{status}");
    assert!(
        has_condition(&status, "SinkBindingAvailable", "True"),
        "{status}"
    );
    let missing = k
        .wait_for(&format!("{bindings}/missing"), "missing's status", |b| {
            b["status"]["conditions"][0]["status"] == "False"
        })
        .await["status"]
        .clone();
    assert_eq!(
        missing["conditions"][0]["reason"], "SubjectMissing",
        "{missing}"
    );
    assert!(
        has_condition(&missing, "SinkBindingAvailable", "False"),
        "{missing}"
    );

    // A workload made later is bound too; one the selector leaves out is
    // never touched.
    k.create(&cronjobs, cronjob("later", "yes")).await;
    k.wait_for(
        &format!("{cronjobs}/later"),
        "the later CronJob bound",
        |c| is_bound(&job_container(c)),
    )
    .await;
    let left = k.get(&format!("{cronjobs}/left")).await.unwrap();
    assert!(env_names(&job_container(&left)).is_empty(), "{left}");
    assert!(left["metadata"]["annotations"].is_null(), "{left}");

    k.delete(&format!("{bindings}/by-name")).await;
    let unbound = k
        .wait_for(&app_path, "the variables taken out", |d| {
            !is_bound(&d["spec"]["template"]["spec"]["containers"][0])
        })
        .await;
    let spec = &unbound["spec"]["template"]["spec"];
    assert_eq!(
        env_of(&spec["containers"][0]),
        [("MINE".to_owned(), "kept".to_owned())]
    );
    assert!(spec["containers"][1]["env"].is_null(), "{unbound}");
    assert!(spec["initContainers"][0]["env"].is_null(), "{unbound}");
    assert!(
        unbound["metadata"]["annotations"]["sinkbindings.ferry.dev/bound-by"].is_null(),
        "{unbound}"
    );
    let still = k.get(&format!("{cronjobs}/chosen")).await.unwrap();
    assert!(
        is_bound(&job_container(&still)),
        "the other binding's subject stays bound"
    );
}
