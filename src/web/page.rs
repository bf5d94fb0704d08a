//! `GET /`: the upload page, compiled into the binary (no build step).

use axum::response::Html;

pub async fn index() -> Html<&'static str> {
    Html(include_str!("page/index.html"))
}
