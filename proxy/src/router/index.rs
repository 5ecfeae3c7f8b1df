//! The route index: which routes can match a request, found without scanning the table.
//!
//! Routes are put in buckets by their host condition: exact hosts in a hash map
//! (lower-case), wildcard hosts (`*.example.com`, kept as `.example.com`) in a hash map
//! by suffix, and routes with no host condition in one bucket that every request
//! consults. Within a bucket, a few routes are kept in a list; more are split by path:
//! exact paths in a hash map, prefixes in a byte trie walked along the request path.
//!
//! Every candidate carries its file position, and each candidate list is in file
//! order. A lookup asks the caller to check each candidate (method, headers, and the
//! conditions the bucket already implies) and keeps the lowest position that holds
//! across all buckets, skipping any candidate that could not beat it: the first
//! matching route in file order wins, exactly as a scan of the table would pick.

use crate::config::{HostMatch, PathMatch, RouteMatch};

/// The index's hash maps: foldhash, seeded per process (a host is hashed on every
/// request, and 10,000 of them on every build of the index).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A bucket with at most this many routes is a list, checked in order.
const SMALL_BUCKET: usize = 8;

/// Longest host lowered into a stack buffer; a longer one (never a valid DNS name) is
/// lowered on the heap.
const HOST_BUFFER: usize = 256;

/// Candidate routes for a request, by host and path; see the module docs.
#[derive(Default)]
pub struct RouteIndex {
    exact: HashMap<Box<[u8]>, Bucket>,
    /// Keyed by the suffix with its leading dot (`.example.com`).
    wildcard: HashMap<Box<[u8]>, Bucket>,
    /// Suffix patterns without a leading dot (validation never makes them), checked in turn.
    odd_suffixes: Vec<(Box<[u8]>, Bucket)>,
    any_host: Bucket,
    /// Some route has a host condition: the request's host has to be worked out.
    uses_host: bool,
}

impl RouteIndex {
    /// The index of route matchers given in file order (position = index in `matchers`).
    pub fn new<'a>(matchers: impl IntoIterator<Item = &'a RouteMatch>) -> Self {
        let mut exact: HashMap<Box<[u8]>, Entries> = HashMap::default();
        let mut wildcard: HashMap<Box<[u8]>, Entries> = HashMap::default();
        let mut odd: Vec<(Box<[u8]>, Entries)> = Vec::new();
        let mut any_host = Vec::new();
        for (pos, m) in (0u32..).zip(matchers) {
            let entry = (pos, &m.path);
            match &m.host {
                None => any_host.push(entry),
                Some(HostMatch::Exact(name)) => exact.entry(lower(name)).or_default().push(entry),
                Some(HostMatch::Suffix(s)) if s.starts_with('.') => {
                    wildcard.entry(lower(s)).or_default().push(entry)
                }
                Some(HostMatch::Suffix(s)) => {
                    let key = lower(s);
                    match odd.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, list)) => list.push(entry),
                        None => odd.push((key, vec![entry])),
                    }
                }
            }
        }
        let uses_host = !(exact.is_empty() && wildcard.is_empty() && odd.is_empty());
        let build = |map: HashMap<Box<[u8]>, Entries>| -> HashMap<_, _> {
            let mut out: HashMap<Box<[u8]>, Bucket> =
                HashMap::with_capacity_and_hasher(map.len(), Default::default());
            out.extend(map.into_iter().map(|(k, v)| (k, Bucket::new(&v))));
            out
        };
        Self {
            exact: build(exact),
            wildcard: build(wildcard),
            odd_suffixes: odd.into_iter().map(|(k, v)| (k, Bucket::new(&v))).collect(),
            any_host: Bucket::new(&any_host),
            uses_host,
        }
    }

    /// Whether some route has a host condition (else the request's host is not needed).
    pub fn uses_host(&self) -> bool {
        self.uses_host
    }

    /// The lowest position among the candidates for `host` (port already removed) and
    /// `path` for which `accept` holds. `accept` must check the whole match (host,
    /// path, method, headers): the index only narrows the candidates.
    pub fn find(
        &self,
        host: Option<&str>,
        path: &str,
        mut accept: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut best = u32::MAX;
        let path = path.as_bytes();
        if let Some(host) = host.filter(|_| self.uses_host) {
            let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
            let mut stack = [0u8; HOST_BUFFER];
            let heap;
            let lowered: &[u8] = match stack.get_mut(..host.len()) {
                Some(buf) => {
                    buf.copy_from_slice(host);
                    buf.make_ascii_lowercase();
                    buf
                }
                None => {
                    heap = host.to_ascii_lowercase();
                    &heap
                }
            };
            if let Some(bucket) = self.exact.get(lowered) {
                bucket.best(path, &mut best, &mut accept);
            }
            if !self.wildcard.is_empty() {
                // Every dot after the first byte starts a suffix with at least one label before it.
                for (i, _) in lowered
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|(_, b)| **b == b'.')
                {
                    if let Some(bucket) = lowered.get(i..).and_then(|s| self.wildcard.get(s)) {
                        bucket.best(path, &mut best, &mut accept);
                    }
                }
            }
            for (suffix, bucket) in &self.odd_suffixes {
                if lowered.len() > suffix.len() && lowered.ends_with(suffix) {
                    bucket.best(path, &mut best, &mut accept);
                }
            }
        }
        self.any_host.best(path, &mut best, &mut accept);
        (best != u32::MAX).then_some(best as usize)
    }
}

/// Routes of one host condition while the index is built: position and path.
type Entries<'a> = Vec<(u32, &'a PathMatch)>;

fn lower(s: &str) -> Box<[u8]> {
    s.as_bytes().to_ascii_lowercase().into_boxed_slice()
}

/// The routes of one host condition.
enum Bucket {
    /// Few routes: positions in file order, each checked.
    Small(Box<[u32]>),
    /// Many routes: split by path.
    Paths(Box<PathTrie>),
}

impl Default for Bucket {
    fn default() -> Self {
        Self::Small(Box::default())
    }
}

impl Bucket {
    fn new(routes: &[(u32, &PathMatch)]) -> Self {
        if routes.len() <= SMALL_BUCKET {
            return Self::Small(routes.iter().map(|(pos, _)| *pos).collect());
        }
        Self::Paths(Box::new(PathTrie::new(routes)))
    }

    fn best(&self, path: &[u8], best: &mut u32, accept: &mut impl FnMut(usize) -> bool) {
        match self {
            Self::Small(list) => first_accepted(list, best, accept),
            Self::Paths(trie) => trie.best(path, best, accept),
        }
    }
}

/// Lowers `best` to the first position of `list` (in file order) that `accept` takes.
fn first_accepted(list: &[u32], best: &mut u32, accept: &mut impl FnMut(usize) -> bool) {
    for &pos in list {
        if pos >= *best {
            return;
        }
        if accept(pos as usize) {
            *best = pos;
            return;
        }
    }
}

/// Exact paths in a hash map, prefixes in a byte trie.
struct PathTrie {
    exact: HashMap<Box<[u8]>, Box<[u32]>>,
    /// Node 0 is the root (the empty prefix).
    nodes: Vec<Node>,
}

#[derive(Default)]
struct Node {
    /// Children by next byte, sorted by byte.
    children: Vec<(u8, u32)>,
    /// Routes whose prefix ends here, in file order.
    routes: Vec<u32>,
}

impl PathTrie {
    fn new(routes: &[(u32, &PathMatch)]) -> Self {
        let mut exact: HashMap<Box<[u8]>, Vec<u32>> = HashMap::default();
        let mut nodes = vec![Node::default()];
        for &(pos, path) in routes {
            match path {
                PathMatch::Exact(p) => exact.entry(p.as_bytes().into()).or_default().push(pos),
                PathMatch::Prefix(p) => {
                    let mut at = 0usize;
                    for &b in p.as_bytes() {
                        at = child_or_insert(&mut nodes, at, b);
                    }
                    if let Some(node) = nodes.get_mut(at) {
                        node.routes.push(pos);
                    }
                }
            }
        }
        for node in &mut nodes {
            node.children.shrink_to_fit();
            node.routes.shrink_to_fit();
        }
        nodes.shrink_to_fit();
        Self {
            exact: exact
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
            nodes,
        }
    }

    fn best(&self, path: &[u8], best: &mut u32, accept: &mut impl FnMut(usize) -> bool) {
        if let Some(list) = self.exact.get(path) {
            first_accepted(list, best, accept);
        }
        let mut at = 0usize;
        let mut rest = path.iter();
        while let Some(node) = self.nodes.get(at) {
            first_accepted(&node.routes, best, accept);
            let Some(b) = rest.next() else { return };
            match node.children.binary_search_by_key(b, |(c, _)| *c) {
                Ok(i) => match node.children.get(i) {
                    Some((_, next)) => at = *next as usize,
                    None => return,
                },
                Err(_) => return,
            }
        }
    }
}

/// The child of node `at` for byte `b`, added when missing.
fn child_or_insert(nodes: &mut Vec<Node>, at: usize, b: u8) -> usize {
    let next = nodes.len();
    let Some(node) = nodes.get_mut(at) else {
        return at;
    };
    match node.children.binary_search_by_key(&b, |(c, _)| *c) {
        Ok(i) => node.children.get(i).map_or(at, |(_, n)| *n as usize),
        Err(i) => {
            node.children.insert(i, (b, next as u32));
            nodes.push(Node::default());
            next
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<HostMatch>, path: PathMatch) -> RouteMatch {
        RouteMatch {
            host,
            path,
            methods: vec![],
            headers: vec![],
        }
    }

    fn exact(h: &str) -> Option<HostMatch> {
        Some(HostMatch::Exact(h.into()))
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    /// Candidates the index offers for a request, in the order it checks them.
    fn candidates(index: &RouteIndex, host: Option<&str>, path: &str) -> Vec<usize> {
        let mut seen = Vec::new();
        index.find(host, path, |pos| {
            seen.push(pos);
            false
        });
        seen
    }

    #[test]
    fn exact_hosts_are_found_by_hash_case_and_dot_insensitive() {
        let routes: Vec<_> = (0..1000)
            .map(|i| route(exact(&format!("svc{i}.city.gov")), prefix("/api/")))
            .collect();
        let index = RouteIndex::new(&routes);
        assert_eq!(
            candidates(&index, Some("SVC999.City.gov."), "/api/x"),
            [999]
        );
        assert_eq!(
            index.find(Some("svc999.city.gov"), "/api/x", |_| true),
            Some(999)
        );
        assert!(candidates(&index, Some("svc1000.city.gov"), "/api/x").is_empty());
        assert!(candidates(&index, None, "/api/x").is_empty());
    }

    #[test]
    fn wildcards_need_a_label_before_the_suffix() {
        let routes = [
            route(Some(HostMatch::Suffix(".city.gov".into())), prefix("/")),
            route(Some(HostMatch::Suffix(".gov".into())), prefix("/")),
        ];
        let index = RouteIndex::new(&routes);
        assert_eq!(candidates(&index, Some("a.b.City.gov"), "/"), [0, 1]);
        assert_eq!(candidates(&index, Some("city.gov"), "/"), [1]);
        assert!(candidates(&index, Some("gov"), "/").is_empty());
        assert!(candidates(&index, Some(".gov"), "/").is_empty());
    }

    #[test]
    fn the_lowest_position_wins_across_buckets() {
        let routes = [
            route(None, prefix("/")),
            route(exact("a.gov"), prefix("/")),
            route(Some(HostMatch::Suffix(".gov".into())), prefix("/")),
        ];
        let index = RouteIndex::new(&routes);
        assert_eq!(index.find(Some("a.gov"), "/x", |_| true), Some(0));
        assert_eq!(index.find(Some("a.gov"), "/x", |p| p != 0), Some(1));
        assert_eq!(index.find(Some("a.gov"), "/x", |p| p == 2), Some(2));
        // While nothing is taken, every bucket is asked in turn ...
        assert_eq!(candidates(&index, Some("a.gov"), "/x"), [1, 2, 0]);
        // ... and once position 1 is, only lower positions are.
        let mut asked = Vec::new();
        index.find(Some("a.gov"), "/x", |p| {
            asked.push(p);
            p == 1
        });
        assert_eq!(asked, [1, 0]);
    }

    #[test]
    fn large_buckets_walk_prefixes_and_look_up_exact_paths() {
        let mut routes: Vec<_> = (0..100)
            .map(|i| route(exact("a.gov"), prefix(&format!("/svc{i}/"))))
            .collect();
        routes.push(route(exact("a.gov"), PathMatch::Exact("/svc99/x".into())));
        routes.push(route(exact("a.gov"), prefix("/")));
        routes.push(route(exact("a.gov"), prefix("")));
        let index = RouteIndex::new(&routes);
        assert!(matches!(
            index.exact.get(&b"a.gov"[..]),
            Some(Bucket::Paths(_))
        ));
        assert_eq!(
            candidates(&index, Some("a.gov"), "/svc99/x"),
            [100, 102, 101, 99]
        );
        assert_eq!(candidates(&index, Some("a.gov"), "/svc1"), [102, 101]);
        assert_eq!(index.find(Some("a.gov"), "/svc42/y", |_| true), Some(42));
        // A prefix is bytes, not segments: `/svc1/` does not take `/svc10/`.
        assert_eq!(index.find(Some("a.gov"), "/svc10/", |_| true), Some(10));
    }

    #[test]
    fn a_table_without_hosts_ignores_the_request_host() {
        let routes = [route(None, prefix("/"))];
        let index = RouteIndex::new(&routes);
        assert!(!index.uses_host());
        assert_eq!(index.find(Some("x"), "/", |_| true), Some(0));
        assert_eq!(index.find(None, "/", |_| true), Some(0));
        assert_eq!(RouteIndex::new(&[]).find(None, "/", |_| true), None);
    }

    #[test]
    fn long_hosts_are_lowered_on_the_heap() {
        let long = format!("{}.gov", "a".repeat(300));
        let routes = [route(exact(&long), prefix("/"))];
        let index = RouteIndex::new(&routes);
        assert_eq!(
            index.find(Some(&long.to_ascii_uppercase()), "/", |_| true),
            Some(0)
        );
    }
}
