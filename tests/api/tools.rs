//! Real clients the tests drive (grpcurl, PyJWT, nginx): found on `PATH`
//! (which tests/run.sh extends with a virtual environment it makes), or in
//! the sbin directories where Debian puts nginx.
//! Under tests/run.sh (`REQUIRE_TEST_TOOLS=1`) a missing tool fails the
//! test; under plain `cargo test` the test says so and is skipped.

use std::path::PathBuf;

/// Where daemons (nginx) are installed, which a user's PATH often lacks.
const SBIN: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];

/// The tool's path, or `None` (after saying so) when it is not installed.
#[track_caller]
pub fn find(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain(SBIN.map(PathBuf::from))
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("REQUIRE_TEST_TOOLS").is_none(),
            "{name} is not installed, and tests/run.sh should have installed it"
        );
        eprintln!("skipped: {name} is not installed; tests/run.sh installs it");
    }
    found
}

/// A python3 that can import every one of `modules` (PyJWT is `jwt`), or
/// `None` (after saying so) when there is none.
#[track_caller]
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let python = find("python3")?;
    let imports = format!("import {}", modules.join(", "));
    let importable = std::process::Command::new(&python)
        .args(["-c", &imports])
        .output()
        .is_ok_and(|output| output.status.success());
    if !importable {
        assert!(
            std::env::var_os("REQUIRE_TEST_TOOLS").is_none(),
            "{} cannot `{imports}`, and tests/run.sh should have installed them",
            python.display()
        );
        eprintln!("skipped: {} cannot `{imports}`; tests/run.sh installs them", python.display());
        return None;
    }
    Some(python)
}

/// Runs `program` with `args`; returns its exit success, standard output and
/// standard error.
pub async fn run(program: &PathBuf, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|error| panic!("{} runs: {error}", program.display()));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
