//! Request handlers, one file per topic, each an `impl Session` block.

mod account;
mod calls;
mod contacts;
mod messages;
mod turn;
