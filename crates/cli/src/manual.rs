//! Documentation generated from the command-line definition itself, so that it never disagrees
//! with the parser: shell completion scripts (`peerline completions SHELL`) and the roff man
//! page (`peerline manpage`, hidden: scripts/man installs it).

use clap::CommandFactory;

use crate::args::Args;

/// Prints the completion script for `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut Args::command(), "peerline", &mut std::io::stdout());
}

/// Prints the man page, peerline(1), in roff on standard output.
pub fn manpage() -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Args::command()).render(&mut page)?;
    std::io::Write::write_all(&mut std::io::stdout().lock(), &page)?;
    Ok(())
}
