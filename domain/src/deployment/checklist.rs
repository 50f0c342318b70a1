//! A manual stage's checklist: the numbered items of a markdown file (the sample's
//! docs/manual-tests.md), each with the `##` heading it sits under. Pure.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub number: i32,
    pub text: String,
    pub section: Option<String>,
}

/// The items of `markdown`, numbered 1, 2, 3… in file order (whatever numbers the file uses).
/// An item's indented continuation lines join it.
pub fn parse(markdown: &str) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::new();
    let mut section = None;
    let mut open = false;
    for line in markdown.lines() {
        let trimmed = line.trim();
        if let Some(heading) = trimmed.strip_prefix("## ") {
            section = Some(heading.trim().to_string());
            open = false;
            continue;
        }
        let numbered = trimmed
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if let Some((_, text)) = numbered {
            items.push(Item {
                number: items.len() as i32 + 1,
                text: text.trim().to_string(),
                section: section.clone(),
            });
            open = true;
        } else if open && !trimmed.is_empty() && line.starts_with(' ') {
            let last = items.last_mut().expect("open means an item exists");
            last.text.push(' ');
            last.text.push_str(trimmed);
        } else {
            open = false;
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_manual_tests_are_numbered_items_under_their_headings() {
        let items = parse(include_str!(
            "../../../examples/studybuddy/docs/manual-tests.md"
        ));
        assert!(items.len() >= 10, "{items:?}");
        assert_eq!(items[0].number, 1);
        assert_eq!(items[0].section.as_deref(), Some("Planning"));
        assert!(items[0].text.starts_with("Open the staging site."));
        assert!(
            items[1].text.contains("It appears under **Planned**"),
            "continuation lines join: {}",
            items[1].text
        );
        assert!(items.windows(2).all(|w| w[1].number == w[0].number + 1));
    }

    #[test]
    fn text_without_numbered_items_has_none() {
        assert!(parse("# Title\n\nJust words.\n- a bullet\n").is_empty());
    }
}
