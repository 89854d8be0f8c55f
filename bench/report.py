#!/usr/bin/env python3
"""Turns bench/results/runs.json + env.json into summary.json and the results section of
BENCHMARKS.md (between the `results:begin` / `results:end` markers).

Usage: report.py RESULTS_DIR BENCHMARKS_MD
"""
import json
import statistics
import sys
from pathlib import Path

TARGETS = {  # scenario -> (max builder/BuildKit, max builder/Buildah or None)
    "noop": (0.2, None),
    "edit-late": (0.5, None),
    "edit-early": (0.5, None),
    "cold": (0.8, 0.5),
}
RSS_TARGET_MB = 150
SCENARIOS = ["cold", "noop", "edit-late", "edit-early"]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def main():
    results, md = Path(sys.argv[1]), Path(sys.argv[2])
    runs = json.loads((results / "runs.json").read_text())
    env = json.loads((results / "env.json").read_text())
    workloads = list(dict.fromkeys(r["workload"] for r in runs))

    def cell(wl, sc, tool):
        xs = [r for r in runs if (r["workload"], r["scenario"], r["tool"]) == (wl, sc, tool)]
        if not xs:
            return None
        return {
            "median_s": statistics.median(r["seconds"] for r in xs),
            "runs": len(xs),
            "min_s": min(r["seconds"] for r in xs),
            "max_s": max(r["seconds"] for r in xs),
            "peak_rss_mb": max((r["rss_kb"] or 0) for r in xs) / 1024 if tool == "builder" else None,
            "load": statistics.median(r["load"] for r in xs),
        }

    summary, lines, misses = [], [], []
    lines.append(
        "| workload | scenario | runs | builder s | BuildKit s | Buildah s | builder/BuildKit "
        "| builder/Buildah | floor s | ctx tar s | builder peak RSS MB | load |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for wl in workloads:
        for sc in SCENARIOS:
            b, k, h, f, u = (
                cell(wl, sc, t) for t in ("builder", "buildkit", "buildah", "floor", "upload")
            )
            if not b:
                continue
            rk = b["median_s"] / k["median_s"] if k else None
            rh = b["median_s"] / h["median_s"] if h else None
            tk, th = TARGETS[sc]
            flags = []
            if rk is not None and rk > tk:
                flags.append(f"BuildKit target {tk}x missed")
            if th is not None and rh is not None and rh > th:
                flags.append(f"Buildah target {th}x missed")
            if wl == "large" and b["peak_rss_mb"] > RSS_TARGET_MB:
                flags.append(f"RSS target {RSS_TARGET_MB} MB missed")
            misses += [f"{wl} {sc}: {m}" for m in flags]
            summary.append({"workload": wl, "scenario": sc, "builder": b, "buildkit": k,
                            "buildah": h, "floor": f, "context_tar": u, "builder_over_buildkit": rk,
                            "builder_over_buildah": rh, "missed": flags})

            def s(c):
                return f"{c['median_s']:.2f}" if c else "–"

            def mark(r, t):
                if r is None:
                    return "–"
                return f"{r:.2f}" + ("" if t is None or r <= t else " ✗")

            lines.append(
                f"| {wl} | {sc} | {b['runs']} | {s(b)} | {s(k)} | {s(h)} | {mark(rk, tk)} "
                f"| {mark(rh, th)} | {s(f)} | {s(u)} | {b['peak_rss_mb']:.0f} | {b['load']:.1f} |"
            )
    (results / "summary.json").write_text(json.dumps(summary, indent=1))

    head = (
        f"Run {env['date']}: {env['cpu']}, {env['cores']} cores, {env['mem_gib']} GiB, "
        f"kernel {env['kernel']}; builder {env['builder']}; dockerd {env['dockerd']} "
        f"(embedded BuildKit, storage {env['docker_storage']}); Buildah {env['buildah']} "
        f"(storage {env['buildah_storage']}). Runs per cell: {env['runs']} "
        f"({env['large_runs']} for `large`, context {env['large_files']} files / "
        f"{env['large_mb']} MB). Load average at the end: {env['load_at_end']}."
    )
    body = [head, "", *lines, "",
            "✗ = target missed. Medians in seconds. `floor`: parallel stat walk of the context "
            "(noop), `tar -c | gzip` of the last COPY's source (edit-late). `ctx tar`: "
            "`tar -c` of the whole context, what BuildKit's tar upload costs the client here "
            "(see Set-up). `load`: median 1-minute load average when the runs of that cell "
            "finished.", ""]
    body.append("Targets missed in this run: " + ("; ".join(misses) if misses else "none") + ".")
    text = md.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    md.write_text(text[:start] + "\n" + "\n".join(body) + "\n" + text[end:])


if __name__ == "__main__":
    main()
