//! The page frame (header, navigation, sign-out), messages, error pages and the two assets.

use super::i18n::Lang;
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
pub fn page(lang: Lang, title: &str, staff: Option<&Staff>, body: Markup) -> axum::response::Html<String> {
    axum::response::Html(frame(lang, title, staff, body).into_string())
}

fn frame(l: Lang, title: &str, staff: Option<&Staff>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(l.tag()) {
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
                            a href="/ui/inbox" { (l.t("nav-inbox")) }
                            a href="/ui/cases" { (l.t("nav-cases")) }
                            @if s.may_reassign { a href="/ui/team" { (l.t("nav-team")) } }
                            a href="/ui/account" { (l.t("nav-account")) }
                        }
                        span.who { (s.name) " (" (s.actor.id) ")" }
                        form.inline method="post" action="/ui/logout" {
                            input type="hidden" name="_csrf" value=(s.csrf);
                            button type="submit" { (l.t("sign-out")) }
                        }
                    }
                    // The other languages, as links: a preference, kept in a cookie.
                    span.langs {
                        @for other in Lang::ALL.into_iter().filter(|o| *o != l) {
                            a href=(format!("/ui/lang/{}", other.tag())) lang=(other.tag()) hreflang=(other.tag()) { (other.own_name()) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error as a page: what went wrong and where to go from here.
pub fn error_page(l: Lang, status: StatusCode, message: &str) -> Response {
    let title = l.f("error-title", &[("status", status.as_u16().into())]);
    let body = html! {
        h1 { (title) }
        p.flash.error role="alert" { (message) }
        p { a href="/ui/inbox" { (l.t("back-to-inbox")) } }
    };
    (status, page(l, &title, None, body)).into_response()
}

/// The page for an engine or API error, with its status.
pub fn api_error_page(l: Lang, e: crate::server::ApiError) -> Response {
    error_page(l, e.status, &e.detail)
}

/// The switch: keeps the chosen language in a cookie (a year) and goes back to the page it was
/// chosen on (our own pages only).
pub async fn switch_language(
    axum::extract::Path(tag): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(lang) = Lang::from_tag(&tag) else {
        return error_page(Lang::of(&headers), StatusCode::NOT_FOUND, &Lang::of(&headers).t("no-such-language"));
    };
    let back = headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.find("/ui/").map(|at| r[at..].to_string()))
        .filter(|p| !p.starts_with("/ui/lang/") && !p.contains(['\\', '\r', '\n']))
        .unwrap_or_else(|| "/ui/inbox".into());
    let cookie = format!("{}={}; Path=/ui; SameSite=Lax; Max-Age=31536000", super::i18n::LANG_COOKIE, lang.tag());
    let mut response = axum::response::Redirect::to(&back).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
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
