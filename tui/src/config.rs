//! The console's optional config file (`--config FILE`, TOML). Every key is
//! optional; unknown keys are refused with their line, so a typo never
//! silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringwatch_agent::SupervisorConfig;
use ringwatch_agent::supervisor::SupervisorError;
use ringwatch_shared::detector::DetectorConfig;
use ringwatch_shared::limits::ResourceLimits;
use serde::Deserialize;

use crate::control::ConsoleConfig;
use crate::control::data::DataConfig;
use crate::control::data::catalog::MAX_REPLICAS;

/// The file's content.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Data dir.
    pub data_dir: Option<PathBuf>,
    /// Reconnect grace after a console start, like `15s`.
    #[serde(default, with = "optional_duration")]
    pub reconnect_grace: Option<Duration>,
    /// Failure-detector thresholds.
    #[serde(default)]
    pub detector: Option<DetectorConfig>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Option<ResourceLimits>,
    /// The programs the embedded local agent of a bare `ringwatch` may run
    /// (`--allow-exec` patterns); unset, it runs any program (see
    /// [`local::default_allow_exec`](crate::local::default_allow_exec)).
    #[serde(default)]
    pub local_agent_allow_exec: Option<Vec<String>>,
    /// Where to serve Prometheus metrics (`--metrics-listen`; README.md,
    /// "Metrics"); unset, none are served.
    pub metrics_listen: Option<SocketAddr>,
    /// How long the agent certificates the console issues are valid, like
    /// `30d` (README.md, "Certificates").
    #[serde(default, with = "optional_duration")]
    pub agent_cert_ttl: Option<Duration>,
    /// The data store's settings (README.md, "Data").
    #[serde(default)]
    pub data: Option<DataFile>,
    /// The change log's settings (README.md, "Config file").
    #[serde(default)]
    pub change_log: Option<ChangeLogFile>,
}

/// The `[change_log]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeLogFile {
    /// The size of `state.wal` at which it is folded into `state.redb`, a
    /// size like `4MiB`.
    pub fold_at: Option<String>,
}

impl ChangeLogFile {
    /// The fold size the table sets, if any.
    ///
    /// # Errors
    /// A sentence naming the key, for a size that does not parse or is out
    /// of range.
    fn fold_at(&self) -> Result<Option<u64>, String> {
        let Some(text) = &self.fold_at else { return Ok(None) };
        let bytes = ringwatch_shared::size::parse_size(text).map_err(|err| format!("[change_log] fold_at: {err}"))?;
        let range = crate::control::store::redb::FOLD_AT_RANGE;
        if !range.contains(&bytes) {
            return Err(format!(
                "[change_log] fold_at must be {} to {} bytes (4KiB to 1GiB), not {bytes}",
                range.start(),
                range.end()
            ));
        }
        Ok(Some(bytes))
    }
}

/// The `[data]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// Replicas of a put that names none, 1 to 7.
    pub replicas: Option<u8>,
    /// How long a failed node's copies are waited for, like `5s`.
    #[serde(default, with = "optional_duration")]
    pub repair_delay: Option<Duration>,
    /// The repair throttle per second, a size like `64MiB`.
    pub repair_rate: Option<String>,
}

/// Why the config file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It cannot be read.
    #[error("cannot read config file \"{path}\": {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It is not valid.
    #[error("config file \"{path}\" is invalid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
}

impl ConfigFile {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// [`ConfigError`] with the line of the first problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })
    }

    /// Parses the file's text.
    ///
    /// # Errors
    /// toml's message, with line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: Self = toml::from_str(text).map_err(|err| err.to_string().trim_end().to_string())?;
        if let Some(detector) = &file.detector {
            detector.validate()?;
        }
        if let Some(limits) = &file.limits {
            limits.validate()?;
        }
        if let Some(grace) = file.reconnect_grace
            && grace > Duration::from_secs(3_600)
        {
            return Err(format!("reconnect_grace must be at most 1h, not {grace:?}"));
        }
        if let Some(ttl) = file.agent_cert_ttl {
            ringwatch_shared::lifetime::check_agent_cert_ttl(ttl)?;
        }
        if let Some(data) = &file.data {
            data.settings(DataConfig::default())?;
        }
        if let Some(change_log) = &file.change_log {
            change_log.fold_at()?;
        }
        if let Some(patterns) = &file.local_agent_allow_exec {
            let tasks = SupervisorConfig { allow_exec: patterns.clone(), ..SupervisorConfig::new(PathBuf::new()) };
            if let Err(SupervisorError::BadPattern { pattern, reason }) = tasks.validate() {
                return Err(format!("local_agent_allow_exec: pattern \"{pattern}\" is invalid: {reason}"));
            }
        }
        Ok(file)
    }

    /// Applies the file to `config`.
    pub fn apply(self, config: &mut ConsoleConfig) {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(grace) = self.reconnect_grace {
            config.reconnect_grace = grace;
        }
        if let Some(detector) = self.detector {
            config.detector = detector;
        }
        if let Some(limits) = self.limits {
            config.limits = limits;
        }
        if let Some(ttl) = self.agent_cert_ttl {
            config.agent_cert_ttl = ttl;
        }
        if let Some(data) = self.data
            && let Ok(settings) = data.settings(config.data)
        {
            config.data = settings;
        }
        if let Some(Ok(Some(fold_at))) = self.change_log.as_ref().map(ChangeLogFile::fold_at) {
            config.change_log_fold_at = fold_at;
        }
    }
}

impl DataFile {
    /// `base` with this table's keys applied.
    ///
    /// # Errors
    /// A sentence naming the bad key.
    fn settings(&self, base: DataConfig) -> Result<DataConfig, String> {
        let mut settings = base;
        if let Some(replicas) = self.replicas {
            if !(1..=MAX_REPLICAS).contains(&replicas) {
                return Err(format!("[data] replicas must be 1 to {MAX_REPLICAS}, not {replicas}"));
            }
            settings.replicas = replicas;
        }
        if let Some(delay) = self.repair_delay {
            if delay > Duration::from_secs(3_600) {
                return Err(format!("[data] repair_delay must be at most 1h, not {delay:?}"));
            }
            settings.repair_delay = delay;
        }
        if let Some(rate) = &self.repair_rate {
            settings.repair_rate = ringwatch_shared::size::parse_size(rate)
                .map_err(|err| format!("[data] repair_rate (bytes per second): {err}"))?;
        }
        Ok(settings)
    }
}

mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| ringwatch_shared::duration::parse_duration(&text).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_detector_and_limit_values_are_refused() {
        let err = ConfigFile::parse("[detector]\nsuspect_phi = 9.0\nfailed_phi = 8.0\n").unwrap_err();
        assert!(err.contains("suspect_phi"), "{err}");
        let err = ConfigFile::parse("[limits]\nmem_percent = -5.0\n").unwrap_err();
        assert!(err.contains("mem_percent"), "{err}");
        let err = ConfigFile::parse("reconnect_grace = \"5y\"\n").unwrap_err();
        assert!(err.contains("reconnect_grace"), "{err}");
        let err = ConfigFile::parse("agent_cert_ttl = \"5s\"\n").unwrap_err();
        assert!(err.contains("agent_cert_ttl must be between 30s and 365 days"), "{err}");
        let err = ConfigFile::parse("agent_cert_ttl = \"20y\"\n").unwrap_err();
        assert!(err.contains("agent_cert_ttl"), "{err}");
        let file = ConfigFile::parse("agent_cert_ttl = \"7d\"\n").unwrap();
        let mut config = ConsoleConfig::new(PathBuf::from("/tmp/x"));
        file.apply(&mut config);
        assert_eq!(config.agent_cert_ttl, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn the_data_table_sets_replicas_repair_delay_and_rate_and_refuses_nonsense() {
        let file =
            ConfigFile::parse("[data]\nreplicas = 5\nrepair_delay = \"30s\"\nrepair_rate = \"10MiB\"\n").unwrap();
        let mut config = ConsoleConfig::new(PathBuf::from("/tmp/x"));
        file.apply(&mut config);
        assert_eq!(config.data.replicas, 5);
        assert_eq!(config.data.repair_delay, Duration::from_secs(30));
        assert_eq!(config.data.repair_rate, 10 << 20);
        for (text, named) in [
            ("[data]\nreplicas = 0\n", "replicas must be 1 to 7"),
            ("[data]\nreplicas = 9\n", "replicas must be 1 to 7"),
            ("[data]\nrepair_delay = \"2h\"\n", "repair_delay"),
            ("[data]\nrepair_rate = \"fast\"\n", "repair_rate"),
            ("[data]\nrepair_rate = \"0\"\n", "repair_rate"),
            ("[data]\nreplica = 3\n", "unknown field"),
        ] {
            let err = ConfigFile::parse(text).unwrap_err();
            assert!(err.contains(named), "{text:?}: {err}");
        }
        let mut defaults = ConsoleConfig::new(PathBuf::from("/tmp/x"));
        ConfigFile::parse("[data]\n").unwrap().apply(&mut defaults);
        assert_eq!(defaults.data, DataConfig::default());
    }

    #[test]
    fn the_change_log_table_sets_the_fold_size_and_refuses_nonsense() {
        let mut config = ConsoleConfig::new(PathBuf::from("/tmp/x"));
        assert_eq!(config.change_log_fold_at, 4 << 20, "the default");
        ConfigFile::parse("[change_log]\nfold_at = \"64KiB\"\n").unwrap().apply(&mut config);
        assert_eq!(config.change_log_fold_at, 64 << 10);
        for (text, named) in [
            ("[change_log]\nfold_at = \"1KiB\"\n", "4KiB to 1GiB"),
            ("[change_log]\nfold_at = \"2GiB\"\n", "4KiB to 1GiB"),
            ("[change_log]\nfold_at = \"big\"\n", "fold_at"),
            ("[change_log]\nfold = \"4MiB\"\n", "unknown field"),
        ] {
            let err = ConfigFile::parse(text).unwrap_err();
            assert!(err.contains(named), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_full_file_applies() {
        let file = ConfigFile::parse(
            r#"
listen = "127.0.0.1:9000"
reconnect_grace = "30s"
[detector]
failed_phi = 10.0
max_silence = "8s"
[limits]
mem_percent = 90.0
"#,
        )
        .unwrap();
        let mut config = ConsoleConfig::new("/tmp/x".into());
        file.apply(&mut config);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.reconnect_grace, Duration::from_secs(30));
        assert_eq!(config.detector.failed_phi, 10.0);
        assert_eq!(config.detector.max_silence, Duration::from_secs(8));
        assert_eq!(config.detector.suspect_phi, 5.0, "unset keys keep their defaults");
        assert_eq!(config.limits.mem_percent, 90.0);
    }

    #[test]
    fn the_local_agent_allowlist_is_optional_and_checked() {
        assert_eq!(ConfigFile::parse("").unwrap().local_agent_allow_exec, None);
        let file = ConfigFile::parse("local_agent_allow_exec = [\"/opt/app/bin/*\", \"sleep\"]\n").unwrap();
        assert_eq!(file.local_agent_allow_exec, Some(vec!["/opt/app/bin/*".to_string(), "sleep".to_string()]));
        let none = ConfigFile::parse("local_agent_allow_exec = []\n").unwrap();
        assert_eq!(none.local_agent_allow_exec, Some(Vec::new()));
        let err = ConfigFile::parse("local_agent_allow_exec = [\"ok\", \"[bad\"]\n").unwrap_err();
        assert!(err.contains("local_agent_allow_exec") && err.contains("\"[bad\""), "{err}");
        let err = ConfigFile::parse("local_agent_allow_exec = \"sh\"\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn the_metrics_address_is_optional_and_checked() {
        assert_eq!(ConfigFile::parse("").unwrap().metrics_listen, None);
        let file = ConfigFile::parse("metrics_listen = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(file.metrics_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9464))));
        let err = ConfigFile::parse("metrics_listen = \"localhost\"\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("metrics_listen"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_their_line() {
        let err = ConfigFile::parse("listen = \"127.0.0.1:1\"\nlisten_addr = 3\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("listen_addr"), "{err}");
        let err = ConfigFile::parse("[detector]\nmax_silence = \"soon\"\n").unwrap_err();
        assert!(err.contains("soon"), "{err}");
    }
}
