//! `--chmod` values: octal (`0755`, `644`) or symbolic (`u+x,go-w`, `a=rX`), the forms BuildKit
//! accepts. Symbolic modes apply relative to each source file's own mode, as chmod(1) does.

/// Why a `--chmod` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --chmod value {value:?}: expected octal (0755) or symbolic (u+x,go-w)")]
pub struct ChmodError {
    /// The value as written.
    pub value: String,
}

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Replace the permission bits (including setuid/setgid/sticky).
    Octal(u32),
    /// Adjust the source mode clause by clause.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` clause of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    op: char,
    perms: Vec<char>,
}

impl Chmod {
    /// Parses an octal or symbolic mode.
    pub fn parse(value: &str) -> Result<Chmod, ChmodError> {
        let err = || ChmodError {
            value: value.to_string(),
        };
        if !value.is_empty() && value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let mode = u32::from_str_radix(value, 8).map_err(|_| err())?;
            if mode > 0o7777 {
                return Err(err());
            }
            return Ok(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in value.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0u32;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => break,
                };
                chars.next();
            }
            if who == 0 {
                who = 0o7777;
            }
            let mut any = false;
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(err());
                }
                let mut perms = Vec::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, '+' | '-' | '=') {
                        break;
                    }
                    if !matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't') {
                        return Err(err());
                    }
                    perms.push(c);
                    chars.next();
                }
                clauses.push(Clause { who, op, perms });
                any = true;
            }
            if !any {
                return Err(err());
            }
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The new permission bits for a file whose current mode is `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mut mode = mode & 0o7777;
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                for c in clauses {
                    let mut bits = 0u32;
                    for p in &c.perms {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & c.who;
                    match c.op {
                        '+' => mode |= bits,
                        '-' => mode &= !bits,
                        _ => mode = (mode & !(c.who & 0o7777)) | bits,
                    }
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_symbolic_modes() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("4755").unwrap().apply(0, false), 0o4755);
        assert_eq!(Chmod::parse("u+x").unwrap().apply(0o644, false), 0o744);
        assert_eq!(Chmod::parse("go-w").unwrap().apply(0o666, false), 0o644);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o700, true), 0o555);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o600, false), 0o444);
        assert_eq!(Chmod::parse("+x").unwrap().apply(0o644, false), 0o755);
        assert_eq!(
            Chmod::parse("u=rw,go=r").unwrap().apply(0o777, false),
            0o644
        );
        for bad in ["", "999", "u+q", "u", "77777", "x+r"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
