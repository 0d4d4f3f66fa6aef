//! What must hold of a case after every command: checked before a command counts.

use crate::case::{Instance, Status, TimerKind, Waiting};
use caseflow_dsl::model::{Process, StepId, StepKind};

/// What must hold of an instance after every command. A live case always has work in it:
/// every token waits for a task, a timer, a message, a sub-process or a retry, so a case can
/// never be running with nothing that could move it on.
pub fn invariants(model: &Process, inst: &Instance) -> Result<(), String> {
    if inst.status.is_ended() {
        if !(inst.tokens.is_empty() && inst.tasks.is_empty() && inst.timers.is_empty() && inst.children.is_empty()) {
            return Err(format!("{} but still holds tokens, tasks or timers", inst.status.name()));
        }
        return Ok(());
    }
    if inst.tokens.is_empty() {
        return Err(format!("{} with no token: nothing could ever move it on", inst.status.name()));
    }
    for (id, t) in &inst.tokens {
        let step = model.steps.get(t.step.index()).ok_or_else(|| format!("token {id} is on no step"))?;
        match (&t.waiting, &step.kind) {
            (Waiting::Task(seq), StepKind::Task(_)) => {
                if !inst.tasks.get(seq).is_some_and(|task| task.token == *id && task.step == t.step) {
                    return Err(format!("token {id} waits for task {seq}, which is not open at `{}`", step.name));
                }
            }
            (Waiting::Wait, StepKind::Wait(w)) => {
                let timed = inst.timers.values().any(
                    |x| matches!(x.kind, TimerKind::Wait { token } | TimerKind::Timeout { token } if token == *id),
                );
                if !timed && w.on_message.is_empty() {
                    return Err(format!("token {id} waits at `{}` for no timer and no message", step.name));
                }
            }
            (Waiting::Child, StepKind::Call(_)) => {}
            (Waiting::Incident, _) if matches!(inst.status, Status::Incident { .. }) => {}
            (w, _) => return Err(format!("token {id} is {w:?} at step `{}`", step.name)),
        }
    }
    for (id, t) in &inst.tokens {
        if let Some(g) = t.group {
            if inst.each_groups.get(&g).is_none_or(|g| g.step != t.step) {
                return Err(format!("token {id} belongs to no group of instances at its step"));
            }
        }
    }
    for (g, group) in &inst.each_groups {
        if !inst.tokens.values().any(|t| t.group == Some(*g)) {
            let name = model.steps.get(group.step.index()).map_or("?", |s| s.name.as_str());
            return Err(format!("the instances of group {g} at `{name}` have no token"));
        }
    }
    for token in inst.children.keys() {
        if !inst.tokens.get(token).is_some_and(|t| t.waiting == Waiting::Child) {
            return Err(format!("token {token} has a sub-process case but does not wait for one"));
        }
    }
    for task in inst.tasks.values() {
        if !inst.tokens.get(&task.token).is_some_and(|k| k.waiting == Waiting::Task(task.seq)) {
            return Err(format!("task {} has no token waiting for it", task.seq));
        }
    }
    for (join, arrived) in &inst.join_arrivals {
        if let Some(needed) = join_needs(model, inst, *join) {
            if *arrived >= needed {
                let name = model.steps.get(join.index()).map_or("?", |s| s.name.as_str());
                return Err(format!("the join `{name}` holds {arrived} arrivals of {needed} and has not fired"));
            }
        }
    }
    Ok(())
}

/// How many arrivals make a join fire in this case: its quorum, or every branch its split
/// started.
pub(crate) fn join_needs(model: &Process, inst: &Instance, join: StepId) -> Option<u32> {
    let StepKind::Join { split, quorum, .. } = &model.steps.get(join.index())?.kind else { return None };
    let StepKind::Split { branches, .. } = &model.steps.get(split.index())?.kind else { return None };
    let started = inst.join_expected.get(&join).copied().unwrap_or(branches.len() as u32);
    Some(quorum.map_or(started, |q| q.min(started)))
}
