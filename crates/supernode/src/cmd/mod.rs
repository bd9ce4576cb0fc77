//! Request handlers, one file per topic, each an `impl Session` block.

mod account;
mod budget;
mod calls;
mod contacts;
mod messages;
mod turn;
