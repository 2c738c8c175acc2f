//! `ferry standalone`: controller, receiver and dispatcher in one process,
//! with resources from a folder. One admin port serves everything's
//! metrics and `/resources`.

use ferry_registry::{Recorder, Store};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
};

use anyhow::Context;
use ferry_common::tls::TransportEncryption;
use ferry_common::{admin::Admin, metrics::Shared, server, shutdown::Shutdown};
use ferry_controller::{
    contract_file::ContractFile,
    metrics::ControllerMetrics,
    plan::{AddressTls, Status},
    StatusRx,
};
use prometheus_client::registry::Registry;

use crate::{
    controller, dispatcher, mesh, receiver, served,
    shared::{DataPlane, KafkaArgs, MetricsArgs},
};

#[derive(clap::Args)]
pub struct Args {
    /// A folder of Knative resources (YAML, as for kubectl apply), watched.
    #[arg(long, env = "FERRY_RESOURCES")]
    resources: PathBuf,

    /// Where the contract and other state are kept.
    #[arg(long, env = "FERRY_STATE_DIR", default_value = ".ferry/standalone")]
    state_dir: PathBuf,

    /// Where /metrics, /resources, /healthz and /readyz are served.
    #[arg(long, env = "FERRY_ADMIN", default_value = "0.0.0.0:9090")]
    admin: SocketAddr,

    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    receiver: receiver::ReceiverTuning,
    #[command(flatten)]
    dispatcher: dispatcher::DispatcherTuning,
    #[command(flatten)]
    controller: controller::ControllerTuning,
}

pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    let contract = args.state_dir.join("contract.json");
    let event_types = args.state_dir.join("eventtypes");
    let previous = set_aside_previous_contract(&contract)?;
    let mut registry = Registry::default();
    let shared = Shared::register(&mut registry, args.metrics.metrics_event_type);
    // One admin port serves all three, so the components' own go unused.
    let plane = DataPlane {
        contract: contract.clone(),
        contract_poll: std::time::Duration::from_secs(5),
        admin: "127.0.0.1:0".parse().expect("addr"),
        bootstrap: args.kafka.bootstrap_servers.clone(),
        overrides: args.kafka.overrides()?,
        // Secrets are resources of the folder, as in a namespace.
        secrets: ferry_common::secrets::Secrets::Folder(args.resources.clone()),
        metrics_event_type: args.metrics.metrics_event_type,
        // The registry: EventTypes as files the controller reads beside the
        // resources, so they survive a restart.
        event_types: Some(Recorder::spawn(
            Store::Folder(event_types.clone()),
            shutdown.clone(),
        )),
    };
    let tail = Arc::new(ferry_common::tail::Tail::default());
    let mut receiver_config = args.receiver.config(&plane)?;
    receiver_config.tail = Some(tail.clone());
    let receiver =
        ferry_receiver::start_embedded(receiver_config, shutdown.clone(), &mut registry, &shared)
            .await?;
    // Brokers' addresses use the port actually bound (--listen may say 0).
    let local_ingress = format!("http://{}", reachable(receiver.ingress));
    let mut controller_config = args.controller.config(
        args.resources.clone(),
        contract.clone(),
        &args.kafka,
        Some(&local_ingress),
    )?;
    controller_config.previous_contract = previous;
    if let (Some(addr), Some(tls)) = (receiver.tls_ingress, &args.receiver.tls.ingress()?) {
        controller_config.settings.tls = Some(AddressTls {
            url: format!("https://{}", reachable(addr)),
            ca_certs: Some(ca_certs(&tls.files.cert)?),
            strict: tls.mode == TransportEncryption::Strict,
        });
    }
    controller_config.event_types = plane.event_types.clone();
    controller_config.registry = Some(event_types);
    controller_config.annotation_requests = Some(ferry_controller::annotation_requests::folder(
        &args.state_dir,
    ));
    args.controller.cluster(&mut controller_config).await;
    controller_config.metrics = ControllerMetrics::new(&mut registry);
    let controller_metrics = controller_config.metrics.clone();
    let (statuses, controller_task) =
        ferry_controller::start_folder(controller_config, shutdown.clone());
    let dispatcher = ferry_dispatcher::start_embedded(
        args.dispatcher.config(&plane),
        shutdown.clone(),
        &mut registry,
        &shared,
    )?;
    let statuses = served::served_statuses(
        statuses,
        contract.clone(),
        receiver.served.clone(),
        dispatcher.ready.clone(),
    );

    // Ready once the controller has Kafka's answer for every topic (so the
    // contract names every broker that can be served) and the data plane
    // serves that contract.
    let ready = {
        let (r, d) = (receiver.ready.clone(), dispatcher.ready.clone());
        Arc::new(move || controller_metrics.is_ready() && r.load(Ordering::Acquire) && d.is_ready())
    };
    let admin_listener = server::bind(args.admin).await?;
    let admin = mesh::routes(
        Admin::new(registry, ready),
        mesh::Sources {
            statuses: statuses.clone(),
            observed: dispatcher.observed.clone(),
            contract: contract.clone(),
            tail,
            shutdown: shutdown.clone(),
        },
    );
    let https = match receiver.tls_ingress {
        Some(addr) => format!(", https ingress https://{}", reachable(addr)),
        None => String::new(),
    };
    println!(
        "Ferry standalone: ingress http://{}, admin http://{}{https}",
        receiver.ingress,
        admin_listener.local_addr()?
    );
    tokio::spawn(print_changes(statuses));
    let (_, receiver, dispatcher, controller) = tokio::join!(
        admin.serve(admin_listener, shutdown),
        receiver.task,
        dispatcher.task,
        controller_task
    );
    receiver.context("the receiver failed")?;
    dispatcher.context("the dispatcher failed")?;
    controller.context("the controller failed")?;
    Ok(())
}

/// The previous run's contract may name another cluster's topics, or
/// resources the folder no longer declares: the data plane must serve what
/// the folder declares now, so it starts on an empty contract (keeping the
/// generation, which only grows) and the controller publishes the folder's
/// at once. The old one is kept beside it, for the controller to clean up
/// what it had created.
fn set_aside_previous_contract(contract: &std::path::Path) -> anyhow::Result<Option<PathBuf>> {
    let previous = contract.with_file_name("contract.previous.json");
    let has_resources =
        ferry_common::contract::read(contract).is_ok_and(|c| !c.resources.is_empty());
    if has_resources {
        std::fs::copy(contract, &previous)
            .with_context(|| format!("cannot keep {}", previous.display()))?;
        ContractFile::open(contract)
            .publish(Vec::new())
            .with_context(|| format!("cannot write {}", contract.display()))?;
    }
    Ok(previous.exists().then_some(previous))
}

/// What verifies the ingress's certificate, for addresses' `CACerts`: the
/// `ca.crt` beside it (as cert-manager and Knative write a TLS Secret), or
/// the certificate file itself (self-signed, or with its CA appended).
fn ca_certs(cert: &std::path::Path) -> anyhow::Result<String> {
    let beside = cert.with_file_name("ca.crt");
    let path = if beside.exists() {
        beside
    } else {
        cert.to_owned()
    };
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// An address others on this machine can reach: 0.0.0.0 becomes 127.0.0.1.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// Prints each resource's readiness and address at start and on every change.
async fn print_changes(mut statuses: StatusRx) {
    let mut shown: BTreeMap<(String, String, String), Status> = BTreeMap::new();
    while statuses.changed().await.is_ok() {
        let current = statuses.borrow_and_update().clone();
        let mut now = BTreeMap::new();
        for s in current.iter() {
            let key = (s.kind.clone(), s.namespace.clone(), s.name.clone());
            if shown.get(&key) != Some(s) {
                println!("{}", line(s));
            }
            now.insert(key, s.clone());
        }
        for (kind, namespace, name) in shown.keys().filter(|k| !now.contains_key(*k)) {
            println!("{kind} {namespace}/{name}: removed");
        }
        shown = now;
    }
}

fn line(s: &Status) -> String {
    let who = if s.namespace.is_empty() {
        s.name.clone()
    } else {
        format!("{}/{}", s.namespace, s.name)
    };
    let mut text = format!(
        "{} {who}: {}",
        s.kind,
        if s.ready == ferry_controller::plan::Ready::True {
            "Ready"
        } else {
            "NotReady"
        }
    );
    if !s.reason.is_empty() {
        text.push_str(&format!(" ({}: {})", s.reason, s.message));
    }
    for (label, value) in [
        ("address", &s.address),
        ("subscriber", &s.subscriber_uri),
        ("dead letters", &s.dead_letter_sink_uri),
    ] {
        if let Some(v) = value {
            text.push_str(&format!(", {label} {v}"));
        }
    }
    text
}
