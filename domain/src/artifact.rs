//! Kinds of artifacts a job can make.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a build output is, which decides how the portal shows and serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// An Android application package.
    Apk,
    /// An iOS application archive.
    Ipa,
    /// A built web front end (a directory of static files).
    Web,
    /// Images, fonts, translations and other resources shipped with the apps.
    AssetBundle,
    /// The database schema the release expects.
    DbSchema,
    /// A description of the HTTP API (OpenAPI).
    ApiSpec,
    /// A test, coverage or scan report.
    Report,
}

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 7] = [
        ArtifactKind::Apk,
        ArtifactKind::Ipa,
        ArtifactKind::Web,
        ArtifactKind::AssetBundle,
        ArtifactKind::DbSchema,
        ArtifactKind::ApiSpec,
        ArtifactKind::Report,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Apk => "apk",
            ArtifactKind::Ipa => "ipa",
            ArtifactKind::Web => "web",
            ArtifactKind::AssetBundle => "asset-bundle",
            ArtifactKind::DbSchema => "db-schema",
            ArtifactKind::ApiSpec => "api-spec",
            ArtifactKind::Report => "report",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ArtifactKind::Apk => "Android APK",
            ArtifactKind::Ipa => "iOS IPA",
            ArtifactKind::Web => "Web build",
            ArtifactKind::AssetBundle => "Asset bundle",
            ArtifactKind::DbSchema => "Database schema",
            ArtifactKind::ApiSpec => "API spec",
            ArtifactKind::Report => "Report",
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
