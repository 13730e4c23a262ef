//! The chat page and a work item's own page: plain HTML, CSS and JavaScript compiled into the
//! binary, so the sandbox needs no build step and no files beside it.
//!
//! The bot's cards link to `FEISHU_PROJECT_WEB_URL/<space>/<type>/detail/<id>`, and the
//! sandbox sets that URL to this page's own address, so a link in a sandbox card opens the
//! item here (its state, live) instead of on the real project.feishu.cn. The card code is the
//! production one, unchanged: only its configuration differs.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("assets/index.html");
/// The page a card's link opens: `/<space>/<type>/detail/<id>`, as in Feishu Project.
const ITEM: &str = include_str!("assets/item.html");
const ITEM_APP: &str = include_str!("assets/item.js");
const STYLE: &str = include_str!("assets/style.css");
const APP: &str = include_str!("assets/app.js");
/// The Card JSON 2.0 renderer, kept apart from the chat so it can be read on its own.
const CARD: &str = include_str!("assets/card.js");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}

pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/{space}/{type_key}/detail/{id}",
            get(|| async { asset("text/html; charset=utf-8", ITEM) }),
        )
        .route(
            "/assets/item.js",
            get(|| async { asset("text/javascript; charset=utf-8", ITEM_APP) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/assets/card.js",
            get(|| async { asset("text/javascript; charset=utf-8", CARD) }),
        )
}
