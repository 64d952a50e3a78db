//! Names the commit the binary was built from, for `statehold_build_info`:
//! `STATEHOLD_COMMIT` when set (an image build passes it as a build
//! argument, having no `.git`), else `git rev-parse`, else "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=STATEHOLD_COMMIT");
    let from_git = || {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = std::env::var("STATEHOLD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(from_git)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=STATEHOLD_COMMIT={commit}");
    // A new commit moves the branch the HEAD names.
    let head = Path::new(".git/HEAD");
    if head.exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Ok(text) = std::fs::read_to_string(head) {
            if let Some(branch) = text.trim().strip_prefix("ref: ") {
                println!("cargo:rerun-if-changed=.git/{branch}");
            }
        }
    }
}
