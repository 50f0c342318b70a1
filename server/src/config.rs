//! Settings, layered: command-line flags, then environment variables (both through clap), then
//! an optional TOML file, then defaults.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The optional settings file (`--config`, `FLIGHTDECK_CONFIG`). Every key is optional.
///
/// ```toml
/// data_dir = "/var/lib/flightdeck"
/// database_url = "postgres://flightdeck@db.internal/flightdeck"
/// addr = "0.0.0.0:8080"
/// public_url = "https://deploy.example.com"
/// projects = ["/srv/studybuddy/flightdeck.yml"]
/// site_root = "/usr/share/flightdeck/site"
/// # Artifacts in an S3-compatible bucket (replicas on several machines share it); the endpoint,
/// # region and credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
/// # AWS_SECRET_ACCESS_KEY (and AWS_ALLOW_HTTP=true for a plain-http endpoint).
/// artifact_store = "s3://flightdeck-artifacts"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub addr: Option<SocketAddr>,
    pub public_url: Option<String>,
    #[serde(default)]
    pub projects: Vec<PathBuf>,
    pub site_root: Option<PathBuf>,
    pub max_connections: Option<u32>,
    pub artifact_store: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the settings file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "cannot choose a data directory: set --data-dir or FLIGHTDECK_DATA_DIR (no HOME is set)"
    )]
    NoDataDir,
}

impl FileSettings {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(FileSettings::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }
}

/// Where Flightdeck keeps its data when nothing says otherwise: `/var/lib/flightdeck` for root
/// (whose home the `postgres` user running the embedded cluster cannot enter), else
/// `$XDG_DATA_HOME/flightdeck`, else `~/.local/share/flightdeck`.
pub fn default_data_dir() -> Result<PathBuf, ConfigError> {
    if nix::unistd::Uid::effective().is_root() {
        return Ok(PathBuf::from("/var/lib/flightdeck"));
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("flightdeck"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".local/share/flightdeck"))
        .ok_or(ConfigError::NoDataDir)
}

/// Where the database is.
#[derive(Clone)]
pub enum DatabaseSetting {
    /// A server someone else runs.
    Url(String),
    /// The private cluster under the data directory.
    Embedded { data_dir: PathBuf },
}

impl std::fmt::Debug for DatabaseSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The URL may hold a password.
            DatabaseSetting::Url(_) => f.write_str("Url(..)"),
            DatabaseSetting::Embedded { data_dir } => f
                .debug_struct("Embedded")
                .field("data_dir", data_dir)
                .finish(),
        }
    }
}
