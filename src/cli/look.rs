//! How the CLI's text looks on the stream it goes to: fitted to a terminal's width and
//! coloured there, plain when piped or redirected. `--color` (cargo's and ripgrep's flag)
//! overrides; `NO_COLOR` (no-color.org: set and not empty) and `TERM=dumb` turn colour off
//! in `auto`.

use clap::ValueEnum;
use reports::table::Look;
use std::io::IsTerminal;
use std::sync::OnceLock;

/// When to colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set or TERM is dumb.
    #[default]
    Auto,
    /// Always (also when piped).
    Always,
    /// Never.
    Never,
}

static CHOICE: OnceLock<ColorWhen> = OnceLock::new();

/// Records `--color` for the rest of the process (set once, by `main`'s dispatch).
pub(super) fn set(choice: ColorWhen) {
    let _ = CHOICE.set(choice);
}

/// Which stream text goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The look of text written to `stream`.
pub(super) fn of(stream: Stream) -> Look {
    let (terminal, size) = match stream {
        Stream::Stdout => (
            std::io::stdout().is_terminal(),
            console::Term::stdout().size_checked(),
        ),
        Stream::Stderr => (
            std::io::stderr().is_terminal(),
            console::Term::stderr().size_checked(),
        ),
    };
    let env_allows = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
    let color = match CHOICE.get().copied().unwrap_or_default() {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => terminal && env_allows,
    };
    // The terminal's own size, else `COLUMNS` (what shells export), on a terminal only.
    let columns = || std::env::var("COLUMNS").ok()?.trim().parse::<usize>().ok();
    let width = size.map(|(_, cols)| usize::from(cols)).or_else(columns);
    Look {
        width: width.filter(|w| terminal && *w > 0),
        color,
    }
}

/// Prints `warning: TEXT` on stderr, the word in yellow on a terminal, wrapped to its width.
pub(super) fn warn(text: &str) {
    eprintln!("{}", of(Stream::Stderr).warning(text));
}
