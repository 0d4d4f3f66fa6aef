//! The process as a graph: reachable from start, reaching an end, no automatic loop,
//! splits and joins paired.

use super::*;

impl<'a> Checker<'a> {
    // ------------------------------------------------------------ graph

    // One piece (over 100 lines): every check here reads the reachability sets computed at its top (from start, to an end); split apart they would be recomputed or passed around.
    pub(super) fn check_graph(&mut self, graph: &DiGraph<Node, EdgeKind>, steps: &[model::Step]) {
        let step_span = |id: StepId| self.ast.steps[id.index()].id.span.clone();
        let node_step = |n: NodeIndex| match graph[n] {
            Node::Step(id) => Some(id),
            Node::Start => None,
        };
        // Reachable from start.
        let mut reached = vec![false; graph.node_count()];
        let mut bfs = Bfs::new(graph, NodeIndex::new(0));
        while let Some(n) = bfs.next(graph) {
            reached[n.index()] = true;
        }
        let mut problems = Vec::new();
        for n in graph.node_indices() {
            if let Some(id) = node_step(n) {
                if !reached[n.index()] && !self.unresolved {
                    problems.push(
                        Diagnostic::new(
                            Code::UnreachableStep,
                            step_span(id),
                            format!("no path from `start` leads to step `{}`", steps[id.index()].name),
                        )
                        .hint("point a `->` at it from an earlier step, or delete it"),
                    );
                }
            }
        }
        // Can reach an end (walking edges backwards from every end).
        let mut to_end = vec![false; graph.node_count()];
        let reversed = Reversed(graph);
        for s in steps.iter().filter(|s| matches!(s.kind, model::StepKind::End)) {
            let mut bfs = Bfs::new(&reversed, NodeIndex::new(s.id.index() + 1));
            while let Some(n) = bfs.next(&reversed) {
                to_end[n.index()] = true;
            }
        }
        // A branch of a split whose join goes on at the first (or N-th) arrival may run until
        // it is withdrawn (a cycle of progress reports while the work goes on): it ends when
        // its join can.
        for (split, join) in quorum_splits(steps) {
            if to_end[join.index() + 1] {
                for n in region_of(graph, split, join) {
                    to_end[n.index()] = true;
                }
                let mut bfs = Bfs::new(&reversed, NodeIndex::new(split.index() + 1));
                while let Some(n) = bfs.next(&reversed) {
                    to_end[n.index()] = true;
                }
            }
        }
        if !steps.iter().any(|s| matches!(s.kind, model::StepKind::End)) {
            problems.push(
                Diagnostic::new(
                    Code::NoPathToEnd,
                    self.ast.id.span.clone(),
                    "the process has no `end` step, so no case can finish",
                )
                .hint("add an outcome, e.g. `end closed \"已归档\"`"),
            );
        } else if !self.unresolved {
            for n in graph.node_indices() {
                if let Some(id) = node_step(n) {
                    if reached[n.index()] && !to_end[n.index()] {
                        problems.push(
                            Diagnostic::new(
                                Code::NoPathToEnd,
                                step_span(id),
                                format!("no path leads from step `{}` to an `end`", steps[id.index()].name),
                            )
                            .hint("a case that gets here could never finish: add a way out towards an `end`"),
                        );
                    }
                }
            }
        }
        // Automatic loops: a cycle through only automatic steps would spin forever.
        let automatic = |id: StepId| {
            matches!(
                steps[id.index()].kind,
                model::StepKind::Auto { .. } | model::StepKind::Split { .. } | model::StepKind::Join { .. }
            )
        };
        let auto_graph = graph.filter_map(
            |_, n| Some(*n),
            |e, w| {
                let (a, b) = graph.edge_endpoints(e)?;
                match (graph[a], graph[b]) {
                    (Node::Step(x), Node::Step(y)) if automatic(x) && automatic(y) => Some(w.clone()),
                    _ => None,
                }
            },
        );
        for scc in tarjan_scc(&auto_graph) {
            let looped = scc.len() > 1 || auto_graph.edges(scc[0]).any(|e| e.target() == scc[0]);
            if looped {
                let mut ids: Vec<StepId> = scc.iter().filter_map(|n| node_step(*n)).collect();
                ids.sort();
                let names =
                    ids.iter().map(|id| format!("`{}`", steps[id.index()].name)).collect::<Vec<_>>().join(" → ");
                let mut d = Diagnostic::new(
                    Code::AutomaticLoop,
                    step_span(ids[0]),
                    format!("the steps {names} form a loop with no wait and no human task"),
                )
                .hint("a case would spin forever: put a `wait` or a `task` inside the loop");
                for id in &ids[1..] {
                    d = d.note(step_span(*id), "part of the loop");
                }
                problems.push(d);
            }
        }
        // Splits and joins pair up one to one, and every branch reaches the join.
        let mut join_of: BTreeMap<StepId, StepId> = BTreeMap::new();
        for s in steps {
            // A join whose split did not resolve is reported already (FLOW011, FLOW018).
            if let model::StepKind::Join { split, .. } = &s.kind {
                if split.index() >= steps.len() || !matches!(steps[split.index()].kind, model::StepKind::Split { .. }) {
                    continue;
                }
                if let Some(first) = join_of.insert(*split, s.id) {
                    problems.push(
                        Diagnostic::new(
                            Code::JoinWithoutSplit,
                            step_span(s.id),
                            format!("split `{}` already has a join", steps[split.index()].name),
                        )
                        .note(step_span(first), "the first join of that split"),
                    );
                }
            }
        }
        for s in steps {
            if let model::StepKind::Split { branches, .. } = &s.kind {
                let Some(join) = join_of.get(&s.id) else {
                    problems.push(
                        Diagnostic::new(
                            Code::SplitWithoutJoin,
                            step_span(s.id),
                            format!("split `{}` has no join", s.name),
                        )
                        .hint(format!("add `join NAME of {} -> next` where the branches meet", s.name)),
                    );
                    continue;
                };
                // A join that goes on at the N-th arrival needs N branches that can arrive; the
                // others may run until they are withdrawn.
                let quorum = match &steps[join.index()].kind {
                    model::StepKind::Join { quorum: Some(q), .. } => Some(*q as usize),
                    _ => None,
                };
                if self.unresolved {
                    // Paths cannot be followed while a name is unresolved (see `unresolved`).
                    continue;
                }
                let arriving = branches
                    .iter()
                    .filter(|b| {
                        reaches_avoiding(graph, NodeIndex::new(b.index() + 1), NodeIndex::new(join.index() + 1))
                    })
                    .count();
                for b in branches.iter().filter(|_| !self.unresolved && quorum.is_none_or(|q| arriving < q)) {
                    if !reaches_avoiding(graph, NodeIndex::new(b.index() + 1), NodeIndex::new(join.index() + 1)) {
                        problems.push(
                            Diagnostic::new(
                                Code::BadBranch,
                                step_span(*b),
                                format!(
                                    "branch `{}` of split `{}` never reaches join `{}`",
                                    steps[b.index()].name,
                                    s.name,
                                    steps[join.index()].name
                                ),
                            )
                            .hint("the join waits for every branch: lead this branch to the join"),
                        );
                    }
                }
            }
        }
        // Each split's branches stay in their region until its join: no arrival at the join
        // comes from outside, and no token leaves the region without passing the join. Joins
        // count arrivals, so this is what makes "every branch arrived" mean what it says.
        for s in steps.iter().filter(|_| !self.unresolved) {
            if let (model::StepKind::Split { .. }, Some(join)) = (&s.kind, join_of.get(&s.id)) {
                problems.extend(self.region_problems(graph, steps, s.id, *join));
            }
        }
        self.diags.extend(problems);
    }

    /// What breaks the region of split `split` (the steps its branches reach before its join):
    /// a way back to the split, a step that the branches share with the rest of the graph
    /// (reached from outside, or after the join), the join reached without the split, and
    /// another split's join reached from inside without its split.
    // One piece (over 100 lines): each split's region is walked once and every pairing problem (branches leaving, joins reached from outside, nested splits) is read from that walk.
    pub(super) fn region_problems(
        &self,
        graph: &DiGraph<Node, EdgeKind>,
        steps: &[model::Step],
        split: StepId,
        join: StepId,
    ) -> Vec<Diagnostic> {
        let node = |id: StepId| NodeIndex::new(id.index() + 1);
        let name = |n: NodeIndex| match graph[n] {
            Node::Start => "start".to_string(),
            Node::Step(id) => steps[id.index()].name.clone(),
        };
        let span = |n: NodeIndex| match graph[n] {
            Node::Start => self.ast.id.span.clone(),
            Node::Step(id) => self.ast.steps[id.index()].id.span.clone(),
        };
        let (split_n, join_n) = (node(split), node(join));
        // Everything reachable from `from` without entering `stop`.
        let closure = |from: Vec<NodeIndex>, stop: &[NodeIndex]| {
            let mut seen = vec![false; graph.node_count()];
            let mut todo: Vec<NodeIndex> = from.into_iter().filter(|n| !stop.contains(n)).collect();
            while let Some(n) = todo.pop() {
                if !std::mem::replace(&mut seen[n.index()], true) {
                    todo.extend(graph.neighbors(n).filter(|m| !stop.contains(m) && !seen[m.index()]));
                }
            }
            seen
        };
        let inside = closure(graph.neighbors(split_n).collect(), &[join_n]);
        let from_start = closure(vec![NodeIndex::new(0)], &[split_n]);
        let after_join = closure(graph.neighbors(join_n).collect(), &[split_n]);
        let outside = |n: NodeIndex| from_start[n.index()] || after_join[n.index()];
        let (split_name, join_name) = (&steps[split.index()].name, &steps[join.index()].name);
        // The inside step (or the split) a way out of the region starts from.
        let entered_from = |n: NodeIndex| {
            graph
                .neighbors_directed(n, petgraph::Direction::Incoming)
                .find(|p| *p == split_n || (inside[p.index()] && !outside(*p)))
        };
        let mut problems = Vec::new();
        // (A way back through a step outside is reported below, at that step.)
        if let Some(via) = entered_from(split_n).filter(|_| inside[split_n.index()]).map(name) {
            problems.push(
                Diagnostic::new(
                    Code::BranchLeavesSplit,
                    span(split_n),
                    format!("a branch of split `{split_name}` leads back to it (from `{via}`) before reaching join `{join_name}`"),
                )
                .hint("the join counts one arrival per branch: lead each branch to the join, and go round from after it"),
            );
        }
        // The join counts arrivals from its branches only.
        for p in graph.neighbors_directed(join_n, petgraph::Direction::Incoming) {
            if p != split_n && !inside[p.index()] {
                let whence = if p == join_n || after_join[p.index()] { "after the join" } else { "from outside them" };
                problems.push(
                    Diagnostic::new(
                        Code::BranchLeavesSplit,
                        span(p),
                        format!(
                            "step `{}` leads to join `{join_name}` {whence}, not from a branch of split `{split_name}`",
                            name(p)
                        ),
                    )
                    .note(span(join_n), "the join")
                    .hint("the join would count it as a branch: to wait again, go back to the split"),
                );
            }
        }
        // An `end` may be shared: reaching it from a branch ends the case (no arrival to count).
        let is_end =
            |n: NodeIndex| matches!(graph[n], Node::Step(id) if matches!(steps[id.index()].kind, model::StepKind::End));
        for n in graph.node_indices().filter(|n| *n != split_n && inside[n.index()] && outside(*n) && !is_end(*n)) {
            let Some(via) = entered_from(n) else { continue };
            let elsewhere = if from_start[n.index()] {
                "from `start` without passing the split".to_string()
            } else {
                format!("after join `{join_name}`")
            };
            problems.push(
                Diagnostic::new(
                    Code::BranchLeavesSplit,
                    span(via),
                    format!(
                        "step `{}` leads from the branches of split `{split_name}` to `{}`, which is also reached {elsewhere}",
                        name(via),
                        name(n)
                    ),
                )
                .note(span(n), "reached from inside and outside the branches")
                .hint(format!("the join counts one arrival per branch: lead this branch to `{join_name}` and go on from there")),
            );
        }
        // A split inside reached from two branches could run twice at once, and its join
        // could not tell the two runs' arrivals apart.
        let branches = match &steps[split.index()].kind {
            model::StepKind::Split { branches, .. } => branches.clone(),
            _ => Vec::new(),
        };
        let branch_reach: Vec<(NodeIndex, Vec<bool>)> =
            branches.iter().map(|b| (node(*b), closure(vec![node(*b)], &[join_n]))).collect();
        for n in graph.node_indices().filter(|n| *n != split_n && inside[n.index()]) {
            let Node::Step(id) = graph[n] else { continue };
            if !matches!(steps[id.index()].kind, model::StepKind::Split { .. }) {
                continue;
            }
            let from: Vec<String> = branch_reach.iter().filter(|(_, r)| r[n.index()]).map(|(b, _)| name(*b)).collect();
            if from.len() > 1 {
                problems.push(
                    Diagnostic::new(
                        Code::BranchLeavesSplit,
                        span(n),
                        format!(
                            "split `{}` can be reached from {} branches of split `{split_name}` ({}), so it could run twice at once",
                            name(n),
                            from.len(),
                            from.join(", ")
                        ),
                    )
                    .note(span(split_n), "the outer split")
                    .hint("its join could not tell the two runs apart: reach the inner split from one branch only"),
                );
            }
        }
        // Another split's join reached from inside without its split (and not already above).
        for n in graph.node_indices().filter(|n| inside[n.index()] && !outside(*n)) {
            let Node::Step(id) = graph[n] else { continue };
            if let model::StepKind::Join { split: other, .. } = &steps[id.index()].kind {
                if *other != split && !inside[node(*other).index()] {
                    problems.push(Diagnostic::new(
                        Code::BranchLeavesSplit,
                        span(n),
                        format!(
                            "join `{}` of split `{}` is reached from the branches of split `{split_name}` without passing join `{join_name}`",
                            name(n),
                            steps[other.index()].name
                        ),
                    ).hint(format!("lead the inner branches to `{join_name}` first")));
                }
            }
        }
        problems
    }

    pub(super) fn warn_unused_fields(&mut self) {
        for f in &self.ast.fields {
            if !self.used_fields.contains(&f.name.name) {
                self.err(
                    Diagnostic::new(
                        Code::UnusedField,
                        f.name.span.clone(),
                        format!("field `{}` is never used", f.name.name),
                    )
                    .hint("ask for it in a task (`asks`), use it in a condition, mark it `required`, or remove it"),
                );
            }
        }
    }
}

/// The splits whose join goes on at the first or N-th arrival, with that join.
pub(super) fn quorum_splits(steps: &[model::Step]) -> Vec<(StepId, StepId)> {
    steps
        .iter()
        .filter_map(|s| match &s.kind {
            model::StepKind::Join { split, quorum: Some(_), .. } if split.index() < steps.len() => Some((*split, s.id)),
            _ => None,
        })
        .collect()
}

/// The nodes a split's branches reach before its join.
pub(super) fn region_of(graph: &DiGraph<Node, EdgeKind>, split: StepId, join: StepId) -> Vec<NodeIndex> {
    let (split_n, join_n) = (NodeIndex::new(split.index() + 1), NodeIndex::new(join.index() + 1));
    let mut seen = vec![false; graph.node_count()];
    let mut todo: Vec<NodeIndex> = graph.neighbors(split_n).collect();
    let mut out = Vec::new();
    while let Some(n) = todo.pop() {
        if n == join_n || std::mem::replace(&mut seen[n.index()], true) {
            continue;
        }
        out.push(n);
        todo.extend(graph.neighbors(n));
    }
    out
}

/// Whether `from` reaches `to` (following any edge).
pub(super) fn reaches_avoiding(graph: &DiGraph<Node, EdgeKind>, from: NodeIndex, to: NodeIndex) -> bool {
    let mut bfs = Bfs::new(graph, from);
    while let Some(n) = bfs.next(graph) {
        if n == to {
            return true;
        }
    }
    false
}

pub(super) fn build_graph(
    start: &Transition,
    interrupts: &[(String, StepId)],
    steps: &[model::Step],
) -> DiGraph<Node, EdgeKind> {
    let mut g = DiGraph::with_capacity(steps.len() + 1, steps.len() * 2);
    g.add_node(Node::Start);
    for s in steps {
        g.add_node(Node::Step(s.id));
    }
    let node = |id: StepId| NodeIndex::new(id.index() + 1);
    let valid = |id: StepId| id.index() < steps.len();
    let add_transition = |g: &mut DiGraph<Node, EdgeKind>, from: NodeIndex, t: &Transition| match t {
        Transition::To(to) if valid(*to) => {
            g.add_edge(from, node(*to), EdgeKind::Next);
        }
        Transition::To(_) => {}
        Transition::Decide { branches, otherwise } => {
            for (cond, to) in branches.iter().filter(|b| valid(b.1)) {
                g.add_edge(from, node(*to), EdgeKind::Branch(crate::fmt::expr_to_string(cond)));
            }
            if let Some(o) = otherwise.filter(|o| valid(*o)) {
                g.add_edge(from, node(o), EdgeKind::Else);
            }
        }
    };
    add_transition(&mut g, NodeIndex::new(0), start);
    // An interrupt can happen at any time: it is drawn, and reached, from the start.
    for (message, to) in interrupts.iter().filter(|(_, to)| valid(*to)) {
        g.add_edge(NodeIndex::new(0), node(*to), EdgeKind::Message(message.clone()));
    }
    for s in steps {
        let from = node(s.id);
        match &s.kind {
            model::StepKind::Task(t) => {
                add_transition(&mut g, from, &t.next);
                for h in &t.handlers {
                    for a in &h.actions {
                        if let model::Action::Goto(to) = a {
                            if valid(*to) {
                                let kind = match &h.trigger {
                                    model::Trigger::Message(m) => EdgeKind::Message(m.clone()),
                                    _ => EdgeKind::Overdue,
                                };
                                g.add_edge(from, node(*to), kind);
                            }
                        }
                    }
                }
            }
            model::StepKind::Auto { next, .. } => add_transition(&mut g, from, next),
            model::StepKind::Wait(w) => {
                if let Some(next) = &w.next {
                    add_transition(&mut g, from, next);
                }
                for (m, to) in w.on_message.iter().filter(|m| valid(m.1)) {
                    g.add_edge(from, node(*to), EdgeKind::Message(m.clone()));
                }
                if let Some((_, to)) = w.on_timeout.as_ref().filter(|t| valid(t.1)) {
                    g.add_edge(from, node(*to), EdgeKind::Timeout);
                }
            }
            model::StepKind::Split { branches, guards, .. } => {
                for (b, guard) in branches.iter().zip(guards).filter(|(b, _)| valid(**b)) {
                    // A branch's condition labels its edge in diagrams.
                    let kind =
                        guard.as_ref().map_or(EdgeKind::Parallel, |g| EdgeKind::Branch(crate::fmt::expr_to_string(g)));
                    g.add_edge(from, node(*b), kind);
                }
            }
            model::StepKind::Join { next, .. } => add_transition(&mut g, from, next),
            model::StepKind::Call(c) => add_transition(&mut g, from, &c.next),
            model::StepKind::End => {}
        }
    }
    g
}

/// Fills in each split's join once the graph checks have passed.
pub(super) fn link_joins(process: &mut model::Process) {
    let joins: Vec<(StepId, StepId)> = process
        .steps
        .iter()
        .filter_map(|s| match s.kind {
            model::StepKind::Join { split, .. } => Some((split, s.id)),
            _ => None,
        })
        .collect();
    for (split, join) in joins {
        let mut inside = BTreeSet::new();
        if let model::StepKind::Split { branches, .. } = &process.steps[split.index()].kind {
            let mut todo = branches.clone();
            while let Some(s) = todo.pop() {
                if s != join && inside.insert(s) {
                    todo.extend(process.graph.neighbors(process.node(s)).filter_map(|n| match process.graph[n] {
                        Node::Step(id) => Some(id),
                        Node::Start => None,
                    }));
                }
            }
        }
        if let model::StepKind::Split { join: j, region, .. } = &mut process.steps[split.index()].kind {
            *j = join;
            *region = inside.into_iter().collect();
        }
    }
}
