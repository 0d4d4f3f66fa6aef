//! The console's words, in Chinese and English. Each language has one catalog, a Project
//! Fluent file embedded in the binary (`messages/zh.ftl`, `messages/en.ftl`); a page asks for a
//! message by its id (`lang.t("nav-inbox")`, or `lang.f("task-completed", &[("task", id.into())])`
//! with arguments, plurals by CLDR's rules). The two catalogs hold the same ids, and every id
//! the console's code asks for is in them: the tests below read both and the code.
//!
//! Which language: the person's choice (the switch in the header sets the `caseflow_lang`
//! cookie), else the first language of the browser's `Accept-Language` that we have, else
//! Chinese, the language of the service department the manual is written for. What the console
//! shows but does not write stays as it is: labels from the `.flow` files, names from the
//! rules, and the engine's refusals (the API's `detail`, in English).

use axum::http::{header, HeaderMap};
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use std::sync::LazyLock;
use unic_langid::LanguageIdentifier;

/// The cookie that keeps a person's choice of language.
pub const LANG_COOKIE: &str = "caseflow_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

type Bundle = FluentBundle<FluentResource>;

const ZH_SOURCE: &str = include_str!("messages/zh.ftl");
const EN_SOURCE: &str = include_str!("messages/en.ftl");

fn bundle(tag: &str, source: &str) -> Bundle {
    let id: LanguageIdentifier = tag.parse().unwrap_or_default();
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // No Unicode isolation marks around arguments: they would land in titles and CSV-like text.
    bundle.set_use_isolating(false);
    // The catalogs are part of the binary and the tests parse them whole; a message that did
    // not parse would show its id (see `format`), never stop the server.
    let resource = FluentResource::try_new(source.to_string()).unwrap_or_else(|(partial, _)| partial);
    let _ = bundle.add_resource(resource);
    bundle
}

static ZH: LazyLock<Bundle> = LazyLock::new(|| bundle("zh-CN", ZH_SOURCE));
static EN: LazyLock<Bundle> = LazyLock::new(|| bundle("en", EN_SOURCE));

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Zh, Lang::En];

    /// The language tag, for `<html lang>` and the cookie.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The language's name in itself, for the switch.
    pub fn own_name(self) -> &'static str {
        match self {
            Lang::Zh => "中文",
            Lang::En => "English",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.tag().eq_ignore_ascii_case(tag) || l.short() == tag)
    }

    fn short(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    fn bundle(self) -> &'static Bundle {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }

    /// The request's language: the cookie's, else the browser's, else Chinese.
    pub fn of(headers: &HeaderMap) -> Lang {
        let chosen = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(LANG_COOKIE)?.strip_prefix('=').and_then(Lang::from_tag));
        if let Some(lang) = chosen {
            return lang;
        }
        let accepted = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        fluent_langneg::parse_accepted_languages(accepted)
            .iter()
            .find_map(|l| Lang::ALL.into_iter().find(|ours| l.language.as_str() == ours.short()))
            .unwrap_or(Lang::Zh)
    }

    /// A message without arguments.
    pub fn t(self, id: &str) -> String {
        self.format(id, None)
    }

    /// A message with arguments (`{ $name }` in the catalog).
    pub fn f(self, id: &str, args: &[(&str, FluentValue)]) -> String {
        let mut fluent_args = FluentArgs::new();
        for (name, value) in args {
            fluent_args.set(*name, value.clone());
        }
        self.format(id, Some(&fluent_args))
    }

    fn format(self, id: &str, args: Option<&FluentArgs>) -> String {
        let bundle = self.bundle();
        let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) else { return id.to_string() };
        let mut errors = Vec::new();
        bundle.format_pattern(pattern, args, &mut errors).into_owned()
    }
}

/// Marks a message id chosen before the language is known (`l.t(id)` later), so the
/// catalogs' test finds it.
pub const fn msg(id: &'static str) -> &'static str {
    id
}

/// A case's status in words.
pub fn status_name(l: Lang, status: caseflow_core::case::StatusKind) -> String {
    use caseflow_core::case::StatusKind as S;
    l.t(match status {
        S::Running => msg("status-running"),
        S::Suspended => msg("status-suspended"),
        S::Incident => msg("status-incident"),
        S::Completed => msg("status-completed"),
        S::Cancelled => msg("status-cancelled"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn ids(source: &str) -> BTreeSet<String> {
        let resource = FluentResource::try_new(source.to_string()).unwrap_or_else(|(_, e)| panic!("{e:?}"));
        resource
            .entries()
            .filter_map(|e| match e {
                fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn both_catalogs_parse_and_hold_the_same_messages() {
        for source in [ZH_SOURCE, EN_SOURCE] {
            let resource = FluentResource::try_new(source.to_string()).unwrap_or_else(|(_, e)| panic!("{e:?}"));
            let mut bundle = FluentBundle::new_concurrent(vec![LanguageIdentifier::default()]);
            // Refused when an id is written twice (the second would be lost).
            bundle.add_resource(resource).unwrap_or_else(|e| panic!("an id twice: {e:?}"));
        }
        let (zh, en) = (ids(ZH_SOURCE), ids(EN_SOURCE));
        assert!(!zh.is_empty());
        assert_eq!(zh.difference(&en).collect::<Vec<_>>(), Vec::<&String>::new(), "in zh.ftl only");
        assert_eq!(en.difference(&zh).collect::<Vec<_>>(), Vec::<&String>::new(), "in en.ftl only");
    }

    /// Every id the console's code asks for (by `t`, `f` or `msg` with a literal id) is in the
    /// catalogs, and every message of the catalogs is asked for somewhere.
    #[test]
    fn every_message_asked_for_is_in_the_catalogs_and_none_is_unused() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/console");
        let mut asked = BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // A call may be wrapped after its parenthesis: `l.f(` then the id on the next line.
                // (Written in two pieces, so that this line is not read as a call itself.)
                for call in [".t", ".f", "msg"].map(|name| format!("{name}(")) {
                    for part in text.split(&call).skip(1) {
                        if let Some(id) = part.trim_start().strip_prefix('"') {
                            asked.insert(id.split('"').next().unwrap().to_string());
                        }
                    }
                }
            }
        }
        let catalog = ids(EN_SOURCE);
        let missing: Vec<_> = asked.iter().filter(|id| !catalog.contains(*id) && !id.contains('{')).collect();
        assert!(missing.is_empty(), "asked for but not in the catalogs: {missing:?}");
        let unused: Vec<_> = catalog.iter().filter(|id| !asked.contains(*id)).collect();
        assert!(unused.is_empty(), "in the catalogs but never asked for: {unused:?}");
    }

    #[test]
    fn the_language_is_the_cookie_s_then_the_browser_s_then_chinese() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, axum::http::HeaderValue::from_static(v));
            }
            h
        };
        assert_eq!(Lang::of(&headers(&[])), Lang::Zh);
        assert_eq!(Lang::of(&headers(&[("accept-language", "en-GB,en;q=0.9")])), Lang::En);
        assert_eq!(Lang::of(&headers(&[("accept-language", "de-DE,zh-TW;q=0.8,en;q=0.5")])), Lang::Zh);
        assert_eq!(Lang::of(&headers(&[("accept-language", "fr")])), Lang::Zh);
        assert_eq!(
            Lang::of(&headers(&[("accept-language", "en"), ("cookie", "caseflow_session=x; caseflow_lang=zh-CN")])),
            Lang::Zh
        );
        assert_eq!(Lang::of(&headers(&[("cookie", "caseflow_lang=en")])), Lang::En);
        assert_eq!(Lang::of(&headers(&[("cookie", "caseflow_lang=xx"), ("accept-language", "en")])), Lang::En);
    }

    #[test]
    fn arguments_and_plurals_are_filled_in() {
        assert_eq!(Lang::En.f("sessions-ended", &[("n", 1.into())]), "1 session ended.");
        assert_eq!(Lang::En.f("sessions-ended", &[("n", 3.into())]), "3 sessions ended.");
        assert_eq!(Lang::Zh.f("sessions-ended", &[("n", 3.into())]), "已结束 3 个会话。");
        let missing = ["no", "such", "message"].join("-");
        assert_eq!(Lang::En.t(&missing), missing, "a missing id shows itself");
    }
}
