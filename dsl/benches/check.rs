//! Parse + check time of a generated 2,000-step process (target: under 50 ms).
//! Prints the median and spread of repeated runs: `cargo bench -p caseflow-dsl --bench check`.

use std::time::{Duration, Instant};

fn measure(label: &str, runs: usize, mut f: impl FnMut()) {
    f(); // warm-up
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<40} median {:>8.3} ms   p10 {:>8.3} ms   p90 {:>8.3} ms   ({runs} runs)",
        ms(times[runs / 2]),
        ms(times[runs / 10]),
        ms(times[runs * 9 / 10])
    );
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent; keep that quick.
    let runs = if std::env::args().any(|a| a == "--bench") { 50 } else { 2 };
    for steps in [200, 2_000, 9_990] {
        let source = caseflow_dsl::synth::process_with_steps(steps);
        let ctx = caseflow_dsl::CheckContext::default();
        let checked = caseflow_dsl::compile(&source, &ctx);
        assert!(checked.process.is_some(), "synthetic process must check clean: {:?}", checked.diagnostics);
        let n = checked.process.as_ref().map_or(0, |p| p.steps.len());
        measure(&format!("parse+check {n} steps ({} KiB)", source.len() / 1024), runs, || {
            std::hint::black_box(caseflow_dsl::compile(std::hint::black_box(&source), &ctx));
        });
        measure(&format!("parse only  {n} steps"), runs, || {
            std::hint::black_box(caseflow_dsl::parse::parse(std::hint::black_box(&source)).is_ok());
        });
        measure(&format!("fmt         {n} steps"), runs, || {
            std::hint::black_box(caseflow_dsl::fmt::format_source(&source).is_ok());
        });
    }
}
