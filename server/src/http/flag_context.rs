//! The evaluation context SDKs send, read into an Unleash [`Context`], with a clear error for
//! every malformed part.
//!
//! - Unleash Frontend API, GET: query parameters `userId`, `sessionId`, `remoteAddress`,
//!   `environment`, `appName`, `currentTime`, `properties[name]=value`; any other parameter is a
//!   property too (as Unleash Edge reads them).
//! - Unleash Frontend API, POST: `{"context": {...the same fields..., "properties": {...}}}`.
//! - OFREP: `{"context": {"targetingKey": "u1", ...}}`: `targetingKey` is the user id, the
//!   Unleash field names map to their fields, and everything else is a property.
//!
//! The token decides the environment: a context naming another one is refused (it is a
//! misconfigured app), Unleash's placeholder `default` is accepted, and the token's environment
//! is what constraints on `environment` see. The caller's address fills `remoteAddress` when the
//! context has none, as Unleash Edge does.

use chrono::{DateTime, Utc};
use domain::auth::SdkPrincipal;
use domain::flags::Context;
use serde_json::{Map, Value};

/// At most this many properties, each name and value at most this long.
const MAX_PROPERTIES: usize = 100;
const MAX_VALUE_CHARS: usize = 1000;

/// Why a context was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// Malformed: the message says what and where.
    #[error("{0}")]
    Invalid(String),
    /// The context names another environment than the token's.
    #[error(
        "this token is for {project}/{token_environment}; the context asks for environment \
         `{asked}`. Use a token of that environment"
    )]
    OtherEnvironment {
        project: String,
        token_environment: String,
        asked: String,
    },
}

/// Reads the Unleash Frontend API's query string.
pub fn from_query(
    query: Option<&str>,
    sdk: &SdkPrincipal,
    client_ip: Option<&str>,
) -> Result<Context, ContextError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ContextError::Invalid(format!("the query string does not parse: {e}")))?;
    let mut context = Context::default();
    for (name, value) in pairs {
        let property = name
            .strip_prefix("properties[")
            .and_then(|rest| rest.strip_suffix(']'));
        match property {
            Some(property) => set_property(&mut context, property, value)?,
            None => set_field(&mut context, &name, value, "query parameter")?,
        }
    }
    finish(context, sdk, client_ip)
}

/// Reads the Unleash Frontend API's POST body: `{"context": {...}}`.
pub fn from_unleash_body(
    body: &[u8],
    sdk: &SdkPrincipal,
    client_ip: Option<&str>,
) -> Result<Context, ContextError> {
    let fields = context_object(body)?;
    let mut context = Context::default();
    for (name, value) in fields {
        if name == "properties" {
            let Value::Object(properties) = value else {
                if value.is_null() {
                    continue;
                }
                return Err(ContextError::Invalid(format!(
                    "context.properties must be an object of names to values, not {}",
                    kind_of(&value)
                )));
            };
            for (property, value) in properties {
                let text = scalar(&value, &format!("context.properties.{property}"))?;
                if let Some(text) = text {
                    set_property(&mut context, &property, text)?;
                }
            }
            continue;
        }
        if let Some(text) = scalar(&value, &format!("context.{name}"))? {
            set_field(&mut context, &name, text, "context field")?;
        }
    }
    finish(context, sdk, client_ip)
}

/// Reads an OFREP request body: `{"context": {"targetingKey": ..., ...}}`. A body without a
/// context (`{}`) is an empty context, as the JS core may send it.
pub fn from_ofrep_body(
    body: &[u8],
    sdk: &SdkPrincipal,
    client_ip: Option<&str>,
) -> Result<Context, ContextError> {
    let fields = context_object(body)?;
    let mut context = Context::default();
    let mut targeting_key = None;
    for (name, value) in fields {
        let path = format!("context.{name}");
        if name == "targetingKey" {
            targeting_key = match value {
                Value::String(key) => Some(key),
                Value::Null => None,
                other => {
                    return Err(ContextError::Invalid(format!(
                        "context.targetingKey must be a string, not {}",
                        kind_of(&other)
                    )));
                }
            };
            continue;
        }
        let text = match value {
            // OpenFeature contexts may nest; constraints compare text, so a structure is kept as
            // its JSON.
            Value::Object(_) | Value::Array(_) => Some(value.to_string()),
            other => scalar(&other, &path)?,
        };
        let Some(text) = text else { continue };
        if is_unleash_field(&name) {
            set_field(&mut context, &name, text, "context field")?;
        } else {
            set_property(&mut context, &name, text)?;
        }
    }
    if let Some(key) = targeting_key {
        check_length("context.targetingKey", &key)?;
        context.user_id = Some(key);
    }
    finish(context, sdk, client_ip)
}

fn context_object(body: &[u8]) -> Result<Map<String, Value>, ContextError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ContextError::Invalid(format!(
            "the body is not JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(mut body) = value else {
        return Err(ContextError::Invalid(format!(
            "the body must be a JSON object like {{\"context\": {{...}}}}, not {}",
            kind_of(&value)
        )));
    };
    match body.remove("context") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(context)) => Ok(context),
        Some(other) => Err(ContextError::Invalid(format!(
            "`context` must be an object of names to values, not {}",
            kind_of(&other)
        ))),
    }
}

fn is_unleash_field(name: &str) -> bool {
    matches!(
        name,
        "userId" | "sessionId" | "remoteAddress" | "environment" | "appName" | "currentTime"
    )
}

fn set_field(
    context: &mut Context,
    name: &str,
    value: String,
    what: &str,
) -> Result<(), ContextError> {
    check_length(name, &value)?;
    match name {
        "userId" => context.user_id = Some(value),
        "sessionId" => context.session_id = Some(value),
        "remoteAddress" => context.remote_address = Some(value),
        "environment" => context.environment = Some(value),
        "appName" => context.app_name = Some(value),
        "currentTime" => {
            let time = DateTime::parse_from_rfc3339(&value).map_err(|e| {
                ContextError::Invalid(format!(
                    "{what} currentTime must be an RFC 3339 time like 2026-11-25T18:00:00Z, not {value:?} ({e})"
                ))
            })?;
            context.current_time = Some(time.with_timezone(&Utc));
        }
        // Unleash Edge reads any other top-level parameter as a property.
        other => set_property(context, other, value)?,
    }
    Ok(())
}

fn set_property(context: &mut Context, name: &str, value: String) -> Result<(), ContextError> {
    if name.is_empty() {
        return Err(ContextError::Invalid(
            "a context property needs a name".into(),
        ));
    }
    check_length(name, name)?;
    check_length(name, &value)?;
    context.properties.insert(name.to_string(), value);
    if context.properties.len() > MAX_PROPERTIES {
        return Err(ContextError::Invalid(format!(
            "a context has at most {MAX_PROPERTIES} properties"
        )));
    }
    Ok(())
}

fn check_length(name: &str, value: &str) -> Result<(), ContextError> {
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(ContextError::Invalid(format!(
            "context value {name} is longer than {MAX_VALUE_CHARS} characters"
        )));
    }
    Ok(())
}

/// A value as constraint text: strings as they are, numbers and booleans written out, null
/// as absent.
fn scalar(value: &Value, path: &str) -> Result<Option<String>, ContextError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        Value::Bool(flag) => Ok(Some(flag.to_string())),
        other => Err(ContextError::Invalid(format!(
            "{path} must be a string, number or boolean, not {}",
            kind_of(other)
        ))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn finish(
    mut context: Context,
    sdk: &SdkPrincipal,
    client_ip: Option<&str>,
) -> Result<Context, ContextError> {
    if let Some(asked) = &context.environment
        && asked != &sdk.environment
        && asked != "default"
    {
        return Err(ContextError::OtherEnvironment {
            project: sdk.project.clone(),
            token_environment: sdk.environment.clone(),
            asked: asked.clone(),
        });
    }
    context.environment = Some(sdk.environment.clone());
    if context.remote_address.is_none() {
        context.remote_address = client_ip.map(str::to_string);
    }
    Ok(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::flag_view::SdkTokenKind;
    use uuid::Uuid;

    fn sdk() -> SdkPrincipal {
        SdkPrincipal {
            id: Uuid::nil(),
            name: "web".into(),
            kind: SdkTokenKind::Frontend,
            project_id: Uuid::nil(),
            project: "studybuddy".into(),
            environment_id: Uuid::nil(),
            environment: "staging".into(),
        }
    }

    #[test]
    fn query_parameters_fill_fields_and_properties() {
        let context = from_query(
            Some("userId=u1&properties%5Bplan%5D=pro&tier=gold&environment=default&appName=web"),
            &sdk(),
            Some("10.0.0.9"),
        )
        .unwrap();
        assert_eq!(context.user_id.as_deref(), Some("u1"));
        assert_eq!(context.app_name.as_deref(), Some("web"));
        assert_eq!(context.environment.as_deref(), Some("staging"));
        assert_eq!(context.remote_address.as_deref(), Some("10.0.0.9"));
        assert_eq!(context.properties["plan"], "pro");
        assert_eq!(context.properties["tier"], "gold");
    }

    #[test]
    fn a_post_body_reads_numbers_and_booleans_as_text_and_refuses_structures() {
        let body =
            br#"{"context":{"userId":"u1","properties":{"age":42,"beta":true,"gone":null}}}"#;
        let context = from_unleash_body(body, &sdk(), None).unwrap();
        assert_eq!(context.properties["age"], "42");
        assert_eq!(context.properties["beta"], "true");
        assert!(!context.properties.contains_key("gone"));
        let error = from_unleash_body(br#"{"context":{"properties":{"a":[1]}}}"#, &sdk(), None)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "context.properties.a must be a string, number or boolean, not an array"
        );
        let error = from_unleash_body(br#"{"context":"u1"}"#, &sdk(), None).unwrap_err();
        assert!(error.to_string().contains("not a string"), "{error}");
        let error = from_unleash_body(b"{\"context\":", &sdk(), None).unwrap_err();
        assert!(
            error.to_string().starts_with("the body is not JSON"),
            "{error}"
        );
    }

    #[test]
    fn ofrep_maps_the_targeting_key_and_keeps_nested_values_as_json() {
        let body =
            br#"{"context":{"targetingKey":"u7","sessionId":"s","plan":"pro","org":{"id":3}}}"#;
        let context = from_ofrep_body(body, &sdk(), None).unwrap();
        assert_eq!(context.user_id.as_deref(), Some("u7"));
        assert_eq!(context.session_id.as_deref(), Some("s"));
        assert_eq!(context.properties["plan"], "pro");
        assert_eq!(context.properties["org"], r#"{"id":3}"#);
        assert_eq!(from_ofrep_body(b"{}", &sdk(), None).unwrap().user_id, None);
        let error =
            from_ofrep_body(br#"{"context":{"targetingKey":5}}"#, &sdk(), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "context.targetingKey must be a string, not a number"
        );
    }

    #[test]
    fn a_bad_time_and_another_environment_are_refused_with_the_reason() {
        let error = from_query(Some("currentTime=yesterday"), &sdk(), None).unwrap_err();
        assert!(error.to_string().contains("RFC 3339"), "{error}");
        let error = from_query(Some("environment=production"), &sdk(), None).unwrap_err();
        assert!(matches!(error, ContextError::OtherEnvironment { .. }));
        assert!(error.to_string().contains("studybuddy/staging"), "{error}");
    }
}
