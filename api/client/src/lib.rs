//! A client of the caseflow HTTP API, generated from `docs/openapi.json` at build time (see
//! `build.rs`). The HTTP integration tests drive a complaint case with it, so the document and
//! the server cannot disagree unnoticed.
#![allow(clippy::all, unused, missing_docs, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/client.rs"));
