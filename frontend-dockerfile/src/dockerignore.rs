//! Which build-context files a build may see: `.dockerignore` files and their patterns.
//!
//! The semantics are moby/patternmatcher's (what BuildKit and the Docker CLI use), **not**
//! gitignore's:
//!
//! * Patterns are trimmed, empty ones dropped, and cleaned like paths (`docs/` is `docs`,
//!   `a//b/../c` is `a/c`). A leading `!` makes an exception that re-includes; a lone `!` is an
//!   error. Later patterns override earlier ones.
//! * `*` is any run of non-`/` characters, `?` one non-`/` character, `[...]` a class (`^`
//!   negates, `\` escapes, ranges with `-`), `**` any number of directories including none, and
//!   `\` escapes the next character. A malformed pattern is an error when the matcher is built;
//!   a pattern that is well-formed but has a reversed range (`[z-a]`) is accepted and reports an
//!   error when it is used, as upstream does.
//! * A pattern excludes a path when it matches the path or any of its ancestor directories
//!   ([`PatternMatcher::matches_or_parent_matches`]; a walk can carry the per-pattern results
//!   down the tree with [`PatternMatcher::matches_using_parent_results`]). The older rule that
//!   compares only one ancestor with as many components as the pattern is kept as
//!   [`PatternMatcher::matches_legacy`].
//!
//! Ignore files ([`read_ignore_patterns`]) drop `#` comment lines (only when `#` is the very
//! first character) and blank lines, trim whitespace, and strip a leading `/` (patterns are
//! relative to the context root). [`DockerIgnore::load_for_dockerfile`] prefers
//! `<Dockerfile name>.dockerignore` beside the Dockerfile over `<context>/.dockerignore`.
//!
//! # Walking a context
//!
//! A parallel walker calls [`DockerIgnore::is_excluded`] for each entry with the [`MatchInfo`]
//! of its parent directory, keeps the returned one for the entry's children, and asks
//! [`PatternMatcher::could_match_inside`] before descending into an excluded directory: when it
//! says `false`, no exception can re-include anything below and the whole subtree can be skipped
//! (BuildKit's fsutil applies the same rule). When an excluded directory is descended into and
//! something below it is re-included, the walker must still emit that directory's entry.
//!
//! # Why compile to `regex`
//!
//! Patterns compile once to the fast exact/prefix/suffix comparisons upstream uses and otherwise
//! to a `regex::Regex`: linear-time matching whatever the pattern (no backtracking blow-up on
//! `a*a*a*a*b`), Unicode-correct classes, and one well-tested engine instead of a hand matcher.
//! Unlike upstream, which pastes the pattern into a regexp almost verbatim, each construct is
//! translated on its own, so the result always means what the glob says. Differences this makes,
//! all in patterns nobody writes on purpose: `\` followed by a letter is that letter (upstream
//! would give `\d`, `\w`, `\n` their regexp meaning or fail); `*` and `?` inside `[...]` are
//! literal characters (as in Go's `filepath.Match`); `^` outside a class is a literal character.
//!
//! Paths are `/`-separated and relative to the context root; this module only knows Unix
//! semantics (`\` is always an escape, never a separator).

use regex::{Regex, RegexBuilder};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// A pattern list that cannot be built or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A `!` with nothing after it.
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    /// Malformed syntax: an unclosed or empty `[...]`, a `-` or `]` where a class member should
    /// be, or a trailing `\`.
    #[error("syntax error in pattern {pattern:?}")]
    Syntax {
        /// The pattern as cleaned.
        pattern: String,
    },
    /// A pattern that was accepted but cannot be matched (a reversed class range such as
    /// `[z-a]`); reported when the pattern is used, as upstream does.
    #[error("syntax error in pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The pattern as cleaned.
        pattern: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// An ignore file that cannot be read or holds an invalid pattern.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreFileError {
    /// Reading the file failed (other than it not existing).
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file holds an invalid pattern.
    #[error("{path}: {source}")]
    Pattern {
        /// The file.
        path: PathBuf,
        /// The pattern error.
        source: PatternError,
    },
}

/// How one compiled pattern decides a match.
#[derive(Debug, Clone)]
enum Kind {
    /// The path equals the pattern.
    Exact,
    /// `dir/**`-style: the path starts with this text.
    Prefix(String),
    /// `**/name`-style: the path ends with this text (which starts after the `**`).
    Suffix(String),
    /// Everything else.
    Regex(Regex),
    /// Accepted but unusable; matching reports this reason.
    Bad(String),
}

/// One cleaned pattern of a list, compiled.
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    /// Number of `/`-separated components (the legacy rule compares this many).
    components: usize,
    kind: Kind,
}

impl Pattern {
    /// The cleaned pattern text, without the leading `!` of an exception.
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether this is an exception (`!pattern`) that re-includes what it matches.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// Whether this pattern matches exactly `path` (no ancestor logic).
    pub fn matches(&self, path: &str) -> Result<bool, PatternError> {
        Ok(match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Kind::Regex(re) => re.is_match(path),
            Kind::Bad(reason) => {
                return Err(PatternError::BadPattern {
                    pattern: self.cleaned.clone(),
                    reason: reason.clone(),
                })
            }
        })
    }

    /// The pattern with a trailing `/**` or `/*` removed (fsutil's view of what an exception
    /// names when deciding whether a directory can be skipped).
    fn without_trailing_glob(&self) -> &str {
        let p = self.cleaned.as_str();
        let p = p.strip_suffix("/**").unwrap_or(p);
        p.strip_suffix("/*").unwrap_or(p)
    }
}

/// Per-pattern results for a directory, handed to its children during a walk.
///
/// `MatchInfo::default()` means "no information about the parent": the children's ancestors are
/// then checked directly, so it is always correct, just slower.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// An ordered, compiled pattern list with moby/patternmatcher's matching rules.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
    /// True when every exception, less a trailing `/**` or `/*`, is a plain path: then a
    /// directory can be skipped unless some exception lies inside it.
    only_prefix_exceptions: bool,
}

impl PatternMatcher {
    /// Builds a matcher from patterns as they would appear in an ignore file after reading.
    /// Whitespace is trimmed, empty patterns dropped, the rest cleaned like paths.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut compiled = Vec::new();
        let mut exclusions = false;
        for raw in patterns {
            let trimmed = raw.as_ref().trim();
            if trimmed.is_empty() {
                continue;
            }
            let cleaned = clean(trimmed);
            let (exclusion, body) = match cleaned.strip_prefix('!') {
                Some("") => return Err(PatternError::LoneExclamation),
                Some(rest) => (true, rest.to_string()),
                None => (false, cleaned.into_owned()),
            };
            exclusions |= exclusion;
            let kind = compile(&body)?;
            compiled.push(Pattern {
                components: body.split('/').count(),
                cleaned: body,
                exclusion,
                kind,
            });
        }
        const GLOB_CHARS: &[char] = &['*', '[', ']', '?', '^', '\\'];
        let only_prefix_exceptions = compiled
            .iter()
            .filter(|p| p.exclusion)
            .all(|p| !p.without_trailing_glob().contains(GLOB_CHARS));
        Ok(PatternMatcher {
            patterns: compiled,
            exclusions,
            only_prefix_exceptions,
        })
    }

    /// Fails with the first pattern that was accepted but cannot be matched (a reversed class
    /// range). Upstream only reports it when the pattern is first used; calling this before a
    /// walk turns that into an up-front error, after which matching never fails.
    pub fn check_usable(&self) -> Result<(), PatternError> {
        for p in &self.patterns {
            if let Kind::Bad(reason) = &p.kind {
                return Err(PatternError::BadPattern {
                    pattern: p.cleaned.clone(),
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether the list has no patterns (nothing is ever excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is an exception (`!pattern`).
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// Whether `path` is excluded: the last pattern that matches it or one of its ancestor
    /// directories decides. This is the rule BuildKit applies to the build context. The path
    /// is cleaned first; the context root itself (`.`) is never excluded.
    pub fn matches_or_parent_matches(&self, path: &str) -> Result<bool, PatternError> {
        let file = clean(path);
        if file == "." {
            return Ok(false);
        }
        let parent = dir(&file);
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change a match, an exception cannot change a non-match.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(&file)?;
            if !hit && parent != "." {
                hit = ancestors(&parent).any(|a| pattern.matches(a).unwrap_or(false));
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// The older rule: a pattern matches the path, or the ancestor of the path that has as many
    /// components as the pattern. Kept for compatibility checks; prefer
    /// [`matches_or_parent_matches`](Self::matches_or_parent_matches).
    pub fn matches_legacy(&self, path: &str) -> Result<bool, PatternError> {
        let file = clean(path);
        if file == "." {
            return Ok(false);
        }
        let parent = dir(&file);
        let parent_components = parent.split('/').count();
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(&file)?;
            if !hit && parent != "." && pattern.components <= parent_components {
                if let Some(a) = ancestors(&parent).nth(pattern.components - 1) {
                    hit = pattern.matches(a).unwrap_or(false);
                }
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Whether `path` itself matches, ignoring its ancestors.
    pub fn matches_exact(&self, path: &str) -> Result<bool, PatternError> {
        let file = clean(path);
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            if pattern.matches(&file)? {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Whether `path` is excluded, given the [`MatchInfo`] its parent directory produced
    /// (`MatchInfo::default()` for top-level entries or when unknown). Returns the verdict and
    /// the info to pass to `path`'s own children.
    pub fn matches_using_parent_results(
        &self,
        path: &str,
        parent: &MatchInfo,
    ) -> Result<(bool, MatchInfo), PatternError> {
        let parent_matched = &parent.parent_matched;
        let known = !parent_matched.is_empty();
        if known && parent_matched.len() != self.patterns.len() {
            return Err(PatternError::BadPattern {
                pattern: String::new(),
                reason: format!(
                    "parent match info has {} entries for {} patterns",
                    parent_matched.len(),
                    self.patterns.len()
                ),
            });
        }
        let file = clean(path);
        let mut info = vec![false; self.patterns.len()];
        let mut matched = false;
        for (i, pattern) in self.patterns.iter().enumerate() {
            // A pattern that matched the parent matches everything inside it.
            let mut hit = known && parent_matched[i];
            if !hit {
                if pattern.exclusion != matched {
                    continue;
                }
                hit = pattern.matches(&file)?;
                if !hit && !known {
                    let parent_dir = dir(&file);
                    if parent_dir != "." {
                        hit = ancestors(&parent_dir).any(|a| pattern.matches(a).unwrap_or(false));
                    }
                }
            }
            info[i] = hit;
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok((
            matched,
            MatchInfo {
                parent_matched: info,
            },
        ))
    }

    /// For an excluded directory `dir`: could an exception re-include something inside it?
    /// `false` means the walker may skip the whole subtree. Conservative: any exception with a
    /// wildcard (other than a trailing `/*` or `/**`) answers `true` for every directory.
    pub fn could_match_inside(&self, dir: &str) -> bool {
        if !self.exclusions {
            return false;
        }
        if !self.only_prefix_exceptions {
            return true;
        }
        let dir = clean(dir);
        let dir = dir.trim_end_matches('/');
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let named = p.without_trailing_glob();
            // `named + "/"` starts with `dir + "/"`.
            named
                .strip_prefix(dir)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// A build's ignore rules: the patterns and the file they came from.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    source: Option<PathBuf>,
    matcher: PatternMatcher,
}

/// The answer for one walked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the entry is excluded from the context.
    pub excluded: bool,
    /// What to pass as the parent info when checking this entry's children.
    pub info: MatchInfo,
}

impl DockerIgnore {
    /// Rules from an ignore file's text.
    pub fn parse(content: &[u8]) -> Result<Self, PatternError> {
        Ok(DockerIgnore {
            source: None,
            matcher: PatternMatcher::new(read_ignore_patterns(content))?,
        })
    }

    /// Rules from an already-read pattern list.
    pub fn from_patterns<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(DockerIgnore {
            source: None,
            matcher: PatternMatcher::new(patterns)?,
        })
    }

    /// Loads the rules for building `dockerfile` with `context_dir`:
    /// `<dir of dockerfile>/<dockerfile name>.dockerignore` if it exists, else
    /// `<context_dir>/.dockerignore`, else no rules.
    pub fn load_for_dockerfile(
        context_dir: &Path,
        dockerfile: &Path,
    ) -> Result<Self, IgnoreFileError> {
        let mut candidates = Vec::with_capacity(2);
        if let Some(name) = dockerfile.file_name() {
            let mut specific = name.to_os_string();
            specific.push(".dockerignore");
            candidates.push(dockerfile.with_file_name(specific));
        }
        candidates.push(context_dir.join(".dockerignore"));
        Self::load_first(candidates)
    }

    /// Loads `<context_dir>/.dockerignore`, or no rules: the rules of a named build context
    /// (`--build-context NAME=DIR`), which has no Dockerfile of its own.
    pub fn load(context_dir: &Path) -> Result<Self, IgnoreFileError> {
        Self::load_first(vec![context_dir.join(".dockerignore")])
    }

    fn load_first(candidates: Vec<PathBuf>) -> Result<Self, IgnoreFileError> {
        for path in candidates {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let matcher =
                        PatternMatcher::new(read_ignore_patterns(&bytes)).map_err(|source| {
                            IgnoreFileError::Pattern {
                                path: path.clone(),
                                source,
                            }
                        })?;
                    return Ok(DockerIgnore {
                        source: Some(path),
                        matcher,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(IgnoreFileError::Io { path, source }),
            }
        }
        Ok(DockerIgnore::default())
    }

    /// The ignore file the rules came from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The compiled patterns.
    pub fn matcher(&self) -> &PatternMatcher {
        &self.matcher
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is excluded, given its
    /// parent's info (`None` at the top level or when unknown). Cheap when there are no
    /// patterns. Safe to call from many threads at once.
    pub fn is_excluded(
        &self,
        rel_path: &str,
        parent: Option<&MatchInfo>,
    ) -> Result<Verdict, PatternError> {
        if self.matcher.is_empty() {
            return Ok(Verdict {
                excluded: false,
                info: MatchInfo::default(),
            });
        }
        let empty = MatchInfo::default();
        let (excluded, info) = self
            .matcher
            .matches_using_parent_results(rel_path, parent.unwrap_or(&empty))?;
        Ok(Verdict { excluded, info })
    }

    /// See [`PatternMatcher::could_match_inside`].
    pub fn could_match_inside(&self, dir: &str) -> bool {
        self.matcher.could_match_inside(dir)
    }
}

/// The engine's context walk asks through this seam. A walk without parent info re-checks
/// ancestors, which is always correct. A pattern that cannot be used counts as excluding (fail
/// closed): call [`PatternMatcher::check_usable`] first to report it instead.
impl engine::source::context::PathFilter for DockerIgnore {
    fn is_excluded(&self, rel: &str) -> bool {
        self.matcher.matches_or_parent_matches(rel).unwrap_or(true)
    }

    fn must_descend(&self, rel_dir: &str) -> bool {
        self.matcher.could_match_inside(rel_dir)
    }
}

/// Turns ignore-file text into a pattern list: a UTF-8 byte-order mark is dropped, lines whose
/// first character is `#` are comments, lines are trimmed and blank ones dropped, an exception's
/// `!` loses the whitespace after it, and patterns are cleaned with a leading `/` removed.
/// A lone `!` is kept (building the matcher rejects it). Invalid UTF-8 is replaced, not fatal.
pub fn read_ignore_patterns(content: &[u8]) -> Vec<String> {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    let text = String::from_utf8_lossy(content);
    let mut patterns = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut out = String::with_capacity(pattern.len() + 1);
        if invert {
            out.push('!');
        }
        if !pattern.is_empty() {
            let cleaned = clean(pattern);
            let relative = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest,
                _ => &cleaned,
            };
            out.push_str(relative);
        }
        patterns.push(out);
    }
    patterns
}

/// Lexical path cleaning with Go's `path.Clean` rules: one `/` between elements, no `.`
/// elements, `..` cancels the element before it (and is dropped at the root), no trailing `/`;
/// an empty result is `.`. Borrowed when already clean.
pub fn clean(path: &str) -> Cow<'_, str> {
    if is_clean(path) {
        return Cow::Borrowed(path);
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    // Leading `..` elements a relative path cannot cancel.
    let mut fixed = 0;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.len() > fixed {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                    fixed += 1;
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    Cow::Owned(match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    })
}

fn is_clean(path: &str) -> bool {
    if path.is_empty() {
        return false;
    }
    if path == "/" || path == "." {
        return true;
    }
    if path.ends_with('/') {
        return false;
    }
    let body = path.strip_prefix('/').unwrap_or(path);
    let rooted = body.len() != path.len();
    let mut seen_normal = false;
    for part in body.split('/') {
        match part {
            "" | "." => return false,
            ".." if rooted || seen_normal => return false,
            ".." => {}
            _ => seen_normal = true,
        }
    }
    true
}

/// Go's `filepath.Dir` for a cleaned path: everything before the last `/`, cleaned.
fn dir(path: &str) -> Cow<'_, str> {
    match path.rfind('/') {
        None => Cow::Borrowed("."),
        Some(0) => Cow::Borrowed("/"),
        Some(i) => clean(&path[..i]),
    }
}

/// The ancestors of a parent directory from the top: for `a/b/c`, `a`, `a/b`, `a/b/c`
/// (the joins of the first 1, 2, 3 components, so `/a` gives `` and `/a`).
fn ancestors(parent: &str) -> impl Iterator<Item = &str> {
    parent
        .match_indices('/')
        .map(move |(i, _)| &parent[..i])
        .chain(std::iter::once(parent))
}

/// Compiles one cleaned pattern (without its `!`) into the cheapest matcher that is exact,
/// mirroring upstream's classification into exact, prefix (`dir/**`), suffix (`**/name`) and
/// regexp patterns. Syntax is checked here, with `filepath.Match`'s rules.
fn compile(pattern: &str) -> Result<Kind, PatternError> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let syntax = || PatternError::Syntax {
        pattern: pattern.to_string(),
    };
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let mut bad: Option<String> = None;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is the same as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        detected = Detected::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    detected = Detected::Regex;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                detected = Detected::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                detected = Detected::Regex;
            }
            '\\' => {
                let Some(&escaped) = chars.get(i) else {
                    return Err(syntax());
                };
                i += 1;
                push_literal(&mut re, escaped);
                detected = Detected::Regex;
            }
            '[' => {
                let Some((class, next)) = parse_class(&chars, i) else {
                    return Err(syntax());
                };
                i = next;
                if let Some((lo, hi)) = class.ranges.iter().find(|(lo, hi)| lo > hi) {
                    bad.get_or_insert_with(|| format!("invalid character class range {lo}-{hi}"));
                }
                re.push('[');
                if class.negated {
                    re.push('^');
                }
                for &(lo, hi) in &class.ranges {
                    push_literal(&mut re, lo);
                    if hi != lo {
                        re.push('-');
                        push_literal(&mut re, hi);
                    }
                }
                re.push(']');
                detected = Detected::Regex;
            }
            ']' => {
                push_literal(&mut re, ch);
                detected = Detected::Regex;
            }
            other => push_literal(&mut re, other),
        }
        first = false;
    }
    if let Some(reason) = bad {
        return Ok(Kind::Bad(reason));
    }
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        // Strip the trailing `**`.
        Detected::Prefix => Kind::Prefix(pattern.strip_suffix("**").unwrap_or(pattern).to_string()),
        // Strip the leading `**`.
        Detected::Suffix => Kind::Suffix(pattern.strip_prefix("**").unwrap_or(pattern).to_string()),
        Detected::Regex => {
            re.push('$');
            match RegexBuilder::new(&re).size_limit(1 << 24).build() {
                Ok(compiled) => Kind::Regex(compiled),
                Err(e) => Kind::Bad(e.to_string()),
            }
        }
    })
}

fn push_literal(re: &mut String, ch: char) {
    let mut buf = [0u8; 4];
    re.push_str(&regex::escape(ch.encode_utf8(&mut buf)));
}

struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

/// Parses a `[...]` class starting just after the `[` with `filepath.Match`'s grammar; returns
/// the class and the index after its `]`, or `None` when malformed.
fn parse_class(chars: &[char], mut i: usize) -> Option<(Class, usize)> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Some((Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_member(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_member(chars, i + 1)?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

/// One class member: not `-` or `]`, `\` escapes, and the class must continue after it.
fn class_member(chars: &[char], mut i: usize) -> Option<(char, usize)> {
    match chars.get(i)? {
        '-' | ']' => return None,
        '\\' => i += 1,
        _ => {}
    }
    let ch = *chars.get(i)?;
    i += 1;
    if i >= chars.len() {
        return None;
    }
    Some((ch, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &[&str], path: &str) -> bool {
        PatternMatcher::new(patterns)
            .unwrap()
            .matches_or_parent_matches(path)
            .unwrap()
    }

    /// Walks `path` from the top as a context walker would, carrying [`MatchInfo`] down.
    fn walked(patterns: &[&str], path: &str) -> bool {
        let m = PatternMatcher::new(patterns).unwrap();
        let mut info = MatchInfo::default();
        let mut verdict = false;
        let mut prefix = String::new();
        for part in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            let (v, next) = m.matches_using_parent_results(&prefix, &info).unwrap();
            verdict = v;
            info = next;
        }
        verdict
    }

    #[test]
    fn clean_matches_go() {
        let cases = [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("./a/./b/", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("/../a", "/a"),
            ("a/b/../../..", ".."),
            ("!docs/", "!docs"),
            ("!foo/../bar", "bar"),
            ("abc", "abc"),
            ("..", ".."),
            ("/..", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn kinds_follow_upstream_classification() {
        let kind = |p: &str| match compile(p).unwrap() {
            Kind::Exact => "exact",
            Kind::Prefix(_) => "prefix",
            Kind::Suffix(_) => "suffix",
            Kind::Regex(_) => "regexp",
            Kind::Bad(_) => "bad",
        };
        assert_eq!(kind("abc.def"), "exact");
        assert_eq!(kind("a(b)c/def"), "exact");
        assert_eq!(kind("dir/**"), "prefix");
        assert_eq!(kind("**"), "suffix");
        assert_eq!(kind("**/dir"), "suffix");
        assert_eq!(kind("**file"), "suffix");
        assert_eq!(kind("**/**"), "regexp");
        assert_eq!(kind("**/dir2/*"), "regexp");
        assert_eq!(kind("a*/b"), "regexp");
        assert_eq!(kind("[z-a]"), "bad");
    }

    #[test]
    fn exceptions_and_ordering() {
        assert!(!excluded(&["docs", "!docs/README.md"], "docs/README.md"));
        assert!(excluded(&["docs", "!docs/README.md"], "docs/other.md"));
        assert!(excluded(&["!fileutils.go", "*.go"], "fileutils.go"));
        assert!(!excluded(&["*.go", "!fileutils.go"], "fileutils.go"));
        assert!(excluded(&["**", "!keep", "keep/x"], "keep/x"));
        assert!(!excluded(&["*.go"], "."));
        assert!(!excluded(&["*.go"], "./"));
    }

    #[test]
    fn class_members_are_literal() {
        assert!(excluded(&["a[*]b"], "a*b"));
        assert!(!excluded(&["a[*]b"], "axb"));
        assert!(excluded(&["a[?.]b"], "a.b"));
        assert!(excluded(&[r"a\db"], "adb"));
        assert!(!excluded(&[r"a\db"], "a1b"));
        assert!(excluded(&["a^b*"], "a^bc"));
        assert!(excluded(&["[^a]*"], "b"));
    }

    #[test]
    fn malformed_patterns() {
        for p in [
            "[", "a[", "[]a]", "[-]", "[x-]", "[a-b-c]", "\\", "a\\", "[^", "[^bc", "!",
        ] {
            assert!(PatternMatcher::new([p]).is_err(), "{p}");
        }
        // Accepted, but unusable: reported when used, and again on a second use.
        let m = PatternMatcher::new(["[Local-Only]/"]).unwrap();
        assert!(matches!(
            m.check_usable(),
            Err(PatternError::BadPattern { .. })
        ));
        assert!(PatternMatcher::new(["[a-z]", "!x"])
            .unwrap()
            .check_usable()
            .is_ok());
        assert!(m.matches_or_parent_matches("x").is_err());
        assert!(m.matches_or_parent_matches("x").is_err());
        // An unusable exception is only consulted once something matched.
        let m = PatternMatcher::new(["a", "![z-a]"]).unwrap();
        assert!(!m.matches_or_parent_matches("b").unwrap());
        assert!(m.matches_or_parent_matches("a").is_err());
    }

    #[test]
    fn legacy_rule_checks_one_ancestor() {
        let m = PatternMatcher::new(["a*"]).unwrap();
        assert!(m.matches_legacy("ab/c").unwrap());
        let m = PatternMatcher::new(["b"]).unwrap();
        assert!(!m.matches_legacy("a/b/c").unwrap());
        assert!(m.matches_or_parent_matches("a/b/c").is_ok_and(|v| !v));
        let m = PatternMatcher::new(["*/b"]).unwrap();
        assert!(m.matches_legacy("a/b/c").unwrap());
    }

    #[test]
    fn walk_agrees_with_stateless_check() {
        let lists: &[&[&str]] = &[
            &["docs", "!docs/README.md"],
            &["**", "!util/docker/web"],
            &["**", "!util/docker/web", "util/docker/web/foo"],
            &["*/tmp", "!a/tmp/keep", "**/*.log"],
            &["a/**", "!a/b/**", "a/b/c"],
        ];
        let paths = [
            "docs/README.md",
            "docs/x",
            "util/docker/web/foo",
            "util/docker/x",
            "a/tmp/keep/f",
            "a/tmp/x",
            "b/c/d.log",
            "a/b/c/d",
            "a/b/x",
            "a/x",
        ];
        for list in lists {
            for path in paths {
                assert_eq!(excluded(list, path), walked(list, path), "{list:?} {path}");
            }
        }
    }

    #[test]
    fn skipping_excluded_directories() {
        let m = PatternMatcher::new(["build", "node_modules"]).unwrap();
        assert!(!m.could_match_inside("build"));
        let m = PatternMatcher::new(["docs", "!docs/README.md"]).unwrap();
        assert!(m.could_match_inside("docs"));
        assert!(!m.could_match_inside("doc"));
        assert!(!m.could_match_inside("docs/sub"));
        let m = PatternMatcher::new(["a", "!a/b/**"]).unwrap();
        assert!(m.could_match_inside("a"));
        assert!(m.could_match_inside("a/b"));
        assert!(!m.could_match_inside("a/c"));
        let m = PatternMatcher::new(["a", "!**/*.md"]).unwrap();
        assert!(m.could_match_inside("a"));
    }

    #[test]
    fn engine_context_walk_honours_the_rules() {
        use engine::source::context::ContextSnapshot;
        let ctx = tempfile::tempdir().unwrap();
        let root = ctx.path();
        for dir in ["docs", "build/deep", "src"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "docs/README.md",
            "docs/other.md",
            "build/deep/out.o",
            "src/main.rs",
            "src/x.log",
        ] {
            std::fs::write(root.join(file), file).unwrap();
        }
        let ignore = DockerIgnore::parse(b"docs\n!docs/README.md\nbuild\n**/*.log\n").unwrap();
        assert!(!ignore.could_match_inside("build"));
        let snapshot = ContextSnapshot::walk(root, &ignore).unwrap();
        let mut seen: Vec<&str> = snapshot.entries().iter().map(|e| e.rel.as_str()).collect();
        seen.sort();
        // An excluded directory appears when it holds a re-included file, as BuildKit sends
        // re-included files with their parent directories (and only those).
        assert_eq!(seen, vec!["docs", "docs/README.md", "src", "src/main.rs"]);
    }

    #[test]
    fn reading_ignore_files() {
        let text =
            "\u{feff}# comment\n  # not a comment\r\n/abs/path/\n\n! /inv\n!\nx//y/../z\n/\n";
        assert_eq!(
            read_ignore_patterns(text.as_bytes()),
            vec!["# not a comment", "abs/path", "!inv", "!", "x/z", "/"]
        );
        assert!(DockerIgnore::parse(b"a\n!\n").is_err());
        let ig = DockerIgnore::parse(b"*.tmp\n!keep.tmp\n").unwrap();
        assert!(ig.is_excluded("x.tmp", None).unwrap().excluded);
        assert!(!ig.is_excluded("keep.tmp", None).unwrap().excluded);
        assert!(!ig.is_excluded("x.txt", None).unwrap().excluded);
    }

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let ctx = tempfile::tempdir().unwrap();
        let dir = ctx.path();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join(".dockerignore"), "from-context\n").unwrap();
        let dockerfile = dir.join("sub/app.Dockerfile");
        std::fs::write(&dockerfile, "FROM scratch\n").unwrap();

        let ig = DockerIgnore::load_for_dockerfile(dir, &dockerfile).unwrap();
        assert_eq!(ig.source(), Some(dir.join(".dockerignore").as_path()));
        assert!(ig.is_excluded("from-context", None).unwrap().excluded);

        std::fs::write(dir.join("sub/app.Dockerfile.dockerignore"), "specific\n").unwrap();
        let ig = DockerIgnore::load_for_dockerfile(dir, &dockerfile).unwrap();
        assert_eq!(
            ig.source(),
            Some(dir.join("sub/app.Dockerfile.dockerignore").as_path())
        );
        assert!(ig.is_excluded("specific", None).unwrap().excluded);
        assert!(!ig.is_excluded("from-context", None).unwrap().excluded);

        let empty = tempfile::tempdir().unwrap();
        let ig = DockerIgnore::load_for_dockerfile(empty.path(), &empty.path().join("Dockerfile"))
            .unwrap();
        assert!(ig.source().is_none() && ig.matcher().is_empty());

        std::fs::write(dir.join("sub/app.Dockerfile.dockerignore"), "ok\n!\n").unwrap();
        let err = DockerIgnore::load_for_dockerfile(dir, &dockerfile).unwrap_err();
        assert!(matches!(err, IgnoreFileError::Pattern { .. }), "{err}");
        assert!(err.to_string().contains("app.Dockerfile.dockerignore"));
    }

    /// Deterministic pseudo-random patterns and paths from an alphabet of the characters that
    /// matter: nothing may panic, and the walk must agree with the stateless check.
    #[test]
    fn random_patterns_never_panic() {
        const ALPHABET: &[char] = &[
            'a', 'b', '/', '*', '?', '[', ']', '^', '-', '\\', '!', '.', ' ', 'é', '☺',
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..3_000 {
            let mut gen = |max: usize| -> String {
                let len = next(max);
                (0..len).map(|_| ALPHABET[next(ALPHABET.len())]).collect()
            };
            let patterns = [gen(8), gen(8)];
            let path: String = gen(10).replace(['*', '?', '[', ']', '\\', '!'], "a");
            let Ok(m) = PatternMatcher::new(&patterns) else {
                continue;
            };
            let stateless = m.matches_or_parent_matches(&path);
            let _ = m.matches_legacy(&path);
            let _ = m.matches_exact(&path);
            let _ = m.could_match_inside(&path);
            let rel = clean(&path);
            if rel.starts_with('/') || rel.starts_with("..") || rel == "." {
                continue;
            }
            let mut info = MatchInfo::default();
            let mut verdict = Ok(false);
            let mut prefix = String::new();
            for part in rel.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                match m.matches_using_parent_results(&prefix, &info) {
                    Ok((v, next_info)) => {
                        verdict = Ok(v);
                        info = next_info;
                    }
                    Err(e) => {
                        verdict = Err(e);
                        break;
                    }
                }
            }
            if let (Ok(a), Ok(b)) = (&stateless, &verdict) {
                assert_eq!(a, b, "{patterns:?} {path:?}");
            }
        }
    }
}
