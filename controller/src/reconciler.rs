//! Applies plans: topics first (a broker is Ready only once its topic is),
//! then the contract, then deletions of what is gone (retried until Kafka
//! takes them: a group cannot be deleted while the dispatcher is still
//! leaving it).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::{
    contract_file::ContractFile,
    kafka_admin::KafkaAdmin,
    plan::{self, plan, Observed, Settings, Status},
    resources::Resources,
};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deletion {
    Topic { bootstrap: String, name: String },
    Group { bootstrap: String, name: String },
}

/// How long a consumer group outlives its trigger: the dispatcher sees
/// the contract within its poll interval, and a commit of the trigger's
/// position may be in flight.
const GROUP_GRACE: Duration = Duration::from_secs(5);

pub type StatusRx = watch::Receiver<Arc<Vec<Status>>>;

pub struct Reconciler {
    settings: Settings,
    contract: ContractFile,
    admin: KafkaAdmin,
    /// Ferry-created topics and groups of the last plan: what to delete
    /// once they are no longer wanted.
    owned_topics: BTreeSet<(String, String)>,
    groups: BTreeSet<(String, String)>,
    /// Deletions still to do, and when each was decided.
    pending: BTreeMap<Deletion, Instant>,
    statuses: watch::Sender<Arc<Vec<Status>>>,
}

impl Reconciler {
    /// Picks up from the contract already published, so what was removed
    /// while the controller was down is still cleaned up.
    pub fn new(settings: Settings, contract_path: &Path, admin: KafkaAdmin) -> (Self, StatusRx) {
        let contract = ContractFile::open(contract_path);
        let (statuses, rx) = watch::channel(Arc::new(Vec::new()));
        let mut reconciler = Reconciler {
            settings,
            contract,
            admin,
            owned_topics: BTreeSet::new(),
            groups: BTreeSet::new(),
            pending: BTreeMap::new(),
            statuses,
        };
        if let Ok(previous) = ferry_common::contract::read(contract_path) {
            for r in &previous.resources {
                // Only names Ferry creates: an external topic is never ours
                // to delete, and the contract does not say which were.
                let name = r
                    .reference
                    .as_ref()
                    .map(|re| plan::topic_name(&re.namespace, &re.name));
                for topic in r.topics.iter().filter(|t| Some(*t) == name.as_ref()) {
                    reconciler
                        .owned_topics
                        .insert((r.bootstrap_servers.clone(), topic.clone()));
                }
                for e in &r.egresses {
                    reconciler
                        .groups
                        .insert((r.bootstrap_servers.clone(), e.consumer_group.clone()));
                }
            }
        }
        (reconciler, rx)
    }

    pub async fn reconcile(&mut self, resources: &Resources) {
        let first = plan(resources, &self.settings, &Observed::default());
        let mut observed = Observed::default();
        for topic in &first.topics {
            if let Err(why) = self.admin.ensure_topic(topic).await {
                tracing::warn!(topic = %topic.name, %why, "topic not ready");
                observed.failed_topics.insert(topic.name.clone(), why);
            }
        }
        let plan = if observed.failed_topics.is_empty() {
            first
        } else {
            plan(resources, &self.settings, &observed)
        };
        if let Err(error) = self.contract.publish(plan.resources.clone()) {
            tracing::error!(%error, "cannot write the contract; will retry");
        }

        let owned: BTreeSet<(String, String)> = plan
            .topics
            .iter()
            .filter(|t| !t.external)
            .map(|t| (t.bootstrap.clone(), t.name.clone()))
            .collect();
        let wanted_topics: BTreeSet<(String, String)> = plan
            .topics
            .iter()
            .map(|t| (t.bootstrap.clone(), t.name.clone()))
            .collect();
        let now = Instant::now();
        for (bootstrap, name) in self.owned_topics.difference(&wanted_topics) {
            self.pending
                .entry(Deletion::Topic {
                    bootstrap: bootstrap.clone(),
                    name: name.clone(),
                })
                .or_insert(now);
        }
        for (bootstrap, name) in self.groups.difference(&plan.groups) {
            self.pending
                .entry(Deletion::Group {
                    bootstrap: bootstrap.clone(),
                    name: name.clone(),
                })
                .or_insert(now);
        }
        // Something deleted and then declared again is wanted after all.
        self.pending.retain(|d, _| match d {
            Deletion::Topic { bootstrap, name } => {
                !wanted_topics.contains(&(bootstrap.clone(), name.clone()))
            }
            Deletion::Group { bootstrap, name } => {
                !plan.groups.contains(&(bootstrap.clone(), name.clone()))
            }
        });
        for (deletion, decided) in self.pending.clone() {
            let done = match &deletion {
                Deletion::Topic { bootstrap, name } => {
                    self.admin.delete_topic(bootstrap, name).await
                }
                // The dispatcher commits a trigger's position from outside
                // its group, so no membership says when it let go: give it
                // time to see the contract and finish a commit in flight.
                Deletion::Group { .. } if decided.elapsed() < GROUP_GRACE => {
                    Err("waiting for the dispatcher to let go".to_owned())
                }
                Deletion::Group { bootstrap, name } => {
                    self.admin.delete_group(bootstrap, name).await
                }
            };
            match done {
                Ok(()) => {
                    self.pending.remove(&deletion);
                }
                Err(why) => tracing::debug!(?deletion, %why, "deletion deferred"),
            }
        }
        self.owned_topics = owned;
        self.groups = plan.groups.clone();
        self.statuses.send_if_modified(|current| {
            let changed = **current != plan.statuses;
            if changed {
                *current = Arc::new(plan.statuses.clone());
            }
            changed
        });
    }
}
