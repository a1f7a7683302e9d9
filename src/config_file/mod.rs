//! YAML files the exporter reads at start and keeps loaded: the labels file
//! (named networks) and the cost file (prices). Each is reloaded on SIGHUP
//! and when it changes on disk; a bad version is logged once and the one
//! before stays in force.

mod error;
mod keep_loaded;
mod watched;

#[cfg(test)]
pub use error::check_names_a_line;
pub use error::ConfigError;
pub use keep_loaded::{keep_loaded, FileStats};
pub use watched::WatchedFile;

/// What a configuration file holds once parsed.
pub trait Loadable: Sized + Send + Sync + 'static {
    /// What the file is called in logs, as in "labels not reloaded".
    const WHAT: &'static str;
    /// Parses the file's text; `origin` names it in errors. `before` is the
    /// version in force when this is a reload, for checks across versions.
    fn parse(text: &str, origin: &str, before: Option<&Self>) -> Result<Self, ConfigError>;
    /// How many entries it holds, for self-metrics.
    fn entries(&self) -> usize;
    /// What it holds, for logs: "12 named networks".
    fn summary(&self) -> String;
}
