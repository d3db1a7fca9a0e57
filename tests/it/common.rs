//! Helpers shared by the binary's test modules.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `meshtwin` binary with `args` and waits for it.
pub(crate) fn meshtwin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshtwin"))
        .args(args)
        .output()
        .expect("meshtwin runs")
}

/// A scratch directory unique to this process and test (`group` names the module).
pub(crate) fn scratch(group: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshtwin-{group}-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
