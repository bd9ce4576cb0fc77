//! Request handlers, one file per topic, each an `impl Session` block.

mod account;
mod contacts;
mod messages;
