//! The Unleash context: who and where a flag is evaluated for.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// What a flag is evaluated for. Every field is optional; constraints on a missing field fail
/// (NOT_IN passes), and rollouts that need a missing stickiness field are off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// The time DATE_AFTER and DATE_BEFORE compare; absent means now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_time: Option<DateTime<Utc>>,
    /// Every other field, by the name constraints use (`contextName`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// A context field named in a definition, resolved once when the flags are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ContextField {
    /// `userId`.
    UserId,
    /// `sessionId`.
    SessionId,
    /// `remoteAddress`.
    RemoteAddress,
    /// `environment`.
    Environment,
    /// `appName`.
    AppName,
    /// `currentTime`: the context's time, or now.
    CurrentTime,
    /// Any other name: looked up in `properties`.
    Property(Box<str>),
}

impl ContextField {
    pub(super) fn parse(name: &str) -> Self {
        match name {
            "userId" => ContextField::UserId,
            "sessionId" => ContextField::SessionId,
            "remoteAddress" => ContextField::RemoteAddress,
            "environment" => ContextField::Environment,
            "appName" => ContextField::AppName,
            "currentTime" => ContextField::CurrentTime,
            other => ContextField::Property(other.into()),
        }
    }
}

impl Context {
    /// The field's value as text. Only `currentTime` allocates (it is written as RFC 3339).
    pub(super) fn text(&self, field: &ContextField) -> Option<Cow<'_, str>> {
        let borrowed = match field {
            ContextField::UserId => self.user_id.as_deref(),
            ContextField::SessionId => self.session_id.as_deref(),
            ContextField::RemoteAddress => self.remote_address.as_deref(),
            ContextField::Environment => self.environment.as_deref(),
            ContextField::AppName => self.app_name.as_deref(),
            ContextField::Property(name) => self.properties.get(&**name).map(String::as_str),
            ContextField::CurrentTime => {
                let text = self.now().to_rfc3339_opts(SecondsFormat::Millis, true);
                return Some(Cow::Owned(text));
            }
        };
        borrowed.map(Cow::Borrowed)
    }

    /// The field's value as a time: `currentTime` (or now), or a property in RFC 3339.
    pub(super) fn time(&self, field: &ContextField) -> Option<DateTime<Utc>> {
        match field {
            ContextField::CurrentTime => Some(self.now()),
            other => self.text(other)?.parse().ok(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.current_time.unwrap_or_else(Utc::now)
    }
}

/// Which context value keeps a user in the same rollout bucket or variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stickiness {
    /// `default` (or unset): userId, else sessionId (else remoteAddress, for variants), else random.
    Default,
    /// `random`: a new draw on every evaluation.
    Random,
    /// Any field name: that field; a rollout is off without it, a variant is drawn at random.
    Field(ContextField),
}

/// The id a context is bucketed by.
pub(super) enum StickyId<'c> {
    /// Hash this id.
    Id(Cow<'c, str>),
    /// Draw at random.
    Random,
}

impl Stickiness {
    pub(super) fn parse(name: Option<&str>) -> Self {
        match name.map(str::trim) {
            None | Some("") | Some("default") => Stickiness::Default,
            Some("random") => Stickiness::Random,
            Some(field) => Stickiness::Field(ContextField::parse(field)),
        }
    }

    /// The id a rollout hashes; `None` when the named field is missing (the rollout is off). An
    /// empty value is an id like any other, as in Unleash's engine.
    pub(super) fn rollout_id<'c>(&self, context: &'c Context) -> Option<StickyId<'c>> {
        match self {
            Stickiness::Default => Some(
                context
                    .text(&ContextField::UserId)
                    .or_else(|| context.text(&ContextField::SessionId))
                    .map_or(StickyId::Random, StickyId::Id),
            ),
            Stickiness::Random => Some(StickyId::Random),
            Stickiness::Field(field) => context.text(field).map(StickyId::Id),
        }
    }

    /// The id a variant is picked by; falls back to a random draw.
    pub(super) fn variant_id<'c>(&self, context: &'c Context) -> StickyId<'c> {
        let id = match self {
            Stickiness::Default => context
                .text(&ContextField::UserId)
                .or_else(|| context.text(&ContextField::SessionId))
                .or_else(|| context.text(&ContextField::RemoteAddress)),
            Stickiness::Random => None,
            Stickiness::Field(field) => context.text(field),
        };
        id.map_or(StickyId::Random, StickyId::Id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_id_is_an_id_and_variants_also_try_the_address() {
        let empty = Context {
            user_id: Some(String::new()),
            ..Context::default()
        };
        let default = Stickiness::parse(Some("default"));
        assert!(matches!(default.rollout_id(&empty), Some(StickyId::Id(id)) if id.is_empty()));
        let context = Context {
            remote_address: Some("10.0.0.1".into()),
            ..Context::default()
        };
        assert!(matches!(
            default.rollout_id(&context),
            Some(StickyId::Random)
        ));
        assert!(matches!(default.variant_id(&context), StickyId::Id(id) if id == "10.0.0.1"));
        assert!(
            Stickiness::parse(Some("plan"))
                .rollout_id(&context)
                .is_none()
        );
    }

    #[test]
    fn unknown_names_are_read_from_properties() {
        let context = Context {
            user_id: Some("u1".into()),
            properties: BTreeMap::from([("plan".into(), "pro".into())]),
            ..Context::default()
        };
        assert_eq!(
            context.text(&ContextField::parse("userId")).as_deref(),
            Some("u1")
        );
        assert_eq!(
            context.text(&ContextField::parse("plan")).as_deref(),
            Some("pro")
        );
        assert_eq!(context.text(&ContextField::parse("sessionId")), None);
    }

    #[test]
    fn current_time_reads_as_rfc3339_text_and_as_a_time() {
        let time: DateTime<Utc> = "2022-01-29T13:00:00Z".parse().unwrap();
        let context = Context {
            current_time: Some(time),
            ..Context::default()
        };
        let field = ContextField::CurrentTime;
        assert_eq!(
            context.text(&field).as_deref(),
            Some("2022-01-29T13:00:00.000Z")
        );
        assert_eq!(context.time(&field), Some(time));
    }
}
