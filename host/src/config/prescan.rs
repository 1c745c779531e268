//! Checks on a config file's text before the YAML parser sees it. The parser's time grows
//! with the square of the nesting depth of flow collections (`[[[…]]]`, `{a: {a: …}}`):
//! 100 000 levels in 200 KB never finish. Ozone's own layout nests five levels, so a
//! file is refused as soon as it goes deeper than [`MAX_NESTING`], in one linear pass.

use super::Position;

/// Largest config file read. The documented example is 6 KB.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Deepest flow nesting accepted (the YAML parser itself stops at 128).
pub const MAX_NESTING: usize = 64;

/// Where the text first nests flow collections deeper than [`MAX_NESTING`], if it does.
///
/// Brackets inside quoted scalars and comments do not count. A quote only opens a
/// scalar where one can start (first on its line, or after `:`, `-`, `,`, `?`, `[`,
/// `{`), so an apostrophe inside a plain word cannot hide what follows from the count.
pub fn too_deep(text: &str) -> Option<Position> {
    let mut depth = 0usize;
    // Inside a quoted scalar (its quote) or a comment ('\n').
    let mut inside: Option<char> = None;
    // The character just before, and the last one that was not a blank.
    let (mut last, mut previous) = ('\n', '\n');
    let (mut line, mut column) = (1usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        match inside {
            Some('"') if c == '\\' => {
                // An escape: the next character is part of the string.
                chars.next();
                column += 1;
            }
            // `''` is a quote inside a single-quoted scalar.
            Some('\'') if c == '\'' && chars.peek() == Some(&'\'') => {
                chars.next();
                column += 1;
            }
            Some(end) if c == end => inside = None,
            Some(_) => {}
            None => match c {
                '#' if last.is_whitespace() => inside = Some('\n'),
                '\'' | '"' if starts_scalar(previous) => inside = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Some(Position { line, column });
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        if c == '\n' {
            line += 1;
            column = 0;
        }
        last = c;
        if c != ' ' && c != '\t' {
            previous = c;
        }
    }
    None
}

/// Whether a quote after `previous` (the last character that was not a blank) opens a
/// quoted scalar.
fn starts_scalar(previous: char) -> bool {
    matches!(previous, '\n' | ':' | '-' | ',' | '?' | '[' | '{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ozone_layouts_pass() {
        let example = include_str!("../../ozone.example.yaml");
        assert_eq!(too_deep(example), None);
        let flow = "testing: {levels: [1, 2, [3, [4]]], name: 'it''s [[[[', x: \"\\\"[[[\"}\n";
        assert_eq!(too_deep(flow), None);
    }

    #[test]
    fn deep_flow_nesting_is_found_at_its_position() {
        let text = format!("a: 1\nb: {}1{}\n", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            too_deep(&text),
            Some(Position {
                line: 2,
                column: 4 + MAX_NESTING
            })
        );
        let maps = format!("b: {}1{}\n", "{k: ".repeat(100), "}".repeat(100));
        assert!(too_deep(&maps).is_some());
    }

    #[test]
    fn brackets_in_comments_quotes_and_words_do_not_count() {
        let deep = "[".repeat(100);
        assert_eq!(too_deep(&format!("a: 1 # {deep}\n")), None);
        assert_eq!(too_deep(&format!("a: '{deep}'\n")), None);
        // An apostrophe inside a word opens nothing: the brackets after it count.
        assert!(too_deep(&format!("a: it's\nb: {deep}\n")).is_some());
    }
}
