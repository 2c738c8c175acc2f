//! What the plan tests share: settings as standalone's.

use std::collections::BTreeMap;

use ferry_controller::plan::{ChannelAddresses, KafkaDefaults, Settings};

pub fn settings() -> Settings {
    Settings {
        ingress_url: "http://ingress".into(),
        defaults: KafkaDefaults {
            bootstrap: "k:9092".into(),
            partitions: 1,
            replication: 1,
            topic_config: BTreeMap::new(),
            auth: None,
        },
        claim_unannotated: true,
        channel_addresses: ChannelAddresses::Path,
        channel_subscribers: Default::default(),
        api_server: None,
        eventtype_autocreate: false,
        tls: None,
        oidc: None,
    }
}
