//! Every `pre-deploy …` command shown in the README and under `docs/` parses with the command
//! line it documents: a renamed flag or subcommand fails this test, not a reader.

use std::path::{Path, PathBuf};

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::Cli;

/// The README and every page under `docs/`.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The `pre-deploy` invocations in a page's shell code blocks, as argument lists: each line
/// (or each part of it between `&&`, `||`, `;` and `|`) that runs `pre-deploy`, cut at a
/// comment or a redirection; a `$ ` prompt and leading `VAR=value` assignments are skipped.
fn invocations(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut in_shell = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            in_shell = !in_shell && matches!(lang.trim(), "sh" | "bash" | "console" | "shell");
            continue;
        }
        if !in_shell {
            continue;
        }
        let line = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        let Some(words) = shlex::split(&strip_comment(line)) else {
            continue;
        };
        for part in words.split(|w| matches!(w.as_str(), "&&" | "||" | ";" | "|")) {
            let mut part = part.iter().skip_while(|w| is_assignment(w)).peekable();
            if part.peek().map(|w| w.as_str()) != Some("pre-deploy") {
                continue;
            }
            let args: Vec<String> = part
                .take_while(|w| !w.starts_with('>') && !w.starts_with("2>") && *w != "<")
                .cloned()
                .collect();
            found.push((n + 1, args));
        }
    }
    found
}

/// The line without a trailing `# comment` (a `#` that starts a word, outside quotes).
fn strip_comment(line: &str) -> String {
    let (mut single, mut double, mut previous) = (false, false, ' ');
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => return line[..i].into(),
            _ => {}
        }
        previous = c;
    }
    line.into()
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[test]
fn every_documented_command_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        for (line, args) in invocations(&text) {
            checked += 1;
            if let Err(e) = Cli::try_parse_from(&args)
                && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
            {
                failures.push(format!(
                    "{}:{line}: {}\n{e}",
                    page.display(),
                    args.join(" ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The pages show dozens of commands; finding few means the extraction broke.
    assert!(checked > 40, "only {checked} documented commands found");
}

#[test]
fn extraction_finds_commands_after_assignments_and_operators() {
    let page = "```sh\n$ DATABASE_URL=postgres://a/b pre-deploy run -- ./deploy.sh  # deploy\n\
                pre-deploy check --commit \"$SHA\" && ./deploy.sh\n```\n\
                pre-deploy not-in-a-block\n";
    let found: Vec<Vec<String>> = invocations(page).into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        found,
        [
            vec!["pre-deploy", "run", "--", "./deploy.sh"],
            vec!["pre-deploy", "check", "--commit", "$SHA"],
        ]
    );
}
