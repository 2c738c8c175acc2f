//! Reading a running standalone's admin port (`--admin`, else
//! `FERRY_ADMIN`, else `http://127.0.0.1:9090`), for the commands that
//! show or use what it runs.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// `GET <admin><path>`, as JSON.
pub async fn get_json(admin: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let admin = if admin.contains("://") {
        admin.to_owned()
    } else {
        format!("http://{admin}")
    };
    let url: http::Uri = format!("{}{path}", admin.trim_end_matches('/')).parse()?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(url.clone())
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    let body = response.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&body).with_context(|| format!("{url} did not answer JSON"))
}

/// Every resource's status, from `/resources`.
pub async fn resources(admin: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let value = get_json(admin, "/resources").await?;
    serde_json::from_value(value).context("/resources is not a list of resources")
}
