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
        RoleFrom { field, .. } => format!("role from {field}"),
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

/// SVG, laid out in layers (rust-sugiyama: layering, crossing reduction, coordinates) and drawn
/// here: no Graphviz needed, and time grows about linearly with the steps (a 3,000-step process
/// lays out in milliseconds; see the `graph` bench).
// One piece (over 100 lines): the drawing in the order SVG paints it (layout, edges, then nodes over them), sharing the layout's coordinates.
pub fn to_svg(p: &Process) -> Result<String, String> {
    use petgraph::visit::EdgeRef;
    const LINE: f64 = 16.0;
    const GAP_X: f64 = 40.0;
    const GAP_Y: f64 = 60.0;
    let texts: Vec<Vec<String>> =
        p.graph.node_indices().map(|n| node_text(p, p.graph[n]).lines().map(str::to_string).collect()).collect();
    // Width by characters: wide (CJK) ones count twice.
    let text_width = |t: &str| t.chars().map(|c| if c.is_ascii() { 7.2 } else { 14.0 }).sum::<f64>();
    let size: Vec<(f64, f64)> = texts
        .iter()
        .map(|lines| {
            let w = lines.iter().map(|l| text_width(l)).fold(0.0, f64::max) + 24.0;
            (w.max(48.0), lines.len() as f64 * LINE + 16.0)
        })
        .collect();
    let widest = size.iter().map(|s| s.0).fold(0.0, f64::max);
    let tallest = size.iter().map(|s| s.1).fold(0.0, f64::max);
    let edges: Vec<(u32, u32)> = p
        .graph
        .edge_references()
        .filter(|e| e.source() != e.target())
        .map(|e| (e.source().index() as u32, e.target().index() as u32))
        .collect();
    let config = rust_sugiyama::configure::Config { vertex_spacing: widest + GAP_X, ..Default::default() };
    // A panic in the layout crate must not take the caller (a server worker) down.
    let layouts = std::panic::catch_unwind(|| rust_sugiyama::from_edges(&edges, &config))
        .map_err(|_| "the layout engine failed on this graph".to_string())?;
    // Components side by side; within one, layers top to bottom (ranks from the y values).
    let mut at = vec![(0.0, 0.0); p.graph.node_count()];
    let mut offset = 0.0;
    let (mut width, mut height) = (0.0_f64, 0.0_f64);
    for (coords, w, _) in &layouts {
        let mut ys: Vec<i64> = coords.iter().map(|(_, (_, y))| y.round() as i64).collect();
        ys.sort_unstable();
        ys.dedup();
        let min_x = coords.iter().map(|(_, (x, _))| *x).fold(f64::MAX, f64::min);
        for (v, (x, y)) in coords {
            let rank = ys.binary_search(&(y.round() as i64)).unwrap_or(0) as f64;
            let pos =
                (offset + x - min_x + widest / 2.0 + GAP_X / 2.0, rank * (tallest + GAP_Y) + tallest / 2.0 + 20.0);
            if let Some(slot) = at.get_mut(*v) {
                *slot = pos;
            }
            width = width.max(pos.0 + widest / 2.0 + GAP_X);
            height = height.max(pos.1 + tallest / 2.0 + 20.0);
        }
        offset += w + widest + GAP_X;
    }
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\"/></marker></defs>\n"
    );
    for e in p.graph.edge_references() {
        let (s, t) = (e.source().index(), e.target().index());
        let ((sx, sy), (tx, ty)) = (at[s], at[t]);
        let (sy, ty) = (sy + size[s].1 / 2.0, ty - size[t].1 / 2.0);
        // One `stroke` per element: a second is not well-formed XML.
        let (stroke, dashed) = match e.weight() {
            EdgeKind::Overdue | EdgeKind::Timeout => ("#c00", " stroke-dasharray=\"5 3\""),
            EdgeKind::Message(_) => ("#333", " stroke-dasharray=\"5 3\""),
            _ => ("#333", ""),
        };
        // Downward edges bend gently; edges back up go round the side.
        let path = if ty > sy {
            let d = (ty - sy) / 2.0;
            format!("M {sx:.1} {sy:.1} C {sx:.1} {:.1}, {tx:.1} {:.1}, {tx:.1} {ty:.1}", sy + d, ty - d)
        } else {
            let side = sx.max(tx) + widest / 2.0 + GAP_X / 2.0;
            format!("M {sx:.1} {sy:.1} C {side:.1} {:.1}, {side:.1} {:.1}, {tx:.1} {ty:.1}", sy + GAP_Y, ty - GAP_Y)
        };
        // `data-from`/`data-to` name the steps, so a page can mark the path a case took.
        out.push_str(&format!(
            "<path d=\"{path}\" fill=\"none\" stroke=\"{stroke}\"{dashed} marker-end=\"url(#arrow)\" data-from=\"{}\" data-to=\"{}\"/>\n",
            xml_escape(&node_name(p, p.graph[e.source()])),
            xml_escape(&node_name(p, p.graph[e.target()]))
        ));
        let label = edge_text(e.weight());
        if !label.is_empty() {
            let (mx, my) = ((sx + tx) / 2.0, (sy + ty) / 2.0);
            out.push_str(&format!(
                "<text x=\"{mx:.1}\" y=\"{my:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n",
                xml_escape(&label)
            ));
        }
    }
    for n in p.graph.node_indices() {
        let i = n.index();
        let ((x, y), (w, h)) = (at[i], size[i]);
        let (l, t) = (x - w / 2.0, y - h / 2.0);
        let shape = match p.graph[n] {
            Node::Start => format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{:.1}\" fill=\"#fff\" stroke=\"#333\"/>", h / 2.0),
            Node::Step(id) => match p.step(id).kind {
                StepKind::Task(_) => format!("<rect x=\"{l:.1}\" y=\"{t:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"8\" fill=\"#eef4ff\" stroke=\"#335\"/>"),
                StepKind::Auto { .. } => format!("<rect x=\"{l:.1}\" y=\"{t:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"#f4f4f4\" stroke=\"#333\"/>"),
                StepKind::Wait(_) => format!("<rect x=\"{l:.1}\" y=\"{t:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"#fffbe6\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>"),
                StepKind::Split { .. } | StepKind::Join { .. } => format!(
                    "<polygon points=\"{x:.1},{t:.1} {:.1},{y:.1} {x:.1},{:.1} {l:.1},{y:.1}\" fill=\"#fff\" stroke=\"#333\"/>",
                    l + w,
                    t + h
                ),
                StepKind::Call(_) => format!(
                    "<rect x=\"{l:.1}\" y=\"{t:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"#fff\" stroke=\"#333\"/><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#333\"/>",
                    l + 3.0,
                    t + 3.0,
                    w - 6.0,
                    h - 6.0
                ),
                StepKind::End => format!(
                    "<ellipse cx=\"{x:.1}\" cy=\"{y:.1}\" rx=\"{:.1}\" ry=\"{:.1}\" fill=\"#efe\" stroke=\"#333\" stroke-width=\"2\"/>",
                    w / 2.0,
                    h / 2.0
                ),
            },
        };
        // One group per node, named by its step, so a page can mark where a case is.
        out.push_str(&format!("<g data-step=\"{}\">", xml_escape(&node_name(p, p.graph[n]))));
        out.push_str(&shape);
        out.push('\n');
        let lines = &texts[i];
        let first = y - (lines.len() as f64 - 1.0) * LINE / 2.0 + 4.0;
        out.push_str(&format!("<text x=\"{x:.1}\" y=\"{first:.1}\" text-anchor=\"middle\">"));
        for (k, line) in lines.iter().enumerate() {
            let dy = if k == 0 { 0.0 } else { LINE };
            out.push_str(&format!("<tspan x=\"{x:.1}\" dy=\"{dy:.0}\">{}</tspan>", xml_escape(line)));
        }
        out.push_str("</text></g>\n");
    }
    out.push_str("</svg>\n");
    Ok(out)
}

/// A node's step name (`start` for the start).
fn node_name(p: &Process, node: Node) -> String {
    match node {
        Node::Start => "start".to_string(),
        Node::Step(id) => p.step(id).name.clone(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
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
