//! Typed library errors. Every variant carries enough context (file, record, flag) for a user to
//! fix the input; the binary maps [`Error::is_user_error`] to exit code 2.
use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a file a bad record sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// 1-based line of a line-oriented file (JSONL).
    Line(usize),
    /// 0-based index into a JSON list.
    Index(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Index(n) => write!(f, "record {n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    /// (The io error is shown in the message and deliberately not chained as a `source`, so
    /// `{:#}` does not print it twice.)
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },

    /// A whole file is unusable (empty, wrong format, truncated gzip, invalid UTF-8 …).
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },

    /// One record of a file is malformed.
    #[error("{}: {location}: {message}", path.display())]
    Record {
        path: PathBuf,
        location: Location,
        message: String,
    },

    /// Several malformed records (reported together so the user can fix them in one pass).
    #[error("{}: {count} malformed record(s); first: {first}{hint}", path.display(), hint = if *skippable { " (pass --skip-invalid to skip and count them)" } else { "" })]
    Records {
        path: PathBuf,
        count: usize,
        first: String,
        skippable: bool,
    },

    /// A recipe / experiment / probe spec / config file is invalid.
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    /// A command-line value or API argument is invalid.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },

    /// Tokenizer loading, training or encoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Model configuration or checkpoint problems (unsupported architecture, missing tensor …).
    #[error("model: {0}")]
    Model(String),

    /// Network fetch failed or a checksum did not match.
    #[error("fetch {url}: {message}")]
    Fetch { url: String, message: String },

    /// A bug or an environment failure that is not the user's input.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            err: source,
        }
    }
    pub fn file(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::File {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
    pub fn record(path: impl AsRef<Path>, location: Location, message: impl Into<String>) -> Self {
        Error::Record {
            path: path.as_ref().to_path_buf(),
            location,
            message: message.into(),
        }
    }
    pub fn config(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
    pub fn model(message: impl Into<String>) -> Self {
        Error::Model(message.into())
    }

    /// True when the error is caused by the user's input (files, flags, configs): exit code 2.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Internal(_))
    }
}
