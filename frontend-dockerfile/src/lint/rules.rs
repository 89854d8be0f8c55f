//! The catalog of rules: stable id, name, origin, default severity and one line of documentation.

use super::Severity;
use serde::Serialize;

/// Where a rule's name and meaning come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    /// This project's own layer-order and cache advice (`BL` ids).
    Builder,
    /// BuildKit's build checks (`docker build --check`), named as BuildKit names them.
    BuildKit,
    /// hadolint's `DL` rules, with hadolint's ids and meanings.
    Hadolint,
}

/// A rule's identity and documentation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RuleInfo {
    /// Stable id used in output and ignores: `BL1001`, `StageNameCasing`, `DL3008`.
    pub id: &'static str,
    /// A readable name (for BuildKit rules the same as `id`).
    pub name: &'static str,
    pub source: RuleSource,
    pub severity: Severity,
    /// One line saying what the rule wants.
    pub doc: &'static str,
}

macro_rules! rule {
    ($id:literal, $name:literal, $src:ident, $sev:ident, $doc:literal) => {
        RuleInfo {
            id: $id,
            name: $name,
            source: RuleSource::$src,
            severity: Severity::$sev,
            doc: $doc,
        }
    };
}

/// Every rule lint knows.
pub static RULES: &[RuleInfo] = &[
    // What the build stops at (ours, from the build's own parsing, lowering and source resolution).
    rule!("BL0001", "BuildFails", Builder, Error,
        "`builder build` stops here: an unknown instruction or flag, wrong arguments, a bad reference or value, or a COPY/ADD source the build context lacks."),
    // Layer order and cache (ours).
    rule!("BL1001", "BroadCopyBeforeDependencyInstall", Builder, Warning,
        "Copy only the dependency manifests before installing dependencies, then copy the rest: a broad COPY first re-runs the install on every source change."),
    rule!("BL1002", "PerBuildValueAboveExpensiveStep", Builder, Warning,
        "ARG/ENV/LABEL values that change every build (dates, commit SHAs, versions) invalidate every step below them: declare them after the expensive steps."),
    rule!("BL1003", "AptUpdateInOwnRun", Builder, Warning,
        "`apt-get update` in a RUN of its own is cached forever and later installs use stale lists: update and install in one RUN."),
    rule!("BL1004", "RunsBelongTogether", Builder, Info,
        "Consecutive RUNs that install and clean up, or drive the same package manager, belong in one RUN: a cleanup in a later layer does not shrink the image."),
    rule!("BL1005", "EarlyAddUrl", Builder, Warning,
        "An ADD of a URL is re-checked on every build and a changed file invalidates every step below: add it late, or pin it with `--checksum`."),
    rule!("BL1006", "BroadCopyWithoutDockerignore", Builder, Warning,
        "`COPY . .` with no .dockerignore sends VCS data, dependency and build directories into the context and invalidates the step whenever they change."),
    rule!("BL1007", "StableStepBelowChangingStep", Builder, Info,
        "A step that needs nothing from the context (system packages, users) placed below a COPY from the context re-runs whenever those files change: move it above."),
    rule!("BL2001", "FrequentCacheMiss", Builder, Info,
        "This step missed the cache in many recorded builds, and the steps below it paid for it."),
    // BuildKit build checks.
    rule!("StageNameCasing", "StageNameCasing", BuildKit, Warning, "Stage names should be lowercase."),
    rule!("FromAsCasing", "FromAsCasing", BuildKit, Warning, "The `AS` keyword should match the case of `FROM`."),
    rule!("NoEmptyContinuation", "NoEmptyContinuation", BuildKit, Warning, "Empty continuation lines are deprecated."),
    rule!("ConsistentInstructionCasing", "ConsistentInstructionCasing", BuildKit, Warning, "Instruction keywords should all use the same case."),
    rule!("DuplicateStageName", "DuplicateStageName", BuildKit, Warning, "Stage names must be unique (case-insensitive)."),
    rule!("ReservedStageName", "ReservedStageName", BuildKit, Warning, "Reserved words (`scratch`, `context`) cannot be stage names."),
    rule!("JSONArgsRecommended", "JSONArgsRecommended", BuildKit, Warning, "Use JSON arguments for CMD and ENTRYPOINT so the process receives OS signals."),
    rule!("MaintainerDeprecated", "MaintainerDeprecated", BuildKit, Warning, "MAINTAINER is deprecated; use a `org.opencontainers.image.authors` LABEL."),
    rule!("UndefinedArgInFrom", "UndefinedArgInFrom", BuildKit, Warning, "FROM uses a variable that is not a global ARG nor a predefined platform ARG."),
    rule!("WorkdirRelativePath", "WorkdirRelativePath", BuildKit, Warning, "A relative WORKDIR before any absolute one depends on the base image's working directory."),
    rule!("UndefinedVar", "UndefinedVar", BuildKit, Warning, "A variable is used but never defined by ARG or ENV in scope."),
    rule!("MultipleInstructionsDisallowed", "MultipleInstructionsDisallowed", BuildKit, Warning, "Only the last CMD, ENTRYPOINT or HEALTHCHECK of a stage takes effect."),
    rule!("LegacyKeyValueFormat", "LegacyKeyValueFormat", BuildKit, Warning, "Use `key=value` in ENV and LABEL; `key value` is the legacy form."),
    rule!("RedundantTargetPlatform", "RedundantTargetPlatform", BuildKit, Warning, "`--platform=$TARGETPLATFORM` on FROM repeats the default."),
    rule!("SecretsUsedInArgOrEnv", "SecretsUsedInArgOrEnv", BuildKit, Warning, "ARG/ENV names that look like secrets persist in the image: use secret mounts."),
    rule!("InvalidDefaultArgInFrom", "InvalidDefaultArgInFrom", BuildKit, Warning, "With its default values, the FROM reference expands to an empty or invalid name."),
    rule!("FromPlatformFlagConstDisallowed", "FromPlatformFlagConstDisallowed", BuildKit, Warning, "FROM --platform should not be a constant: it defeats multi-platform builds."),
    rule!("CopyIgnoredFile", "CopyIgnoredFile", BuildKit, Warning, "COPY/ADD names a source that .dockerignore excludes."),
    rule!("ExposeProtoCasing", "ExposeProtoCasing", BuildKit, Warning, "The EXPOSE protocol should be lowercase."),
    rule!("ExposeInvalidFormat", "ExposeInvalidFormat", BuildKit, Warning, "EXPOSE lists container ports only, without IP addresses or host ports."),
    rule!("InvalidDefinitionDescription", "InvalidDefinitionDescription", BuildKit, Warning, "Experimental: a comment right above `FROM ... AS name` or `ARG name` should start with that name."),
    // hadolint.
    rule!("DL3000", "AbsoluteWorkdir", Hadolint, Error, "Use an absolute WORKDIR."),
    rule!("DL3001", "PointlessCommand", Hadolint, Info, "Commands like ssh, vim, shutdown, service, ps, free, top, kill or mount make little sense in RUN."),
    rule!("DL3002", "LastUserRoot", Hadolint, Warning, "The last USER should not be root."),
    rule!("DL3003", "UseWorkdir", Hadolint, Warning, "Use WORKDIR to switch to a directory."),
    rule!("DL3004", "NoSudo", Hadolint, Error, "Do not use sudo."),
    rule!("DL3006", "TagImage", Hadolint, Warning, "Always tag the version of an image explicitly."),
    rule!("DL3007", "NoLatest", Hadolint, Warning, "Using latest is prone to errors; pin a version."),
    rule!("DL3008", "PinAptGet", Hadolint, Warning, "Pin versions in apt-get install."),
    rule!("DL3009", "AptListsCleanup", Hadolint, Info, "Delete the apt lists (/var/lib/apt/lists) after installing something."),
    rule!("DL3010", "AddArchives", Hadolint, Info, "Use ADD to extract local archives."),
    rule!("DL3011", "ValidPort", Hadolint, Error, "Valid UNIX ports range from 0 to 65535."),
    rule!("DL3012", "OneHealthcheck", Hadolint, Error, "Multiple HEALTHCHECK instructions."),
    rule!("DL3013", "PinPip", Hadolint, Warning, "Pin versions in pip install."),
    rule!("DL3014", "AptGetYes", Hadolint, Warning, "Use the -y switch with apt-get install."),
    rule!("DL3015", "NoInstallRecommends", Hadolint, Info, "Avoid additional packages with --no-install-recommends."),
    rule!("DL3016", "PinNpm", Hadolint, Warning, "Pin versions in npm install."),
    rule!("DL3018", "PinApk", Hadolint, Warning, "Pin versions in apk add."),
    rule!("DL3019", "ApkNoCache", Hadolint, Info, "Use apk add --no-cache."),
    rule!("DL3020", "CopyNotAdd", Hadolint, Error, "Use COPY instead of ADD for files and folders."),
    rule!("DL3021", "CopyDestSlash", Hadolint, Error, "COPY with more than 2 arguments requires the last argument to end with /."),
    rule!("DL3022", "CopyFromAlias", Hadolint, Warning, "COPY --from should reference a previously defined FROM alias."),
    rule!("DL3023", "CopyFromSelf", Hadolint, Error, "COPY --from cannot reference its own FROM alias."),
    rule!("DL3024", "UniqueAlias", Hadolint, Error, "FROM aliases must be unique."),
    rule!("DL3025", "JsonCmd", Hadolint, Warning, "Use JSON notation for CMD and ENTRYPOINT."),
    rule!("DL3027", "NoApt", Hadolint, Warning, "Use apt-get or apt-cache instead of apt."),
    rule!("DL3028", "PinGem", Hadolint, Warning, "Pin versions in gem install."),
    rule!("DL3029", "NoFromPlatform", Hadolint, Warning, "Do not use --platform with FROM."),
    rule!("DL3030", "YumYes", Hadolint, Warning, "Use the -y switch with yum install."),
    rule!("DL3032", "YumClean", Hadolint, Warning, "Run yum clean all after yum install."),
    rule!("DL3033", "PinYum", Hadolint, Warning, "Pin versions in yum install."),
    rule!("DL3034", "ZypperYes", Hadolint, Warning, "Use a non-interactive switch with zypper."),
    rule!("DL3035", "NoZypperDistUpgrade", Hadolint, Warning, "Do not use zypper dist-upgrade."),
    rule!("DL3036", "ZypperClean", Hadolint, Warning, "Run zypper clean after zypper."),
    rule!("DL3037", "PinZypper", Hadolint, Warning, "Pin versions in zypper install."),
    rule!("DL3038", "DnfYes", Hadolint, Warning, "Use the -y switch with dnf install."),
    rule!("DL3040", "DnfClean", Hadolint, Warning, "Run dnf clean all after dnf install."),
    rule!("DL3041", "PinDnf", Hadolint, Warning, "Pin versions in dnf install."),
    rule!("DL3042", "PipNoCacheDir", Hadolint, Warning, "Use pip install --no-cache-dir."),
    rule!("DL3043", "OnbuildForbidden", Hadolint, Error, "ONBUILD cannot trigger ONBUILD, FROM or MAINTAINER."),
    rule!("DL3044", "EnvSelfReference", Hadolint, Error, "Do not refer to a variable in the same ENV statement that defines it."),
    rule!("DL3045", "CopyRelativeNoWorkdir", Hadolint, Warning, "COPY to a relative destination without WORKDIR set."),
    rule!("DL3046", "UseraddLastlog", Hadolint, Warning, "useradd without -l and a high UID makes a huge image."),
    rule!("DL3047", "WgetProgress", Hadolint, Info, "Avoid wget without a progress setting in build logs."),
    rule!("DL3048", "LabelKey", Hadolint, Style, "Invalid label key."),
    rule!("DL3059", "ConsecutiveRuns", Hadolint, Info, "Multiple consecutive RUN instructions: consider consolidation."),
    rule!("DL3060", "YarnCacheClean", Hadolint, Info, "Run yarn cache clean after yarn install."),
    rule!("DL3061", "StartWithFrom", Hadolint, Error, "A Dockerfile must begin with FROM, ARG or a comment."),
    rule!("DL3062", "PinGo", Hadolint, Warning, "Pin versions in go install."),
    rule!("DL3063", "ReservedStageName", Hadolint, Warning, "A stage name is a reserved word."),
    rule!("DL3064", "SensitiveArgEnv", Hadolint, Warning, "ARG/ENV appears to hold sensitive data."),
    rule!("DL3065", "RedundantTargetPlatform", Hadolint, Warning, "FROM --platform=$TARGETPLATFORM is redundant."),
    rule!("DL3066", "NonNumericUser", Hadolint, Info, "A non-numeric user id may not be resolvable by the host system."),
    rule!("DL3067", "CopyWholeFilesystem", Hadolint, Warning, "Do not copy an entire filesystem from another stage."),
    rule!("DL4000", "MaintainerDeprecated", Hadolint, Error, "MAINTAINER is deprecated."),
    rule!("DL4001", "WgetOrCurl", Hadolint, Warning, "Use either wget or curl, not both."),
    rule!("DL4003", "MultipleCmd", Hadolint, Warning, "Multiple CMD instructions: only the last takes effect."),
    rule!("DL4004", "MultipleEntrypoint", Hadolint, Error, "Multiple ENTRYPOINT instructions: only the last takes effect."),
    rule!("DL4005", "UseShell", Hadolint, Warning, "Use SHELL to change the default shell."),
    rule!("DL4006", "Pipefail", Hadolint, Warning, "Set the SHELL option -o pipefail before RUN with a pipe in it."),
];

/// Rules of different origins that report one fact, preferred first: BuildKit's check (what
/// `builder build` prints) before hadolint's. Lint reports one finding per fact and line (a build
/// error, `BL0001`, before both).
pub static SAME_FACT: &[&[&str]] = &[
    &["JSONArgsRecommended", "DL3025"],
    &["MaintainerDeprecated", "DL4000"],
    &["DuplicateStageName", "DL3024"],
    &["ReservedStageName", "DL3063"],
    &["RedundantTargetPlatform", "DL3065"],
    &[
        "MultipleInstructionsDisallowed",
        "DL4003",
        "DL4004",
        "DL3012",
    ],
    &["WorkdirRelativePath", "DL3000"],
    &["InvalidDefaultArgInFrom"],
    &["DL3061"],
    &["DL3023"],
];

/// The other rules that report the same fact as `id` (empty when none).
pub fn same_fact(id: &str) -> impl Iterator<Item = &'static str> + '_ {
    SAME_FACT
        .iter()
        .filter(move |g| g.contains(&id))
        .flat_map(|g| g.iter().copied())
        .filter(move |r| *r != id)
}

/// The rule with this id or name (case-insensitive).
pub fn find(id_or_name: &str) -> Option<&'static RuleInfo> {
    RULES
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(id_or_name) || r.name.eq_ignore_ascii_case(id_or_name))
}

/// True when `pattern` (an id, a name, or `all`) designates the rule `id`.
pub fn matches(pattern: &str, id: &str) -> bool {
    let pattern = pattern.trim();
    if pattern.eq_ignore_ascii_case("all") || pattern.eq_ignore_ascii_case(id) {
        return true;
    }
    find(id).is_some_and(|r| r.name.eq_ignore_ascii_case(pattern))
}
