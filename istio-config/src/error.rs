//! What can go wrong reading Istio YAML, and the warnings an import collects.

use crate::yaml::Pos;
use std::fmt;
use thiserror::Error;

/// Istio config that cannot be imported.
#[derive(Debug, Error)]
pub enum ImportError {
    /// A file or directory could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        reason: std::io::Error,
    },
    /// The YAML is malformed, or a document is not valid Istio config.
    #[error("{file}:{at}: {field}{sep}{message}", sep = if field.is_empty() { "" } else { ": " })]
    Invalid {
        /// The file.
        file: String,
        /// Where in it.
        at: Pos,
        /// The Istio path of the offending field (`spec.http[0].route[0].weight`), or empty
        /// for a syntax error.
        field: String,
        /// What was expected and what was found.
        message: String,
    },
}

/// How serious a note is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Config meshtwin reads but does not model: the twin may differ from the cluster.
    Warning,
    /// A document skipped because it is not networking config.
    Info,
}

/// A warning or note from an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// How serious.
    pub level: Level,
    /// The file.
    pub file: String,
    /// Where in it.
    pub at: Pos,
    /// The object (`VirtualService default/reviews`) or document (`Deployment reviews-v1`).
    pub object: String,
    /// The Istio path of the field, empty for a whole document.
    pub field: String,
    /// What the note says.
    pub message: String,
}

/// `file:line:col: object: field: message`; the level is the printer's to add.
impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.at, self.object)?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}
