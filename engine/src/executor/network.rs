//! The name-resolution files a step sees: `/etc/hosts` and `/etc/resolv.conf`, as file mounts
//! (so they never land in the layer), the way BuildKit provides them to `RUN`.

use super::spec::{MountKind, MountSpec, Network};
use std::path::{Path, PathBuf};

/// Used when the host has no usable resolver configuration (Docker's fallback).
const FALLBACK_RESOLV_CONF: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

/// `/etc/hosts` and `/etc/resolv.conf` mounts for a step with `network` and `hostname`; add
/// them to [`super::SandboxSpec::mounts`].
pub fn network_files(network: Network, hostname: &str) -> Vec<MountSpec> {
    network_files_from(network, hostname, Path::new("/etc/resolv.conf"))
}

fn network_files_from(network: Network, hostname: &str, host_resolv: &Path) -> Vec<MountSpec> {
    let mut hosts = String::from("127.0.0.1\tlocalhost");
    if !hostname.is_empty() {
        hosts.push(' ');
        hosts.push_str(hostname);
    }
    hosts.push_str("\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let host = std::fs::read_to_string(host_resolv).unwrap_or_default();
    let resolv = match network {
        Network::Host if has_nameserver(&host, true) => host,
        // Without the host's network, resolvers on the host's loopback are unreachable.
        Network::None if has_nameserver(&host, false) => without_loopback_nameservers(&host),
        _ => FALLBACK_RESOLV_CONF.to_string(),
    };
    [("/etc/hosts", hosts), ("/etc/resolv.conf", resolv)]
        .into_iter()
        .map(|(target, contents)| MountSpec {
            target: PathBuf::from(target),
            kind: MountKind::File {
                contents: contents.into_bytes(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        })
        .collect()
}

fn nameserver(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    (words.next() == Some("nameserver"))
        .then(|| words.next())
        .flatten()
}

fn is_loopback(addr: &str) -> bool {
    addr.starts_with("127.") || addr == "::1"
}

fn has_nameserver(conf: &str, allow_loopback: bool) -> bool {
    conf.lines()
        .filter_map(nameserver)
        .any(|a| allow_loopback || !is_loopback(a))
}

fn without_loopback_nameservers(conf: &str) -> String {
    conf.lines()
        .filter(|l| !matches!(nameserver(l), Some(a) if is_loopback(a)))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(m: &MountSpec) -> String {
        match &m.kind {
            MountKind::File { contents, .. } => String::from_utf8(contents.clone()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hosts_and_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "search lan\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n",
        )
        .unwrap();
        let files = network_files_from(Network::Host, "sandbox", &resolv);
        assert_eq!(files[0].target, PathBuf::from("/etc/hosts"));
        assert!(contents(&files[0]).starts_with("127.0.0.1\tlocalhost sandbox\n"));
        assert_eq!(
            contents(&files[1]),
            "search lan\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n"
        );
        let files = network_files_from(Network::None, "sandbox", &resolv);
        assert_eq!(contents(&files[1]), "search lan\nnameserver 192.0.2.1\n");
        std::fs::write(&resolv, "nameserver 127.0.0.53\n").unwrap();
        let files = network_files_from(Network::None, "", &resolv);
        assert_eq!(contents(&files[1]), FALLBACK_RESOLV_CONF);
        let files = network_files_from(Network::Host, "", &dir.path().join("missing"));
        assert_eq!(contents(&files[1]), FALLBACK_RESOLV_CONF);
    }
}
