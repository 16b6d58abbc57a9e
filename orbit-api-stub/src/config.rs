//! The Orbit host config: which extensions to load, from where, with which settings.
//!
//! ```toml
//! [host]                      # optional; defaults follow the XDG directories
//! config_dir = "~/.config/orbit"
//!
//! [extensions.pulsar]
//! enabled = true
//! library = "../target/release/libpulsar_ext.so"   # relative to this file
//! [extensions.pulsar.settings]
//! log_level = "info"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::HostDirs;

/// A parsed host config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Overrides for the host directories.
    #[serde(default)]
    pub host: HostSection,
    /// Extensions by name.
    #[serde(default)]
    pub extensions: BTreeMap<String, ExtensionEntry>,
}

/// `[host]`: where the host keeps its files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// Configuration directory.
    pub config_dir: Option<PathBuf>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Runtime directory (sockets).
    pub runtime_dir: Option<PathBuf>,
}

/// `[extensions.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionEntry {
    /// Only enabled extensions are loaded.
    #[serde(default)]
    pub enabled: bool,
    /// The shared library, absolute or relative to the config file.
    pub library: PathBuf,
    /// Handed to the extension as its settings table.
    #[serde(default)]
    pub settings: toml::Table,
}

/// Why a host config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read Orbit config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid config.
    #[error("invalid Orbit config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What TOML or the schema said.
        source: toml::de::Error,
    },
}

impl HostConfig {
    /// Reads and parses `path`; relative library paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: HostConfig =
            toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for entry in config.extensions.values_mut() {
            entry.library = expand_home(&entry.library);
            if entry.library.is_relative() {
                entry.library = base.join(&entry.library);
            }
        }
        Ok(config)
    }

    /// The host directories: the `[host]` overrides over the per-user defaults.
    pub fn dirs(&self) -> HostDirs {
        let defaults = HostDirs::for_current_user();
        let pick = |over: &Option<PathBuf>, default: PathBuf| {
            over.as_deref().map(expand_home).unwrap_or(default)
        };
        HostDirs {
            config_dir: pick(&self.host.config_dir, defaults.config_dir),
            data_dir: pick(&self.host.data_dir, defaults.data_dir),
            runtime_dir: pick(&self.host.runtime_dir, defaults.runtime_dir),
        }
    }

    /// The enabled extensions, in name order.
    pub fn enabled(&self) -> impl Iterator<Item = (&str, &ExtensionEntry)> {
        self.extensions
            .iter()
            .filter(|(_, entry)| entry.enabled)
            .map(|(name, entry)| (name.as_str(), entry))
    }
}

impl ExtensionEntry {
    /// The settings table as JSON, the form [`crate::ExtensionContext`] carries.
    pub fn settings_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.settings).unwrap_or_default()
    }
}

/// Expands a leading `~/` to `$HOME/`.
pub fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(rest))
            .unwrap_or_else(|| path.to_owned()),
        Err(_) => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_library_paths_resolve_against_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("orbit.toml");
        std::fs::write(
            &file,
            "[extensions.a]\nenabled = true\nlibrary = \"lib/liba.so\"\n[extensions.a.settings]\nx = 1\n\
             [extensions.b]\nlibrary = \"/abs/libb.so\"\n",
        )
        .unwrap();
        let config = HostConfig::load(&file).unwrap();
        let enabled: Vec<_> = config.enabled().collect();
        assert_eq!(enabled.len(), 1, "only enabled extensions are listed");
        assert_eq!(enabled[0].1.library, dir.path().join("lib/liba.so"));
        assert_eq!(enabled[0].1.settings_json()["x"], 1);
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("orbit.toml");
        std::fs::write(
            &file,
            "[extensions.a]\nenabeld = true\nlibrary = \"x.so\"\n",
        )
        .unwrap();
        let err = HostConfig::load(&file).unwrap_err().to_string();
        assert!(
            err.contains("orbit.toml") && err.contains("enabeld"),
            "{err}"
        );
    }
}
