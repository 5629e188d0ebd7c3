//! Name multiplexing: how a target's tools, prompts and resource URIs are shown to clients, and
//! how a client-facing name is routed back to `(target, original name)`.
//!
//! Like agentgateway: tool and prompt names become `${target}_${name}` (delimiter `_`) and
//! resource URIs with a scheme become `${target}+${uri}`. With `prefixMode: conditional`
//! (the default) a single target is not prefixed; `always` prefixes even one target; `never`
//! does not prefix and routes by asking which target lists the name.

use super::config::RawMcpPrefixMode;

/// Between target name and tool/prompt name.
pub const DELIMITER: char = '_';
/// Between target name and a resource URI.
pub const URI_DELIMITER: char = '+';

/// The naming rules for one backend, fixed at config load.
#[derive(Clone, Debug)]
pub struct Naming {
    targets: Vec<String>,
    /// Names carry the target prefix.
    prefix: bool,
    /// Several targets without prefixes: routing needs a lookup.
    lookup: bool,
}

/// Where a client-facing name goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// Target index and the target's own name.
    Target(usize, &'a str),
    /// `prefixMode: never` with several targets: find the target that lists this name.
    Lookup(&'a str),
    /// No target matches the prefix.
    Unknown,
}

impl Naming {
    pub fn new(mode: RawMcpPrefixMode, targets: Vec<String>) -> Self {
        let many = targets.len() > 1;
        let (prefix, lookup) = match mode {
            RawMcpPrefixMode::Always => (true, false),
            RawMcpPrefixMode::Conditional => (many, false),
            RawMcpPrefixMode::Never => (false, many),
        };
        Naming {
            targets,
            prefix,
            lookup,
        }
    }

    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// Whether several targets are merged (resource URIs are then namespaced).
    pub fn multiplexing(&self) -> bool {
        self.targets.len() > 1
    }

    /// The client-facing name of target `idx`'s tool or prompt `name`.
    pub fn expose(&self, idx: usize, name: &str) -> String {
        match (self.prefix, self.targets.get(idx)) {
            (true, Some(t)) => format!("{t}{DELIMITER}{name}"),
            _ => name.to_string(),
        }
    }

    /// Routes a client-facing tool or prompt name. Target names may themselves contain `_`;
    /// the longest matching target name wins.
    pub fn route<'a>(&self, exposed: &'a str) -> Route<'a> {
        if self.lookup {
            return Route::Lookup(exposed);
        }
        if !self.prefix {
            return if self.targets.is_empty() {
                Route::Unknown
            } else {
                Route::Target(0, exposed)
            };
        }
        self.longest_prefix(exposed, DELIMITER)
            .map_or(Route::Unknown, |(i, rest)| Route::Target(i, rest))
    }

    /// The client-facing form of a resource URI (or URI template) from target `idx`.
    pub fn expose_uri(&self, idx: usize, uri: &str) -> String {
        match self.targets.get(idx) {
            Some(t) if self.multiplexing() && has_scheme(uri) => {
                format!("{t}{URI_DELIMITER}{uri}")
            }
            _ => uri.to_string(),
        }
    }

    /// Routes a client-facing resource URI back to `(target, original uri)`.
    pub fn route_uri<'a>(&self, uri: &'a str) -> Option<(usize, &'a str)> {
        if !self.multiplexing() {
            return (!self.targets.is_empty()).then_some((0, uri));
        }
        self.longest_prefix(uri, URI_DELIMITER)
    }

    fn longest_prefix<'a>(&self, s: &'a str, delim: char) -> Option<(usize, &'a str)> {
        self.targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                s.strip_prefix(t.as_str())
                    .and_then(|r| r.strip_prefix(delim))
                    .map(|rest| (i, t.len(), rest))
            })
            .max_by_key(|(_, len, _)| *len)
            .map(|(i, _, rest)| (i, rest))
    }
}

/// Whether `uri` starts with an RFC 3986 scheme (`alpha *( alpha / digit / + / - / . ) ":"`).
fn has_scheme(uri: &str) -> bool {
    let mut chars = uri.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    for c in chars {
        match c {
            ':' => return true,
            c if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') => {}
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(mode: RawMcpPrefixMode, targets: &[&str]) -> Naming {
        Naming::new(mode, targets.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn conditional_prefixes_only_when_multiplexing() {
        let one = naming(RawMcpPrefixMode::Conditional, &["everything"]);
        assert_eq!(one.expose(0, "echo"), "echo");
        assert_eq!(one.route("echo"), Route::Target(0, "echo"));
        assert_eq!(one.expose_uri(0, "demo://r/1"), "demo://r/1");
        assert_eq!(one.route_uri("demo://r/1"), Some((0, "demo://r/1")));

        let two = naming(RawMcpPrefixMode::Conditional, &["a", "b"]);
        assert_eq!(two.expose(1, "echo"), "b_echo");
        assert_eq!(two.route("b_echo"), Route::Target(1, "echo"));
        assert_eq!(two.route("a_get_sum"), Route::Target(0, "get_sum"));
        assert_eq!(two.route("c_echo"), Route::Unknown);
        assert_eq!(two.route("echo"), Route::Unknown);
    }

    #[test]
    fn always_and_never() {
        let always = naming(RawMcpPrefixMode::Always, &["solo"]);
        assert_eq!(always.expose(0, "echo"), "solo_echo");
        assert_eq!(always.route("solo_echo"), Route::Target(0, "echo"));
        assert_eq!(always.route("echo"), Route::Unknown);

        let never = naming(RawMcpPrefixMode::Never, &["a", "b"]);
        assert_eq!(never.expose(1, "echo"), "echo");
        assert_eq!(never.route("echo"), Route::Lookup("echo"));
        let never_one = naming(RawMcpPrefixMode::Never, &["a"]);
        assert_eq!(never_one.route("echo"), Route::Target(0, "echo"));
    }

    #[test]
    fn target_names_with_delimiter_pick_longest() {
        let n = naming(RawMcpPrefixMode::Conditional, &["my", "my_srv"]);
        assert_eq!(n.route("my_srv_echo"), Route::Target(1, "echo"));
        assert_eq!(n.route("my_echo"), Route::Target(0, "echo"));
        let exposed = n.expose(1, "x_y");
        assert_eq!(n.route(&exposed), Route::Target(1, "x_y"));
    }

    #[test]
    fn uris_are_namespaced_when_multiplexing() {
        let n = naming(RawMcpPrefixMode::Conditional, &["a", "b"]);
        assert_eq!(n.expose_uri(0, "demo://resource/1"), "a+demo://resource/1");
        assert_eq!(n.expose_uri(1, "memo:insights"), "b+memo:insights");
        assert_eq!(n.expose_uri(1, "relative/path"), "relative/path");
        assert_eq!(
            n.route_uri("a+demo://resource/1"),
            Some((0, "demo://resource/1"))
        );
        assert_eq!(n.route_uri("b+memo:insights"), Some((1, "memo:insights")));
        assert_eq!(n.route_uri("demo://resource/1"), None);
    }

    #[test]
    fn scheme_detection() {
        for (uri, want) in [
            ("http://x", true),
            ("svn+ssh://h", true),
            ("urn:uuid:1", true),
            ("1abc:x", false),
            ("no-scheme", false),
            ("a b:c", false),
            ("", false),
        ] {
            assert_eq!(has_scheme(uri), want, "{uri}");
        }
    }
}
