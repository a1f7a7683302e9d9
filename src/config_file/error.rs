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
