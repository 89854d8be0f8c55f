//! `docker build` flags `builder build` does not have, as data: each with what to do instead, so
//! a Docker user gets "`--squash` is not supported by builder" and the closest alternative
//! rather than clap's "to pass '--squash' as a value, use '-- --squash'".

/// One `docker build` (or `docker buildx build`) flag that `builder build` lacks.
struct Unsupported {
    /// The long flag, without dashes.
    flag: &'static str,
    /// What to use instead.
    instead: &'static str,
}

const UNSUPPORTED: &[Unsupported] = &[
    Unsupported { flag: "squash", instead: "a multi-stage build whose last stage copies what it needs (`COPY --from=build / /`) gives one layer" },
    Unsupported { flag: "annotation", instead: "a `LABEL` instruction (kept in the image config)" },
    Unsupported { flag: "attest", instead: "none yet: builder writes no attestations" },
    Unsupported { flag: "sbom", instead: "none yet: builder writes no attestations" },
    Unsupported { flag: "provenance", instead: "none yet: builder writes no attestations (`--metadata-file` records the build)" },
    Unsupported { flag: "builder", instead: "`--root DIR` chooses the cache and image store a build uses" },
    Unsupported { flag: "cgroup-parent", instead: "run `builder` itself inside the cgroup" },
    Unsupported { flag: "cpu-shares", instead: "run `builder` itself under the limit (`systemd-run -p CPUWeight=...`)" },
    Unsupported { flag: "cpuset-cpus", instead: "run `builder` itself under the limit (`taskset`)" },
    Unsupported { flag: "memory", instead: "run `builder` itself under the limit (`systemd-run -p MemoryMax=...`)" },
    Unsupported { flag: "isolation", instead: "none: steps always run in builder's Linux sandbox" },
    Unsupported { flag: "security-opt", instead: "`RUN --security=insecure` with `--allow security.insecure`" },
    Unsupported { flag: "compress", instead: "nothing: the context is read in place, never sent" },
    Unsupported { flag: "force-rm", instead: "nothing: intermediate sandboxes are always removed" },
    Unsupported { flag: "rm", instead: "nothing: intermediate sandboxes are always removed" },
    Unsupported { flag: "disable-content-trust", instead: "nothing: builder does not verify signatures" },
];

/// The error for the first `docker build` flag in `args` (the arguments after `build`) that
/// `builder build` does not have; `None` when there is none. Stops at `--`.
pub fn unsupported_build_flag(args: &[String], supported: &dyn Fn(&str) -> bool) -> Option<String> {
    for arg in args {
        if arg == "--" {
            break;
        }
        let Some(name) = arg.strip_prefix("--") else {
            continue;
        };
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        if supported(name) {
            continue;
        }
        if let Some(u) = UNSUPPORTED.iter().find(|u| u.flag == name) {
            return Some(format!(
                "`--{}` is not supported by builder; instead: {}",
                u.flag, u.instead
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_docker_flag_and_an_alternative() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = |_: &str| false;
        let msg = unsupported_build_flag(&args(&["-t", "x", "--squash", "."]), &none).unwrap();
        assert!(
            msg.starts_with("`--squash` is not supported by builder"),
            "{msg}"
        );
        assert!(
            unsupported_build_flag(&args(&["--annotation=a=b", "."]), &none)
                .unwrap()
                .contains("LABEL")
        );
        assert_eq!(
            unsupported_build_flag(&args(&["--", "--squash"]), &none),
            None
        );
        assert_eq!(unsupported_build_flag(&args(&["--tag", "x"]), &none), None);
        // A flag builder grows stops being refused.
        assert_eq!(
            unsupported_build_flag(&args(&["--network=host"]), &|f| f == "network"),
            None
        );
    }
}
