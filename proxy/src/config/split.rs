//! A config text split at the items of its block `routes:` lists (#18), so that the
//! parse of the next text can re-parse only the items whose text changed
//! ([`super::parse_cache`]).
//!
//! The split is by lines and conservative: a `routes:` key alone on its line (a
//! comment may follow), followed by a block sequence whose `- ` lines stand at one
//! indentation at least the key's. An item runs from its `- ` line to the next one (or
//! to the end of the list: the first line with content indented no more than the key);
//! blank and comment lines go with the item before them, so the items and the skeleton
//! together are the whole text. Each item is a YAML document on its own (a one-item
//! sequence at its original indentation). Whatever the split does not recognise stays
//! in the skeleton, and a text it cannot split safely (a tab in an indentation, a `%`
//! directive, a content line between the key's and the items' indentation) is not
//! split at all. The caller checks the rest: every item must parse alone into exactly
//! one route and every marker must land in a listener's `routes`, or it parses the
//! whole text instead.

/// The name of a skeleton's marker routes, before the list's number; a text that
/// contains it is not split.
pub(super) const MARKER: &str = "floodgate-split-list-";

/// A config text split at its route list items.
#[derive(Debug)]
pub(super) struct Split<'a> {
    /// The text with every split `routes:` list replaced by a one-route flow list whose
    /// route is named [`MARKER`] followed by the list's number.
    pub(super) skeleton: String,
    /// The items of each split list, in order.
    pub(super) lists: Vec<Vec<&'a str>>,
}

/// One line of the text: where it starts and ends, its indentation and its content
/// (without the indentation and trailing whitespace).
struct Line<'a> {
    start: usize,
    indent: usize,
    content: &'a str,
}

impl Line<'_> {
    /// Blank or a comment: neither ends a list nor starts an item.
    fn is_neutral(&self) -> bool {
        self.content.is_empty() || self.content.starts_with('#')
    }

    /// `- …` or a lone `-`: an item of a block sequence at this indentation.
    fn is_item(&self) -> bool {
        self.content == "-" || self.content.starts_with("- ")
    }

    /// `routes:`, alone or before a comment.
    fn is_routes_key(&self) -> bool {
        self.content
            .strip_prefix("routes:")
            .is_some_and(|rest| rest.is_empty() || rest.trim_start().starts_with('#'))
    }
}

/// The lines of `text`; None when an indentation has a tab or a line is a directive.
fn lines(text: &str) -> Option<Vec<Line<'_>>> {
    let mut out = Vec::new();
    let mut start = 0;
    for raw in text.split_inclusive('\n') {
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        let rest = &raw[indent..];
        if rest.starts_with('\t') || (indent == 0 && rest.starts_with('%')) {
            return None;
        }
        out.push(Line {
            start,
            indent,
            content: rest.trim_end(),
        });
        start += raw.len();
    }
    Some(out)
}

/// Splits `text` at the items of its block `routes:` lists; None when it has none or
/// cannot be split safely.
pub(super) fn split(text: &str) -> Option<Split<'_>> {
    if text.contains(MARKER) {
        return None;
    }
    let lines = lines(text)?;
    let start_of = |i: usize| lines.get(i).map_or(text.len(), |l| l.start);
    let mut skeleton = String::new();
    let mut lists = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while i < lines.len() {
        let key = &lines[i];
        i += 1;
        if !key.is_routes_key() {
            continue;
        }
        let Some(first) = (i..lines.len()).find(|&j| !lines[j].is_neutral()) else {
            break;
        };
        let dash = lines[first].indent;
        if dash < key.indent || !lines[first].is_item() {
            continue;
        }
        let mut starts = vec![first];
        let mut end = lines.len();
        for (j, line) in lines.iter().enumerate().skip(first + 1) {
            if line.is_neutral() || line.indent > dash {
                continue;
            }
            if line.indent == dash && line.is_item() {
                starts.push(j);
                continue;
            }
            if line.indent <= key.indent {
                end = j;
                break;
            }
            // Between the key's and the items' indentation: not a shape split here.
            return None;
        }
        let items = starts
            .iter()
            .enumerate()
            .map(|(n, &s)| {
                let next = starts.get(n + 1).copied().unwrap_or(end);
                &text[start_of(s)..start_of(next)]
            })
            .collect();
        skeleton.push_str(&text[copied..key.start]);
        skeleton.push_str(&" ".repeat(key.indent));
        skeleton.push_str(&format!(
            "routes: [{{ name: \"{MARKER}{}\" }}]\n",
            lists.len()
        ));
        copied = start_of(end);
        lists.push(items);
        i = end;
    }
    if lists.is_empty() {
        return None;
    }
    skeleton.push_str(&text[copied..]);
    Some(Split { skeleton, lists })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
listeners:
  - name: a
    listen: 127.0.0.1:0
    routes:   # the list
      - { name: r0, cluster: c }
      # between
      - name: r1
        cluster: c

    headers: { forwarded: true }
  - name: b
    listen: 127.0.0.1:0
    routes:
    - name: s0
      cluster: c
clusters: [{ name: c, endpoints: [\"127.0.0.1:1\"] }]
";

    #[test]
    fn the_items_and_the_skeleton_are_the_whole_text() {
        let s = split(TWO).unwrap();
        assert_eq!(s.lists.len(), 2);
        assert_eq!(
            s.lists[0],
            vec![
                "      - { name: r0, cluster: c }\n      # between\n",
                "      - name: r1\n        cluster: c\n\n"
            ]
        );
        assert_eq!(s.lists[1], vec!["    - name: s0\n      cluster: c\n"]);
        assert!(s
            .skeleton
            .contains("    routes: [{ name: \"floodgate-split-list-0\" }]\n    headers:"));
        assert!(s
            .skeleton
            .contains("    routes: [{ name: \"floodgate-split-list-1\" }]\nclusters:"));
        let items: usize = s.lists.iter().flatten().map(|i| i.len()).sum();
        let keys = "    routes:   # the list\n".len() + "    routes:\n".len();
        let markers = 2 * "    routes: [{ name: \"floodgate-split-list-0\" }]\n".len();
        assert_eq!(s.skeleton.len() - markers + keys + items, TWO.len());
    }

    #[test]
    fn texts_it_cannot_split_safely_are_not_split() {
        assert!(split("listeners: []\n").is_none());
        assert!(split("%YAML 1.2\n---\nroutes:\n  - a\n").is_none());
        assert!(split("routes:\n\t- a\n").is_none());
        assert!(split("routes:\n  - a\n b: c\n").is_none());
        assert!(split("routes:\n  - name: floodgate-split-list-0\n").is_none());
        // A flow list on the key's line and a list less indented than the key stay.
        assert!(split("x:\n  routes: [a]\n").is_none());
        assert!(split("  routes:\n- a\n").is_none());
    }
}
