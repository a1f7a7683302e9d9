//! Errors of the YAML files the exporter reads, naming file, line and field.

/// Why a configuration file was not loaded. Its Display is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not valid. `message` starts
    /// with the field's path, as in `networks[2].cidr: ...`.
    #[error("{origin}:{line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
}

impl ConfigError {
    pub fn from_yaml(origin: &str, error: &serde_yaml_ng::Error) -> ConfigError {
        let mut message = error.to_string();
        // serde_yaml_ng appends " at line L column C"; the line moves to
        // the front, where editors and people look for it.
        let line = match error.location() {
            Some(location) => {
                let suffix = format!(" at line {} column {}", location.line(), location.column());
                message = message.replacen(&suffix, "", 1);
                location.line()
            }
            None => 1,
        };
        ConfigError::Invalid {
            origin: origin.to_string(),
            line,
            message: message.replace('\n', " "),
        }
    }
}

/// For the parsers' property tests: `error` is a parse error of `origin`
/// naming a line of `text` (or the one after its end) in one line.
#[cfg(test)]
pub fn check_names_a_line(
    error: &ConfigError,
    origin: &str,
    text: &str,
) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::{prop_assert, prop_assert_eq};
    let ConfigError::Invalid {
        origin: named,
        line,
        message,
    } = error
    else {
        let why = format!("not a parse error: {error}");
        return Err(proptest::test_runner::TestCaseError::fail(why));
    };
    prop_assert_eq!(named.as_str(), origin);
    prop_assert!(
        *line >= 1 && *line <= text.lines().count().max(1) + 1,
        "line {line}"
    );
    prop_assert!(
        !message.is_empty() && !message.contains('\n'),
        "{message:?}"
    );
    Ok(())
}
