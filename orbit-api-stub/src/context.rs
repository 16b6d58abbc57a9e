//! What the host hands an extension at start: its settings and the host's directories.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

/// The host's directories. Extensions derive their default file locations from these so that
/// everything Orbit owns lives in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDirs {
    /// Configuration files (`~/.config/orbit` by default).
    pub config_dir: PathBuf,
    /// Persistent data (`~/.local/share/orbit` by default).
    pub data_dir: PathBuf,
    /// Sockets and other per-boot files (`$XDG_RUNTIME_DIR/orbit`, or `config_dir`).
    pub runtime_dir: PathBuf,
}

impl HostDirs {
    /// Orbit's default directories for the current user, from `HOME` and the XDG variables.
    pub fn for_current_user() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let xdg = |var: &str, fallback: PathBuf| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or(fallback)
        };
        let config_dir = xdg("XDG_CONFIG_HOME", home.join(".config")).join("orbit");
        let data_dir = xdg("XDG_DATA_HOME", home.join(".local/share")).join("orbit");
        let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(|dir| PathBuf::from(dir).join("orbit"))
            .unwrap_or_else(|| config_dir.clone());
        Self {
            config_dir,
            data_dir,
            runtime_dir,
        }
    }
}

/// Everything an extension is given when it starts.
///
/// The settings travel as JSON text rather than as a `serde_json::Value`: the host and the
/// extension link separate copies of serde_json, and only `std` types are safe to share.
#[derive(Debug, Clone)]
pub struct ExtensionContext {
    name: String,
    settings_json: String,
    dirs: HostDirs,
}

impl ExtensionContext {
    /// Builds a context for extension `name` with its settings table (a JSON object).
    pub fn new(name: impl Into<String>, settings: &serde_json::Value, dirs: HostDirs) -> Self {
        Self {
            name: name.into(),
            settings_json: settings.to_string(),
            dirs,
        }
    }

    /// The name the host knows this extension by (`[extensions.NAME]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The extension's settings table, as JSON text.
    pub fn settings_json(&self) -> &str {
        &self.settings_json
    }

    /// The settings table deserialised into the extension's own type.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.settings_json)
    }

    /// The host's directories.
    pub fn dirs(&self) -> &HostDirs {
        &self.dirs
    }
}
