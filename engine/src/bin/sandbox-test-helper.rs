//! Helper binary for the engine's sandbox tests and benchmarks.
//!
//! `sandbox-test-helper __sandbox-helper <fd>`: the sandbox helper, with a test in-process
//! handler `test.write-files` registered (payload: JSON map of path → contents, written under
//! the first overlay mount).
//! `sandbox-test-helper run-spec <spec.json>`: runs the spec with this binary as helper and prints
//! `{"exit_code":..,"lines":[..]}` or `{"error":".."}` as JSON (to run a spec as another user).

use engine::executor::{self, InProcessContext, Runner, SandboxSpec};
use std::collections::BTreeMap;

fn write_files(ctx: &InProcessContext, payload: &[u8]) -> Result<(), String> {
    let files: BTreeMap<String, String> =
        serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let root = ctx.mounts.first().ok_or("no overlay mounted")?;
    for (path, contents) in files {
        let target = root.join(path.trim_start_matches('/'));
        std::fs::write(&target, contents).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    Ok(())
}

fn main() {
    executor::register_in_process("test.write-files", write_files);
    executor::maybe_run_helper();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("run-spec") || args.len() != 3 {
        eprintln!("usage: sandbox-test-helper run-spec <spec.json>");
        std::process::exit(2);
    }
    let result = std::fs::read(&args[2])
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<SandboxSpec>(&b).map_err(|e| e.to_string()))
        .and_then(|spec| {
            let helper = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut lines = Vec::new();
            let outcome = Runner::with_helper(helper)
                .run(&spec, &mut |l| lines.push(l.text.clone()))
                .map_err(|e| e.to_string())?;
            Ok(serde_json::json!({ "exit_code": outcome.exit_code, "lines": lines }))
        });
    let out = match result {
        Ok(v) => v,
        Err(e) => serde_json::json!({ "error": e }),
    };
    println!("{out}");
}
