//! The page frame (header, navigation, sign-out), messages, error pages and the two assets.

use super::session::Staff;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, Render, DOCTYPE};

/// A message at the top of a page.
pub enum Flash {
    Info(String),
    Error(String),
}

impl Render for Flash {
    fn render(&self) -> Markup {
        match self {
            Flash::Info(m) => html! { p.flash.info role="status" { (m) } },
            Flash::Error(m) => html! { p.flash.error role="alert" { (m) } },
        }
    }
}

/// A whole page: the frame around `body`, with the navigation for a signed-in person.
pub fn page(title: &str, staff: Option<&Staff>, body: Markup) -> axum::response::Html<String> {
    axum::response::Html(frame(title, staff, body).into_string())
}

fn frame(title: &str, staff: Option<&Staff>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · caseflow" }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/inbox" { "caseflow" }
                    @if let Some(s) = staff {
                        nav {
                            a href="/ui/inbox" { "Inbox" }
                            a href="/ui/cases" { "Cases" }
                            @if s.may_reassign { a href="/ui/team" { "Team" } }
                            a href="/ui/account" { "Account" }
                        }
                        span.who { (s.name) " (" (s.actor.id) ")" }
                        form.inline method="post" action="/ui/logout" {
                            input type="hidden" name="_csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error as a page: what went wrong and where to go from here.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        h1 { (title) }
        p.flash.error role="alert" { (message) }
        p { a href="/ui/inbox" { "Back to the inbox" } }
    };
    (status, page(title, None, body)).into_response()
}

/// The page for an engine or API error, with its status.
pub fn api_error_page(e: crate::server::ApiError) -> Response {
    error_page(e.status, &e.detail)
}

/// What every console answer carries: scripts only from this server and none inline (inline
/// style attributes, as the SLA bars', are allowed), no framing, no sniffing; pages (which
/// hold case data) are not cached.
pub async fn security_headers(mut response: Response) -> Response {
    use axum::http::HeaderValue;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    // Short-lived: a new binary's assets are picked up within minutes, without versioned names.
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

pub async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/console.css"))
}

pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/console.js"))
}
