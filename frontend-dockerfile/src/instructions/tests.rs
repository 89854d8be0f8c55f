use super::*;
use crate::parser::parse as parse_file;

/// Expands `$NAME` from a fixed list, enough to see which words get expanded.
struct Vars;

impl Expander for Vars {
    fn word(&self, word: &str) -> Result<String, String> {
        Ok(word.replace("$V", "x").replace('"', ""))
    }
    fn words(&self, text: &str) -> Result<Vec<String>, String> {
        Ok(self
            .word(text)?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }
    fn raw(&self, text: &str) -> Result<String, String> {
        Ok(text.replace("$V", "x"))
    }
}

fn one(src: &str) -> Result<Command, Diagnostic> {
    let df = parse_file(src).expect("parses");
    let node = df.children.last().expect("one instruction");
    parse(node, &Vars, "Dockerfile").map(|i| i.command)
}

#[test]
fn expands_only_where_docker_does() {
    assert_eq!(
        one("RUN echo $V").unwrap(),
        Command::Run(Run {
            cmd: ShellOrExec::Shell("echo $V".into()),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None,
        })
    );
    assert_eq!(
        one("CMD [\"$V\"]").unwrap(),
        Command::Cmd(ShellOrExec::Exec(vec!["$V".into()]))
    );
    assert_eq!(one("WORKDIR /$V").unwrap(), Command::Workdir("/x".into()));
    assert_eq!(one("USER $V").unwrap(), Command::User("x".into()));
    assert_eq!(
        one("ENV A=$V B=\"two words\"").unwrap(),
        Command::Env(vec![
            ("A".into(), "x".into()),
            ("B".into(), "two words".into())
        ])
    );
    assert_eq!(
        one("LABEL legacy value with spaces").unwrap(),
        Command::Label(vec![("legacy".into(), "value with spaces".into())])
    );
    assert_eq!(
        one("MAINTAINER $V me").unwrap(),
        Command::Maintainer("$V me".into())
    );
    let Command::Copy(c) = one("COPY --from=build --chown=$V:$V src/$V /dst/").unwrap() else {
        panic!("COPY")
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    // --from is never expanded: a value expansion would change is refused, as by BuildKit.
    for from in ["$V", "${V}", "pre-$V"] {
        let e = one(&format!("COPY --from={from} a /b\n")).unwrap_err();
        assert!(
            e.to_string()
                .contains("variable expansion is not supported for --from"),
            "{from}: {e}"
        );
    }
    assert_eq!(c.args.chown.as_deref(), Some("x:x"));
    assert_eq!(c.args.sources, ["src/x"]);
    assert_eq!(
        one("ARG A B=$V").unwrap(),
        Command::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("x".into())
            }
        ])
    );
}

#[test]
fn typed_flags_and_values() {
    let Command::Add(a) = one(&format!(
        "ADD --keep-git-dir --unpack=false --checksum=sha256:{} --link --exclude=*.md --exclude=.git a b",
        "0".repeat(64)
    ))
    .unwrap() else {
        panic!("ADD")
    };
    assert!(a.keep_git_dir && a.args.link);
    assert_eq!(a.unpack, Some(false));
    assert_eq!(a.args.exclude, ["*.md", ".git"]);
    let Command::Healthcheck(h) =
        one("HEALTHCHECK --interval=1m --timeout=3s --start-period=1s --start-interval=500ms --retries=5 CMD [\"true\"]").unwrap()
    else {
        panic!("HEALTHCHECK")
    };
    assert_eq!(h.test, ["CMD", "true"]);
    assert_eq!(
        (
            h.interval,
            h.timeout,
            h.start_period,
            h.start_interval,
            h.retries
        ),
        (60_000_000_000, 3_000_000_000, 1_000_000_000, 500_000_000, 5)
    );
    assert_eq!(
        one("HEALTHCHECK NONE").unwrap(),
        Command::Healthcheck(Healthcheck {
            test: vec!["NONE".into()],
            interval: 0,
            timeout: 0,
            start_period: 0,
            start_interval: 0,
            retries: 0
        })
    );
    assert_eq!(
        one("EXPOSE 80 53/udp $V")
            .unwrap_err()
            .to_string()
            .lines()
            .next()
            .unwrap(),
        "Dockerfile:1:18: invalid port `x`: `x` is not a port number (0-65535)"
    );
    let Command::From(f) = one("FROM --platform=linux/arm64 alpine AS Build").unwrap() else {
        panic!("FROM")
    };
    assert_eq!(f.name.as_deref(), Some("build"));
    assert_eq!(f.platform.as_deref(), Some("linux/arm64"));
    let Command::Run(r) =
        one("RUN --security=insecure --network=host --mount=type=secret,id=a,required,env=A true")
            .unwrap()
    else {
        panic!("RUN")
    };
    assert_eq!(r.security, Some(SecurityMode::Insecure));
    assert_eq!(r.network, Some(NetworkMode::Host));
    assert!(r.mounts[0].required && r.mounts[0].readonly);
    assert_eq!(r.mounts[0].env.as_deref(), Some("A"));
}

#[test]
fn rejections() {
    let kind = |src: &str| *one(src).unwrap_err().kind;
    assert!(matches!(
        kind("CMD --doit -- [ ]"),
        ErrorKind::UnknownFlag { .. }
    ));
    assert!(matches!(
        kind("COPY --link=maybe a b"),
        ErrorKind::BadFlagValue { .. }
    ));
    assert!(matches!(
        kind("COPY --chown a b"),
        ErrorKind::MissingFlagValue { .. }
    ));
    assert!(matches!(
        kind("COPY --from=a --from=b a b"),
        ErrorKind::DuplicateFlag { .. }
    ));
    assert!(matches!(
        kind("ONBUILD FROM alpine"),
        ErrorKind::Unsupported(_)
    ));
    assert!(matches!(
        kind("ONBUILD ONBUILD RUN x"),
        ErrorKind::Unsupported(_)
    ));
    assert!(matches!(
        kind("ONBUILD COPY --chwon=1 a b"),
        ErrorKind::UnknownFlag { .. }
    ));
    assert!(matches!(
        kind("SHELL /bin/sh -c"),
        ErrorKind::WrongArguments { .. }
    ));
    assert!(matches!(
        kind("HEALTHCHECK"),
        ErrorKind::WrongArguments { .. }
    ));
    assert!(matches!(
        kind("HEALTHCHECK NONE x"),
        ErrorKind::WrongArguments { .. }
    ));
    assert!(matches!(
        kind("HEALTHCHECK --retries=-1 CMD x"),
        ErrorKind::BadFlagValue { .. }
    ));
    assert!(matches!(
        kind("HEALTHCHECK --timeout=1us CMD x"),
        ErrorKind::BadFlagValue { .. }
    ));
    assert!(matches!(kind("FROM a b"), ErrorKind::WrongArguments { .. }));
    assert!(matches!(
        kind("FROM a FOR b"),
        ErrorKind::WrongArguments { .. }
    ));
    assert!(matches!(
        kind("RUN --mount=type=bind,uid=1 x"),
        ErrorKind::BadFlagValue { .. }
    ));
    assert!(matches!(
        kind("RUN --mount=type=secret,from=a x"),
        ErrorKind::BadFlagValue { .. }
    ));
    assert!(matches!(
        kind("RUN --mount=type=cache,size=1m x"),
        ErrorKind::BadFlagValue { .. }
    ));
    assert!(matches!(
        kind("RUN --mount=type=bind,sharing=locked x"),
        ErrorKind::BadFlagValue { .. }
    ));
    assert!(matches!(
        kind("ADD --checksum=md5:00 a b"),
        ErrorKind::BadFlagValue { .. }
    ));
    assert!(matches!(kind("VOLUME [\"\"]"), ErrorKind::BadValue { .. }));
    assert!(matches!(kind("STOPSIGNAL 0"), ErrorKind::BadValue { .. }));
}

#[test]
fn structural_errors_are_flagged() {
    assert!(ErrorKind::UnknownInstruction("X".into()).is_structural());
    assert!(!ErrorKind::Expansion {
        word: "$X".into(),
        reason: "r".into()
    }
    .is_structural());
}
