//! The reconciler's effects on Kafka: topics and consumer groups, through
//! the admin API. One admin client per cluster and credentials; the
//! credentials' Secrets are read again for each piece of work, so a
//! changed Secret gets a new client.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ferry_common::{
    group_offsets::GroupOffsets,
    group_start,
    kafka::{partition_count, replay_group, Cluster, ClusterRef, Overrides},
    secrets::Secrets,
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

use crate::plan::{group_starts::GroupStart, TopicSpec, MISSING, NO_CREDENTIALS};

const TIMEOUT: Duration = Duration::from_secs(10);

/// How long one reading of a cluster's Secret serves.
const CREDENTIALS_FRESH: Duration = Duration::from_secs(5);

/// One worker's admin: a worker serves one cluster (and credentials).
#[derive(Default)]
pub struct KafkaAdmin {
    current: Option<Current>,
    overrides: Overrides,
    secrets: Secrets,
}

/// The client of the cluster as its Secret last read, and when.
struct Current {
    cluster: Cluster,
    client: Arc<AdminClient<DefaultClientContext>>,
    /// For pinning groups, made when first needed.
    offsets: Option<GroupOffsets>,
    read: Instant,
}

impl KafkaAdmin {
    pub fn new(overrides: Overrides, secrets: Secrets) -> Self {
        KafkaAdmin {
            current: None,
            overrides,
            secrets,
        }
    }

    /// The admin client for `cluster`. Its Secret is read at most once
    /// per [`CREDENTIALS_FRESH`] (one pass over the cluster's topics reads
    /// it once, the next recheck again), and a changed Secret replaces the
    /// client.
    async fn client(
        &mut self,
        cluster: &ClusterRef,
    ) -> Result<Arc<AdminClient<DefaultClientContext>>, String> {
        if let Some(current) = &self.current {
            if cluster.auth.is_none() || current.read.elapsed() < CREDENTIALS_FRESH {
                return Ok(current.client.clone());
            }
        }
        let credentials = match &cluster.auth {
            None => None,
            Some(auth) => Some(
                self.secrets
                    .credentials(auth)
                    .await
                    .map_err(|e| format!("{NO_CREDENTIALS} {e}"))?,
            ),
        };
        let cluster = Cluster {
            bootstrap: cluster.bootstrap.clone(),
            credentials,
        };
        let (client, offsets) = match self.current.take() {
            Some(current) if current.cluster == cluster => (current.client, current.offsets),
            _ => (
                Arc::new(
                    cluster
                        .config("ferry-controller", &self.overrides, |_| {})
                        .create()
                        .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?,
                ),
                None,
            ),
        };
        self.current = Some(Current {
            cluster,
            client: client.clone(),
            offsets,
            read: Instant::now(),
        });
        Ok(client)
    }

    /// Commits each group's start on the partitions of `topic` that have
    /// no committed offset yet (see `group_starts`): done, or why not.
    pub async fn pin_groups(
        &mut self,
        cluster: &ClusterRef,
        topic: &str,
        groups: &[&GroupStart],
    ) -> Vec<Result<(), String>> {
        match self.pin_groups_or_fail(cluster, topic, groups).await {
            Ok(results) => results,
            Err(why) => vec![Err(why); groups.len()],
        }
    }

    async fn pin_groups_or_fail(
        &mut self,
        cluster: &ClusterRef,
        topic: &str,
        groups: &[&GroupStart],
    ) -> Result<Vec<Result<(), String>>, String> {
        let client = self.client(cluster).await?;
        let current = self.current.as_mut().expect("set by client()");
        let offsets = match &current.offsets {
            Some(offsets) => offsets.clone(),
            None => {
                let config = current
                    .cluster
                    .config("ferry-controller", &self.overrides, |_| {});
                let offsets = GroupOffsets::new(&config)
                    .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
                current.offsets = Some(offsets.clone());
                offsets
            }
        };
        let partitions = partitions_of(client, topic).await?;
        if partitions == 0 {
            return Err(format!("topic {topic} has no partitions yet"));
        }
        let partitions: Vec<i32> = (0..partitions as i32).collect();
        let starts: Vec<(&str, group_start::Point)> =
            groups.iter().map(|g| (g.group.as_str(), g.start)).collect();
        let pinned = group_start::pin_all(&offsets, topic, &partitions, &starts).await;
        Ok(groups
            .iter()
            .zip(pinned)
            .map(|(group, pinned)| match pinned {
                Ok(0) => Ok(()),
                Ok(partitions) => {
                    tracing::info!(group = %group.group, %topic, partitions, start = ?group.start, "consumer group pinned at its start");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            })
            .collect())
    }

    /// Creates the topic unless it exists; an external topic must exist.
    pub async fn ensure_topic(
        &mut self,
        cluster: &ClusterRef,
        topic: &TopicSpec,
    ) -> Result<(), String> {
        let client = self.client(cluster).await?;
        if topic.external {
            let exists = partitions_of(client.clone(), &topic.name).await? > 0;
            return if exists {
                Ok(())
            } else {
                Err(format!("external topic {} {MISSING}", topic.name))
            };
        }
        let config: Vec<(&str, &str)> = topic
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut new = NewTopic::new(
            &topic.name,
            topic.partitions,
            TopicReplication::Fixed(topic.replication),
        );
        for (k, v) in &config {
            new = new.set(k, v);
        }
        let options = AdminOptions::new()
            .operation_timeout(Some(TIMEOUT))
            .request_timeout(Some(TIMEOUT));
        let results = client
            .create_topics([&new], &options)
            .await
            .map_err(|e| format!("cannot create topic {}: {e}", topic.name))?;
        match results.into_iter().next() {
            Some(Ok(_)) => {
                tracing::info!(topic = %topic.name, partitions = topic.partitions, "topic created");
                Ok(())
            }
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(()),
            Some(Err((_, code))) => Err(format!("cannot create topic {}: {code}", topic.name)),
        }
    }

    pub async fn delete_topic(&mut self, cluster: &ClusterRef, name: &str) -> Result<(), String> {
        let client = self.client(cluster).await?;
        let options = AdminOptions::new()
            .operation_timeout(Some(TIMEOUT))
            .request_timeout(Some(TIMEOUT));
        let results = client
            .delete_topics(&[name], &options)
            .await
            .map_err(|e| e.to_string())?;
        match results.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))) | None => {
                tracing::info!(topic = %name, "topic deleted");
                Ok(())
            }
            Some(Err((_, code))) => Err(format!("cannot delete topic {name}: {code}")),
        }
    }

    /// Deletes a consumer group's offsets once it has no members. Ferry's
    /// dispatcher never joins a trigger's group (it commits from outside),
    /// but another consumer of it may (the reference's dispatcher during a
    /// migration). Kafka refuses to delete a group with members; not every
    /// Kafka-API broker does, so Ferry checks first, or the leaving member's
    /// last commit would bring the offsets back.
    pub async fn delete_group(&mut self, cluster: &ClusterRef, group: &str) -> Result<(), String> {
        let client = self.client(cluster).await?;
        let members = {
            let (client, name) = (client.clone(), group.to_owned());
            // A blocking call: off the async workers.
            tokio::task::spawn_blocking(move || {
                client
                    .inner()
                    .fetch_group_list(Some(&name), TIMEOUT)
                    .map(|list| {
                        list.groups()
                            .iter()
                            .filter(|g| g.name() == name)
                            .map(|g| g.members().len())
                            .sum::<usize>()
                    })
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot describe group {group}: {e}"))?
        };
        if members > 0 {
            return Err(format!(
                "consumer group {group} still has {members} member(s)"
            ));
        }
        let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
        let results = client
            .delete_groups(&[group], &options)
            .await
            .map_err(|e| e.to_string())?;
        match results.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::GroupIdNotFound))) | None => {
                tracing::info!(group = %group, "consumer group deleted");
            }
            Some(Err((_, code))) => {
                return Err(format!("cannot delete consumer group {group}: {code}"))
            }
        }
        // Where the dispatcher noted its replays of the group, if it did.
        let marker = replay_group(group);
        let results = client
            .delete_groups(&[&marker], &options)
            .await
            .map_err(|e| e.to_string())?;
        match results.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::GroupIdNotFound))) | None => Ok(()),
            Some(Err((_, code))) => Err(format!("cannot delete consumer group {marker}: {code}")),
        }
    }
}

/// How many partitions `topic` has (0 when it does not exist).
async fn partitions_of(
    client: Arc<AdminClient<DefaultClientContext>>,
    topic: &str,
) -> Result<usize, String> {
    let name = topic.to_owned();
    // librdkafka's metadata call blocks; keep it off the async workers the
    // receiver and dispatcher share in standalone.
    tokio::task::spawn_blocking(move || partition_count(client.inner(), &name, TIMEOUT))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read metadata of topic {topic}: {e}"))
}
