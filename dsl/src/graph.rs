//! Diagrams of a compiled process: Graphviz DOT (through petgraph's exporter) and Mermaid.
//!
//! Both show each step's kind by its shape, labels as written, decision conditions on
//! edges, and timers (due times, waits, reminders) in the step's text.

use crate::fmt::expr_to_string;
use crate::model::{EdgeKind, Node, Process, StepKind, WaitCondition};
use petgraph::dot::{Config, Dot};

/// The text shown in a step's box: label, name, and its timers.
fn node_text(p: &Process, n: Node) -> String {
    let Node::Step(id) = n else { return "start".into() };
    let s = p.step(id);
    let mut text = match &s.label {
        Some(l) => format!("{l}\n({})", s.name),
        None => s.name.clone(),
    };
    match &s.kind {
        StepKind::Task(t) => {
            if let Some(a) = &t.assign {
                text.push_str(&format!("\n👤 {}", assignee_text(p, a)));
            }
            if let Some(d) = &t.due {
                text.push_str(&format!("\n⏱ due {}", expr_to_string(d)));
            }
            if let Some(r) = &t.remind_every {
                text.push_str(&format!("\n🔔 every {}", expr_to_string(r)));
            }
            for h in &t.handlers {
                text.push_str(&format!("\n⚠ {}", handler_text(p, h)));
            }
        }
        StepKind::Wait(w) => match &w.condition {
            Some(WaitCondition::For(e)) => text.push_str(&format!("\n⏱ for {}", expr_to_string(e))),
            Some(WaitCondition::Until(e)) => text.push_str(&format!("\n⏱ until {}", expr_to_string(e))),
            Some(WaitCondition::Every(e)) => text.push_str(&format!("\n🔁 every {}", expr_to_string(e))),
            None => {}
        },
        StepKind::Call(c) => text.push_str(&format!("\n▶ {}", c.process)),
        StepKind::Auto { .. } | StepKind::Split { .. } | StepKind::Join { .. } | StepKind::End => {}
    }
    text
}

/// A deadline handler in words: `overdue: escalate to role cs_manager, raise priority`.
pub fn handler_text(p: &Process, h: &crate::model::Handler) -> String {
    use crate::model::{Action, Trigger};
    let trigger = match &h.trigger {
        Trigger::Overdue { after: None } => "overdue".to_string(),
        Trigger::Overdue { after: Some(e) } => format!("overdue + {}", expr_to_string(e)),
        Trigger::Elapsed { percent } => format!("{percent}%"),
        Trigger::Message(m) => format!("message {m}"),
    };
    let actions: Vec<String> = h
        .actions
        .iter()
        .map(|a| match a {
            Action::Escalate(who) => format!("escalate to {}", assignee_text(p, who)),
            Action::Notify(who) => format!("notify {}", assignee_text(p, who)),
            Action::RaisePriority => "raise priority".into(),
            Action::Remind => "remind".into(),
            Action::Goto(s) => format!("-> {}", p.step(*s).name),
        })
        .collect();
    format!("{trigger}: {}", actions.join(", "))
}

/// An assignee rule in words: `role cs_rep`, `same as receive`.
pub fn assignee_text(p: &Process, a: &crate::model::Assignee) -> String {
    use crate::model::Assignee::*;
    match a {
        Role { role, .. } => format!("role {role}"),
        User(u) => format!("user {u}"),
        Field(f) => format!("field {f}"),
        SameAs(s) => format!("same as {}", p.step(*s).name),
        ManagerOfAssignee => "manager of assignee".into(),
    }
}

fn edge_text(e: &EdgeKind) -> String {
    match e {
        EdgeKind::Next | EdgeKind::Parallel => String::new(),
        EdgeKind::Branch(cond) => cond.clone(),
        EdgeKind::Else => "else".into(),
        EdgeKind::Message(m) => format!("✉ {m}"),
        EdgeKind::Timeout => "timeout".into(),
        EdgeKind::Overdue => "overdue".into(),
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Graphviz DOT.
pub fn to_dot(p: &Process) -> String {
    let shape = |n: &Node| match n {
        Node::Start => "shape=circle",
        Node::Step(id) => match p.step(*id).kind {
            StepKind::Task(_) => "shape=box, style=rounded",
            StepKind::Auto { .. } => "shape=box",
            StepKind::Wait(_) => "shape=box, style=dashed",
            StepKind::Split { .. } | StepKind::Join { .. } => "shape=diamond",
            StepKind::Call(_) => "shape=box, peripheries=2",
            StepKind::End => "shape=doublecircle",
        },
    };
    let edge_attrs = |_, e: petgraph::graph::EdgeReference<'_, EdgeKind>| {
        let style = match e.weight() {
            EdgeKind::Overdue | EdgeKind::Timeout => ", style=dashed, color=red",
            EdgeKind::Message(_) => ", style=dashed",
            _ => "",
        };
        format!("label=\"{}\"{style}", dot_escape(&edge_text(e.weight())))
    };
    let node_attrs = |_, (_, n): (petgraph::graph::NodeIndex, &Node)| {
        format!("label=\"{}\", {}", dot_escape(&node_text(p, *n)), shape(n))
    };
    let dot = Dot::with_attr_getters(&p.graph, &[Config::NodeNoLabel, Config::EdgeNoLabel], &edge_attrs, &node_attrs);
    format!("{dot:?}")
}

/// SVG, laid out and drawn in Rust by layout-rs from the DOT above: no Graphviz needed.
pub fn to_svg(p: &Process) -> Result<String, String> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    let dot = to_dot(p);
    // layout-rs is young: a panic in it must not take the caller down with it.
    std::panic::catch_unwind(move || {
        let graph = DotParser::new(&dot).process()?;
        let mut builder = GraphBuilder::new();
        builder.visit_graph(&graph);
        let mut visual = builder.get();
        let mut svg = SVGWriter::new();
        visual.do_it(false, false, false, &mut svg);
        Ok(svg.finalize())
    })
    .map_err(|_| "the layout engine failed on this graph".to_string())?
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;").replace('\n', "<br/>")
}

/// Mermaid `flowchart`, for Markdown docs.
pub fn to_mermaid(p: &Process) -> String {
    use petgraph::visit::EdgeRef;
    let mut out = String::from("flowchart TD\n");
    let id_of = |n: Node| match n {
        Node::Start => "start__".to_string(),
        Node::Step(id) => format!("s_{}", p.step(id).name),
    };
    for idx in p.graph.node_indices() {
        let n = p.graph[idx];
        let text = mermaid_escape(&node_text(p, n));
        let (open, close) = match n {
            Node::Start => ("((", "))"),
            Node::Step(id) => match p.step(id).kind {
                StepKind::Task(_) => ("(", ")"),
                StepKind::Auto { .. } => ("[", "]"),
                StepKind::Wait(_) => ("[/", "/]"),
                StepKind::Split { .. } | StepKind::Join { .. } => ("{", "}"),
                StepKind::Call(_) => ("[[", "]]"),
                StepKind::End => ("(((", ")))"),
            },
        };
        out.push_str(&format!("  {}{open}\"{text}\"{close}\n", id_of(n)));
    }
    for e in p.graph.edge_references() {
        let (a, b) = (id_of(p.graph[e.source()]), id_of(p.graph[e.target()]));
        let arrow = match e.weight() {
            EdgeKind::Overdue | EdgeKind::Timeout | EdgeKind::Message(_) => "-.->",
            _ => "-->",
        };
        match edge_text(e.weight()) {
            t if t.is_empty() => out.push_str(&format!("  {a} {arrow} {b}\n")),
            t => out.push_str(&format!("  {a} {arrow}|\"{}\"| {b}\n", mermaid_escape(&t))),
        }
    }
    out
}
