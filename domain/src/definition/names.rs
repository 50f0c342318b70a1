//! Names in a pipeline definition: slugs that appear in URLs, logs and the database.

use std::fmt;
use std::str::FromStr;

/// The longest name we accept; it fits a DNS label, so a name can become a host name.
const MAX_LEN: usize = 63;

/// A name that is not a slug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}: {problem}")]
pub struct InvalidName {
    /// What the name was for: "stage name", "project key", ...
    pub what: &'static str,
    pub value: String,
    pub problem: &'static str,
}

/// Checks the slug rule: lower-case ASCII letters, digits and single hyphens, starting with a
/// letter, not ending with a hyphen, at most 63 characters.
fn check_slug(value: &str, what: &'static str) -> Result<(), InvalidName> {
    let problem = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > MAX_LEN {
        Some("it is longer than 63 characters")
    } else if !value.starts_with(|c: char| c.is_ascii_lowercase())
        || value.ends_with('-')
        || value.contains("--")
        || !value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some(
            "use lower-case letters, digits and single hyphens, starting with a letter and not \
             ending with a hyphen",
        )
    } else {
        None
    };
    match problem {
        Some(problem) => Err(InvalidName {
            what,
            value: value.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The slug closest to `value`: lower-cased, with runs of other characters turned into one
/// hyphen. Used to suggest a fix; the result may still be invalid (for example when it starts
/// with a digit).
pub(crate) fn slugify(value: &str) -> String {
    let mut out = String::new();
    for c in value.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

macro_rules! slug_name {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, InvalidName> {
                check_slug(value, $what).map(|()| Self(value.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidName;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }
    };
}

slug_name!(
    /// The short key of a project, used in URLs (`/p/studybuddy`).
    ProjectKey,
    "project key"
);
slug_name!(
    /// A phase of the pipeline: `development`, `ci-cd`, `staging`, `production`.
    PhaseName,
    "phase name"
);
slug_name!(
    /// A stage, unique across the whole pipeline.
    StageName,
    "stage name"
);
slug_name!(
    /// A job, unique within its stage.
    JobName,
    "job name"
);
slug_name!(
    /// An artifact a job declares, unique across the whole pipeline.
    ArtifactName,
    "artifact name"
);
slug_name!(
    /// An environment a release is deployed to.
    EnvironmentName,
    "environment name"
);
slug_name!(
    /// A schedule that starts runs or promotions.
    ScheduleName,
    "schedule name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_lower_case_words_joined_by_single_hyphens() {
        for ok in ["a", "ci-cd", "build-app", "e2e", "x1-y2"] {
            assert!(StageName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Build",
            "1st",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(StageName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugify_suggests_a_slug_for_a_near_miss() {
        assert_eq!(slugify("Build_App"), "build-app");
        assert_eq!(slugify("  QA approval! "), "qa-approval");
    }
}
