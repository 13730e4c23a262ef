//! The bot's side of the upstream rate limits, measured where the servers see it: Feishu
//! Project gets at most its quota per endpoint in any second, and a Lark rate limit that says
//! how long to wait is retried no sooner.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abort_bot::clock::SystemClock;
use abort_bot::domain::{Action, ReasonOption};
use abort_bot::emulator::lark::Endpoint;
use abort_bot::lark::client::{LarkClient, LarkClientConfig};
use abort_bot::metrics::Metrics;
use abort_bot::project::client::{ENDPOINT_QPS, Freshness, ProjectClient, ProjectClientConfig};
use abort_bot::project::model::{Space, WorkItem};
use abort_bot::retry::RetryPolicy;
use serde_json::json;
use tokio::task::JoinSet;

use super::helpers::*;

fn project_client(addr: std::net::SocketAddr) -> ProjectClient {
    ProjectClient::new(ProjectClientConfig {
        base_url: format!("http://{addr}").parse().expect("url"),
        plugin_id: PLUGIN_ID.into(),
        plugin_secret: PLUGIN_SECRET.to_owned().into(),
        retry: RetryPolicy::quick(),
        timeout: Duration::from_secs(5),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::new(None)),
    })
    .expect("client")
}

fn space() -> Space {
    Space {
        project_key: PROJECT_KEY.into(),
        name: "Docs Team".into(),
        simple_name: "doc".into(),
    }
}

/// Panics unless every `quota + 1` consecutive arrivals span at least a second, i.e. no
/// one-second window holds more than `quota`.
fn assert_at_most_per_second(what: &str, mut arrivals: Vec<Instant>, quota: usize) {
    arrivals.sort();
    for w in arrivals.windows(quota + 1) {
        let span = w[quota] - w[0];
        assert!(
            span >= Duration::from_secs(1),
            "{what}: {} requests within {span:?}",
            quota + 1
        );
    }
}

/// Whether some one-second window holds more than `quota` of these arrivals.
fn exceeds_per_second(mut arrivals: Vec<Instant>, quota: usize) -> bool {
    arrivals.sort();
    arrivals
        .windows(quota + 1)
        .any(|w| w[quota] - w[0] < Duration::from_secs(1))
}

#[tokio::test]
async fn feishu_project_gets_at_most_15_per_second_per_endpoint() {
    let (_lark, _, project, project_addr) = emulators().await;
    let client = Arc::new(project_client(project_addr));
    client.plugin_token().await.expect("token");
    let mut calls = JoinSet::new();
    for n in 0..40u64 {
        let c = client.clone();
        calls.spawn(async move {
            // No such ids: each lookup is one query, each PUT one 30005.
            let id = 90_000 + n;
            let found = c
                .find_item(
                    &space(),
                    Some("story"),
                    id,
                    ALICE.user_key,
                    Freshness::Fresh,
                )
                .await;
            assert_eq!(found, Ok(None));
            let item = WorkItem {
                id,
                name: String::new(),
                work_item_type_key: "story".into(),
                project_key: PROJECT_KEY.into(),
                simple_name: "doc".into(),
                pattern: "Node".into(),
                is_aborted: Some(false),
                type_name: String::new(),
            };
            let put = c
                .abort(
                    &item,
                    Action::Abort,
                    &ReasonOption::TEST,
                    "",
                    ALICE.user_key,
                    &format!("idem-{id}"),
                )
                .await;
            assert_eq!(put.result.map_err(|e| e.code()), Err(Some(30005)));
        });
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(joined) = calls.join_next().await {
            joined.expect("call task");
        }
    })
    .await
    .expect("all calls within 30 s");

    let arrivals = |method: &str, suffix: &str| -> Vec<Instant> {
        project
            .requests_to(method, "/open_api/")
            .into_iter()
            .filter(|r| r.path.ends_with(suffix))
            .map(|r| r.received_at)
            .collect()
    };
    let queries = arrivals("POST", "/query");
    let puts = arrivals("PUT", "/abort");
    assert_eq!((queries.len(), puts.len()), (40, 40));
    let quota = ENDPOINT_QPS.get() as usize;
    assert_at_most_per_second("work_item/:type/query", queries.clone(), quota);
    assert_at_most_per_second("work_item/:type/:id/abort", puts.clone(), quota);
    // The limit is per endpoint: together they did go faster than one endpoint's quota.
    assert!(exceeds_per_second([queries, puts].concat(), quota));
}

#[tokio::test]
async fn the_endpoint_quota_is_configurable() {
    let (_lark, _, project, project_addr) = emulators().await;
    let quota = NonZeroU32::new(4).expect("non-zero");
    let client = Arc::new(project_client(project_addr).with_endpoint_quota(quota));
    let mut calls = JoinSet::new();
    for n in 0..10u64 {
        let c = client.clone();
        calls.spawn(async move {
            c.find_item(
                &space(),
                Some("story"),
                90_000 + n,
                ALICE.user_key,
                Freshness::Fresh,
            )
            .await
        });
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(joined) = calls.join_next().await {
            assert_eq!(joined.expect("call task"), Ok(None));
        }
    })
    .await
    .expect("all calls within 30 s");
    let queries: Vec<Instant> = project
        .requests_to("POST", "/open_api/")
        .into_iter()
        .filter(|r| r.path.ends_with("/query"))
        .map(|r| r.received_at)
        .collect();
    assert_eq!(queries.len(), 10);
    assert_at_most_per_second("work_item/:type/query", queries, 4);
}

#[tokio::test]
async fn a_lark_rate_limit_is_retried_after_the_reset_it_names() {
    let (lark, lark_addr, _project, _) = emulators().await;
    let client = LarkClient::new(LarkClientConfig {
        base_url: format!("http://{lark_addr}").parse().expect("url"),
        app_id: APP_ID.into(),
        app_secret: APP_SECRET.to_owned().into(),
        // Backoff of at most 20 ms: any longer wait comes from the header.
        retry: RetryPolicy::quick(),
        timeout: Duration::from_secs(5),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::new(None)),
    })
    .expect("client");
    lark.push_rate_limit(Endpoint::Reply, 1);
    let card = json!({"schema": "2.0", "body": {"elements": []}});
    let sent = tokio::time::timeout(
        Duration::from_secs(10),
        client.reply_card(GROUP_CHAT, "om_limited", &card, false, "uuid-limited"),
    )
    .await
    .expect("within 10 s");
    assert!(sent.is_ok_and(|id| !id.is_empty()));
    let tries: Vec<Instant> = lark
        .requests_to("POST", "/open-apis/im/v1/messages/om_limited/reply")
        .into_iter()
        .map(|r| r.received_at)
        .collect();
    assert_eq!(tries.len(), 2, "one rate limit, one retry");
    let waited = tries[1] - tries[0];
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
}
