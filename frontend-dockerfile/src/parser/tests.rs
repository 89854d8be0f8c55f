//! Grammar points that are easy to get wrong, checked through `parse` and the sexp dump.

use super::{dump, parse, ParseErrorKind};

fn sexp(src: &str) -> String {
    dump::ast(&parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}")))
}

#[test]
fn escaped_escape_at_end_of_line_does_not_continue() {
    assert_eq!(
        sexp("ENV C a\\\\\nENV D b\n"),
        "(env \"C\" \"a\\\\\\\\\" \"\")\n(env \"D\" \"b\" \"\")\n"
    );
}

#[test]
fn continuation_skips_comments_and_records_empty_lines() {
    let f = parse("RUN a \\\n# note\n\n  b\nRUN c").unwrap();
    assert_eq!(dump::ast(&f), "(run \"a   b\")\n(run \"c\")\n");
    assert_eq!(f.children[0].start_line, 1);
    assert_eq!(f.children[0].end_line, 4);
    assert_eq!(f.warnings.len(), 1);
    assert_eq!(f.warnings[0].rule, "NoEmptyContinuation");
    assert_eq!(f.warnings[0].span.line, 4);
}

#[test]
fn eof_inside_continuation_ends_the_instruction() {
    assert_eq!(sexp("FROM a\nRUN x \\"), "(from \"a\")\n(run \"x\")\n");
}

#[test]
fn backtick_escape_directive() {
    let f = parse("# escape=`\nFROM a\nRUN x `\n  y\n").unwrap();
    assert_eq!(f.escape, '`');
    assert_eq!(f.directives[0].name, "escape");
    assert_eq!(dump::ast(&f), "(from \"a\")\n(run \"x   y\")\n");
}

#[test]
fn directives_only_in_leading_block() {
    let f = parse("# hello\n# escape=`\nFROM a\n").unwrap();
    assert_eq!(f.escape, '\\');
    assert!(f.directives.is_empty());
    let e = parse("# escape=\\\n# escape=`\nFROM a").unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::DuplicateDirective("escape".into()));
    assert_eq!((e.line, e.column), (2, 1));
    assert!(matches!(
        parse("# escape=x\nFROM a").unwrap_err().kind,
        ParseErrorKind::InvalidEscapeToken(_)
    ));
    let f = parse("# syntax=docker/dockerfile:1\n# check=skip=all\nFROM a").unwrap();
    assert_eq!(f.directives.len(), 2);
    assert_eq!(f.directives[1].line, 2);
}

#[test]
fn json_form_and_fallback() {
    assert_eq!(sexp("CMD []"), "(cmd)\n");
    assert_eq!(
        parse("CMD [\"a\", 1]").unwrap_err().kind,
        ParseErrorKind::NotStringArray
    );
    assert_eq!(sexp("COPY [\"a b\", \"c\"]"), "(copy \"a b\" \"c\")\n");
    assert_eq!(
        sexp("COPY [\"a b\" c"),
        "(copy \"[\\\"a\" \"b\\\"\" \"c\")\n"
    );
    assert!(parse("RUN [\"a\"]").unwrap().children[0].json);
}

#[test]
fn flags_onbuild_healthcheck_unknown() {
    assert_eq!(
        sexp("COPY --from=b -- --x /y"),
        "(copy [\"--from=b\"] \"--x\" \"/y\")\n"
    );
    assert_eq!(sexp("ONBUILD RUN echo hi"), "(onbuild (run \"echo hi\"))\n");
    assert_eq!(sexp("ONBUILD"), "(onbuild)\n");
    assert_eq!(
        sexp("HEALTHCHECK --interval=5s CMD [\"a\"]"),
        "(healthcheck [\"--interval=5s\"] \"CMD\" \"a\")\n"
    );
    assert_eq!(sexp("HEALTHCHECK"), "(healthcheck)\n");
    assert_eq!(sexp("frobnicate a b"), "(frobnicate \"\")\n");
    assert_eq!(sexp("ARG a=\"1 2\" b"), "(arg \"a=\\\"1 2\\\"\" \"b\")\n");
}

#[test]
fn errors_have_positions() {
    assert_eq!(parse("").unwrap_err().kind, ParseErrorKind::NoInstructions);
    assert_eq!(
        parse("# a\n\n# b\n").unwrap_err().kind,
        ParseErrorKind::NoInstructions
    );
    let e = parse("FROM a\nENV key\n").unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::MissingValue("ENV".into()));
    assert_eq!((e.line, e.column), (2, 5));
    let e = parse("FROM a\n  LABEL a=b c=d \\\n   e\n").unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::MissingEquals("e".into()));
    assert_eq!((e.line, e.column, e.end_line), (3, 4, 3));
    assert_eq!(
        e.to_string(),
        "3:4: Syntax error - can't find = in \"e\". Must be of the form: name=value"
    );
}

#[test]
fn heredocs() {
    let f = parse("FROM a\nRUN 3<<-'A' cat <<B\n\tx $y\n\tA\nb\nB\nUSER <<C\nC\n").unwrap();
    let run = &f.children[1];
    assert_eq!(run.heredocs.len(), 2);
    assert_eq!(run.heredocs[0].name, "A");
    assert_eq!(run.heredocs[0].content, "\tx $y\n");
    assert!(run.heredocs[0].chomp && !run.heredocs[0].expand);
    assert_eq!(run.heredocs[0].file_descriptor, 3);
    assert_eq!(run.heredocs[1].content, "b\n");
    assert_eq!((run.start_line, run.end_line), (2, 6));
    assert_eq!(run.original, "RUN 3<<-'A' cat <<B\n\tx $y\n\tA\nb\nB\n");
    // USER takes no heredoc: the next line is an (unknown) instruction of its own.
    assert_eq!(f.children.len(), 4);
    assert_eq!(f.children[3].value, "c");
    let e = parse("RUN <<EOF\nno end\n").unwrap_err();
    assert!(matches!(e.kind, ParseErrorKind::UnterminatedHeredoc(_)));
    let f = parse("ONBUILD COPY <<X /x\nhi\nX\n").unwrap();
    assert_eq!(f.children[0].heredocs[0].content, "hi\n");
    let f = parse("RUN [\"<<EOF\"]\nEOF\n").unwrap();
    assert_eq!(f.children.len(), 2);
}

#[test]
fn spans_point_into_the_source() {
    let src = "FROM a\nCOPY --chown=1 \\\n  src  /dst\n";
    let f = parse(src).unwrap();
    let copy = &f.children[1];
    assert_eq!(&src[copy.keyword_span.start..copy.keyword_span.end], "COPY");
    let flag = &copy.flags[0];
    assert_eq!(&src[flag.span.start..flag.span.end], "--chown=1");
    let dst = &copy.args[1];
    assert_eq!(&src[dst.span.start..dst.span.end], "/dst");
    assert_eq!((dst.span.line, dst.span.column), (3, 8));
    assert_eq!(
        &src[copy.span.start..copy.span.end],
        "COPY --chown=1 \\\n  src  /dst"
    );
}

#[test]
fn bom_crlf_and_odd_bytes_do_not_break() {
    assert_eq!(
        sexp("\u{feff}FROM a\r\nRUN b\r\n"),
        "(from \"a\")\n(run \"b\")\n"
    );
    for src in [
        "\\",
        "\\\n\\\n",
        "RUN --\u{805}x",
        "HEALTHCHECK \u{805}",
        "ENV \u{a0}a b",
        "ONBUILD ONBUILD",
        "#\u{a0}x\nFROM a",
        " \u{85}# x\nFROM a",
    ] {
        let _ = parse(src);
    }
}

#[test]
fn overlong_line_is_an_error() {
    let long = format!("RUN {}\n", "x".repeat(70_000));
    assert!(matches!(
        parse(&long).unwrap_err().kind,
        ParseErrorKind::LineTooLong(_)
    ));
}

#[test]
fn keywords_use_go_simple_case_mapping() {
    // U+212A KELVIN SIGN lowercases to `k`, so BuildKit dispatches this as HEALTHCHECK.
    assert_eq!(sexp("HEALTHCHEC\u{212a} NONE"), "(healthcheck \"NONE\")\n");
    let f = parse("stra\u{df}e x").unwrap();
    assert_eq!(dump::json(&f)[0]["cmd"], "STRA\u{df}E");
}

#[test]
fn json_arrays_must_be_comprised_of_strings_only() {
    for text in [
        "FROM a\nCMD [\"a\", [\"b\"]]\n",
        "FROM a\nENTRYPOINT [1]\n",
        "FROM a\nRUN [\"sh\", null]\n",
        "FROM a\nSHELL [\"sh\", {\"c\": 1}]\n",
        "FROM a\nHEALTHCHECK CMD [\"a\", 2]\n",
        "FROM a\nCOPY [\"a\", 2]\n",
        "FROM a\nVOLUME [true]\n",
        "FROM a\nONBUILD CMD [[]]\n",
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::NotStringArray, "{text:?}");
        assert_eq!(e.line, 2, "{text:?}");
        assert_eq!(
            e.kind.to_string(),
            "when using JSON array syntax, arrays must be comprised of strings only"
        );
    }
    // Not JSON at all: the shell form, as before.
    assert_eq!(
        sexp("CMD [\"a\", [\"b\"]"),
        "(cmd \"[\\\"a\\\", [\\\"b\\\"]\")\n"
    );
    assert_eq!(sexp("CMD [1,]"), "(cmd \"[1,]\")\n");
}
