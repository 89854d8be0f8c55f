//! Parsers for the small value languages inside instructions: Go durations (HEALTHCHECK),
//! port specs (EXPOSE), signal names (STOPSIGNAL), file modes (`--chmod`), digests (`--checksum`).
//!
//! Hand-written because each is a few lines and must match Go's (moby's) exact acceptance rules,
//! which general-purpose crates (humantime, ...) do not.

use engine::graph::FileMode;

/// Parses a Go `time.Duration` string (`30s`, `1m30s`, `1.5h`, `0`) into nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<u64, String> {
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    if body == "0" {
        return Ok(0);
    }
    if body.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return Err("expected a number".into());
        }
        let value: f64 = num.parse().map_err(|_| format!("bad number `{num}`"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err("missing unit (ns, us, ms, s, m, h)".into()),
            other => return Err(format!("unknown unit `{other}`")),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if total > u64::MAX as f64 / 2.0 {
        return Err("duration out of range".into());
    }
    Ok(total.round() as u64)
}

/// Parses one EXPOSE word (`80`, `80/tcp`, `8000-8010/udp`, `127.0.0.1:80:8080`) into
/// `port/proto` entries, a range giving one entry per port, as moby's `nat.ParsePortSpecs` does.
pub fn parse_port_spec(raw: &str) -> Result<Vec<String>, String> {
    let (port_part, proto) = match raw.split_once('/') {
        Some((p, "")) => (p, "tcp".to_string()),
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (raw, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("unknown protocol `{proto}` (tcp, udp or sctp)"));
    }
    // `ip:host:container` or `host:container`: the container port is what is exposed.
    let container = port_part.rsplit(':').next().unwrap_or(port_part);
    if container.is_empty() {
        return Err("no port number".into());
    }
    let parse = |p: &str| -> Result<u32, String> {
        p.parse::<u32>()
            .ok()
            .filter(|n| *n <= 65535)
            .ok_or_else(|| format!("`{p}` is not a port number (0-65535)"))
    };
    let (start, end) = match container.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(container)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!("invalid range {start}-{end}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// Checks a STOPSIGNAL value (`SIGTERM`, `TERM`, `9`, `SIGRTMIN+3`) as moby's `signal.ParseSignal`.
pub fn validate_signal(raw: &str) -> Result<(), String> {
    if let Ok(n) = raw.parse::<u32>() {
        return if n == 0 {
            Err("signal 0 is not allowed".into())
        } else {
            Ok(())
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) {
        return Ok(());
    }
    let offset = name
        .strip_prefix("RTMIN+")
        .or_else(|| name.strip_prefix("RTMAX-"));
    if let Some(n) = offset.and_then(|n| n.parse::<u32>().ok()) {
        if (1..=15).contains(&n) {
            return Ok(());
        }
    }
    Err("not a known signal".into())
}

/// The signal names STOPSIGNAL knows (for suggestions).
pub fn signal_names() -> impl Iterator<Item = String> {
    SIGNALS.iter().map(|s| format!("SIG{s}"))
}

/// Parses `--chmod`: octal up to 07777, or a symbolic mode (`u+x,go-w`).
pub fn parse_chmod(raw: &str) -> Result<FileMode, String> {
    if !raw.is_empty() && raw.chars().all(|c| c.is_ascii_digit()) {
        let n = u32::from_str_radix(raw, 8)
            .map_err(|_| "octal digits are 0-7".to_string())
            .and_then(|n| {
                if n > 0o7777 {
                    Err("must be between 0 and 07777".to_string())
                } else {
                    Ok(n)
                }
            })?;
        return Ok(FileMode::Octal(n));
    }
    let clause_ok = |clause: &str| {
        let ops = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        let mut chars = ops.chars().peekable();
        let mut saw_op = false;
        while let Some(c) = chars.next() {
            if !matches!(c, '+' | '-' | '=') {
                return false;
            }
            saw_op = true;
            while let Some(&p) = chars.peek() {
                if matches!(p, 'r' | 'w' | 'x' | 'X' | 's' | 't' | 'u' | 'g' | 'o') {
                    chars.next();
                } else {
                    break;
                }
            }
        }
        saw_op
    };
    if !raw.is_empty() && raw.split(',').all(clause_ok) {
        Ok(FileMode::Symbolic(raw.to_string()))
    } else {
        Err("expected an octal mode (0755) or a symbolic one (u+x,go-w)".into())
    }
}

/// Checks an `--checksum` value: `sha256:<64 hex>` (also sha384/sha512).
pub fn validate_digest(raw: &str) -> Result<(), String> {
    let (algo, hex) = raw
        .split_once(':')
        .ok_or_else(|| "expected `sha256:<hex>`".to_string())?;
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm `{algo}`")),
    };
    if hex.len() != len
        || !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Err(format!(
            "expected {len} lowercase hex digits after `{algo}:`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("100ms"), Ok(100_000_000));
        assert!(parse_go_duration("30").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("1x").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn port_specs() {
        assert_eq!(parse_port_spec("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            parse_port_spec("8000-8002").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(
            parse_port_spec("127.0.0.1:80:8080").unwrap(),
            vec!["8080/tcp"]
        );
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(parse_port_spec("http").is_err());
        assert!(parse_port_spec("70000").is_err());
        assert!(parse_port_spec("90-80").is_err());
    }

    #[test]
    fn signals_and_modes() {
        assert!(validate_signal("SIGTERM").is_ok());
        assert!(validate_signal("quit").is_ok());
        assert!(validate_signal("9").is_ok());
        assert!(validate_signal("SIGRTMIN+3").is_ok());
        assert!(validate_signal("SIGFOO").is_err());
        assert!(validate_signal("0").is_err());
        assert_eq!(parse_chmod("755"), Ok(FileMode::Octal(0o755)));
        assert_eq!(
            parse_chmod("u+x,go-w"),
            Ok(FileMode::Symbolic("u+x,go-w".into()))
        );
        assert!(parse_chmod("789").is_err());
        assert!(parse_chmod("17777").is_err());
        assert!(parse_chmod("rwx").is_err());
        assert!(validate_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(validate_digest("sha256:abc").is_err());
        assert!(validate_digest("md5:abc").is_err());
    }
}
