//! The console's `/metrics` seen from outside: scraping it, `promtool`, and
//! a real Prometheus on loopback that scrapes a console and answers queries
//! (README.md, "Metrics").
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package
//! (`.ci/run` installs it); without them the tests fail saying so.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::poll::{self, Step};
use crate::process::{self, Output, Proc};
use crate::{COMMAND_TIMEOUT, STARTUP};

/// The file a console writes its metrics address to, in its data dir.
pub const METRICS_ADDR_FILE: &str = "metrics.addr";

/// How often a file or an answer is looked for.
const POLL: Duration = Duration::from_millis(100);

/// The directory of the example Prometheus and Grafana files.
pub fn dist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("dist")
}

/// `name` on `PATH`.
///
/// # Panics
/// When there is none, saying how to install it.
#[track_caller]
fn binary(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: there is no `{name}` on PATH; install it with `apt-get install prometheus` (.ci/run does) to run the metrics tests"
            )
        })
}

/// The `promtool` binary.
///
/// # Panics
/// When it is not installed, saying how to install it.
#[track_caller]
pub fn promtool() -> PathBuf {
    binary("promtool")
}

/// Waits for the console of `data_dir` to write its metrics address.
///
/// # Panics
/// When it does not within [`STARTUP`].
#[track_caller]
pub fn metrics_addr(data_dir: &Path) -> SocketAddr {
    let file = data_dir.join(METRICS_ADDR_FILE);
    // Written atomically: whatever is there parses, or is not there yet.
    poll::until(STARTUP, POLL, || match fs::read_to_string(&file) {
        Ok(text) => match text.trim().parse() {
            Ok(addr) => Step::Done(addr),
            Err(err) => Step::Abort(format!("\"{}\" holds {text:?}: {err}", file.display())),
        },
        Err(err) => Step::Pending(format!("no \"{}\" yet: {err}", file.display())),
    })
    .unwrap_or_else(|failure| panic!("the console did not write its metrics address: {failure}"))
}

/// An HTTP answer: its status code and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Its headers, as sent.
    pub headers: String,
    /// The body.
    pub body: String,
}

/// `GET path` on `addr` over HTTP/1.0, with extra header lines.
///
/// # Errors
/// When nothing answers, or the answer is not HTTP.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[&str]) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("not HTTP: {answer:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    Ok(Answer { status, headers: head.to_string(), body: body.to_string() })
}

/// The console's metrics in the classic text format.
///
/// # Panics
/// When the scrape fails or is not a 200.
#[track_caller]
pub fn scrape(addr: SocketAddr) -> String {
    match http_get(addr, "/metrics", &[]) {
        Ok(answer) if answer.status == 200 => answer.body,
        Ok(answer) => panic!("GET /metrics answered {}: {}", answer.status, answer.body),
        Err(err) => panic!("GET /metrics on {addr} failed: {err:#}"),
    }
}

/// The value of the sample `series` (`name{labels}` exactly as exposed).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `promtool check metrics` on `text` (its standard input), with the
/// exposition kept next to its report in `dir`.
///
/// # Panics
/// When promtool is missing or cannot be run.
#[track_caller]
pub fn check_metrics(dir: &Path, text: &str) -> Output {
    let file = dir.join("scrape.txt");
    fs::write(&file, text).unwrap_or_else(|err| panic!("cannot write {}: {err}", file.display()));
    // `check metrics` reads its standard input only; `run` gives children
    // none, so a shell redirects it (both paths are the test's own).
    let script = format!("exec '{}' check metrics < '{}'", promtool().display(), file.display());
    process::run(Path::new("/bin/sh"), ["-c", script.as_str()], COMMAND_TIMEOUT)
        .unwrap_or_else(|err| panic!("cannot run promtool: {err:#}"))
}

/// `promtool check ARGS…`.
///
/// # Panics
/// When promtool is missing or cannot be run.
#[track_caller]
pub fn promtool_check(args: &[&str]) -> Output {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    process::run(&promtool(), all, COMMAND_TIMEOUT).unwrap_or_else(|err| panic!("cannot run promtool: {err:#}"))
}

/// A Prometheus on loopback scraping consoles every second, killed when
/// dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// The process.
    proc: Proc,
    /// Its HTTP address (the port it chose).
    addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus in `dir` (its config, its TSDB and its log there)
    /// on 127.0.0.1:0, scraping `targets` every second with the job name
    /// `ringwatch` and evaluating `rule_files` every second, and waits until
    /// it is ready.
    ///
    /// # Panics
    /// When `prometheus` is not installed or does not become ready.
    #[track_caller]
    pub fn start(dir: &Path, targets: &[SocketAddr], rule_files: &[PathBuf]) -> Self {
        let binary = binary("prometheus");
        fs::create_dir_all(dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        let targets: Vec<String> = targets.iter().map(|target| format!("\"{target}\"")).collect();
        let rules: Vec<String> = rule_files.iter().map(|file| format!("  - \"{}\"\n", file.display())).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}scrape_configs:\n  - job_name: ringwatch\n    static_configs:\n      - targets: [{}]\n",
            if rules.is_empty() { "  []\n".to_string() } else { rules.concat() },
            targets.join(", ")
        );
        let config_file = dir.join("prometheus.yml");
        fs::write(&config_file, config).unwrap_or_else(|err| panic!("cannot write {}: {err}", config_file.display()));
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg("--web.listen-address=127.0.0.1:0");
        let mut proc = Proc::spawn("prometheus", command, &dir.join("prometheus.log"));
        // It logs the port it chose: `msg="Listening on" address=127.0.0.1:PORT`.
        let found = poll::until(STARTUP, POLL, || {
            if !proc.is_running() {
                return Step::Abort("it exited".into());
            }
            let log = proc.log();
            let addr = log.lines().filter(|line| line.contains("msg=\"Listening on\"")).find_map(|line| {
                line.split_whitespace().find_map(|word| word.strip_prefix("address=")?.parse::<SocketAddr>().ok())
            });
            match addr {
                Some(addr) => Step::Done(addr),
                None => Step::Pending("no listening address logged yet".into()),
            }
        });
        let addr = match found {
            Ok(addr) => addr,
            Err(failure) => panic!("prometheus did not start: {failure}\n{}", proc.log_tail()),
        };
        let ready = poll::until(STARTUP, POLL, || match http_get(addr, "/-/ready", &[]) {
            Ok(answer) if answer.status == 200 => Step::Done(()),
            Ok(answer) => Step::Pending(format!("/-/ready answered {}", answer.status)),
            Err(err) => Step::Pending(err.to_string()),
        });
        if let Err(failure) = ready {
            panic!("prometheus did not become ready: {failure}\n{}", proc.log_tail());
        }
        Self { proc, addr }
    }

    /// Its HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last lines of its log, framed for a failure message.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// An instant query: each series of the answer as `(labels, value)`.
    ///
    /// # Errors
    /// When Prometheus does not answer or the answer is not a vector.
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
        query(self.addr, promql)
    }

    /// Polls `promql` until `pred` holds of its answer, for up to
    /// `timeout`; returns that answer.
    ///
    /// # Panics
    /// On timeout, with the last answer and Prometheus's log tail.
    #[track_caller]
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        promql: &str,
        mut pred: impl FnMut(&[(serde_json::Value, f64)]) -> bool,
    ) -> Vec<(serde_json::Value, f64)> {
        let proc = &mut self.proc;
        let addr = self.addr;
        let result = poll::until(timeout, POLL * 5, || {
            if !proc.is_running() {
                return Step::Abort("prometheus exited".into());
            }
            match query(addr, promql) {
                Ok(answer) if pred(&answer) => Step::Done(answer),
                Ok(answer) => Step::Pending(format!("{promql} = {answer:?}")),
                Err(err) => Step::Pending(format!("{err:#}")),
            }
        });
        match result {
            Ok(answer) => answer,
            Err(failure) => panic!("waiting for {promql}: {failure}\n{}", self.proc.log_tail()),
        }
    }
}

/// An instant query on the Prometheus at `addr`.
fn query(addr: SocketAddr, promql: &str) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
    let answer = http_get(addr, &format!("/api/v1/query?query={}", url_encode(promql)), &[])?;
    let document: serde_json::Value =
        serde_json::from_str(&answer.body).map_err(|err| anyhow::anyhow!("not JSON ({err}): {}", answer.body))?;
    if document["status"] != "success" {
        anyhow::bail!("the query {promql:?} failed: {}", answer.body);
    }
    let result =
        document["data"]["result"].as_array().ok_or_else(|| anyhow::anyhow!("no vector in {}", answer.body))?;
    result
        .iter()
        .map(|series| {
            let value = series["value"][1]
                .as_str()
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no value in {series}"))?;
            Ok((series["metric"].clone(), value))
        })
        .collect()
}

/// Percent-encodes a query string value.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_found_by_its_whole_series_only() {
        let text = "# TYPE x gauge\nx{node=\"a\"} 1\nx{node=\"ab\"} 2\nx_total 3\n";
        assert_eq!(sample(text, "x{node=\"a\"}"), Some(1.0));
        assert_eq!(sample(text, "x{node=\"ab\"}"), Some(2.0));
        assert_eq!(sample(text, "x"), None, "x_total is another series");
        assert_eq!(sample(text, "x_total"), Some(3.0));
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(url_encode("count(x{a=\"b c\"})"), "count%28x%7Ba%3D%22b%20c%22%7D%29");
    }
}
