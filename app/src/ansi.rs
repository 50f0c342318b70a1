//! Terminal colours in log lines: SGR escape sequences become spans with CSS classes; every other
//! escape sequence is dropped so it never shows as garbage.

/// A run of text with the style in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    /// Space-separated CSS classes (`ansi-fg-1 ansi-bold`), empty for plain text.
    pub class: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Style {
    fg: Option<u8>,
    bg: Option<u8>,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
}

impl Style {
    fn class(&self) -> String {
        let mut classes = Vec::new();
        if let Some(fg) = self.fg {
            classes.push(format!("ansi-fg-{fg}"));
        }
        if let Some(bg) = self.bg {
            classes.push(format!("ansi-bg-{bg}"));
        }
        for (on, name) in [
            (self.bold, "ansi-bold"),
            (self.dim, "ansi-dim"),
            (self.italic, "ansi-italic"),
            (self.underline, "ansi-underline"),
        ] {
            if on {
                classes.push(name.to_string());
            }
        }
        classes.join(" ")
    }

    fn apply(&mut self, params: &str) {
        let codes: Vec<u16> = if params.is_empty() {
            vec![0]
        } else {
            params.split(';').map(|p| p.parse().unwrap_or(0)).collect()
        };
        let mut i = 0;
        while i < codes.len() {
            match codes[i] {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                c @ 30..=37 => self.fg = Some((c - 30) as u8),
                39 => self.fg = None,
                c @ 40..=47 => self.bg = Some((c - 40) as u8),
                49 => self.bg = None,
                c @ 90..=97 => self.fg = Some((c - 90 + 8) as u8),
                c @ 100..=107 => self.bg = Some((c - 100 + 8) as u8),
                // 256-colour and true-colour forms: keep the 16 basic colours, skip the rest.
                38 | 48 => {
                    let is_fg = codes[i] == 38;
                    match codes.get(i + 1) {
                        Some(5) => {
                            if let Some(&n) = codes.get(i + 2).filter(|n| **n < 16) {
                                if is_fg {
                                    self.fg = Some(n as u8)
                                } else {
                                    self.bg = Some(n as u8)
                                }
                            }
                            i += 2;
                        }
                        Some(2) => i += 4,
                        _ => {}
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// Splits a line into styled spans.
pub fn spans(line: &str) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut style = Style::default();
    let mut text = String::new();
    let mut chars = line.chars().peekable();
    let flush = |text: &mut String, style: &Style, out: &mut Vec<Span>| {
        if !text.is_empty() {
            out.push(Span {
                text: std::mem::take(text),
                class: style.class(),
            });
        }
    };
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            if c == '\r' {
                // A carriage return redraws the line (progress bars): keep what came last.
                text.clear();
                out.clear();
            } else {
                text.push(c);
            }
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                let mut params = String::new();
                let mut end = None;
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() || c == '~' {
                        end = Some(c);
                        break;
                    }
                    params.push(c);
                }
                if end == Some('m') {
                    flush(&mut text, &style, &mut out);
                    style.apply(&params);
                }
            }
            Some(']') => {
                // Operating-system commands (titles, links) end with BEL or ESC \.
                for c in chars.by_ref() {
                    if c == '\u{7}' || c == '\\' {
                        break;
                    }
                }
            }
            _ => {
                chars.next();
            }
        }
    }
    flush(&mut text, &style, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_one_unstyled_span() {
        assert_eq!(
            spans("hello"),
            vec![Span {
                text: "hello".into(),
                class: String::new()
            }]
        );
    }

    #[test]
    fn colours_and_bold_become_classes_until_reset() {
        let got = spans("\u{1b}[1;31merror\u{1b}[0m: oops \u{1b}[92mok\u{1b}[39m");
        assert_eq!(
            got[0],
            Span {
                text: "error".into(),
                class: "ansi-fg-1 ansi-bold".into()
            }
        );
        assert_eq!(
            got[1],
            Span {
                text: ": oops ".into(),
                class: String::new()
            }
        );
        assert_eq!(
            got[2],
            Span {
                text: "ok".into(),
                class: "ansi-fg-10".into()
            }
        );
    }

    #[test]
    fn other_escapes_are_dropped_and_carriage_returns_keep_the_last_redraw() {
        assert_eq!(spans("a\u{1b}[2Kb")[0].text, "ab");
        assert_eq!(spans("\u{1b}]0;title\u{7}text")[0].text, "text");
        assert_eq!(spans("10%\r50%\r100%")[0].text, "100%");
        assert_eq!(spans("\u{1b}[38;5;2mgreen")[0].class, "ansi-fg-2");
        assert_eq!(spans("\u{1b}[38;2;1;2;3mtrue")[0].class, "");
    }
}
