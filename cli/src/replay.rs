//! `ferry replay <kind> <namespace>/<name> --to-time T | --to-offset
//! earliest|latest`: moves a trigger's (subscription's, KafkaSource's)
//! committed positions while the dispatcher runs, leaving the others of
//! its broker alone. It asks, as an annotation (`delivery.ferry.dev/replay`,
//! tagged with the time of asking so that asking again replays again):
//! through the Kubernetes API with `--kube`, else as a request file in a
//! standalone's state folder. The controller passes it to the dispatcher,
//! which does it once.

use std::path::PathBuf;

use anyhow::{bail, Context};
use ferry_controller::{
    annotation_requests::{self, AnnotationRequest},
    resources::REPLAY_ANNOTATION,
};

#[derive(clap::Args)]
pub struct Args {
    /// trigger, subscription or kafkasource.
    kind: String,
    /// namespace/name.
    object: String,
    /// An RFC 3339 time: redeliver from the first event written at or
    /// after it.
    #[arg(
        long,
        conflicts_with = "to_offset",
        required_unless_present = "to_offset"
    )]
    to_time: Option<String>,
    /// The beginning (earliest) or the end (latest) of every partition.
    #[arg(long, value_parser = ["earliest", "latest"])]
    to_offset: Option<String>,
    /// Annotate the object through the Kubernetes API (KUBECONFIG or
    /// in-cluster) instead of a standalone's state folder.
    #[arg(long)]
    kube: bool,
    /// The standalone's state folder.
    #[arg(long, env = "FERRY_STATE_DIR", default_value = ".ferry/standalone")]
    state_dir: PathBuf,
}

/// A kind's name, group, version and plural.
struct Kind {
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
}

const KINDS: [Kind; 3] = [
    Kind {
        kind: "Trigger",
        group: "eventing.knative.dev",
        version: "v1",
        plural: "triggers",
    },
    Kind {
        kind: "Subscription",
        group: "messaging.knative.dev",
        version: "v1",
        plural: "subscriptions",
    },
    Kind {
        kind: "KafkaSource",
        group: "sources.knative.dev",
        version: "v1",
        plural: "kafkasources",
    },
];

pub async fn run(args: Args) -> anyhow::Result<()> {
    let Some(kind) = KINDS.iter().find(|k| {
        k.kind.eq_ignore_ascii_case(&args.kind) || k.plural.eq_ignore_ascii_case(&args.kind)
    }) else {
        bail!(
            "kind '{}' cannot be replayed (trigger, subscription or kafkasource)",
            args.kind
        );
    };
    let Some((namespace, name)) = args.object.split_once('/') else {
        bail!("'{}' is not namespace/name", args.object);
    };
    let point = match (&args.to_time, &args.to_offset) {
        (Some(time), _) => {
            chrono::DateTime::parse_from_rfc3339(time)
                .with_context(|| format!("--to-time '{time}' is not an RFC 3339 time"))?;
            time.clone()
        }
        (None, Some(offset)) => offset.clone(),
        (None, None) => bail!("--to-time or --to-offset"),
    };
    let value = format!("{point}#{}", chrono::Utc::now().timestamp_millis());
    if args.kube {
        annotate(kind, namespace, name, &value).await?;
        println!(
            "{} {namespace}/{name}: asked to replay to {point} (annotation {REPLAY_ANNOTATION})",
            kind.kind
        );
    } else {
        let request = AnnotationRequest {
            kind: kind.kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            annotations: [(REPLAY_ANNOTATION.to_owned(), value)].into(),
        };
        let dir = annotation_requests::folder(&args.state_dir);
        let file = annotation_requests::write(&dir, &request)
            .with_context(|| format!("cannot write to {}", dir.display()))?;
        println!(
            "{} {namespace}/{name}: asked to replay to {point} ({})",
            kind.kind,
            file.display()
        );
    }
    Ok(())
}

/// Sets the annotation with a merge patch, as `kubectl annotate` does.
async fn annotate(kind: &Kind, namespace: &str, name: &str, value: &str) -> anyhow::Result<()> {
    use kube::{
        api::{Api, DynamicObject, Patch, PatchParams},
        core::{ApiResource, GroupVersionKind},
    };
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API")?;
    let gvk = GroupVersionKind::gvk(kind.group, kind.version, kind.kind);
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, kind.plural),
    );
    let patch = serde_json::json!({"metadata": {"annotations": {REPLAY_ANNOTATION: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("cannot annotate {} {namespace}/{name}", kind.kind))?;
    Ok(())
}
