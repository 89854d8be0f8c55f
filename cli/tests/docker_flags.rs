//! A Docker user's flags: one `builder build` lacks is named, with what to do instead.

use std::process::Command;

#[test]
fn an_unsupported_docker_build_flag_is_named_with_an_alternative() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, hint) in [
        ("--squash", "COPY --from"),
        ("--memory=1g", "MemoryMax"),
        ("--attest=type=sbom", "attestations"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_builder"))
            .arg("--root")
            .arg(dir.path().join("root"))
            .args(["build", "-t", "x", flag])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = flag.split('=').next().unwrap();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("`{name}` is not supported by builder")),
            "{stderr}"
        );
        assert!(stderr.contains(hint), "{stderr}");
        assert!(!stderr.contains("-- --"), "no clap hint: {stderr}");
    }
    // The same word elsewhere is not a flag of `build`.
    let out = Command::new(env!("CARGO_BIN_EXE_builder"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .args(["images", "--squash"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not supported by builder"));
}
