//! Problems found in a definition, each with the place it was found, printed like a compiler.

use std::fmt::Write as _;

use serde_saphyr::Location;

/// One problem in a definition. `line` and `column` are 1-based and count characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: error: {message}")]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            line,
            column,
            message: message.into(),
        }
    }

    /// A diagnostic at a place serde-saphyr reported. An unknown place becomes 1:1.
    pub(crate) fn at(location: &Location, message: impl Into<String>) -> Self {
        let line = usize::try_from(location.line()).unwrap_or(0).max(1);
        let column = usize::try_from(location.column()).unwrap_or(0).max(1);
        Diagnostic::new(line, column, message)
    }
}

/// Prints diagnostics the way a compiler does:
///
/// ```text
/// flightdeck.yml:12:5: error: unknown key `retrys`; did you mean `retries`? ...
///    |
/// 12 |     retrys: 3
///    |     ^
/// ```
pub fn render(diagnostics: &[Diagnostic], file_name: &str, source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{file_name}:{d}");
        let Some(text) = d.line.checked_sub(1).and_then(|i| lines.get(i)) else {
            continue;
        };
        let number = d.line.to_string();
        let gutter = " ".repeat(number.len());
        // Keep tabs so the caret lines up with the text above it.
        let pad: String = text
            .chars()
            .take(d.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let _ = writeln!(out, "{gutter} |");
        let _ = writeln!(out, "{number} | {text}");
        let _ = writeln!(out, "{gutter} | {pad}^");
    }
    out
}

/// Turns a serde-saphyr error (bad YAML, or YAML that does not fit the format) into a sentence.
pub(crate) fn from_yaml_error(error: &serde_saphyr::Error) -> Diagnostic {
    use serde_saphyr::Error as E;
    let error = error.without_snippet();
    let location = error.location().unwrap_or(Location::UNKNOWN);
    let message = match error {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            let allowed = expected.join(", ");
            match closest(field, expected.iter().copied()) {
                Some(near) => format!(
                    "unknown key `{field}`; did you mean `{near}`? The keys allowed here are \
                     {allowed}"
                ),
                None => format!("unknown key `{field}`; the keys allowed here are {allowed}"),
            }
        }
        E::SerdeMissingField { field, .. } => {
            format!("the key `{field}` is missing here, and it is required")
        }
        E::DuplicateMappingKey { key: Some(key), .. } => {
            format!("the key `{key}` appears twice in this map; each key may appear only once")
        }
        E::DuplicateMappingKey { key: None, .. } => {
            "this key appears twice in this map; each key may appear only once".to_string()
        }
        E::Unexpected { expected, .. } => match *expected {
            "sequence start" => "expected a list here".to_string(),
            "mapping start" => "expected a map of keys and values here".to_string(),
            other => format!("expected {other} here"),
        },
        E::InvalidScalar {
            ty: "bool" | "boolean",
            ..
        }
        | E::InvalidBooleanStrict { .. } => "expected `true` or `false` here".to_string(),
        E::InvalidScalar { ty, .. } => format!("expected a value of type {ty} here"),
        E::NullIntoString { .. } => "a value is missing here".to_string(),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        E::Eof { .. } => {
            "the definition is empty; it needs at least `project` and `phases`".to_string()
        }
        E::MultipleDocuments { .. } => {
            "a definition is a single YAML document; remove the `---` that starts another"
                .to_string()
        }
        other => format!("invalid YAML: {}", strip_location(&other.to_string())),
    };
    Diagnostic::at(&location, message)
}

/// serde-saphyr ends its messages with " at line L, column C"; we print the place ourselves.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

/// "; did you mean `x`?" when one candidate is close to `wanted`, or nothing.
pub(crate) fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    closest(wanted, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// The candidate nearest to `wanted` (ignoring case), if it is near enough to be a typo or
/// an abbreviation (`prod` for `production`).
pub(crate) fn closest<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    let limit = (wanted.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .filter_map(|c| {
            let candidate = c.to_lowercase();
            let distance = edit_distance(&wanted_lower, &candidate);
            let abbreviates = wanted_lower.len() >= 3 && candidate.starts_with(&wanted_lower);
            // An abbreviation ranks after every typo.
            match (distance <= limit, abbreviates) {
                (true, _) => Some((distance, c)),
                (false, true) => Some((usize::MAX, c)),
                (false, false) => None,
            }
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion_and_strangers_do_not() {
        assert_eq!(
            closest("qa-aproval", ["qa-approval", "deploy"]),
            Some("qa-approval")
        );
        assert_eq!(closest("retrys", ["retries", "runs_on"]), Some("retries"));
        assert_eq!(
            closest("europe/berlin", ["Europe/Berlin"]),
            Some("Europe/Berlin")
        );
        assert_eq!(
            closest("prod", ["staging", "production"]),
            Some("production")
        );
        assert_eq!(closest("banana", ["deploy", "gate"]), None);
    }

    #[test]
    fn render_puts_a_caret_under_the_column() {
        let source = "a: 1\n  bad: 2\n";
        let out = render(&[Diagnostic::new(2, 3, "nope")], "f.yml", source);
        assert_eq!(out, "f.yml:2:3: error: nope\n  |\n2 |   bad: 2\n  |   ^\n");
    }
}
