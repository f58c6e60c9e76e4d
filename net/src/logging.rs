//! One log set-up for both binaries.

/// The log filter both binaries use unless `RUST_LOG` says otherwise.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,quinn=warn,rustls=warn"))
}

/// Logs to stderr (colours only on a terminal): the headless binaries' log.
pub fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(log_filter())
        .init();
}

/// Logs to `file_name` in `dir` (created private, appended to), without
/// colours: for a terminal UI, which owns the terminal. Returns the path.
///
/// # Errors
/// When the directory or the file cannot be made or opened; the error
/// names which.
pub fn log_to_file(dir: &std::path::Path, file_name: &str) -> Result<std::path::PathBuf, String> {
    crate::files::create_private_dir(dir)
        .map_err(|err| format!("failed to create the log dir \"{}\": {err}", dir.display()))?;
    let path = dir.join(file_name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|err| format!("failed to open the log file \"{}\": {err}", path.display()))?;
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(log_filter())
        .init();
    Ok(path)
}
