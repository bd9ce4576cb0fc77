//! The user's [`Settings`] on this device, in `settings.json`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io;

use super::files::{read_optional, write_atomic};
use super::{Home, HomeError};

const SETTINGS_FILE: &str = "settings.json";

/// The user's settings on this device (`peerline settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Calls offer only TURN relay candidates, so peers never learn this user's IP address
    /// (like Signal's "always relay calls"). Costs some latency; needs a relay.
    pub relay_only: bool,
}

impl Home {
    /// The user's settings (defaults when none were saved).
    pub fn settings(&self) -> Result<Settings, HomeError> {
        let path = self.dir.join(SETTINGS_FILE);
        match read_optional(&path)? {
            None => Ok(Settings::default()),
            Some(text) => serde_json::from_str(&text)
                .map_err(|source| HomeError::CorruptSettings { path, source }),
        }
    }

    /// Saves the user's settings.
    pub fn save_settings(&self, settings: &Settings) -> Result<(), HomeError> {
        let path = self.dir.join(SETTINGS_FILE);
        let mut json = serde_json::to_string_pretty(settings)
            .map_err(|e| HomeError::Write { path: path.clone(), source: io::Error::other(e) })?;
        json.push('\n');
        write_atomic(&path, json.as_bytes()).map_err(|source| HomeError::Write { path, source })
    }
}
