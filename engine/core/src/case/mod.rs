//! The deterministic core: a process instance is a plain value; a command and the current
//! instant go in, the new state and a list of effects come out.
//!
//! No I/O, no clock, no randomness: the same model, rules, workload, instance, command and
//! instant always give the same result. The storage shell persists the instance, its tasks,
//! timers and history in one atomic write; the timer driver turns due timers back into
//! `Command::FireTimer`.
//!
//! A command either succeeds (state changed, effects returned) or fails with a
//! `CommandError` and the instance is left exactly as it was: `apply` works on a copy.
//!
//! The map: `instance` (the case as a value), `command` (commands, refusals, `apply` and the
//! table of which statuses take which command), `commands/` (one handler per command),
//! `event` (history and effects), `run` (a command in progress), `flow` (tokens through the
//! graph), `fields`, `timers`, `assign`, `workload` (what the shell tells the core of current
//! work) and `invariants` (what holds after every command).

mod act;
mod assign;
mod command;
mod commands;
mod event;
mod fields;
mod flow;
mod instance;
mod invariants;
pub mod migrate;
mod run;
mod timers;
mod workload;

pub use act::Act;
pub use command::{
    allowed, applied, apply, lookups, Command, CommandError, CommandKind, Context, LookupResult, Outcome,
};
pub use event::{Effect, HistoryEntry, HistoryEvent};
pub use fields::conform;
pub use instance::{
    Actor, Draft, EachGroup, Instance, InstanceId, KeptMessage, Started, Status, StatusKind, Task, TaskId, Timer,
    TimerKind, Token, Waiting, REMINDERS_MAX, STEPS_PER_COMMAND_MAX, TOKENS_MAX,
};
pub use invariants::invariants;
pub use workload::{tally_entries, NoWorkload, Workload};
