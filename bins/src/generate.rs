//! `pre-deploy completions SHELL` and `pre-deploy man`, generated from the clap definition.

use clap::CommandFactory;

use crate::cli::Cli;

/// Prints the completion script of `shell` on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> u8 {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "pre-deploy", &mut std::io::stdout());
    0
}

/// Prints the roff man page on stdout.
pub(crate) fn man() -> u8 {
    let man = clap_mangen::Man::new(Cli::command());
    let mut page = Vec::new();
    if let Err(e) = man.render(&mut page) {
        eprintln!("pre-deploy: cannot render the man page: {e}");
        return deploy_gate::ExitCode::Internal.code();
    }
    print!("{}", th_first(&String::from_utf8_lossy(&page)));
    0
}

/// The page with its `.TH` line first (clap_mangen puts string definitions before it; `man`
/// and `file` recognise a page by a leading `.TH`, and the definitions work as well after it).
fn th_first(page: &str) -> String {
    let Some(th) = page.lines().find(|l| l.starts_with(".TH ")) else {
        return page.to_owned();
    };
    let mut out = format!("{th}\n");
    for line in page.lines().filter(|l| *l != th) {
        out.push_str(line);
        out.push('\n');
    }
    out
}
