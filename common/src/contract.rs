//! Reading the data-plane contract and following its file.
//!
//! The file holds protobuf JSON (the format of Knative's ConfigMap) or
//! binary protobuf. It is re-read whenever its directory changes, which
//! covers the `..data` symlink swap of a Kubernetes ConfigMap mount, and on a
//! slow poll in case an event is missed. A file that does not parse is
//! logged and the previous contract stays in force. Fields this schema does
//! not know (a newer control plane) are skipped, each name logged once.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use ferry_proto::{Contract, Reference, Resource};
use tokio::sync::watch;

use crate::{
    credentials::SecretAuth, kafka::Cluster, metrics::ContractMetrics, secrets::Resolved,
    shutdown::Shutdown,
};

/// Why a contract could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The file could not be read.
    #[error("cannot read contract {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are JSON but not a contract.
    #[error("contract is not valid protobuf JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The bytes are neither JSON nor a binary contract.
    #[error("contract is not valid binary protobuf: {0}")]
    Binary(#[source] ferry_proto::DecodeError),
    /// The file watcher could not be set up.
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// Where a resource's events live in Kafka, as receiver and dispatcher
/// both read it: its first topic, on its cluster or else the process's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement<'a> {
    pub topic: &'a str,
    pub bootstrap: &'a str,
}

/// The resource's [`Placement`], or why it has none.
pub fn placement<'a>(
    resource: &'a Resource,
    default_bootstrap: &'a str,
) -> Result<Placement<'a>, &'static str> {
    let topic = resource
        .topics
        .first()
        .filter(|t| !t.is_empty())
        .ok_or("no topic")?;
    let bootstrap = match resource.bootstrap_servers.as_str() {
        "" => default_bootstrap,
        own => own,
    };
    if bootstrap.is_empty() {
        return Err("no bootstrap servers in the contract and none configured");
    }
    Ok(Placement { topic, bootstrap })
}

/// The cluster a resource's clients reach: its placement's servers with
/// the credentials its Secrets hold (`resolved`, from
/// [`crate::secrets::Secrets::resolve`] over [`secret_auths`]), or why
/// they cannot be had.
pub fn cluster(
    resource: &Resource,
    placement: &Placement<'_>,
    resolved: &Resolved,
) -> Result<Cluster, String> {
    let credentials = match SecretAuth::from_contract(resource.auth.as_ref()) {
        None => None,
        Some(auth) => match resolved.get(&auth) {
            Some(Ok(c)) => Some(c.clone()),
            Some(Err(why)) => return Err(why.clone()),
            None => return Err(format!("Secret {} not read", auth.secrets().join(", "))),
        },
    };
    Ok(Cluster {
        bootstrap: placement.bootstrap.to_owned(),
        credentials,
    })
}

/// What every resource of the contract names as its credentials.
pub fn secret_auths(contract: &Contract) -> impl Iterator<Item = SecretAuth> + '_ {
    contract
        .resources
        .iter()
        .filter_map(|r| SecretAuth::from_contract(r.auth.as_ref()))
}

/// The kind of a KafkaSource's contract entry: its records need not be
/// CloudEvents, and its group starts at the beginning unless told.
pub const KAFKA_SOURCE: &str = "KafkaSource";

/// Whether the resource is a KafkaSource's.
pub fn is_kafka_source(resource: &ferry_proto::Resource) -> bool {
    resource
        .reference
        .as_ref()
        .is_some_and(|r| r.kind == KAFKA_SOURCE)
}

/// Whether the contract asks for the resource's EventTypes to be made.
pub fn autocreates(resource: &ferry_proto::Resource) -> bool {
    resource
        .feature_flags
        .as_ref()
        .is_some_and(|f| f.enable_event_type_autocreate)
}

/// `namespace/name` of the object a contract entry stands for, for logs;
/// `fallback` (its uid) when the contract does not name it.
pub fn display_name(reference: Option<&Reference>, fallback: &str) -> String {
    reference.map_or_else(
        || fallback.to_owned(),
        |r| format!("{}/{}", r.namespace, r.name),
    )
}

/// Parses a contract (see [`ferry_proto::parse`]), logging the fields
/// this version does not know.
pub fn parse(bytes: &[u8]) -> Result<Contract, ContractError> {
    let parsed = ferry_proto::parse(bytes).map_err(|error| match error {
        ferry_proto::ParseError::Json(e) => ContractError::Json(e),
        ferry_proto::ParseError::Binary(e) => ContractError::Binary(e),
    })?;
    log_unknown_fields(parsed.unknown);
    Ok(parsed.contract)
}

/// Logs each unknown field path once per process: a contract is re-read on
/// every change, and a newer control plane's field would otherwise be
/// reported on every one of them.
fn log_unknown_fields(unknown: Vec<String>) {
    static LOGGED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    if unknown.is_empty() {
        return;
    }
    let mut logged = LOGGED
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    for field in unknown {
        if logged.insert(field.clone()) {
            tracing::warn!(%field, "contract field unknown to this version of Ferry; ignored");
        }
    }
}

/// Reads and parses the contract file.
pub fn read(path: &Path) -> Result<Contract, ContractError> {
    let bytes = std::fs::read(path).map_err(|source| ContractError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&bytes)
}

/// The contract in force; `None` until one has been read.
pub type ContractRx = watch::Receiver<Option<Arc<Contract>>>;

/// The next contract in force, or `None` at shutdown or when the
/// follower stops: the loop receiver and dispatcher both run over
/// [`follow`]. The channel starts empty, so the first contract read is
/// always seen as a change.
pub async fn next(contracts: &mut ContractRx, shutdown: &Shutdown) -> Option<Arc<Contract>> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            changed = contracts.changed() => changed.ok()?,
        }
        if let Some(contract) = contracts.borrow_and_update().clone() {
            return Some(contract);
        }
    }
}

/// Follows the contract file until shutdown. The receiver sees each new
/// contract once; unparseable versions are logged, counted and skipped.
pub fn follow(
    path: PathBuf,
    poll: Duration,
    shutdown: Shutdown,
    metrics: ContractMetrics,
) -> Result<ContractRx, ContractError> {
    let (tx, rx) = watch::channel(None);
    // Watch the directory, not the file: a ConfigMap update replaces the
    // symlink the file path goes through, which a file watch would miss.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let (watcher, mut changed_rx) =
        crate::fswatch::watch_dir(&dir).map_err(|source| ContractError::Watch {
            path: dir.clone(),
            source,
        })?;

    tokio::spawn(async move {
        let _watcher = watcher; // dropping it stops the notifications
        let mut last: Option<Vec<u8>> = None;
        let mut ticker = tokio::time::interval(poll);
        loop {
            reload(&path, &mut last, &tx, &metrics);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = changed_rx.recv() => {}
                _ = ticker.tick() => {}
            }
        }
    });
    Ok(rx)
}

fn reload(
    path: &Path,
    last: &mut Option<Vec<u8>>,
    tx: &watch::Sender<Option<Arc<Contract>>>,
    metrics: &ContractMetrics,
) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            // Before the first contract the file may simply not exist yet.
            if last.is_some() {
                tracing::warn!(path = %path.display(), %error, "contract file unreadable; keeping the previous contract");
                metrics.errors.inc();
            }
            return;
        }
    };
    if last.as_deref() == Some(&bytes[..]) {
        return;
    }
    match parse(&bytes) {
        Ok(contract) => {
            tracing::info!(
                path = %path.display(),
                generation = contract.generation,
                resources = contract.resources.len(),
                "contract loaded"
            );
            metrics.generation.set(contract.generation as i64);
            tx.send_replace(Some(Arc::new(contract)));
        }
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "contract rejected; keeping the previous contract");
            metrics.errors.inc();
        }
    }
    *last = Some(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::{Message, Resource};

    fn contract(generation: u64) -> Contract {
        Contract {
            generation,
            resources: vec![Resource {
                uid: format!("r{generation}"),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn parses_json_binary_and_empty() {
        let c = contract(3);
        assert_eq!(
            parse(serde_json::to_string(&c).unwrap().as_bytes()).unwrap(),
            c
        );
        assert_eq!(parse(&c.encode_to_vec()).unwrap(), c);
        assert_eq!(parse(b"").unwrap(), Contract::default());
        assert!(matches!(
            parse(b"{\"generation\": \"x\"}"),
            Err(ContractError::Json(_))
        ));
        assert!(matches!(
            parse(b"\xff\xff\xff"),
            Err(ContractError::Binary(_))
        ));
    }

    #[test]
    fn unknown_fields_and_enum_names_are_skipped() {
        let parsed = parse(
            br#"{"generation": "5", "futureField": {"a": 1},
                 "resources": [{"uid": "r", "futureResourceField": [1, 2],
                   "egresses": [{"consumerGroup": "g", "deliveryOrder": "ORDERED_BY_MOON"}]}]}"#,
        )
        .unwrap();
        assert_eq!(parsed.generation, 5);
        assert_eq!(parsed.resources[0].uid, "r");
        assert_eq!(parsed.resources[0].egresses[0].consumer_group, "g");
        assert_eq!(
            parsed.resources[0].egresses[0].delivery_order(),
            ferry_proto::DeliveryOrder::Unordered,
            "an unknown enum name reads as the default"
        );
    }

    async fn next(rx: &mut ContractRx) -> Arc<Contract> {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("a contract in time")
            .unwrap();
        rx.borrow_and_update().clone().unwrap()
    }

    #[tokio::test]
    async fn follows_writes_symlink_swaps_and_keeps_the_last_good_contract() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = Shutdown::new();
        // The layout of a ConfigMap mount: data -> ..data/data, ..data -> ..v1
        std::fs::create_dir(dir.path().join("..v1")).unwrap();
        std::fs::write(
            dir.path().join("..v1/data"),
            serde_json::to_vec(&contract(1)).unwrap(),
        )
        .unwrap();
        std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/data", dir.path().join("data")).unwrap();

        let mut rx = follow(
            dir.path().join("data"),
            Duration::from_secs(3600),
            shutdown.clone(),
            ContractMetrics::default(),
        )
        .unwrap();
        assert_eq!(next(&mut rx).await.generation, 1);

        // Swap, as the kubelet does: new directory, new symlink renamed over.
        std::fs::create_dir(dir.path().join("..v2")).unwrap();
        std::fs::write(dir.path().join("..v2/data"), contract(2).encode_to_vec()).unwrap();
        std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        assert_eq!(next(&mut rx).await.generation, 2);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_truncated_write_keeps_the_previous_contract() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = Shutdown::new();
        let file = dir.path().join("contract.json");
        std::fs::write(&file, serde_json::to_vec(&contract(1)).unwrap()).unwrap();
        let metrics = ContractMetrics::default();
        let mut rx = follow(
            file.clone(),
            Duration::from_millis(50),
            shutdown.clone(),
            metrics.clone(),
        )
        .unwrap();
        assert_eq!(next(&mut rx).await.generation, 1);
        assert_eq!(metrics.generation.get(), 1);

        std::fs::write(&file, b"{\"generation\": \"3\", \"resou").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while metrics.errors.get() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the broken file was never counted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            metrics.generation.get(),
            1,
            "the previous contract stays in force"
        );
        assert!(!rx.has_changed().unwrap(), "nothing was published");

        std::fs::write(&file, serde_json::to_vec(&contract(4)).unwrap()).unwrap();
        assert_eq!(next(&mut rx).await.generation, 4);
        assert_eq!(metrics.generation.get(), 4);
        shutdown.cancel();
    }
}
