//! One handler per command, each in its own file, and the table of which statuses each
//! command may be given in (`command::allowed`), checked once here before any handler runs.

mod cancel;
mod claim;
mod complete;
mod delegate;
mod fire_timer;
mod message;
mod reassign;
mod recompute_deadlines;
mod release;
mod retry;
mod start;
mod sub_process;
mod suspend;
mod update_fields;
mod work;

use crate::case::command::allowed;
use crate::case::run::Run;
use crate::case::{Command, CommandError};

impl Run<'_> {
    pub(crate) fn command(&mut self, command: Command) -> Result<(), CommandError> {
        if !allowed(command.kind(), self.inst.status.kind()) {
            return Err(CommandError::WrongStatus(self.inst.status.name()));
        }
        match command {
            Command::Start { fields } => self.start(fields),
            Command::CompleteTask { task, fields } => self.complete(task, fields),
            Command::Claim { task } => self.claim(task),
            Command::Release { task } => self.release(task),
            Command::StartWork { task } => self.start_work(task),
            Command::SaveDraft { task, fields } => self.save_draft(task, fields),
            Command::Reassign { task, to, reason } => self.reassign(task, to, reason),
            Command::Delegate { task, to, reason } => self.delegate(task, to, reason),
            Command::FireTimer { timer } => self.fire(timer),
            Command::Message { name } => self.message(&name),
            Command::UpdateFields { fields } => self.update_fields(fields),
            Command::ChildStarted { token, child } => self.child_started(token, child),
            Command::ChildEnded { token, fields } => self.child_ended(token, fields),
            Command::ChildCancelled { token, reason } => self.child_cancelled(token, reason),
            Command::Cancel { reason } => self.cancel(reason),
            Command::Suspend => self.suspend(),
            Command::Resume => self.resume(),
            Command::Retry => self.retry(),
            Command::RecomputeDeadlines => self.recompute_deadlines(),
        }
    }
}
