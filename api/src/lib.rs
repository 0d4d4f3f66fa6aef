//! The `caseflow` server as a library, so that tests can build the router without a socket.

pub mod config;
pub mod console;
pub mod listen;
pub mod lsp;
pub mod passwords;
pub mod server;
pub mod webhooks;
