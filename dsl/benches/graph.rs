//! SVG diagram time (target: any valid file of up to 3,000 steps under 2 s), on the shape
//! that took the old layout exponential time: decisions that skip ahead, and the mixed
//! synthetic process. `cargo bench -p caseflow-dsl --bench graph` prints medians.

use std::time::{Duration, Instant};

fn main() {
    let runs = if std::env::args().any(|a| a == "--bench") { 11 } else { 1 };
    let cases = [
        ("skipping decisions", caseflow_dsl::synth::skipping_decisions(70)),
        ("skipping decisions", caseflow_dsl::synth::skipping_decisions(3_000)),
        ("mixed synthetic", caseflow_dsl::synth::process_with_steps(3_000)),
    ];
    for (label, source) in cases {
        let model = caseflow_dsl::compile(&source, &caseflow_dsl::CheckContext::default())
            .process
            .expect("synthetic processes check clean");
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(caseflow_dsl::graph::to_svg(&model).expect("draws"));
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "svg {label:<20} {:>5} steps: median {:>8.1} ms, max {:>8.1} ms ({runs} runs)",
            model.steps.len(),
            times[runs / 2].as_secs_f64() * 1e3,
            times[runs - 1].as_secs_f64() * 1e3
        );
    }
}
