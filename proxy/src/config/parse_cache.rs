//! The parse of a config text that re-parses only the route items whose text changed
//! since the last one (#18): at 10,000 routes the YAML parse of the whole file is most
//! of the cost of a one-route change.
//!
//! [`ParseCache::parse`] splits a large text at its route list items
//! ([`super::split`]), parses the small rest (the skeleton) and every item it has not
//! seen before, and takes the others as they were parsed. It returns exactly what
//! [`file::parse`] returns for the same text: whenever anything does not fit (the text
//! does not split, the skeleton or an item does not parse alone, an item is not exactly
//! one route, a marker is not a listener's `routes`) it parses the whole text, so an
//! error still has its line, column and field path.

use std::collections::HashMap;
use std::sync::Arc;

use super::file::{self, FileConfig, FileRoute};
use super::split::{self, MARKER};
use super::ConfigError;

/// Texts up to this size are parsed whole: the split pays only for large files, and
/// [`file::parse`] checks small ones for being empty or not a mapping.
const SPLIT_MIN: usize = 64 * 1024;

/// The route items of the last texts parsed, by their text.
#[derive(Debug, Default)]
pub struct ParseCache {
    routes: HashMap<Box<str>, Entry, foldhash::fast::RandomState>,
    /// Split parses begun; an entry not seen by the last successful one is dropped.
    parses: u64,
}

/// One cached route item.
#[derive(Debug)]
struct Entry {
    route: Arc<FileRoute>,
    /// The split parse that last took it.
    seen: u64,
}

impl ParseCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many route items the cache holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the cache holds no route item.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// [`file::parse`] of `text`, re-parsing only the route items not in the cache; a
    /// route taken from the cache is the very one the last parse returned (an
    /// [`Arc`] shared with it). After a split parse the cache holds the items of `text`
    /// only; when the text had to be parsed whole it keeps what it had.
    pub fn parse(&mut self, text: &str) -> Result<FileConfig, ConfigError> {
        if text.len() > SPLIT_MIN {
            if let Some(file) = self.parse_split(text) {
                return Ok(file);
            }
        }
        file::parse(text)
    }

    /// The split parse of `text`, at any size; None when the text must be parsed whole.
    fn parse_split(&mut self, text: &str) -> Option<FileConfig> {
        let split = split::split(text)?;
        let mut file: FileConfig = serde_norway::from_str(&split.skeleton).ok()?;
        self.parses += 1;
        let mut lists = Vec::with_capacity(split.lists.len());
        for items in &split.lists {
            let mut routes = Vec::with_capacity(items.len());
            for &item in items {
                routes.push(self.item(item)?);
            }
            lists.push(Some(routes));
        }
        for listener in &mut file.listeners {
            let Some(k) = listener.routes.first().and_then(|r| marker_list(r)) else {
                continue;
            };
            match lists.get_mut(k).map(Option::take) {
                Some(Some(routes)) if listener.routes.len() == 1 => listener.routes = routes,
                _ => return None,
            }
        }
        if lists.iter().any(Option::is_some) {
            // A marker that is not a listener's `routes`: the text means something else.
            return None;
        }
        let parse = self.parses;
        self.routes.retain(|_, e| e.seen == parse);
        Some(file)
    }

    /// The route of one item, from the cache or parsed alone (and then cached); None
    /// when the item is not exactly one route.
    fn item(&mut self, item: &str) -> Option<Arc<FileRoute>> {
        let parse = self.parses;
        if let Some(e) = self.routes.get_mut(item) {
            e.seen = parse;
            return Some(Arc::clone(&e.route));
        }
        let mut one: Vec<FileRoute> = serde_norway::from_str(item).ok()?;
        let route = Arc::new(one.pop().filter(|_| one.is_empty())?);
        let entry = Entry {
            route: Arc::clone(&route),
            seen: parse,
        };
        self.routes.insert(Box::from(item), entry);
        Some(route)
    }
}

/// The number of the split list `route` stands for, when it is a skeleton's marker.
fn marker_list(route: &FileRoute) -> Option<usize> {
    let k = route.name.strip_prefix(MARKER)?.parse().ok()?;
    let marker = FileRoute {
        name: route.name.clone(),
        matcher: None,
        cluster: None,
        weighted: None,
        rewrite_prefix: None,
        timeout: None,
        retry: None,
        preserve_host: None,
        rate_limit: None,
        cache: None,
        priority: None,
        burst: None,
        global_rate_limit: None,
    };
    (*route == marker).then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse_split` gives what the whole parse gives, or declines.
    fn same(text: &str) -> bool {
        let mut cache = ParseCache::new();
        let whole = file::parse(text).ok();
        match cache.parse_split(text) {
            Some(split) => {
                assert_eq!(Some(&split), whole.as_ref(), "{text}");
                // And again from the cache.
                assert_eq!(cache.parse_split(text).as_ref(), whole.as_ref(), "{text}");
                true
            }
            None => false,
        }
    }

    fn listeners(routes: &str) -> String {
        format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes:\n{routes}\
             clusters:\n  - name: c\n    endpoints: [\"127.0.0.1:1\"]\n"
        )
    }

    #[test]
    fn every_example_config_parses_as_a_whole_parse_does() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut split = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "yaml") {
                split += usize::from(same(&std::fs::read_to_string(&path).unwrap()));
            }
        }
        assert!(split >= 3, "{split} example configs split");
    }

    #[test]
    fn items_of_every_shape_parse_as_in_the_whole_text() {
        let shapes = [
            "      - { name: a, cluster: c }\n      - name: b\n        cluster: c\n",
            "      - name: a\n        cluster: c\n        match:\n          headers: { x-a: \"1\" }\n",
            // Comments and blank lines, at any indentation, between and after items.
            "      - { name: a, cluster: c }\n# far left\n\n      - { name: b, cluster: c }  # after\n   # indented\n",
            // A flow mapping over two lines, a quoted name with `- ` in it.
            "      - { name: \"x\n        - y\", cluster: c }\n      - { name: b,\n          cluster: c }\n",
            // The compact form: items at the key's indentation.
            "    - { name: a, cluster: c }\n    - { name: b, cluster: c }\n",
            // CRLF line ends.
            "      - { name: a, cluster: c }\r\n      - { name: b, cluster: c }\r\n",
        ];
        for routes in shapes {
            assert!(same(&listeners(routes)), "{routes}");
        }
    }

    #[test]
    fn what_does_not_parse_alone_is_parsed_whole() {
        // An alias to an anchor of another item, a bad item, an item of two routes.
        let declined = [
            "      - { name: a, cluster: &app c }\n      - { name: b, cluster: *app }\n",
            "      - { name: a, cluster: c, colour: red }\n",
            "      - { name: a, cluster: c }\n      - { name: b, cluster: [c }\n",
        ];
        for routes in declined {
            assert!(!same(&listeners(routes)), "{routes}");
        }
        assert!(file::parse(&listeners(declined[0])).is_ok());
        // A `routes:` line in a block scalar: its marker is no listener's routes.
        let scalar = "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [{ name: a, cluster: c }]\n\
                      clusters:\n  - name: c\n    endpoints: [\"127.0.0.1:1\"]\n    health_check:\n      path: |\n        routes:\n          - { name: z }\n";
        assert!(file::parse(scalar).is_ok());
        assert!(!same(scalar));
    }

    #[test]
    fn the_cache_keeps_the_items_of_the_last_text_only() {
        let mut cache = ParseCache::new();
        let first = listeners("      - { name: a, cluster: c }\n      - { name: b, cluster: c }\n");
        assert!(cache.parse_split(&first).is_some());
        assert_eq!(cache.len(), 2);
        let next = listeners("      - { name: a, cluster: c }\n      - { name: d, cluster: c }\n");
        let file = cache.parse_split(&next).unwrap();
        assert_eq!(file.listeners[0].routes[1].name, "d");
        assert_eq!(cache.len(), 2);
        // A route taken from the cache is the one parsed before.
        let again = cache.parse_split(&first).unwrap();
        assert!(Arc::ptr_eq(
            &file.listeners[0].routes[0],
            &again.listeners[0].routes[0]
        ));
        assert_eq!(cache.len(), 2);
        // A bad text is parsed whole and does not empty the cache.
        let bad = listeners("      - { name: a, cluster: c }\n      - { name: e, colour: red }\n");
        assert!(cache.parse(&bad).is_err());
        assert!(cache.parse_split(&bad).is_none());
        assert!(cache.len() >= 2);
    }
}
