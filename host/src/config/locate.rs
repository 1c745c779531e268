//! Finds where a key path (`testing.adaptive_timeouts.min_timeout`) sits in a YAML file.
//!
//! serde_yaml reports positions for type errors but keeps no spans on values, so range
//! checks done after deserialising locate their key with this light scan of block-style
//! mappings — the layout of every Ozone config. Keys inside sequences or flow mappings are
//! not indexed; a check on them points at the nearest enclosing key instead.

use std::collections::BTreeMap;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Every block-mapping key of a YAML text, by dotted path, with the position of its value
/// (or of the key itself when the value starts on a later line).
#[derive(Debug, Default)]
pub struct KeyIndex {
    keys: BTreeMap<String, Position>,
}

impl KeyIndex {
    pub fn scan(text: &str) -> Self {
        let mut keys = BTreeMap::new();
        // (indent, key) of the mappings enclosing the current line.
        let mut stack: Vec<(usize, String)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = strip_comment(raw);
            let content = line.trim_start();
            if content.is_empty() || content.starts_with("---") || content.starts_with("...") {
                continue;
            }
            let indent = line.len() - content.len();
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            if content.starts_with('-') {
                // A sequence item: its keys are not indexed, but it closes nothing more.
                continue;
            }
            let Some((key, after_colon)) = split_key(content) else {
                continue;
            };
            stack.push((indent, key));
            let path = stack
                .iter()
                .map(|(_, k)| k.as_str())
                .collect::<Vec<_>>()
                .join(".");
            let rest = &content[after_colon..];
            let value_offset = rest.len() - rest.trim_start().len();
            let column = if rest.trim().is_empty() {
                indent + 1
            } else {
                indent + after_colon + value_offset + 1
            };
            keys.entry(path).or_insert(Position {
                line: n + 1,
                column,
            });
        }
        Self { keys }
    }

    /// Position of `path`, or of its nearest ancestor present in the file.
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(p) = self.keys.get(path) {
                return Some(*p);
            }
            path = &path[..path.rfind('.')?];
        }
    }

    /// Position of exactly `path`.
    pub fn get(&self, path: &str) -> Option<Position> {
        self.keys.get(path).copied()
    }
}

/// `key: value` → (`key`, byte offset just past the colon). Quoted keys are unquoted.
fn split_key(content: &str) -> Option<(String, usize)> {
    let bytes = content.as_bytes();
    if let Some(q @ (b'"' | b'\'')) = bytes.first().copied() {
        let end = content[1..].find(q as char)? + 1;
        let after = content[end + 1..].trim_start();
        let colon = content.len() - after.len();
        return after
            .starts_with(':')
            .then(|| (content[1..end].to_string(), colon + 1));
    }
    let mut search = 0;
    while let Some(i) = content[search..].find(':') {
        let at = search + i;
        let next = bytes.get(at + 1).copied();
        if next.is_none() || next == Some(b' ') || next == Some(b'\t') {
            let key = content[..at].trim_end();
            if key.is_empty() || key.starts_with(['{', '[']) {
                return None;
            }
            return Some((key.to_string(), at + 1));
        }
        search = at + 1;
    }
    None
}

/// Drops a trailing `# comment` that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && (prev == ' ' || prev == '\t' || i == 0) => {
                return line[..i].trim_end()
            }
            None => {}
        }
        prev = c;
    }
    line.trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
---
# a comment: with a colon
search_strategy:
  initial_context_probe: 65536   # 64k
  batch_adaptation:
    max_batch: 256
testing:
  concurrency_progression:
    levels: [1, 2, 4, 8]
    stabilization_delay: 2
\"quoted key\": 'x # not a comment'
";

    #[test]
    fn finds_nested_keys_at_their_value() {
        let idx = KeyIndex::scan(TEXT);
        assert_eq!(
            idx.get("search_strategy.initial_context_probe"),
            Some(Position {
                line: 4,
                column: 26
            })
        );
        assert_eq!(
            idx.get("search_strategy.batch_adaptation.max_batch"),
            Some(Position {
                line: 6,
                column: 16
            })
        );
        assert_eq!(
            idx.get("testing.concurrency_progression.levels"),
            Some(Position {
                line: 9,
                column: 13
            })
        );
        // A key with its value on later lines points at the key.
        assert_eq!(
            idx.get("search_strategy.batch_adaptation"),
            Some(Position { line: 5, column: 3 })
        );
        assert_eq!(
            idx.get("quoted key"),
            Some(Position {
                line: 11,
                column: 15
            })
        );
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let idx = KeyIndex::scan(TEXT);
        assert_eq!(idx.get("testing.adaptive_timeouts.min_timeout"), None);
        assert_eq!(
            idx.find("testing.adaptive_timeouts.min_timeout"),
            Some(Position { line: 7, column: 1 })
        );
        assert_eq!(idx.find("nowhere.at_all"), None);
    }
}
