//! Synthetic processes of any size, for benchmarks and limit tests.
//!
//! The shape mixes every kind of step a real process has: human tasks with decisions and
//! deadlines, automatic steps, timers, and parallel split/join.

use std::fmt::Write;

/// Steps in one repeated block of `process_with_steps`.
pub const BLOCK_STEPS: usize = 7;

/// A valid process with about `steps` steps (rounded up to whole blocks, plus the end).
pub fn process_with_steps(steps: usize) -> String {
    let blocks = steps.div_ceil(BLOCK_STEPS).max(1);
    let mut s = String::with_capacity(blocks * 700);
    s.push_str("process synthetic \"合成流程\" {\n  source \"synthetic\"\n");
    s.push_str(
        "  fields {\n    urgency: choice(high, medium, low) required\n    count: int = 0\n    note: text\n  }\n",
    );
    s.push_str("  start -> t0\n");
    for i in 0..blocks {
        let next = if i + 1 == blocks { "done".to_string() } else { format!("t{}", i + 1) };
        let _ = write!(
            s,
            r#"
  task t{i} "任务 {i}" {{
    assign role cs_rep
    due 1 workday
    when overdue: escalate to role cs_manager
    asks note
    -> decide {{
      when urgency == high and count < 10 -> a{i}
      else -> w{i}
    }}
  }}
  auto a{i} {{
    set count = count + 1
    -> w{i}
  }}
  wait w{i} {{
    for 1h
    -> s{i}
  }}
  split s{i} -> x{i}, y{i}
  task x{i} {{
    assign same as t{i}
    due 4 workhours
    -> j{i}
  }}
  auto y{i} {{
    set note = "branch {i}"
    -> j{i}
  }}
  join j{i} of s{i} -> {next}
"#
        );
    }
    s.push_str("\n  end done\n}\n");
    s
}

/// A process of `steps` tasks where each decision either goes on or skips ahead two steps:
/// the shape that made the old SVG layout take exponential time.
pub fn skipping_decisions(steps: usize) -> String {
    let mut s = String::from(
        "process skipping {\n  source \"synthetic\"\n  fields {\n    x: bool \"x\" = false\n  }\n  start -> s0\n",
    );
    let name = |i: usize| if i < steps { format!("s{i}") } else { "done".to_string() };
    for i in 0..steps {
        let _ = writeln!(
            s,
            "  task s{i} {{ assign role cs_rep due 1h asks x -> decide {{ when x -> {} else -> {} }} }}",
            name(i + 1),
            name(i + 3)
        );
    }
    s.push_str("  end done\n}\n");
    s
}
