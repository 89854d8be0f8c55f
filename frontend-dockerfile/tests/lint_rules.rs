//! Each lint rule on small Dockerfiles, including the cases where it must stay silent.

use frontend_dockerfile::lint::output::{self, Format, Report};
use frontend_dockerfile::lint::{
    self, ContextInfo, Finding, History, LintConfig, LintInput, Severity,
};
use frontend_dockerfile::parser;

fn lint_src(src: &str) -> Vec<Finding> {
    let df = parser::parse(src).expect("parses");
    lint::lint(
        &df,
        &LintInput {
            source: src,
            ..Default::default()
        },
        &LintConfig::default(),
    )
}

fn lint_ctx(src: &str, ctx: &ContextInfo) -> Vec<Finding> {
    let df = parser::parse(src).expect("parses");
    lint::lint(
        &df,
        &LintInput {
            source: src,
            context: Some(ctx),
            ..Default::default()
        },
        &LintConfig::default(),
    )
}

fn rules(findings: &[Finding]) -> Vec<(String, usize)> {
    findings.iter().map(|f| (f.rule.clone(), f.line)).collect()
}

fn has(findings: &[Finding], rule: &str, line: usize) -> bool {
    findings.iter().any(|f| f.rule == rule && f.line == line)
}

fn count(findings: &[Finding], rule: &str) -> usize {
    findings.iter().filter(|f| f.rule == rule).count()
}

// ---- BL1001: broad COPY before a dependency install -------------------------------------

#[test]
fn bl1001_broad_copy_before_npm_ci() {
    let src = "FROM node:22\nWORKDIR /app\nCOPY . .\nRUN npm ci\nCMD [\"node\", \"index.js\"]\n";
    let f = lint_src(src);
    let finding = f.iter().find(|f| f.rule == "BL1001").expect("BL1001 fires");
    assert_eq!(finding.line, 3);
    assert_eq!(finding.related_lines, vec![4]);
    let diff = finding.suggestion.as_deref().unwrap();
    assert!(
        diff.contains("+COPY package.json package-lock.json ./"),
        "{diff}"
    );
    let new: Vec<&str> = diff.lines().filter(|l| l.starts_with('+')).collect();
    assert_eq!(
        new,
        [
            "+COPY package.json package-lock.json ./",
            "+RUN npm ci",
            "+COPY . ."
        ]
    );
}

#[test]
fn bl1001_silent_when_manifests_copied_first() {
    let src = "FROM node:22\nWORKDIR /app\nCOPY package.json package-lock.json ./\nRUN npm ci\nCOPY . .\nRUN npm run build\n";
    assert_eq!(count(&lint_src(src), "BL1001"), 0);
    let src = "FROM python:3.12\nWORKDIR /app\nCOPY requirements.txt .\nRUN pip install --no-cache-dir -r requirements.txt\nCOPY src/ ./src/\n";
    assert_eq!(count(&lint_src(src), "BL1001"), 0);
}

#[test]
fn bl1001_silent_when_broad_copy_is_in_another_stage() {
    let src =
        "FROM golang:1.22 AS deps\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod download\n\
               FROM deps AS build\nCOPY . .\nRUN go build -o /out/app .\n";
    assert_eq!(
        count(&lint_src(src), "BL1001"),
        0,
        "{:?}",
        rules(&lint_src(src))
    );
    let src = "FROM alpine:3.20 AS src\nCOPY . /src\nFROM node:22\nWORKDIR /app\nCOPY package.json package-lock.json ./\nRUN npm ci\nCOPY --from=src /src .\n";
    assert_eq!(count(&lint_src(src), "BL1001"), 0);
}

#[test]
fn bl1001_each_ecosystem() {
    let cases = [
        ("RUN pip install -r requirements.txt", "requirements.txt"),
        ("RUN poetry install --no-root", "pyproject.toml poetry.lock"),
        ("RUN uv sync --frozen", "pyproject.toml uv.lock"),
        ("RUN pipenv install --deploy", "Pipfile Pipfile.lock"),
        (
            "RUN yarn install --frozen-lockfile",
            "package.json yarn.lock",
        ),
        (
            "RUN pnpm install --frozen-lockfile",
            "package.json pnpm-lock.yaml",
        ),
        ("RUN go mod download", "go.mod go.sum"),
        ("RUN cargo fetch", "Cargo.toml Cargo.lock"),
        ("RUN bundle install", "Gemfile Gemfile.lock"),
        (
            "RUN composer install --no-dev",
            "composer.json composer.lock",
        ),
        ("RUN mvn -B dependency:go-offline", "pom.xml"),
        ("RUN gradle dependencies", "build.gradle settings.gradle"),
        (
            "RUN apt-get update && xargs -a packages.txt apt-get install -y",
            "packages.txt",
        ),
    ];
    for (run, manifests) in cases {
        let src = format!("FROM base:1\nWORKDIR /app\nCOPY src/ ./src/\nCOPY . .\n{run}\n");
        let f = lint_src(&src);
        let finding = f
            .iter()
            .find(|f| f.rule == "BL1001")
            .unwrap_or_else(|| panic!("BL1001 for `{run}`: {:?}", rules(&f)));
        assert_eq!(finding.line, 3, "the first broad COPY is blamed");
        assert!(
            finding
                .suggestion
                .as_deref()
                .unwrap()
                .contains(&format!("+COPY {manifests} ./")),
            "{run}: {:?}",
            finding.suggestion
        );
    }
}

#[test]
fn bl1001_build_steps_get_a_prefetch_layer() {
    let src = "FROM rust:1.80\nWORKDIR /src\nCOPY . .\nRUN cargo build --release\n";
    let f = lint_src(src);
    let finding = f.iter().find(|f| f.rule == "BL1001").expect("fires");
    let s = finding.suggestion.as_deref().unwrap();
    assert!(s.contains("+COPY Cargo.toml Cargo.lock ./\n+RUN cargo fetch\n+COPY . .\n+RUN cargo build --release"), "{s}");
    let ok = "FROM rust:1.80\nWORKDIR /src\nCOPY Cargo.toml Cargo.lock ./\nRUN cargo fetch\nCOPY . .\nRUN cargo build --release\n";
    assert_eq!(count(&lint_src(ok), "BL1001"), 0);
}

#[test]
fn bl1001_lists_only_manifests_present_in_context() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("package.json"), "{}").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "node_modules\n").unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    let ctx = ContextInfo::read(dir.path(), &dir.path().join("Dockerfile")).unwrap();
    let f = lint_ctx(
        "FROM node:22\nWORKDIR /app\nCOPY . .\nRUN npm install\n",
        &ctx,
    );
    let finding = f.iter().find(|f| f.rule == "BL1001").expect("fires");
    assert!(finding
        .suggestion
        .as_deref()
        .unwrap()
        .contains("+COPY package.json ./\n"));
}

// ---- BL1002: per-build values above expensive steps --------------------------------------

#[test]
fn bl1002_per_build_arg_above_run() {
    let src = "FROM debian:12\nARG GIT_COMMIT\nLABEL org.opencontainers.image.revision=$GIT_COMMIT\nRUN apt-get update && apt-get install -y --no-install-recommends make=4.3 && rm -rf /var/lib/apt/lists/*\nRUN make\n";
    let f = lint_src(src);
    assert!(has(&f, "BL1002", 2), "{:?}", rules(&f));
    assert!(!has(&f, "BL1002", 3), "a LABEL invalidates nothing");
    let arg = f
        .iter()
        .find(|f| f.rule == "BL1002" && f.line == 2)
        .unwrap();
    assert_eq!(arg.related_lines, vec![4, 5, 3]);
    // The LABEL that expands it moves along.
    let moved = arg.suggestion.as_deref().unwrap();
    assert_eq!(
        moved,
        "@@ -1,5 +1,5 @@\n FROM debian:12\n-ARG GIT_COMMIT\n-LABEL org.opencontainers.image.revision=$GIT_COMMIT\n RUN apt-get update && apt-get install -y --no-install-recommends make=4.3 && rm -rf /var/lib/apt/lists/*\n RUN make\n+ARG GIT_COMMIT\n+LABEL org.opencontainers.image.revision=$GIT_COMMIT\n"
    );
    assert!(
        arg.help
            .as_deref()
            .unwrap()
            .contains("ENV/LABEL lines that use it (3)"),
        "{:?}",
        arg.help
    );
    // Only the RUNs that do not use the value count; the move goes just above the first user.
    let src = "FROM debian:12\nARG APP_VERSION\nRUN apt-get update\nRUN echo $APP_VERSION > /version\nRUN make\n";
    let f = lint_src(src);
    let arg = f.iter().find(|f| f.rule == "BL1002").expect("fires");
    assert_eq!(arg.related_lines, vec![3]);
    assert_eq!(
        arg.suggestion.as_deref().unwrap(),
        "@@ -1,4 +1,4 @@\n FROM debian:12\n-ARG APP_VERSION\n RUN apt-get update\n+ARG APP_VERSION\n RUN echo $APP_VERSION > /version\n"
    );
}

#[test]
fn bl1002_move_stops_where_the_image_would_change() {
    // An unrelated ENV after a moved ENV stays after it (the image's Env keeps its order): the
    // move stops above it, so only the RUN before it is passed.
    let src =
        "FROM debian:12\nARG GIT_COMMIT\nENV REV=$GIT_COMMIT\nRUN make deps\nENV B=1\nRUN make\n";
    let arg = lint_src(src)
        .into_iter()
        .find(|f| f.rule == "BL1002")
        .expect("fires");
    assert_eq!(arg.related_lines, vec![4, 3]);
    assert_eq!(
        arg.suggestion.as_deref().unwrap(),
        "@@ -1,5 +1,5 @@\n FROM debian:12\n-ARG GIT_COMMIT\n-ENV REV=$GIT_COMMIT\n RUN make deps\n+ARG GIT_COMMIT\n+ENV REV=$GIT_COMMIT\n ENV B=1\n"
    );
    // A COPY that expands it is a use: the move stops above it.
    let src = "FROM debian:12\nARG GIT_COMMIT\nRUN make deps\nCOPY . /src/$GIT_COMMIT\nRUN make\n";
    let arg = lint_src(src)
        .into_iter()
        .find(|f| f.rule == "BL1002")
        .expect("fires");
    assert_eq!(arg.related_lines, vec![3]);
    assert!(arg.help.as_deref().unwrap().contains("just above line 4"));
}

#[test]
fn bl1002_silent_for_pinned_or_late_values() {
    let src = "ARG NODE_VERSION=22\nFROM debian:12\nARG GO_VERSION=1.22.5\nARG NODE_VERSION\nRUN echo $GO_VERSION\nARG RELEASE\nRUN echo $RELEASE\nARG BUILD_DATE\nLABEL org.opencontainers.image.created=$BUILD_DATE\n";
    assert_eq!(
        count(&lint_src(src), "BL1002"),
        0,
        "{:?}",
        rules(&lint_src(src))
    );
}

// ---- BL1003: apt-get update alone ---------------------------------------------------------

#[test]
fn bl1003_update_in_own_run() {
    let src = "FROM debian:12\nRUN apt-get update\nRUN apt-get install -y --no-install-recommends curl=7.88\n";
    let f = lint_src(src);
    let finding = f.iter().find(|f| f.rule == "BL1003").expect("fires");
    assert_eq!((finding.line, finding.related_lines.clone()), (2, vec![3]));
    assert!(finding
        .suggestion
        .as_deref()
        .unwrap()
        .contains("apt-get update \\\n+ && apt-get install"));
    let ok = "FROM debian:12\nRUN apt-get update && apt-get install -y curl\n";
    assert_eq!(count(&lint_src(ok), "BL1003"), 0);
}

// ---- BL1004: RUNs that belong together ----------------------------------------------------

#[test]
fn bl1004_cleanup_in_a_later_run() {
    let src = "FROM debian:12\nRUN apt-get update && apt-get install -y curl\nRUN rm -rf /var/lib/apt/lists/*\n";
    assert!(has(&lint_src(src), "BL1004", 3));
    let src = "FROM python:3.12\nRUN pip install --no-cache-dir flask==3.0\nRUN pip install --no-cache-dir gunicorn==22.0\n";
    assert!(has(&lint_src(src), "BL1004", 3));
    let unrelated = "FROM debian:12\nRUN useradd app\nRUN mkdir /data\n";
    assert_eq!(count(&lint_src(unrelated), "BL1004"), 0);
    let mounts_differ = "FROM debian:12\nRUN --mount=type=cache,target=/var/cache/apt apt-get install -y curl\nRUN apt-get install -y git\n";
    assert_eq!(count(&lint_src(mounts_differ), "BL1004"), 0);
}

// ---- BL1005: early ADD of a URL -----------------------------------------------------------

#[test]
fn bl1005_add_url_above_runs() {
    let src = "FROM debian:12\nADD https://example.com/tool.tar.gz /tmp/\nRUN apt-get update && apt-get install -y make\nRUN tar -xzf /tmp/tool.tar.gz -C /opt\n";
    let f = lint_src(src);
    let finding = f.iter().find(|f| f.rule == "BL1005").expect("fires");
    assert_eq!(finding.line, 2);
    assert_eq!(
        finding.suggestion.as_deref().unwrap(),
        "@@ -2,2 +2,2 @@\n-ADD https://example.com/tool.tar.gz /tmp/\n RUN apt-get update && apt-get install -y make\n+ADD https://example.com/tool.tar.gz /tmp/\n"
    );
    let pinned = "FROM debian:12\nADD --checksum=sha256:0123 https://example.com/tool.tar.gz /tmp/\nRUN tar -xzf /tmp/tool.tar.gz\n";
    assert_eq!(count(&lint_src(pinned), "BL1005"), 0);
    let last = "FROM debian:12\nRUN apt-get update\nADD https://example.com/x /x\n";
    assert_eq!(count(&lint_src(last), "BL1005"), 0);
}

// ---- BL1006: COPY . . without .dockerignore ------------------------------------------------

#[test]
fn bl1006_heavy_context_without_dockerignore() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    std::fs::create_dir(dir.path().join("node_modules")).unwrap();
    let src = "FROM node:22\nWORKDIR /app\nCOPY . .\n";
    let ctx = ContextInfo::read(dir.path(), &dir.path().join("Dockerfile")).unwrap();
    let f = lint_ctx(src, &ctx);
    let finding = f.iter().find(|f| f.rule == "BL1006").expect("fires");
    assert!(finding.message.contains(".git") && finding.message.contains("node_modules"));
    std::fs::write(dir.path().join(".dockerignore"), ".git\nnode_modules\n").unwrap();
    let ctx = ContextInfo::read(dir.path(), &dir.path().join("Dockerfile")).unwrap();
    assert_eq!(count(&lint_ctx(src, &ctx), "BL1006"), 0);
    let clean = tempfile::tempdir().unwrap();
    let ctx = ContextInfo::read(clean.path(), &clean.path().join("Dockerfile")).unwrap();
    assert_eq!(
        count(&lint_ctx(src, &ctx), "BL1006"),
        0,
        "nothing heavy to ignore"
    );
}

// ---- BL1007: stable step below a changing one ---------------------------------------------

#[test]
fn bl1007_system_packages_below_copy() {
    let src = "FROM debian:12\nWORKDIR /app\nCOPY . .\nRUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*\n";
    let f = lint_src(src);
    assert!(has(&f, "BL1007", 4), "{:?}", rules(&f));
    let moved = f
        .iter()
        .find(|f| f.rule == "BL1007")
        .unwrap()
        .suggestion
        .clone()
        .unwrap();
    assert!(
        moved.starts_with("@@ -2,3 +2,3 @@\n WORKDIR /app\n+RUN apt-get update"),
        "{moved}"
    );
    assert!(
        moved.contains("\n COPY . .\n-RUN apt-get update"),
        "{moved}"
    );
    let ok = "FROM debian:12\nRUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*\nWORKDIR /app\nCOPY . .\n";
    assert_eq!(count(&lint_src(ok), "BL1007"), 0);
    let local_deb = "FROM debian:12\nCOPY pkg.deb /tmp/\nRUN apt-get install -y /tmp/pkg.deb\n";
    assert_eq!(count(&lint_src(local_deb), "BL1007"), 0);
}

// ---- BL2001: build history ----------------------------------------------------------------

#[test]
fn bl2001_ranks_lines_from_history() {
    let src = "FROM debian:12\nCOPY . /src\nRUN make -C /src\n";
    let history = History::from_json(
        r#"{"builds":[
            {"steps":[{"line":1,"cached":true,"duration_ms":0},{"line":2,"cached":false,"duration_ms":30},{"line":3,"cached":false,"duration_ms":60000}]},
            {"steps":[{"line":1,"cached":true,"duration_ms":0},{"line":2,"cached":false,"duration_ms":25},{"line":3,"cached":false,"duration_ms":58000}]},
            {"steps":[{"line":1,"cached":true,"duration_ms":0},{"line":2,"cached":true,"duration_ms":0},{"line":3,"cached":true,"duration_ms":0}]}
        ]}"#,
    )
    .unwrap();
    let df = parser::parse(src).unwrap();
    let f = lint::lint(
        &df,
        &LintInput {
            source: src,
            history: Some(&history),
            ..Default::default()
        },
        &LintConfig::default(),
    );
    let top: Vec<&Finding> = f.iter().filter(|f| f.rule == "BL2001").collect();
    assert_eq!(top[0].line, 2);
    assert!(
        top[0].message.contains("#1")
            && top[0].message.contains("2 of 3 builds")
            && top[0].message.contains("118000 ms"),
        "{}",
        top[0].message
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.json");
    std::fs::write(&path, "{\"builds\": [ { \"steps\": 5 } ] }").unwrap();
    let err = History::load(&path).unwrap_err().to_string();
    assert!(err.contains("h.json:1:"), "{err}");
}

// ---- BuildKit checks ----------------------------------------------------------------------

#[test]
fn buildkit_checks() {
    let src = "FROM alpine:3.20 as Builder\nfrom alpine:3.20 AS builder\nMAINTAINER me\nENV A 1\nCMD echo hi\nCMD echo bye\nWORKDIR rel\nEXPOSE 80/TCP 127.0.0.1:8080:80\nARG API_TOKEN\nFROM --platform=linux/amd64 alpine:3.20 AS final\nFROM --platform=$TARGETPLATFORM alpine:3.20 AS context\nFROM ${BASE_IMAGE} AS x\nCOPY $UNDEFINED_THING /x\n";
    let f = lint_src(src);
    for (rule, line) in [
        ("FromAsCasing", 1),
        ("StageNameCasing", 1),
        ("ConsistentInstructionCasing", 2),
        ("DuplicateStageName", 2),
        ("MaintainerDeprecated", 3),
        ("LegacyKeyValueFormat", 4),
        ("JSONArgsRecommended", 5),
        ("MultipleInstructionsDisallowed", 5),
        ("WorkdirRelativePath", 7),
        ("ExposeProtoCasing", 8),
        ("ExposeInvalidFormat", 8),
        ("SecretsUsedInArgOrEnv", 9),
        ("FromPlatformFlagConstDisallowed", 10),
        ("RedundantTargetPlatform", 11),
        ("ReservedStageName", 11),
        ("UndefinedArgInFrom", 12),
    ] {
        assert!(
            has(&f, rule, line),
            "{rule} on line {line}: {:?}",
            rules(&f)
        );
    }
    assert!(
        !has(&f, "MultipleInstructionsDisallowed", 6),
        "the last CMD is the one that counts"
    );
}

#[test]
fn buildkit_undefined_var_and_default_arg() {
    let src = "ARG VERSION\nFROM scratch\nARG NAME=app\nENV HOME_DIR=/home/$NAME\nCOPY $NMAE /x\nWORKDIR $HOME_DIR\n";
    let f = lint_src(src);
    assert!(has(&f, "UndefinedVar", 5), "{:?}", rules(&f));
    let typo = f.iter().find(|f| f.rule == "UndefinedVar").unwrap();
    assert_eq!(typo.help.as_deref(), Some("did you mean `$NAME`?"));
    assert_eq!(count(&f, "UndefinedVar"), 1);
    let src = "ARG TAG=\nFROM alpine:${TAG}\nRUN true\n";
    // The build stops there too: reported once, as the build error.
    let f = lint_src(src);
    assert!(has(&f, "BL0001", 2), "{:?}", rules(&f));
    assert_eq!(count(&f, "InvalidDefaultArgInFrom"), 0);
    let ok = "ARG TAG=3.20\nFROM alpine:${TAG}\nRUN true\n";
    assert_eq!(count(&lint_src(ok), "InvalidDefaultArgInFrom"), 0);
}

#[test]
fn buildkit_copy_ignored_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "secret.txt\nbuild/\n").unwrap();
    let ctx = ContextInfo::read(dir.path(), &dir.path().join("Dockerfile")).unwrap();
    let f = lint_ctx(
        "FROM alpine:3.20\nCOPY secret.txt app.txt /x/\nCOPY build/out /y\n",
        &ctx,
    );
    assert!(has(&f, "CopyIgnoredFile", 2));
    assert!(has(&f, "CopyIgnoredFile", 3));
    assert_eq!(count(&f, "CopyIgnoredFile"), 2);
}

#[test]
fn experimental_definition_description() {
    let body = "# the base image\nFROM alpine:3.20 AS base\n# VERSION to install\nARG VERSION=1\n# unrelated words\nARG OTHER=2\n";
    assert_eq!(
        count(&lint_src(body), "InvalidDefinitionDescription"),
        0,
        "experimental rules are off by default"
    );
    let on = format!("# check=experimental=InvalidDefinitionDescription\n{body}");
    let f = lint_src(&on);
    assert!(
        has(&f, "InvalidDefinitionDescription", 3),
        "{:?}",
        rules(&f)
    );
    assert!(
        has(&f, "InvalidDefinitionDescription", 7),
        "{:?}",
        rules(&f)
    );
    assert_eq!(count(&f, "InvalidDefinitionDescription"), 2);
}

#[test]
fn no_empty_continuation_comes_from_the_parser() {
    let src = "FROM alpine:3.20\nRUN echo a \\\n\n    && echo b\n";
    assert!(
        count(&lint_src(src), "NoEmptyContinuation") == 1,
        "{:?}",
        rules(&lint_src(src))
    );
}

#[test]
fn build_checks_are_buildkit_only() {
    let src = "FROM alpine\nRUN apt-get install curl\nCMD echo hi\n";
    let df = parser::parse(src).unwrap();
    let f = lint::build_checks(&df);
    assert!(f
        .iter()
        .all(|f| !f.rule.starts_with("DL") && !f.rule.starts_with("BL")));
    assert!(has(&f, "JSONArgsRecommended", 3));
}

// ---- hadolint rules on small files --------------------------------------------------------

#[test]
fn hadolint_families() {
    let src = "FROM ubuntu\nFROM debian:latest\nUSER app\nWORKDIR tmp\nRUN apt-get update && apt-get install curl | tee log\nRUN cd /x && sudo make && wget http://x/y && curl -o z http://x/z\nRUN apk add --update bash\nRUN pip install flask && npm install -g express && gem install rails && go install example.com/cmd\nRUN yum install httpd && dnf install nginx\nADD app.py /app/\nCOPY a b c\nRUN apt install vim\nUSER root\n";
    let f = lint_src(src);
    for (rule, line) in [
        ("DL3006", 1),
        ("DL3007", 2),
        ("DL3066", 3),
        ("DL3000", 4),
        ("DL3008", 5),
        ("DL3009", 5),
        ("DL3014", 5),
        ("DL3015", 5),
        ("DL4006", 5),
        ("DL3003", 6),
        ("DL3004", 6),
        ("DL3047", 6),
        ("DL4001", 6),
        ("DL3018", 7),
        ("DL3019", 7),
        ("DL3013", 8),
        ("DL3042", 8),
        ("DL3016", 8),
        ("DL3028", 8),
        ("DL3062", 8),
        ("DL3030", 9),
        ("DL3033", 9),
        ("DL3032", 9),
        ("DL3038", 9),
        ("DL3041", 9),
        ("DL3040", 9),
        ("DL3020", 10),
        ("DL3021", 11),
        ("DL3027", 12),
        ("DL3002", 13),
    ] {
        // A fact BuildKit's check reports too is reported once, under BuildKit's name.
        let found =
            has(&f, rule, line) || lint::rules::same_fact(rule).any(|alias| has(&f, alias, line));
        assert!(found, "{rule} on line {line}: {:?}", rules(&f));
    }
}

#[test]
fn hadolint_fewer_false_positives() {
    // Local .deb files, release pins and heredoc scripts that switch pipefail on.
    let src = "FROM debian:12\nCOPY x.deb /tmp/\nRUN apt-get install -y --no-install-recommends /tmp/x.deb curl/bookworm-backports \\\n && rm -rf /var/lib/apt/lists/*\nRUN <<EOF\nset -eo pipefail\ncurl -s https://x | sh\nEOF\n";
    let f = lint_src(src);
    assert_eq!(count(&f, "DL3008"), 0, "{:?}", rules(&f));
    assert_eq!(count(&f, "DL4006"), 0, "{:?}", rules(&f));
    // Package lists in ENV/ARG are expanded and judged by what they hold.
    let pinned_list = "FROM debian:12\nENV PKGS=\"curl=7.88 git=1:2.39\"\nRUN apt-get install -y --no-install-recommends $PKGS && rm -rf /var/lib/apt/lists/*\n";
    assert_eq!(count(&lint_src(pinned_list), "DL3008"), 0);
    let unpinned_list =
        "FROM alpine:3.20\nARG PKGS=\"curl git=2.45\"\nRUN apk add --no-cache ${PKGS}\n";
    assert!(has(&lint_src(unpinned_list), "DL3018", 3));
    let shell = "FROM debian:12\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\nRUN curl -s https://x | sh\n";
    assert_eq!(count(&lint_src(shell), "DL4006"), 0);
    let heredoc_pipe = "FROM debian:12\nRUN <<EOF\ncurl -s https://x | sh\nEOF\n";
    assert!(has(&lint_src(heredoc_pipe), "DL4006", 2));
    let onbuild = "FROM debian:12\nONBUILD RUN cd /src && apt-get install -y curl\n";
    let f = lint_src(onbuild);
    assert!(
        has(&f, "DL3003", 2) && has(&f, "DL3008", 2),
        "{:?}",
        rules(&f)
    );
    let dist_clean = "FROM debian:13\nRUN apt-get update && apt-get install -y --no-install-recommends curl=8 && apt-get dist-clean\n";
    assert_eq!(count(&lint_src(dist_clean), "DL3009"), 0);
}

// ---- Control: ignores, config, severities ------------------------------------------------

#[test]
fn inline_ignores_and_check_directive() {
    let src = "# check=skip=JSONArgsRecommended\nFROM debian:12\n# hadolint ignore=DL3008,DL3015\nRUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n# builder-lint ignore=BL1003\nRUN apt-get update\nCMD echo hi\nRUN apt-get install -y git && rm -rf /var/lib/apt/lists/*\n";
    let f = lint_src(src);
    assert!(
        !has(&f, "DL3008", 4) && !has(&f, "DL3015", 4),
        "{:?}",
        rules(&f)
    );
    assert!(
        has(&f, "DL3008", 8),
        "an ignore covers only the next instruction"
    );
    assert!(!has(&f, "BL1003", 6));
    assert_eq!(count(&f, "JSONArgsRecommended"), 0);
    assert!(
        has(&f, "DL3025", 7),
        "check=skip applies to BuildKit checks only"
    );
    let global =
        "FROM debian:12\n# hadolint global ignore=DL3008\nRUN true\nRUN apt-get install -y curl\n";
    assert_eq!(count(&lint_src(global), "DL3008"), 0);
}

#[test]
fn config_ignores_and_severities() {
    let src = "FROM debian:12\nRUN apt-get update && apt-get install -y curl\n";
    let df = parser::parse(src).unwrap();
    let config = LintConfig {
        ignore: vec!["DL3015".into(), "PinAptGet".into()],
        severity: [("DL3009".to_string(), Severity::Error)]
            .into_iter()
            .collect(),
        failure_threshold: None,
    };
    let f = lint::lint(
        &df,
        &LintInput {
            source: src,
            ..Default::default()
        },
        &config,
    );
    assert_eq!(count(&f, "DL3015"), 0);
    assert_eq!(count(&f, "DL3008"), 0, "rule names work as well as ids");
    assert_eq!(
        f.iter().find(|f| f.rule == "DL3009").unwrap().severity,
        Severity::Error
    );
    assert_eq!(lint::max_severity(&f), Some(Severity::Error));
}

// ---- Output ------------------------------------------------------------------------------

#[test]
fn output_formats() {
    let src = "FROM node:22\nWORKDIR /app\nCOPY . .\nRUN npm ci\n";
    let f = lint_src(src);
    let reports = [Report {
        file: "app/Dockerfile",
        source: src,
        findings: &f,
    }];
    let json: serde_json::Value =
        serde_json::from_str(&output::render(Format::Json, &reports, false)).unwrap();
    let first = &json.as_array().unwrap()[0];
    for key in ["file", "line", "column", "rule", "severity", "message"] {
        assert!(first.get(key).is_some(), "{key} missing from {first}");
    }
    let human = output::render(Format::Human, &reports, false);
    assert!(
        human.contains("warning[BL1001/BroadCopyBeforeDependencyInstall]"),
        "{human}"
    );
    assert!(human.contains("--> app/Dockerfile:3:1"), "{human}");
    assert!(human.contains("3 | COPY . .\n  | ^^^^"), "{human}");
    assert!(human.contains("= help:"), "{human}");
    assert!(!human.contains('\x1b'), "no colour unless asked");
    assert!(output::render(Format::Human, &reports, true).contains("\x1b["));
    let gh = output::render(Format::Github, &reports, false);
    assert!(
        gh.lines()
            .any(|l| l.starts_with("::warning file=app/Dockerfile,line=3,col=1,title=BL1001::")),
        "{gh}"
    );
}

// ---- Robustness ---------------------------------------------------------------------------

/// Every parser test case (odd escapes, heredocs, JSON fallbacks, ONBUILD) lints without a panic
/// and with every finding on a line of the file.
#[test]
fn lints_every_parser_test_case() {
    let dir = match std::env::var_os("BUILDER_CONFORMANCE_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    };
    let dir = if dir.is_dir() {
        dir
    } else {
        std::path::PathBuf::from("/work/shared/conformance")
    };
    let mut seen = 0;
    for sub in ["buildkit-parser/testfiles", "buildkit-parser/heredoc"] {
        for entry in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = if entry.path().is_dir() {
                entry.path().join("Dockerfile")
            } else {
                entry.path()
            };
            let Ok(src) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(df) = parser::parse(&src) else {
                continue;
            };
            let f = lint::lint(
                &df,
                &LintInput {
                    source: &src,
                    ..Default::default()
                },
                &LintConfig::default(),
            );
            let lines = src.lines().count().max(1);
            for finding in &f {
                assert!(
                    finding.line >= 1 && finding.line <= lines + 1,
                    "{}: {finding:?}",
                    path.display()
                );
            }
            let reports = [Report {
                file: "Dockerfile",
                source: &src,
                findings: &f,
            }];
            output::render(Format::Human, &reports, true);
            seen += 1;
        }
    }
    if seen == 0 {
        eprintln!("conformance folder not found; set BUILDER_CONFORMANCE_DIR. Skipped.");
    }
}
