//! The exact text BuildKit writes into image history and progress names, including Go's `%q`
//! and `%v` renderings of lists, so that images built here read the same as BuildKit's.

use engine::graph::Healthcheck;
use std::fmt::Write as _;

/// Go's `strconv.Quote`: double quotes, backslash escapes, `\xNN` for other control bytes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `2h0m0s`, `100ms`.
pub fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000_000_000 {
        let (unit, scale) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(ns, scale));
    }
    let hours = ns / 3_600_000_000_000;
    let minutes = (ns / 60_000_000_000) % 60;
    let secs_ns = ns % 60_000_000_000;
    let secs = trim_fraction(secs_ns, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value/scale` with the fraction's trailing zeros removed (`1500/1000` → `1.5`).
fn trim_fraction(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = scale.to_string().len() - 1;
    let frac_text = format!("{frac:0digits$}");
    format!("{whole}.{}", frac_text.trim_end_matches('0'))
}

/// `HEALTHCHECK %+v` of the config struct, as current BuildKit writes it:
/// `HEALTHCHECK {Test:[CMD-SHELL curl -f localhost] Interval:30s Timeout:0s StartPeriod:0s
/// StartInterval:0s Retries:3}`.
pub fn healthcheck(h: &Healthcheck) -> String {
    format!(
        "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        h.test.join(" "),
        go_duration(h.interval),
        go_duration(h.timeout),
        go_duration(h.start_period),
        go_duration(h.start_interval),
        h.retries
    )
}

/// `EXPOSE %v` of the port list, in the order the instruction produced it (its words sorted,
/// then expanded): `EXPOSE [443/tcp 80/tcp]`.
pub fn expose(ports: &[String]) -> String {
    format!("EXPOSE [{}]", ports.join(" "))
}

/// The `RUN` history text: declared build args as `|N K=V ...` before the argv, as BuildKit's
/// `runCommandString`.
pub fn run(args: &[String], build_args: &[(String, String)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !build_args.is_empty() {
        parts.push(format!("|{}", build_args.len()));
        parts.extend(build_args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(args.iter().cloned());
    format!("RUN {} # buildkit", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_renderings() {
        assert_eq!(
            go_quote_list(&["/bin/sh".into(), "-c".into(), "echo \"hi\"\n".into()]),
            r#"["/bin/sh" "-c" "echo \"hi\"\n"]"#
        );
        assert_eq!(
            go_list(&["/bin/bash".into(), "-c".into()]),
            "[/bin/bash -c]"
        );
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(7_200_000_000_000), "2h0m0s");
        assert_eq!(go_duration(100_000_000), "100ms");
        assert_eq!(
            expose(&["443/tcp".into(), "80/tcp".into(), "80/tcp".into()]),
            "EXPOSE [443/tcp 80/tcp 80/tcp]"
        );
        assert_eq!(
            run(
                &["/bin/sh".into(), "-c".into(), "make".into()],
                &[("V".into(), "1".into())]
            ),
            "RUN |1 V=1 /bin/sh -c make # buildkit"
        );
    }
}
