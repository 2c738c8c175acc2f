//! `ferry eventtypes [--broker ns/name] [--admin URL | --kube]`: the
//! EventType registry as a table: type, source, addressable, when first
//! seen, and how many triggers would receive such an event now (each
//! trigger's filter evaluated, as the dispatcher evaluates it, on a
//! sample event with those attributes).

use anyhow::Context;
use ferry_common::contract::parse as parse_contract;
use ferry_dispatcher::filter::Filter;
use ferry_event::Event;
use ferry_proto::Contract;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// Only this addressable's EventTypes (namespace/name).
    #[arg(long)]
    broker: Option<String>,
    /// A running standalone's admin address.
    #[arg(long, env = "FERRY_ADMIN", default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// Read the Kubernetes API (KUBECONFIG or in-cluster) instead.
    #[arg(long)]
    kube: bool,
    /// With --kube: where the contract ConfigMap is.
    #[arg(long, env = "SYSTEM_NAMESPACE", default_value = "knative-eventing")]
    namespace: String,
}

/// One EventType, as listed.
struct Row {
    ty: String,
    source: String,
    /// (kind, namespace, name)
    addressable: (String, String, String),
    created: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (rows, contract) = if args.kube {
        from_kube(&args.namespace).await?
    } else {
        from_admin(&args.admin).await?
    };
    let wanted = |row: &Row| {
        args.broker.as_deref().is_none_or(|b| {
            let (_, ns, name) = &row.addressable;
            b == format!("{ns}/{name}")
        })
    };
    let mut table = vec![[
        "TYPE".to_owned(),
        "SOURCE".to_owned(),
        "ADDRESSABLE".to_owned(),
        "FIRST SEEN".to_owned(),
        "TRIGGERS".to_owned(),
    ]];
    for row in rows.iter().filter(|r| wanted(r)) {
        let (kind, ns, name) = &row.addressable;
        table.push([
            row.ty.clone(),
            row.source.clone(),
            format!("{kind} {ns}/{name}"),
            row.created.clone(),
            reached(&contract, row).to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    Ok(())
}

/// How many of the addressable's egresses would deliver a sample event of
/// the row's type and source.
fn reached(contract: &Contract, row: &Row) -> usize {
    let (kind, ns, name) = &row.addressable;
    let sample = Event::new("sample", &row.source, &row.ty);
    contract
        .resources
        .iter()
        .filter(|r| {
            r.reference.as_ref().is_some_and(|re| {
                &re.namespace == ns && &re.name == name && (&re.kind == kind || re.kind.is_empty())
            })
        })
        .flat_map(|r| &r.egresses)
        .filter(|e| Filter::compile(e).is_ok_and(|f| f.matches(&sample)))
        .count()
}

async fn from_admin(admin: &str) -> anyhow::Result<(Vec<Row>, Contract)> {
    let resources = crate::admin_client::resources(admin).await?;
    let rows = resources
        .iter()
        .filter(|r| r["kind"] == "EventType")
        .filter_map(|r| {
            let summary = &r["eventType"];
            let reference = summary["reference"].as_str()?;
            let (kind, place) = reference.split_once(' ')?;
            let (ns, name) = place.split_once('/')?;
            Some(Row {
                ty: text(&summary["type"]),
                source: text(&summary["source"]),
                addressable: (kind.to_owned(), ns.to_owned(), name.to_owned()),
                created: text(&summary["created"]),
            })
        })
        .collect();
    let contract = crate::admin_client::get_json(admin, "/contract").await?;
    let contract = parse_contract(contract.to_string().as_bytes()).context("/contract")?;
    Ok((rows, contract))
}

async fn from_kube(namespace: &str) -> anyhow::Result<(Vec<Row>, Contract)> {
    use kube::{
        api::{Api, DynamicObject},
        core::{ApiResource, GroupVersionKind},
    };
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API")?;
    let mut rows: Vec<Row> = Vec::new();
    // Both versions: an API server converts, an emulator may not; an
    // object seen in both is listed once.
    for version in ["v1beta3", "v1beta2"] {
        let gvk = GroupVersionKind::gvk("eventing.knative.dev", version, "EventType");
        let api: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(&gvk, "eventtypes"),
        );
        let Ok(list) = api.list(&Default::default()).await else {
            continue;
        };
        for object in list {
            let object = serde_json::to_value(object)?;
            let row = kube_row(&object, version);
            let seen = rows.iter().any(|r| {
                r.addressable.1 == row.addressable.1
                    && r.ty == row.ty
                    && r.source == row.source
                    && r.addressable.2 == row.addressable.2
            });
            if !seen {
                rows.push(row);
            }
        }
    }
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, namespace);
    let contract = match configmaps.get("kafka-broker-brokers-triggers").await {
        Ok(cm) => cm
            .data
            .and_then(|mut d| d.remove("data"))
            .map(|d| parse_contract(d.as_bytes()))
            .transpose()
            .context("the contract ConfigMap")?
            .unwrap_or_default(),
        Err(_) => Contract::default(),
    };
    Ok((rows, contract))
}

fn kube_row(object: &Value, version: &str) -> Row {
    let spec = &object["spec"];
    let attribute = |name: &str| match version {
        "v1beta3" => spec["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == name)
            .map(|a| text(&a["value"]))
            .unwrap_or_default(),
        _ => text(&spec[name]),
    };
    let reference = &spec["reference"];
    let ns = reference["namespace"]
        .as_str()
        .or(object["metadata"]["namespace"].as_str())
        .unwrap_or_default();
    Row {
        ty: attribute("type"),
        source: attribute("source"),
        addressable: (
            text(&reference["kind"]),
            ns.to_owned(),
            text(&reference["name"]),
        ),
        created: text(&object["metadata"]["creationTimestamp"]),
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}
