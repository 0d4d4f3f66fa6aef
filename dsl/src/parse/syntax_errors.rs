//! A syntax error as people read it: what was expected in plain words (`rule_label`), the
//! common mistakes recognised and explained (`common_mistake`: a misspelt unit, a stray `;`,
//! a typographic arrow, …), and a hint.

use super::*;

pub(super) fn syntax_diagnostic(source: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let mut pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    // pest reports rules, not literals, so a missing `}` would go unmentioned. Parsing the
    // failed input again with error detail on gives the literal tokens tried furthest in.
    let literals = literal_attempts(source);
    let mut tokens: Vec<String> = Vec::new();
    if let Some((at, found)) = literals {
        // Only when it found punctuation there: the furthest position may lie inside a
        // lookahead (the keyword check of a name), which says nothing useful.
        if at >= pos && !found.is_empty() {
            pos = at;
            tokens = found;
        }
    }
    let from_rules = matches!(e.location, InputLocation::Pos(p) | InputLocation::Span((p, _)) if p == pos);
    let end = source[pos..].chars().next().map_or(pos, |c| pos + c.len_utf8());
    let found = match source[pos..].chars().next() {
        None => "the end of the file".to_string(),
        Some('\n' | '\r') => "the end of the line".to_string(),
        Some(_) => {
            let word: String = source[pos..].chars().take_while(|c| !c.is_whitespace()).take(20).collect();
            format!("`{word}`")
        }
    };
    if let Some((span, message, advice)) = common_mistake(source, pos) {
        return Diagnostic::new(Code::Syntax, span, message).advice(advice);
    }
    let (message, hint) = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut expected: Vec<&str> =
                positives.iter().filter(|_| from_rules).filter_map(|r| rule_label(*r)).collect();
            expected.extend(tokens.iter().map(String::as_str));
            if expected.contains(&"`->` and the next step") {
                expected.retain(|e| *e != "`->`");
            }
            expected.sort_unstable();
            expected.dedup();
            let hint = hint_for(source, pos, &expected);
            if expected.is_empty() {
                (format!("unexpected {found}"), hint)
            } else {
                (format!("expected {}, found {found}", join_or(&expected)), hint)
            }
        }
        ErrorVariant::CustomError { message } => (message.clone(), None),
    };
    let mut d = Diagnostic::new(Code::Syntax, pos..end, message);
    d.hint = hint;
    d
}

/// Units of time, for "did you mean" on a misspelt one.
pub(super) const UNITS: &[&str] = &[
    "workdays",
    "workday",
    "workhours",
    "workhour",
    "minutes",
    "minute",
    "hours",
    "hour",
    "days",
    "day",
    "weeks",
    "week",
    "seconds",
    "second",
    "min",
    "ms",
    "s",
    "h",
    "d",
    "w",
];

/// A specific message for the mistakes people make most, instead of pest's list of what it
/// expected: a misspelt or unsupported unit, a stray `;`, a typographic arrow, an unclosed
/// string, a bad escape, a statement in the wrong kind of step, an extra `}`.
// One piece (over 100 lines): a list of common mistakes tried in order, each a few lines.
pub(super) fn common_mistake(source: &str, pos: usize) -> Option<(Span, String, crate::diag::Advice)> {
    let rest = &source[pos..];
    let first = rest.chars().next()?;
    let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let at = |len: usize| pos..pos + len;
    let before = source[..pos].trim_end_matches([' ', '\t']);
    // `3 wrokdays`, `1 month`: a word right after a number.
    if !word.is_empty()
        && before.ends_with(|c: char| c.is_ascii_digit())
        && word.chars().all(|c| c.is_ascii_alphabetic())
    {
        if matches!(word.as_str(), "month" | "months" | "year" | "years") {
            return Some((
                at(word.len()),
                format!("`{word}` is not a unit in a .flow file"),
                "use days (`30d`) or working days (`22 workdays`); calendar months can be set in the rules, \
                 e.g. `survey_period = \"6 months\"`, and used as `rules.survey_period`"
                    .into(),
            ));
        }
        let advice = crate::diag::closest_or(&word, UNITS.iter().copied(), || {
            "units: workdays, workhours, min, h, d, w (or minutes, hours, days, weeks)".into()
        });
        return Some((at(word.len()), format!("`{word}` is not a unit of time"), advice));
    }
    match first {
        ';' => {
            return Some((
                at(1),
                "a `;` is not needed: a statement ends where the next begins".into(),
                "remove the `;`".into(),
            ))
        }
        '→' | '⇒' | '⟶' | '–' | '—' => {
            return Some((
                at(first.len_utf8()),
                format!("`{first}` is not an arrow in a .flow file"),
                "write `->` (a hyphen and `>`); editors sometimes replace it with a typographic arrow".into(),
            ))
        }
        '"' => {
            // Where the string goes wrong: a bad escape, or the end of the line first.
            let mut chars = rest.char_indices().skip(1);
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => break,
                    '\n' | '\r' => {
                        return Some((
                            at(1),
                            "this string is never closed: it starts here and the line ends first".into(),
                            "close it with `\"` before the end of the line (use `\\n` for a line break)".into(),
                        ))
                    }
                    '\\' => match chars.next() {
                        Some((_, '"' | '\\' | 'n' | 't')) => {}
                        Some((j, e)) => {
                            return Some((
                                pos + i..pos + j + e.len_utf8(),
                                format!("`\\{e}` is not an escape"),
                                "the escapes are `\\\"`, `\\\\`, `\\n` and `\\t`; write a backslash as `\\\\`".into(),
                            ))
                        }
                        None => break,
                    },
                    _ => {}
                }
            }
            if !rest[1..].contains('"') {
                return Some((
                    at(1),
                    "this string is never closed: it starts here".into(),
                    "close it with `\"`".into(),
                ));
            }
        }
        '}' if source[pos + 1..].trim().is_empty() || source[pos + 1..].trim_start().starts_with('}') => {
            let closes = source[..pos].matches('{').count() <= source[..pos].matches('}').count();
            if closes {
                return Some((
                    at(1),
                    "an extra `}`: every block before it is already closed".into(),
                    "remove it, or look for a `{` missing above".into(),
                ));
            }
        }
        _ => {}
    }
    // A statement in a step that does not take it.
    // The kind of step whose block this is: the first word on the line of its `{`.
    let kind = source[..pos]
        .rfind('{')
        .and_then(|b| {
            let line = source[..b].rfind('\n').map_or(0, |i| i + 1);
            source[line..b].split_whitespace().next()
        })
        .unwrap_or_default();
    let task_only = ["remind", "due", "assign", "asks", "candidates", "collect", "not"];
    if kind == "auto" && task_only.contains(&word.as_str()) {
        return Some((
            at(word.len()),
            format!("`{word}` belongs in a `task`: an `auto` step runs at once, with no person to remind or ask"),
            "make the step a `task`, or move the statement to one".into(),
        ));
    }
    if kind == "task" && matches!(word.as_str(), "set" | "lookup") {
        return Some((
            at(word.len()),
            format!("`{word}` belongs in an `auto` step"),
            "add an `auto` step before or after the task for it; a task's form sets fields with `asks`".into(),
        ));
    }
    None
}

/// The furthest position pest reached and the punctuation it expected there.
pub(super) fn literal_attempts(source: &str) -> Option<(usize, Vec<String>)> {
    pest::set_error_detail(true);
    let result = FlowParser::parse(Rule::file, source);
    pest::set_error_detail(false);
    let attempts = result.err()?.parse_attempts()?;
    let tokens = attempts
        .expected_tokens()
        .into_iter()
        .map(|t| t.to_string())
        .filter(|t| matches!(t.as_str(), "{" | "}" | "(" | ")" | "[" | "]" | "->" | ":" | "," | "=" | "=>"))
        .map(|t| format!("`{t}`"))
        .collect();
    Some((attempts.max_position, tokens))
}

/// Words the grammar reserves; they cannot name a step, field or process.
pub(super) const KEYWORDS: &[&str] = &[
    "process", "task", "auto", "wait", "split", "join", "call", "end", "start", "when", "else", "decide", "and", "or",
    "not", "in", "true", "false", "rules",
];

pub(super) fn hint_for(source: &str, pos: usize, expected: &[&str]) -> Option<String> {
    let rest = &source[pos..];
    let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if KEYWORDS.contains(&word.as_str()) && expected.iter().any(|e| e.contains("name")) {
        return Some(format!("`{word}` is a keyword and cannot be a name: choose another, e.g. `{word}_step`"));
    }
    let first = rest.chars().next()?;
    if first.is_ascii_uppercase() && expected.iter().any(|e| e.contains("name")) {
        return Some("names are snake_case: lower-case ASCII letters, digits and `_`, starting with a letter".into());
    }
    if !first.is_ascii() && expected.iter().any(|e| e.contains("name")) {
        return Some("names are ASCII; put display text in a quoted label: `task receive \"接收\"`".into());
    }
    if expected.contains(&"`->` and the next step") {
        return Some("every step except `end` says where to go next, e.g. `-> review`".into());
    }
    None
}

pub(super) fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Plain words for grammar rules in "expected ..." messages; `None` hides a rule.
// One piece (over 100 lines): one match from each grammar rule to the words a message uses for it.
pub(super) fn rule_label(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident => "a name (lower-case snake_case, e.g. `receive`)",
        Rule::label | Rule::string => "a quoted string",
        Rule::process => "`process`",
        Rule::process_item
        | Rule::doc_stmt
        | Rule::source_stmt
        | Rule::key_stmt
        | Rule::fields_block
        | Rule::start_stmt
        | Rule::interrupt_stmt
        | Rule::keep_stmt
        | Rule::tally_stmt
        | Rule::task_step
        | Rule::auto_step
        | Rule::wait_step
        | Rule::split_step
        | Rule::join_step
        | Rule::call_step
        | Rule::end_step => {
            "a process item (`fields`, `start`, `task`, `auto`, `wait`, `split`, `join`, `call`, `end`)"
        }
        Rule::field_decl => "a field declaration (`name: type`)",
        Rule::field_type
        | Rule::type_simple
        | Rule::type_int
        | Rule::type_choice
        | Rule::type_list
        | Rule::kw_text
        | Rule::kw_int
        | Rule::kw_decimal
        | Rule::kw_bool
        | Rule::kw_date
        | Rule::kw_datetime
        | Rule::kw_user => "a type (text, int, decimal, bool, date, datetime, user, choice(...), list text)",
        Rule::field_opt | Rule::opt_required | Rule::opt_sensitive | Rule::opt_own | Rule::opt_default => {
            "a field option (`required`, `sensitive`, `own`, `= default`)"
        }
        Rule::task_item
        | Rule::assign_stmt
        | Rule::candidates_stmt
        | Rule::due_stmt
        | Rule::remind_stmt
        | Rule::asks_stmt
        | Rule::not_same_stmt
        | Rule::each_stmt
        | Rule::collect_stmt
        | Rule::handler => {
            "a task statement (`for each`, `assign`, `not same as`, `candidates`, `due`, `remind`, `asks`, `collect`, `when`)"
        }
        Rule::each_in_turn | Rule::each_enough | Rule::each_until => {
            "`one at a time`, `until N done` or `until CONDITION`"
        }
        Rule::assignee
        | Rule::assignee_role
        | Rule::assignee_user
        | Rule::assignee_field
        | Rule::assignee_same
        | Rule::familiar
        | Rule::assignee_role_from
        | Rule::assignee_manager => "an assignee (`role r`, `user \"u\"`, `field f`, `same as step`, `manager of assignee`)",
        Rule::trigger | Rule::trig_overdue | Rule::trig_elapsed | Rule::trig_message => {
            "a trigger (`overdue`, `50%`, `message m`)"
        }
        Rule::action
        | Rule::act_escalate
        | Rule::act_notify
        | Rule::act_priority
        | Rule::act_remind
        | Rule::act_goto => "an action (`escalate to`, `notify`, `raise priority`, `remind`, `-> step`)",
        Rule::auto_item | Rule::set_stmt | Rule::lookup_stmt => "`set` or `lookup`",
        Rule::wait_cond | Rule::wait_for | Rule::wait_until | Rule::wait_every => "`for`, `until` or `every`",
        Rule::wait_event | Rule::on_message | Rule::on_timeout => "`on message` or `on timeout`",
        Rule::split_branch => "a branch (`step` or `step when condition`)",
        Rule::join_quorum | Rule::kw_first => "`on first` or `on N`",
        Rule::call_item | Rule::call_in | Rule::call_out => "`input` or `output`",
        Rule::next => "`->` and the next step",
        Rule::decide => "`decide`",
        Rule::branch => "`when condition -> step`",
        Rule::else_arm => "`else -> step`",
        Rule::expr
        | Rule::paren
        | Rule::list_lit
        | Rule::duration
        | Rule::date_lit
        | Rule::decimal_lit
        | Rule::int_lit
        | Rule::bool_lit
        | Rule::rule_ref
        | Rule::call_fn
        | Rule::op_not
        | Rule::op_neg => "an expression",
        Rule::op_or
        | Rule::op_and
        | Rule::op_in
        | Rule::op_eq
        | Rule::op_ne
        | Rule::op_le
        | Rule::op_ge
        | Rule::op_lt
        | Rule::op_gt
        | Rule::op_add
        | Rule::op_sub
        | Rule::op_mul
        | Rule::op_div => "an operator",
        Rule::EOI => "the end of the file",
        _ => return None,
    })
}
