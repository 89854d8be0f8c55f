//! A shell-script reader just deep enough for lint: splits a `RUN` command into simple commands
//! (words with quotes removed) and notes pipes.
//!
//! Hand-written because lint needs command boundaries (`&&`, `;`, `|`, `if … fi`, subshells), which
//! the frontend's word expander does not model and no maintained Rust crate parses POSIX shell into
//! an AST. It never fails: text it cannot make sense of simply yields fewer or odder commands.

/// One simple command of a script: `apt-get install -y curl` → words `["apt-get", "install", "-y", "curl"]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    /// Words with quotes and escapes removed; `$(...)` and `` `...` `` kept verbatim inside a word.
    pub words: Vec<String>,
    /// True when this command's output is piped into the next (`a | b`: true for `a`).
    pub pipes_into_next: bool,
    /// True for a command inside a command substitution (`$(...)` or backticks).
    pub in_substitution: bool,
}

impl Command {
    /// The command name without leading `VAR=value` assignments and without its directory
    /// (`/usr/bin/apt-get` → `apt-get`), or `""` for a command of assignments only.
    pub fn name(&self) -> &str {
        match self.args_from_name().first() {
            Some(word) => word.rsplit('/').next().unwrap_or(word),
            None => "",
        }
    }

    /// The words from the command name on (leading assignments skipped).
    pub fn args_from_name(&self) -> &[String] {
        let skip = self.words.iter().take_while(|w| is_assignment(w)).count();
        &self.words[skip..]
    }

    /// The arguments after the command name.
    pub fn args(&self) -> &[String] {
        let all = self.args_from_name();
        if all.is_empty() {
            all
        } else {
            &all[1..]
        }
    }

    /// True when any argument equals `word`.
    pub fn has_arg(&self, word: &str) -> bool {
        self.args().iter().any(|a| a == word)
    }

    /// True when any argument is one of the given flags, also as a bundle of short flags
    /// (`-qy` contains `-y`) or `--flag=value`.
    pub fn has_flag(&self, flags: &[&str]) -> bool {
        self.args().iter().any(|a| {
            flags.iter().any(|f| {
                if a == f {
                    return true;
                }
                if let Some(long) = f.strip_prefix("--") {
                    return a
                        .strip_prefix("--")
                        .and_then(|rest| rest.strip_prefix(long))
                        .is_some_and(|rest| rest.starts_with('='));
                }
                if let Some(short) = f.strip_prefix('-') {
                    if short.len() == 1 && a.starts_with('-') && !a.starts_with("--") && a.len() > 2
                    {
                        return a[1..].chars().all(|c| c.is_ascii_alphabetic())
                            && a[1..].contains(short);
                    }
                }
                false
            })
        })
    }

    /// Is this `name sub ...` (for example `apt-get install`)? `sub` is the first argument that is
    /// not a flag, skipping the values of the given value-taking flags.
    pub fn is(&self, name: &str, sub: &str) -> bool {
        self.name() == name && self.subcommand(&[]).is_some_and(|s| s == sub)
    }

    /// The first argument that is not a flag; `value_flags` take the next word as their value.
    pub fn subcommand(&self, value_flags: &[&str]) -> Option<&str> {
        let mut args = self.args().iter();
        while let Some(a) = args.next() {
            if a.starts_with('-') {
                if value_flags.contains(&a.as_str()) {
                    args.next();
                }
                continue;
            }
            return Some(a);
        }
        None
    }

    /// The non-flag arguments after the subcommand `sub`, skipping values of `value_flags`.
    pub fn operands_after(&self, sub: &str, value_flags: &[&str]) -> Vec<&str> {
        let args = self.args();
        let Some(pos) = args.iter().position(|a| a == sub) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut iter = args[pos + 1..].iter();
        while let Some(a) = iter.next() {
            if a.starts_with('-') {
                if value_flags.contains(&a.as_str()) {
                    iter.next();
                }
                continue;
            }
            out.push(a.as_str());
        }
        out
    }
}

/// True for `NAME=value` words (a shell assignment prefix).
fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// A script split into simple commands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// Commands in order; those of command substitutions follow the command that holds them.
    pub commands: Vec<Command>,
    /// Number of `|` pipe operators (not `||`), substitutions included.
    pub pipes: usize,
}

impl Script {
    /// True when any command pipes into another (`|`, not `||`), including `{ ...; } | tee`.
    pub fn has_pipe(&self) -> bool {
        self.pipes > 0
    }

    /// The commands named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Command> + 'a {
        self.commands.iter().filter(move |c| c.name() == name)
    }
}

/// Words that open or close compound commands; they are dropped from the front of a command.
const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "time",
    "esac",
];

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    /// `;`, `&&`, `||`, `&`, newline, `(`, `)`, `;;`: ends a command.
    Separator,
    Pipe,
    /// A redirection operator: the next word is its target, not an argument.
    Redirect,
}

/// Splits `text` into simple commands.
pub fn parse(text: &str) -> Script {
    parse_depth(text, 0)
}

/// Substitutions nest; past this depth their insides are not read.
const MAX_DEPTH: usize = 8;

fn parse_depth(text: &str, depth: usize) -> Script {
    let mut substitutions = Vec::new();
    let tokens = tokenize(text, &mut substitutions);
    let mut commands = Vec::new();
    let mut pipes = 0;
    let mut current = Command::default();
    let mut skip_until_separator = false;
    let mut iter = tokens.into_iter().peekable();
    while let Some(token) = iter.next() {
        match token {
            Token::Word(w) => {
                if skip_until_separator {
                    continue;
                }
                if current.words.is_empty() && RESERVED.contains(&w.as_str()) {
                    continue;
                }
                if current.words.is_empty() && (w == "for" || w == "case" || w == "select") {
                    // `for x in a b; do`: the loop header is not a command.
                    skip_until_separator = true;
                    continue;
                }
                if current.words.is_empty() && w.ends_with("()") {
                    continue;
                }
                current.words.push(w);
            }
            Token::Redirect => {
                if let Some(Token::Word(_)) = iter.peek() {
                    iter.next();
                }
            }
            Token::Pipe => {
                pipes += 1;
                skip_until_separator = false;
                if !current.words.is_empty() {
                    current.pipes_into_next = true;
                    commands.push(std::mem::take(&mut current));
                }
            }
            Token::Separator => {
                skip_until_separator = false;
                if !current.words.is_empty() {
                    commands.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.words.is_empty() {
        commands.push(current);
    }
    if depth < MAX_DEPTH {
        for sub in substitutions {
            let inner = parse_depth(&sub, depth + 1);
            pipes += inner.pipes;
            commands.extend(inner.commands.into_iter().map(|mut c| {
                c.in_substitution = true;
                c
            }));
        }
    }
    Script { commands, pipes }
}

fn tokenize(text: &str, substitutions: &mut Vec<String>) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                in_word = true;
                match chars.get(i + 1) {
                    Some('\n') => {}
                    Some(&next) => word.push(next),
                    None => {}
                }
                i += 2;
                continue;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`'))
                    {
                        word.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    if chars[i] == '$' && chars.get(i + 1) == Some(&'(') {
                        i = copy_balanced(&chars, i, &mut word, substitutions);
                        continue;
                    }
                    word.push(chars[i]);
                    i += 1;
                }
            }
            '$' if matches!(chars.get(i + 1), Some('(') | Some('{')) => {
                in_word = true;
                i = copy_balanced(&chars, i, &mut word, substitutions);
                continue;
            }
            '`' => {
                in_word = true;
                word.push('`');
                i += 1;
                let mut inner = String::new();
                while i < chars.len() && chars[i] != '`' {
                    word.push(chars[i]);
                    inner.push(chars[i]);
                    i += 1;
                }
                word.push('`');
                substitutions.push(inner);
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            ' ' | '\t' | '\r' => flush(&mut word, &mut in_word, &mut tokens),
            '\n' | ';' | '(' | ')' => {
                flush(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Separator);
            }
            '&' => {
                if chars.get(i + 1) == Some(&'>') {
                    flush(&mut word, &mut in_word, &mut tokens);
                    tokens.push(Token::Redirect);
                    i += 2;
                    if chars.get(i) == Some(&'>') {
                        i += 1;
                    }
                    continue;
                }
                flush(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Separator);
                if chars.get(i + 1) == Some(&'&') {
                    i += 1;
                }
            }
            '|' => {
                flush(&mut word, &mut in_word, &mut tokens);
                if chars.get(i + 1) == Some(&'|') {
                    tokens.push(Token::Separator);
                    i += 1;
                } else {
                    tokens.push(Token::Pipe);
                }
            }
            '>' | '<' => {
                // A leading fd number (`2>`) belongs to the redirection.
                if in_word && word.chars().all(|c| c.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                flush(&mut word, &mut in_word, &mut tokens);
                let mut j = i + 1;
                while matches!(chars.get(j), Some('>') | Some('<') | Some('|')) {
                    j += 1;
                }
                if chars.get(j) == Some(&'&') {
                    // `2>&1`: the target is an fd number, consumed as the next word.
                    j += 1;
                }
                if chars.get(j) == Some(&'(') {
                    // Process substitution `<(cmd)`: keep it as a word.
                    i = copy_balanced(&chars, j - 1, &mut word, substitutions);
                    in_word = true;
                    continue;
                }
                tokens.push(Token::Redirect);
                i = j;
                continue;
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
        i += 1;
    }
    flush(&mut word, &mut in_word, &mut tokens);
    tokens
}

/// Copies `$(...)`, `${...}` or `<(...)` starting at `start` verbatim into `word`, balancing brackets
/// (quotes respected); the inside of a `(...)` is also recorded in `substitutions`. Returns the index
/// after the closing bracket.
fn copy_balanced(
    chars: &[char],
    start: usize,
    word: &mut String,
    substitutions: &mut Vec<String>,
) -> usize {
    let open = chars.get(start + 1).copied().unwrap_or('(');
    let close = if open == '{' { '}' } else { ')' };
    let mut depth = 0usize;
    let mut i = start;
    let mut quote: Option<char> = None;
    let body_start = start + 2;
    while i < chars.len() {
        let c = chars[i];
        word.push(c);
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => {
                if let Some(&n) = chars.get(i + 1) {
                    word.push(n);
                    i += 1;
                }
            }
            Some(_) => {}
            None if (c == '\'' || c == '"') && i > start + 1 => quote = Some(c),
            None if c == '\\' => {
                if let Some(&n) = chars.get(i + 1) {
                    word.push(n);
                    i += 1;
                }
            }
            None if c == open => depth += 1,
            None if c == close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if open == '(' {
                        substitutions.push(chars[body_start.min(i)..i].iter().collect());
                    }
                    return i + 1;
                }
            }
            None => {}
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        parse(text)
            .commands
            .iter()
            .map(|c| c.name().to_string())
            .collect()
    }

    #[test]
    fn splits_on_operators_and_keywords() {
        assert_eq!(
            names("set -eux; if [ -n \"$x\" ]; then apt-get update && cd /tmp || exit 1; fi"),
            ["set", "[", "apt-get", "cd", "exit"]
        );
        assert_eq!(names("for f in a b; do rm $f; done"), ["rm"]);
        assert_eq!(names("(cd /x && make) > /dev/null 2>&1"), ["cd", "make"]);
    }

    #[test]
    fn pipes_are_not_or() {
        assert!(parse("curl -s x | tar -x").has_pipe());
        assert!(!parse("a || b").has_pipe());
        assert!(!parse("echo 'a | b'").has_pipe());
        assert!(
            parse("x=\"$(a | b)\"").has_pipe(),
            "pipes inside substitutions count"
        );
        assert!(parse("{ echo a; } | tee f").has_pipe());
        assert_eq!(parse("v=$(cat f | tr a b); echo `pwd`").commands.len(), 5);
    }

    #[test]
    fn quotes_removed_and_redirects_dropped() {
        let s = parse("DEBIAN_FRONTEND=noninteractive apt-get install -y 'curl=7.1' > log");
        assert_eq!(s.commands[0].name(), "apt-get");
        assert_eq!(s.commands[0].args(), ["install", "-y", "curl=7.1"]);
        assert!(s.commands[0].has_flag(&["-y"]));
        assert!(parse("apt-get -qy install x").commands[0].has_flag(&["-y"]));
        assert!(parse("wget --progress=dot x").commands[0].has_flag(&["--progress"]));
    }
}
