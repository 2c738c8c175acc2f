//! Applies plans: the contract and statuses at once, Kafka's topics and
//! deletions in the background ([`crate::kafka_work`], one worker per
//! cluster). A broker is Ready only once its topic is reported to exist; a
//! topic the previous contract already served is taken to exist until a
//! worker says otherwise, so a restart does not take brokers away. The
//! workers also pin each egress's new consumer group at its start, and an
//! object with an egress is Ready only once that is reported
//! ([`crate::plan::group_starts`]); the groups of the previous contract are
//! taken to be pinned.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
    sync::Arc,
    time::Instant,
};

use ferry_common::kafka::ClusterRef;
use ferry_registry::Recorder;
use ferry_sources::{Work, WorkRx};
use tokio::sync::{watch, Notify};

use crate::{
    contract_file::ContractFile,
    deletions::{self, Names, Owned, Pending},
    kafka_work::{ClusterWork, KafkaWork},
    metrics::ControllerMetrics,
    plan::{
        self,
        group_starts::{self, Pins},
        plan, Settings, Status, TopicHealth, PENDING,
    },
    resources::{EventType, Resources},
};

pub type StatusRx = watch::Receiver<Arc<Vec<Status>>>;

pub struct Reconciler {
    settings: Settings,
    contract: ContractFile,
    kafka: KafkaWork,
    /// (cluster, topic) → whether it exists, as last reported.
    topics: HashMap<(ClusterRef, String), Result<(), String>>,
    /// Each egress's consumer group: whether it is pinned at its start.
    pins: Pins,
    /// Ferry-created topics and groups of the last plan: what to delete
    /// once they are no longer wanted.
    owned: Owned,
    pending: Pending,
    statuses: watch::Sender<Arc<Vec<Status>>>,
    work: watch::Sender<Arc<Work>>,
    metrics: ControllerMetrics,
    /// Where sources' declared pairs become EventTypes.
    event_types: Option<Arc<Recorder>>,
    /// Each EventType's spec as first seen: the spec is immutable.
    event_type_specs: HashMap<(String, String), serde_json::Value>,
}

impl Reconciler {
    /// Picks up from the contract already published, so what was removed
    /// while the controller was down is still cleaned up.
    ///
    /// `previous` is where that contract is, when not at `contract_path`
    /// (standalone moves it aside so its data plane never serves it).
    pub fn new(
        settings: Settings,
        contract_path: &Path,
        previous: Option<&Path>,
        kafka: KafkaWork,
        metrics: ControllerMetrics,
    ) -> (Self, StatusRx) {
        let contract = ContractFile::open(contract_path);
        let (statuses, rx) = watch::channel(Arc::new(Vec::new()));
        let mut reconciler = Reconciler {
            settings,
            contract,
            kafka,
            topics: HashMap::new(),
            pins: Pins::new(),
            owned: Owned::default(),
            pending: Pending::new(),
            statuses,
            work: watch::channel(Arc::default()).0,
            metrics,
            event_types: None,
            event_type_specs: HashMap::new(),
        };
        if let Ok(previous) = ferry_common::contract::read(previous.unwrap_or(contract_path)) {
            for (cluster, groups) in group_starts::wanted(&previous.resources) {
                for group in groups {
                    reconciler.pins.insert((cluster.clone(), group), Ok(()));
                }
            }
            for r in &previous.resources {
                let cluster = ClusterRef::of(r);
                for topic in &r.topics {
                    reconciler
                        .topics
                        .insert((cluster.clone(), topic.clone()), Ok(()));
                }
                // Only names Ferry creates: an external topic is never ours
                // to delete, and the contract does not say which were.
                let name = r
                    .reference
                    .as_ref()
                    .filter(|re| re.kind == "Broker")
                    .map(|re| plan::topic_name(&re.namespace, &re.name));
                for topic in r.topics.iter().filter(|t| Some(*t) == name.as_ref()) {
                    reconciler
                        .owned
                        .topics
                        .insert((cluster.clone(), topic.clone()));
                }
                for e in &r.egresses {
                    reconciler
                        .owned
                        .groups
                        .insert((cluster.clone(), e.consumer_group.clone()));
                }
            }
        }
        (reconciler, rx)
    }

    /// Makes EventTypes of the pairs sources declare.
    pub fn with_event_types(mut self, recorder: Option<Arc<Recorder>>) -> Self {
        self.event_types = recorder;
        self
    }

    /// An EventType whose spec changed keeps the spec first seen, marked,
    /// as Knative's webhook would have refused the change.
    fn hold_event_types<'a>(&mut self, resources: &'a Resources) -> Cow<'a, Resources> {
        let key = |e: &EventType| (e.metadata.namespace().to_owned(), e.metadata.name.clone());
        let present: HashSet<_> = resources.event_types.iter().map(key).collect();
        self.event_type_specs.retain(|k, _| present.contains(k));
        let changed = |specs: &HashMap<_, serde_json::Value>, e: &EventType| {
            specs.get(&key(e)).is_some_and(|first| *first != e.spec)
        };
        for e in &resources.event_types {
            self.event_type_specs
                .entry(key(e))
                .or_insert_with(|| e.spec.clone());
        }
        if !resources
            .event_types
            .iter()
            .any(|e| changed(&self.event_type_specs, e))
        {
            return Cow::Borrowed(resources);
        }
        let mut held = resources.clone();
        for e in &mut held.event_types {
            if changed(&self.event_type_specs, e) {
                let first = self.event_type_specs[&key(e)].clone();
                let version = e.version;
                let document = serde_json::json!({"metadata": e.metadata, "spec": first});
                if let Ok(mut kept) = crate::resources::parse_event_type(version, document) {
                    kept.spec_changed = true;
                    *e = kept;
                }
            }
        }
        Cow::Owned(held)
    }

    /// What the sources of the last plan run (see `ferry_sources`).
    pub fn source_work(&self) -> WorkRx {
        self.work.subscribe()
    }

    /// Notified whenever Kafka work finished, succeeded or not: reconcile
    /// again then.
    pub fn kafka_reported(&self) -> Arc<Notify> {
        self.kafka.reported()
    }

    /// Plans, publishes the contract and statuses, and hands Kafka its
    /// work; never waits for Kafka.
    pub async fn reconcile(&mut self, resources: &Resources) {
        let started = Instant::now();
        let resources = &*self.hold_event_types(resources);
        let reports = self.kafka.take_reports();
        self.topics.extend(reports.topics);
        self.pins.extend(reports.pins);
        for done in reports.deleted {
            self.pending.remove(&done);
        }

        let mut health = TopicHealth {
            pins: Some(&self.pins),
            ..TopicHealth::default()
        };
        let first = plan(resources, &self.settings, &health);
        // The groups of the egresses there will be once the topics exist:
        // a worker pins them in the pass that makes their topics, so the
        // egresses are Ready a pass sooner. One pinned early only starts
        // a little earlier than it would have.
        let groups = group_starts::wanted(&first.resources);
        let mut settled = true;
        for topic in &first.topics {
            match self
                .topics
                .get(&(topic.cluster.clone(), topic.name.clone()))
            {
                Some(Ok(())) => {}
                Some(Err(why)) => {
                    health
                        .failed_topics
                        .insert((topic.cluster.clone(), topic.name.clone()), why.clone());
                }
                None => {
                    settled = false;
                    let what = if topic.external {
                        "to say whether it exists"
                    } else {
                        "to create it"
                    };
                    health.failed_topics.insert(
                        (topic.cluster.clone(), topic.name.clone()),
                        format!("{PENDING} {} {what}", topic.cluster.bootstrap),
                    );
                }
            }
        }
        let plan = if health.failed_topics.is_empty() {
            first
        } else {
            plan(resources, &self.settings, &health)
        };
        group_starts::forget_unwanted(&mut self.pins, &groups);
        settled &= group_starts::all_answered(&plan.resources, &self.pins);
        if let Err(error) = self.contract.publish(plan.resources.clone()) {
            tracing::error!(%error, "cannot write the contract; will retry");
        }
        self.work.send_if_modified(|current| {
            let changed = **current != plan.sources;
            if changed {
                *current = Arc::new(plan.sources.clone());
            }
            changed
        });
        if let Some(recorder) = &self.event_types {
            for d in &plan.declared_event_types {
                recorder.declare(&d.addressable, &d.owner, &d.ty, &d.source);
            }
        }
        self.statuses.send_if_modified(|current| {
            let changed = **current != plan.statuses;
            if changed {
                *current = Arc::new(plan.statuses.clone());
            }
            changed
        });

        let owned_topics: Names = plan
            .topics
            .iter()
            .filter(|t| !t.external && !t.kept)
            .map(|t| (t.cluster.clone(), t.name.clone()))
            .collect();
        let wanted_topics: Names = plan
            .topics
            .iter()
            .map(|t| (t.cluster.clone(), t.name.clone()))
            .collect();
        deletions::schedule(
            &mut self.pending,
            &self.owned,
            &wanted_topics,
            &plan.groups,
            Instant::now(),
        );
        // A topic taken away is no longer known to exist.
        self.topics.retain(|key, _| wanted_topics.contains(key));

        let mut work: BTreeMap<ClusterRef, ClusterWork> = BTreeMap::new();
        for topic in &plan.topics {
            work.entry(topic.cluster.clone())
                .or_default()
                .topics
                .push(topic.clone());
        }
        for (cluster, groups) in groups {
            work.entry(cluster).or_default().groups = groups;
        }
        for ((cluster, deletion), decided) in &self.pending {
            work.entry(cluster.clone())
                .or_default()
                .deletions
                .insert(deletion.clone(), *decided);
        }
        self.kafka.assign(work);
        self.owned = Owned {
            topics: owned_topics,
            groups: plan.groups.clone(),
        };
        self.metrics
            .reconciled(started.elapsed(), &plan.statuses, settled);
    }
}
