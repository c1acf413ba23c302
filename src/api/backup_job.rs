//! `BackupJob`: a scheduled (cron) job run as a swarm `replicated-job` service.

use std::collections::BTreeMap;

use croner::parser::{CronParser, Seconds, Year};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::placement::Placement;
use super::rules::Errors;

/// A job run on a cron schedule, one swarm job service per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupJobSpec {
    /// Cron expression: five fields (`minute hour day-of-month month day-of-week`), or six
    /// with seconds first; read in `timeZone`.
    pub schedule: String,
    /// The IANA time zone the schedule is read in (`Europe/Berlin`); UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    pub image: String,
    /// The command and its arguments; the image's default when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Swarm secrets (logical names) mounted at `/run/secrets/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Networks (logical names of `Network` records or stack networks) to attach to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "is_default_placement")]
    pub placement: Placement,
    /// What to do when a run is due while the previous one still runs.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A run that could not start within this many seconds of its time is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u64>,
    /// A run still going after this many seconds is stopped and counted as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// How many finished runs to keep.
    #[serde(default)]
    pub history: History,
    /// No new runs while true; a running one finishes.
    #[serde(default)]
    pub suspend: bool,
    /// A duration (`26h`, `90m`): no successful run within it makes the record `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<String>,
    /// The runs' output may hold secrets: no log lines are kept with the history.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive_logs: bool,
}

fn is_default_placement(placement: &Placement) -> bool {
    *placement == Placement::default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// A volume name, or an absolute path on the node for `bind`.
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Volume,
    Bind,
}

/// As Kubernetes' CronJob, but `Forbid` by default: two backups of one database at once
/// are never wanted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start the new run beside the old one.
    Allow,
    /// Skip the new run.
    #[default]
    Forbid,
    /// Stop the old run, start the new one.
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct History {
    #[serde(default = "default_successful")]
    pub successful: u32,
    #[serde(default = "default_failed")]
    pub failed: u32,
}

impl Default for History {
    fn default() -> Self {
        Self {
            successful: default_successful(),
            failed: default_failed(),
        }
    }
}

fn default_successful() -> u32 {
    3
}

fn default_failed() -> u32 {
    1
}

/// Parses a cron expression of five fields, or six with seconds first; the
/// controller computes run times from it.
///
/// # Errors
/// The expression is not a valid cron expression.
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|err| format!("{schedule:?} is not a cron expression: {err}"))
}

/// Parses an IANA time zone name; `None` is UTC.
///
/// # Errors
/// The name is not in the time zone database.
pub fn parse_time_zone(name: Option<&str>) -> Result<chrono_tz::Tz, String> {
    match name {
        None => Ok(chrono_tz::UTC),
        Some(name) => name
            .parse()
            .map_err(|_| format!("{name:?} is not an IANA time zone name")),
    }
}

/// Parses `staleAfter` (Go duration syntax, as compose durations).
///
/// # Errors
/// Not a duration, or not longer than zero.
pub fn parse_stale_after(value: &str) -> Result<std::time::Duration, String> {
    match super::compose::parse_go_duration(value)? {
        nanos if nanos <= 0 => Err(format!("{value:?} must be longer than zero")),
        nanos => Ok(std::time::Duration::from_nanos(nanos.unsigned_abs())),
    }
}

/// The longest job name whose run services' names (`<job>-<UTC timestamp>`) swarm accepts:
/// a service name is at most 63 characters.
pub const NAME_LIMIT: usize = 63 - RUN_SUFFIX_LEN;

/// The length of `-20261201t030000z`, what a run's name adds to its job's.
pub const RUN_SUFFIX_LEN: usize = 17;

/// The rules a job's name must follow beyond every record's: its run services are named
/// after it, and swarm takes only letters, digits, `-` and `_` in service names.
pub(crate) fn validate_name(path: &str, name: &str, errors: &mut Errors) {
    if name.len() > NAME_LIMIT {
        errors.push(
            path,
            format!("a BackupJob's name is at most {NAME_LIMIT} characters (its runs are named <name>-<UTC timestamp>)"),
        );
    }
    if name.contains('.') {
        errors.push(
            path,
            "a BackupJob's name has no '.' (swarm service names do not allow it)",
        );
    }
}

impl BackupJobSpec {
    pub(crate) fn validate(&self, errors: &mut Errors) {
        if let Err(message) = parse_schedule(&self.schedule) {
            errors.push("spec.schedule", message);
        }
        if let Err(message) = parse_time_zone(self.time_zone.as_deref()) {
            errors.push("spec.timeZone", message);
        }
        if let Some(Err(message)) = self.stale_after.as_deref().map(parse_stale_after) {
            errors.push("spec.staleAfter", message);
        }
        errors.image("spec.image", &self.image);
        for key in self.env.keys() {
            errors.env_name(&format!("spec.env.{key}"), key);
        }
        for (i, secret) in self.secrets.iter().enumerate() {
            errors.name(&format!("spec.secrets[{i}]"), secret);
        }
        errors.unique("spec.secrets", self.secrets.iter().map(String::as_str));
        for (i, network) in self.networks.iter().enumerate() {
            errors.not_empty(&format!("spec.networks[{i}]"), network);
        }
        errors.unique("spec.networks", self.networks.iter().map(String::as_str));
        for (i, mount) in self.mounts.iter().enumerate() {
            let path = format!("spec.mounts[{i}]");
            if !mount.target.starts_with('/') {
                errors.push(format!("{path}.target"), "must be an absolute path");
            }
            match mount.kind {
                MountType::Bind if !mount.source.starts_with('/') => errors.push(
                    format!("{path}.source"),
                    "a bind source must be an absolute path on the node",
                ),
                MountType::Volume => errors.not_empty(&format!("{path}.source"), &mount.source),
                MountType::Bind => {}
            }
        }
        errors.unique("spec.mounts", self.mounts.iter().map(|m| m.target.as_str()));
        self.placement.validate("spec.placement", errors);
        if self.starting_deadline_seconds == Some(0) {
            errors.push("spec.startingDeadlineSeconds", "must be at least 1");
        }
        if self.timeout_seconds == Some(0) {
            errors.push("spec.timeoutSeconds", "must be at least 1");
        }
        for (field, value) in [
            ("successful", self.history.successful),
            ("failed", self.history.failed),
        ] {
            if value > 100 {
                errors.push(format!("spec.history.{field}"), "must be at most 100");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(spec: serde_json::Value) -> Vec<String> {
        let spec: BackupJobSpec = serde_json::from_value(spec).unwrap();
        Errors::found_by(|errors| spec.validate(errors))
    }

    #[test]
    fn schedules() {
        for good in ["0 3 * * *", "*/15 * * * 1-5", "@daily", "*/2 * * * * *"] {
            assert!(parse_schedule(good).is_ok(), "{good}");
        }
        for bad in ["0 0 3 * * * * *", "61 * * * *", "daily", ""] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_rules() {
        let spec: BackupJobSpec =
            serde_json::from_value(serde_json::json!({"schedule": "0 3 * * *", "image": "pg"}))
                .unwrap();
        assert_eq!(spec.concurrency_policy, ConcurrencyPolicy::Forbid);
        assert_eq!(
            spec.history,
            History {
                successful: 3,
                failed: 1
            }
        );
        assert_eq!(
            errors_of(serde_json::json!({
                "schedule": "0 3 * *", "image": "pg", "env": {"1X": "y"},
                "mounts": [{"type": "bind", "source": "./b", "target": "b"}],
                "timeoutSeconds": 0, "timeZone": "Mars/Olympus", "staleAfter": "0s"
            })),
            [
                "spec.schedule: \"0 3 * *\" is not a cron expression: Invalid pattern: Pattern must have 5 or 6 fields when years are disallowed.",
                "spec.timeZone: \"Mars/Olympus\" is not an IANA time zone name",
                "spec.staleAfter: \"0s\" must be longer than zero",
                "spec.env.1X: \"1X\" is not a valid environment variable name",
                "spec.mounts[0].target: must be an absolute path",
                "spec.mounts[0].source: a bind source must be an absolute path on the node",
                "spec.timeoutSeconds: must be at least 1",
            ]
        );
    }

    #[test]
    fn a_job_name_must_fit_its_runs_service_names() {
        let record = |name: &str| {
            crate::api::Record::from_value(serde_json::json!({
                "apiVersion": crate::api::API_VERSION, "kind": "BackupJob",
                "metadata": {"name": name},
                "spec": {"schedule": "0 3 * * *", "image": "pg"},
            }))
            .map(drop)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert!(record(&"a".repeat(NAME_LIMIT)).is_ok());
        let long = record(&"a".repeat(NAME_LIMIT + 1)).unwrap_err();
        assert!(long[0].contains("at most 46 characters"), "{long:?}");
        let dotted = record("db.nightly").unwrap_err();
        assert!(
            dotted[0].starts_with("metadata.name: a BackupJob's name has no '.'"),
            "{dotted:?}"
        );
    }
}
