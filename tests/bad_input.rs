//! Clients that misbehave at the HTTP level: the receiver stays available
//! and answers clearly.

use std::time::Duration;

use ferry_harness::{
    bootstrap, broker, http, kafka::create_topic, receiver_config, send_event, unique,
    ContractFile, TestReceiver,
};
use ferry_proto::Contract;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A receiver for one broker, with the contract file it follows.
async fn receiver() -> (TestReceiver, ContractFile) {
    let bootstrap = bootstrap();
    let topic = unique("knative-broker-ns-bad");
    create_topic(&bootstrap, &topic, 1).await;
    let contract = ContractFile::new(&Contract {
        generation: 1,
        resources: vec![broker("ns", "b", &topic, "")],
        ..Default::default()
    });
    let receiver = TestReceiver::start(receiver_config(&contract, &bootstrap)).await;
    receiver.ready().await;
    (receiver, contract)
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let (receiver, _contract) = receiver().await;
    let mut slow = TcpStream::connect(receiver.running.ingress).await.unwrap();
    slow.write_all(b"POST /ns/b HTTP/1.1\r\nhost: x\r\nce-id: 1\r\n")
        .await
        .unwrap();
    // The server's header read timeout (10 s) closes the connection; reading
    // returns end-of-stream (possibly after a 408) well before the deadline.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 30 s");
    // And everyone else was served all along.
    let answer = send_event(
        &http::client(),
        &receiver.url("/ns/b"),
        "after-slow",
        "t",
        &[],
    )
    .await;
    assert_eq!(answer.status, 202);
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_stop_service() {
    let (receiver, _contract) = receiver().await;
    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(TcpStream::connect(receiver.running.ingress).await.unwrap());
    }
    let client = http::client();
    for i in 0..5 {
        let answer = send_event(
            &client,
            &receiver.url("/ns/b"),
            &format!("busy-{i}"),
            "t",
            &[],
        )
        .await;
        assert_eq!(answer.status, 202);
    }
    drop(idle);
}

#[tokio::test]
async fn raw_header_bytes_that_are_not_utf8_are_read_as_iso_8859_1() {
    let (receiver, _contract) = receiver().await;
    let addr = receiver.running.ingress;
    let exchange = |value: &'static [u8]| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = b"POST /ns/b HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\nce-type: t\r\nce-bad: ".to_vec();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        stream.write_all(&request).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&response).into_owned()
    };
    // HTTP's historical charset: 0xE9 is é.
    let response = exchange(b"caf\xe9").await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    // What percent-decoding makes of it must still be UTF-8.
    let response = exchange(b"%ff%fe").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("attribute 'bad' is invalid: is not UTF-8 after percent-decoding"),
        "{response}"
    );
}

/// Python's http.client and requests write the whole body before they
/// read: the 413 must still reach them, not a reset.
#[tokio::test]
async fn a_client_that_writes_the_whole_oversized_body_first_reads_the_413() {
    let (receiver, _contract) = receiver().await;
    // The test receiver's limit is 64 KiB.
    // Larger than the socket buffers, so the write cannot finish unread.
    let body = vec![b'x'; 8 * 1024 * 1024];
    for (i, chunked) in [false, true].into_iter().cycle().take(20).enumerate() {
        let mut stream = TcpStream::connect(receiver.running.ingress).await.unwrap();
        let mut request = format!(
            "POST /ns/b HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: {i}\r\nce-source: /s\r\nce-type: t\r\n"
        )
        .into_bytes();
        if chunked {
            request.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            for part in body.chunks(16 * 1024) {
                request.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                request.extend_from_slice(part);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\n\r\n");
        } else {
            request.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            request.extend_from_slice(&body);
        }
        stream.write_all(&request).await.unwrap_or_else(|e| {
            panic!("request {i} (chunked: {chunked}): writing the body failed: {e}")
        });
        let mut response = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response)).await;
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 413"),
            "request {i} (chunked: {chunked}): {response}"
        );
    }
}
