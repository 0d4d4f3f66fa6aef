pub use caseflow_dsl;
