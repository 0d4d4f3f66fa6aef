//! Every diagram caseflow draws is well-formed XML: the SVG of each shipped process, of each
//! pattern and migration process, of generated processes of every shape, and of labels full of
//! characters XML must escape. A browser forgives a broken attribute; an XML parser, the
//! console's diagram and any tool that embeds the SVG do not.

use caseflow_dsl::{check_files, graph};
use caseflow_tests::*;

fn well_formed(name: &str, svg: &str) {
    if let Err(e) = roxmltree::Document::parse(svg) {
        panic!("{name}: the SVG is not well-formed XML: {e}");
    }
}

#[test]
fn every_shipped_and_test_process_draws_well_formed_svg() {
    let mut drawn = 0;
    for folder in
        ["processes", "tests/patterns", "tests/migrations", "tests/migrations/support", "tests/migrations/ticket"]
    {
        for path in files(folder, "flow") {
            // Each file with the shipped processes it may call (versions of one process, as in
            // tests/migrations, are drawn one by one).
            let this = source_file(&path);
            let others = shipped_processes().into_iter().filter(|s| s.name != this.name);
            let sources: Vec<_> = std::iter::once(this.clone()).chain(others).collect();
            let report = check_files(&sources, Some(&shipped_catalog())).remove(0);
            let model =
                report.checked.process.unwrap_or_else(|| panic!("{}: {:?}", report.name, report.checked.diagnostics));
            well_formed(&report.name, &graph::to_svg(&model).expect("draws"));
            drawn += 1;
        }
    }
    assert!(drawn >= 25, "only {drawn} diagrams drawn");
}

#[test]
fn generated_processes_and_awkward_labels_draw_well_formed_svg() {
    for n in [1, 7, 60, 300] {
        for source in [caseflow_dsl::synth::process_with_steps(n), caseflow_dsl::synth::skipping_decisions(n)] {
            let model = caseflow_dsl::compile(&source, &Default::default()).process.expect("checks");
            well_formed(&format!("{n} steps"), &graph::to_svg(&model).expect("draws"));
        }
    }
    let source = r#"process p "<&\"'>" {
  source "t"
  start -> a
  task a "a < b & \"c\" > 'd'" {
    assign role cs_rep
    due 1h
    when overdue: escalate to role cs_manager
    -> decide {
      when true -> done
      else -> a
    }
  }
  end done "]]> & <!--"
}
"#;
    let model = caseflow_dsl::compile(source, &Default::default()).process.expect("checks");
    let svg = graph::to_svg(&model).expect("draws");
    well_formed("awkward labels", &svg);
    assert!(svg.contains("&lt;") && svg.contains("&amp;"), "{svg}");
}
