//! Where the binaries under test are.
//!
//! `cargo test --workspace` builds both binaries (the `ringwatch` and
//! `ringwatch-agent` packages have command-line tests of their own, and cargo
//! builds a package's binaries for its integration tests), into the target
//! directory the test executable runs from:
//! `current_exe()` is `target/<profile>/deps/e2e-xxxx`, the binaries are in
//! `target/<profile>/`. An environment variable overrides each path, for
//! testing an installed or cross-built binary.

use std::env;
use std::path::{Path, PathBuf};

/// Overrides the path of the console binary.
pub const RINGWATCH_BIN_ENV: &str = "RINGWATCH_BIN";
/// Overrides the path of the agent binary.
pub const RINGWATCH_AGENT_BIN_ENV: &str = "RINGWATCH_AGENT_BIN";
/// Overrides the path of the `bare_quinn` floor server.
pub const BARE_QUINN_BIN_ENV: &str = "BARE_QUINN_BIN";

/// The `ringwatch` console executable.
///
/// # Panics
/// When it does not exist, with the path looked at and how to build it.
#[track_caller]
pub fn ringwatch() -> PathBuf {
    locate(RINGWATCH_BIN_ENV, "ringwatch")
}

/// The `ringwatch-agent` executable.
///
/// # Panics
/// When it does not exist, with the path looked at and how to build it.
#[track_caller]
pub fn ringwatch_agent() -> PathBuf {
    locate(RINGWATCH_AGENT_BIN_ENV, "ringwatch-agent")
}

/// The `bare_quinn` floor server of `bench_scale`, a binary of this crate
/// (cargo builds it for this crate's tests, and next to the bench drivers).
///
/// # Panics
/// When it does not exist, with the path looked at and how to build it.
#[track_caller]
pub fn bare_quinn() -> PathBuf {
    locate(BARE_QUINN_BIN_ENV, "bare_quinn")
}

#[track_caller]
fn locate(env_var: &str, name: &str) -> PathBuf {
    if let Some(path) = env::var_os(env_var) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            panic!("{env_var} is set to {}, which is not a file", path.display());
        }
        return path;
    }
    let exe = env::current_exe().unwrap_or_else(|err| panic!("cannot find the running test executable: {err}"));
    let candidate = profile_dir(&exe).join(format!("{name}{}", env::consts::EXE_SUFFIX));
    if !candidate.is_file() {
        panic!(
            "the {name} binary is not at {}: run `cargo test --workspace` or `cargo build --workspace` (same profile as the \
             tests) first, or set {env_var} to its path",
            candidate.display()
        );
    }
    candidate
}

/// `target/<profile>/` for an executable in `target/<profile>/deps/` (tests,
/// benches) or directly in `target/<profile>/` (a bench driver binary).
fn profile_dir(exe: &Path) -> PathBuf {
    let parent = exe.parent().unwrap_or(Path::new("."));
    if parent.file_name().is_some_and(|n| n == "deps") {
        parent.parent().unwrap_or(parent).to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_beside_the_deps_folder() {
        assert_eq!(profile_dir(Path::new("/x/target/debug/deps/e2e-0123")), Path::new("/x/target/debug"));
        assert_eq!(profile_dir(Path::new("/x/target/release/bench-driver")), Path::new("/x/target/release"));
    }
}
