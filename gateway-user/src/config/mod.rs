//! Configuration: agentgateway-compatible raw YAML types, `$VAR` expansion, validation that names
//! the YAML path and value, and compilation into an immutable runtime snapshot.
//!
//! Loading is three steps, each reporting errors with the YAML path they concern:
//! 1. parse YAML into a generic tree and expand `$VAR` / `${VAR}` in string values;
//! 2. deserialize into `raw::RawRoot` (unknown fields and bad types are errors);
//! 3. `compile` checks cross-field rules and builds the `Snapshot` the proxy runs on.

pub mod compile;
pub mod ebpf;
pub mod raw;
pub mod restart;
pub mod snapshot;
pub mod telemetry;
pub mod tls;

use std::fmt;
use std::path::Path;

pub use snapshot::Snapshot;

/// One configuration problem, located by its YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted YAML path, e.g. `binds[0].listeners[0].routes[1].backends[0].ai.provider`.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "config: {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one load, so `--validate-only` can print them all at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Where the config came from, for reload and `/config_dump`.
#[derive(Clone, Debug)]
pub enum Source {
    File(std::path::PathBuf),
    Inline(String),
    Embedded,
}

/// Reads and compiles a config file.
pub fn load_file(path: &Path) -> Result<Snapshot, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "",
            format!(
                "cannot read {}: {e} (check the path given to -f)",
                path.display()
            ),
        )
    })?;
    load_str(&text, Source::File(path.to_path_buf()))
}

/// Parses, expands, validates and compiles config text.
pub fn load_str(text: &str, source: Source) -> Result<Snapshot, ConfigErrors> {
    let env = |name: &str| std::env::var(name).ok();
    let raw = parse_raw(text, &env)?;
    compile::compile(raw, source, text)
}

/// Steps 1 and 2: YAML → env-expanded tree → `RawRoot`.
pub fn parse_raw(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<raw::RawRoot, ConfigErrors> {
    let mut tree: yaml_serde::Value = if text.trim().is_empty() {
        yaml_serde::Value::Mapping(Default::default())
    } else {
        yaml_serde::from_str(text).map_err(|e| {
            let loc = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError::new("", format!("invalid YAML{loc}: {e}"))
        })?
    };
    if tree.is_null() {
        tree = yaml_serde::Value::Mapping(Default::default());
    }
    let mut errors = Vec::new();
    expand_env(&mut tree, &mut String::new(), env, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    serde_path_to_error::deserialize::<_, raw::RawRoot>(tree).map_err(|e| {
        let path = e.path().to_string();
        let message = hide_secret_value(&path, e.into_inner().to_string());
        ConfigErrors(vec![ConfigError::new(path, message)])
    })
}

/// serde quotes the offending value (`invalid type: string "sk-...", expected ...`); under a
/// field that holds credentials that value is a secret, and a failed reload logs it.
fn hide_secret_value(path: &str, message: String) -> String {
    let p = path.to_ascii_lowercase();
    let secret = [
        "key",
        "token",
        "secret",
        "password",
        "authorization",
        "credential",
        "headers",
        "backendauth",
    ]
    .iter()
    .any(|s| p.contains(s));
    if !secret {
        return message;
    }
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if quoted {
                out.push_str("<redacted>\"");
            } else {
                out.push('"');
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    if quoted {
        out.push_str("<redacted>");
    }
    out
}

/// Replaces `$VAR` (whole value) and `${VAR}` (anywhere) in string scalars. A missing variable is
/// an error naming the path, never an empty secret sent upstream.
fn expand_env(
    v: &mut yaml_serde::Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match v {
        yaml_serde::Value::String(s) => match expand_str(s, env) {
            Ok(Some(new)) => *s = new,
            Ok(None) => {}
            Err(var) => errors.push(ConfigError::new(
                path.clone(),
                format!("environment variable {var} is not set"),
            )),
        },
        yaml_serde::Value::Sequence(seq) => {
            for (i, item) in seq.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(item, path, env, errors);
                path.truncate(len);
            }
        }
        yaml_serde::Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let len = path.len();
                let key = k
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{k:?}"));
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key);
                expand_env(item, path, env, errors);
                path.truncate(len);
            }
        }
        yaml_serde::Value::Tagged(t) => expand_env(&mut t.value, path, env, errors),
        _ => {}
    }
}

/// `Ok(None)` when there is nothing to expand; `Err(var)` names a missing variable.
fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if let Some(name) = s.strip_prefix('$')
        && !name.is_empty()
        && name.chars().all(is_ident)
        && !name.starts_with(|c: char| c.is_ascii_digit())
    {
        return env(name).map(Some).ok_or_else(|| name.to_owned());
    }
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if after[..end].chars().all(is_ident) && end > 0 => {
                let name = &after[..end];
                out.push_str(&env(name).ok_or_else(|| name.to_owned())?);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

pub use crate::ctx::redact::Secret;

/// The config the gateway runs when started without `-f`/`-c`: an offline demo that routes to
/// a provider simulator on loopback (see README).
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

#[cfg(test)]
mod tests;
