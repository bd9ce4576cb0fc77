//! Request handlers, one file per topic, each an `impl Session` block.

mod account;
mod budget;
mod call_log;
mod calls;
mod contacts;
mod messages;
mod turn;
