//! The HTTP listener's limits: a client that never finishes its headers or its body is
//! closed, and a connection over `ABORT_BOT_MAX_CONNECTIONS` is closed at once; each refusal
//! is counted in `/metrics`, and normal requests keep working.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::helpers::*;

/// Short read timeouts, so the tests wait a fraction of a second instead of 10 s.
const SHORT: Duration = Duration::from_millis(300);

/// Reads until the server closes the connection (EOF or reset) and returns what it sent.
/// Bounded: panics if the connection is still open after 10 s.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&got).into_owned()
}

/// One HTTP/1.1 connection of its own (hyper's client), kept open between requests.
async fn open_connection(app: &TestApp) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(app.addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn get_on(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> (u16, String) {
    let request = hyper::Request::get(path)
        .header("host", "bot")
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("answered");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `/metrics` (new connections, bounded) until it has `line`.
async fn metric_line(app: &TestApp, line: &str) {
    let mut last = String::new();
    for _ in 0..250 {
        if let Ok(resp) = app.http.get(app.url("/metrics")).send().await {
            last = resp.text().await.unwrap_or_default();
            if last.lines().any(|l| l == line) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/metrics never had `{line}`:\n{last}");
}

fn refused(reason: &str, n: u32) -> String {
    format!("abort_bot_http_connections_refused_total{{reason=\"{reason}\"}} {n}")
}

#[tokio::test]
async fn a_client_that_sends_half_its_headers_is_closed_and_counted() {
    let app = spawn_with(Options {
        read_timeouts: SHORT,
        ..Options::default()
    })
    .await;
    let mut slow = TcpStream::connect(app.addr).await.expect("connect");
    slow.write_all(b"POST /lark/events HTTP/1.1\r\nHost: bot\r\nContent-Le")
        .await
        .expect("write");
    read_until_closed(&mut slow).await;
    metric_line(&app, &refused("header_timeout", 1)).await;
    // Meanwhile and after, a normal request is served.
    let message_id = app.send(ALICE, Chat::Group, "/help").await;
    app.reply_to(&message_id).await;
}

#[tokio::test]
async fn a_client_that_sends_headers_and_part_of_its_body_gets_408_and_is_closed() {
    let app = spawn_with(Options {
        read_timeouts: SHORT,
        ..Options::default()
    })
    .await;
    let message_id = new_message_id();
    let event = message_event(&new_event_id(), &message_id, ALICE, Chat::Group, "/help");
    let body = event.to_string();
    let mut slow = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /lark/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    slow.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .expect("write");
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    metric_line(&app, &refused("body_timeout", 1)).await;
    // The half-sent event was never handled; a whole one is.
    assert!(app.settled_replies(&message_id).await.is_empty());
    let message_id = app.send(ALICE, Chat::Group, "/help").await;
    app.reply_to(&message_id).await;
}

#[tokio::test]
async fn a_connection_over_the_cap_is_closed_at_once_and_counted() {
    let app = spawn_with(Options {
        max_connections: Some(3),
        ..Options::default()
    })
    .await;
    // Three connections, each served once so the listener surely holds them.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = open_connection(&app).await;
        assert_eq!(get_on(&mut c, "/healthz").await, (200, "ok".to_owned()));
        held.push(c);
    }
    let mut extra = TcpStream::connect(app.addr)
        .await
        .expect("the kernel accepts");
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut extra).await;
    assert!(answer.is_empty(), "closed without an answer: {answer}");
    // The held connections still work, and the refusal is counted.
    let (status, text) = get_on(&mut held[0], "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.lines().any(|l| l == refused("over_capacity", 1)),
        "{text}"
    );
    assert_eq!(
        get_on(&mut held[2], "/healthz").await,
        (200, "ok".to_owned())
    );
    // One closes: a new connection is served again (once the listener has seen it go).
    drop(held.pop());
    let mut served = false;
    for _ in 0..250 {
        if let Ok(resp) = app.http.get(app.url("/healthz")).send().await {
            served = resp.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a new connection is served after one closed");
    let message_id = app.send(ALICE, Chat::Group, "/help").await;
    app.reply_to(&message_id).await;
}
