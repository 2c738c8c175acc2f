//! A receiver and a dispatcher in this process, following one contract
//! written as protobuf JSON exactly as given (as another control plane
//! writes it, unknown fields and all).

use crate::{
    bootstrap, dispatcher_config, http, kafka::wait_for_group, metrics::Scrape, receiver_config,
    ContractFile, TestDispatcher, TestReceiver,
};

pub struct Stack {
    pub receiver: TestReceiver,
    pub dispatcher: TestDispatcher,
    pub contract: ContractFile,
    pub client: http::HttpClient,
}

impl Stack {
    /// Starts both on `contract` and waits until every consumer group in
    /// `groups` has its positions on the one-partition `topic`: events sent
    /// from then on are theirs.
    pub async fn start(contract: &serde_json::Value, topic: &str, groups: &[&str]) -> Stack {
        let file = ContractFile::new(&Default::default());
        file.write_json(contract);
        let receiver = TestReceiver::start(receiver_config(&file, &bootstrap())).await;
        let dispatcher = TestDispatcher::start(dispatcher_config(&file, &bootstrap())).await;
        receiver.ready().await;
        for group in groups {
            wait_for_group(&bootstrap(), group, topic, 1).await;
        }
        Stack {
            receiver,
            dispatcher,
            contract: file,
            client: http::client(),
        }
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> http::Answer {
        http::post(
            &self.client,
            &self.receiver.url(path),
            headers,
            body.to_owned(),
        )
        .await
    }

    pub async fn dispatcher_metrics(&self) -> Scrape {
        let admin = self.dispatcher.running.as_ref().expect("running").admin;
        Scrape::get(&format!("http://{admin}")).await
    }
}
