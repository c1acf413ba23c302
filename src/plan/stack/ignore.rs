//! `spec.ignoreDifferences`: service fields someone else owns (an autoscaler's replicas,
//! a tool's labels), named as drift names them (`services.worker.deploy.replicas`).
//! The desired spec takes the live value of each such field, so drift finds nothing there
//! and an update for another reason sends the live value back unchanged.

use bollard::models::{Service, ServiceSpec};
use serde_json::Value;

use super::compare::{compare_service, compose_path};

/// Whether `pattern` (`services.*.deploy.replicas`; `*` is any one segment) names `path`
/// or a field inside it (`services.web.environment` names `services.web.environment[1]`).
#[must_use]
pub fn ignores(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let path: Vec<&str> = path.split('.').collect();
    let Some((last, init)) = pattern.split_last() else {
        return false;
    };
    path.len() >= pattern.len()
        && init
            .iter()
            .zip(&path)
            .all(|(want, seg)| *want == "*" || want == seg)
        && {
            let seg = path[init.len()];
            *last == "*"
                || seg == *last
                || seg
                    .strip_prefix(last)
                    .is_some_and(|rest| rest.starts_with('['))
        }
}

/// `spec` with the live value of every differing field that `patterns` ignore for the
/// service `key` (removed where the live service lacks it).
#[must_use]
pub fn keep_live_fields(
    mut spec: ServiceSpec,
    live: &Service,
    key: &str,
    patterns: &[String],
) -> ServiceSpec {
    if patterns.is_empty() {
        return spec;
    }
    let ignored: Vec<_> = compare_service(&spec, live)
        .into_iter()
        .filter(|f| {
            let path = compose_path(key, &f.path);
            patterns.iter().any(|p| ignores(p, &path))
        })
        .collect();
    if ignored.is_empty() {
        return spec;
    }
    let Ok(mut json) = serde_json::to_value(&spec) else {
        return spec;
    };
    for field in ignored {
        set(&mut json, &field.path, field.live);
    }
    if let Ok(kept) = serde_json::from_value(json) {
        spec = kept;
    }
    spec
}

/// A diff path (`TaskTemplate.ContainerSpec.Env[1]`) as keys and list indexes.
fn segments(path: &str) -> Vec<Result<&str, usize>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            out.push(Ok(key));
        }
        for index in pieces {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Err(i));
            }
        }
    }
    out
}

/// Sets (or, for `None`, removes) the value at `path`, making the objects on the way.
fn set(root: &mut Value, path: &str, value: Option<Value>) {
    let segments = segments(path);
    let Some((last, init)) = segments.split_last() else {
        return;
    };
    let mut at = root;
    for segment in init {
        at = match (segment, at) {
            (Ok(key), Value::Object(map)) => map
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Default::default())),
            (Ok(key), slot @ Value::Null) => {
                *slot = Value::Object(Default::default());
                let Value::Object(map) = slot else {
                    return;
                };
                map.entry(key.to_string())
                    .or_insert_with(|| Value::Object(Default::default()))
            }
            (Err(i), Value::Array(items)) if *i < items.len() => &mut items[*i],
            _ => return,
        };
    }
    match (last, at, value) {
        (Ok(key), Value::Object(map), Some(value)) => {
            map.insert(key.to_string(), value);
        }
        (Ok(key), Value::Object(map), None) => {
            map.remove(*key);
        }
        (Err(i), Value::Array(items), Some(value)) if *i < items.len() => items[*i] = value,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{
        ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    };

    use super::*;

    #[test]
    fn patterns_name_fields_and_what_is_inside_them() {
        for (pattern, path, expected) in [
            (
                "services.web.deploy.replicas",
                "services.web.deploy.replicas",
                true,
            ),
            (
                "services.*.deploy.replicas",
                "services.worker.deploy.replicas",
                true,
            ),
            (
                "services.web.environment",
                "services.web.environment[1]",
                true,
            ),
            ("services.web.deploy", "services.web.deploy.replicas", true),
            (
                "services.web.deploy.labels.*",
                "services.web.deploy.labels.tool",
                true,
            ),
            (
                "services.web.deploy.replicas",
                "services.api.deploy.replicas",
                false,
            ),
            (
                "services.web.deploy.rep",
                "services.web.deploy.replicas",
                false,
            ),
            ("services.web.environment", "services.web.env", false),
            ("services.web.deploy.replicas", "services.web.deploy", false),
        ] {
            assert_eq!(ignores(pattern, path), expected, "{pattern} / {path}");
        }
    }

    fn spec(replicas: i64, env: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: Some("s_web".into()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some("i".into()),
                    env: Some(env.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(replicas),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn live(spec: ServiceSpec) -> Service {
        Service {
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn ignored_fields_take_the_live_value_and_others_stay_desired() {
        let scaled = live(spec(7, &["A=2"]));
        let patterns = ["services.*.deploy.replicas".to_owned()];
        let kept = keep_live_fields(spec(1, &["A=1"]), &scaled, "web", &patterns);
        assert_eq!(kept, spec(7, &["A=1"]));
        let diffs = compare_service(&kept, &scaled);
        let paths: Vec<_> = diffs.iter().map(|f| compose_path("web", &f.path)).collect();
        assert_eq!(paths, ["services.web.environment[0]"]);
        let web_only = ["services.web.deploy.replicas".to_owned()];
        let other = keep_live_fields(spec(1, &["A=1"]), &scaled, "api", &web_only);
        assert_eq!(
            other,
            spec(1, &["A=1"]),
            "the pattern names another service"
        );
    }

    #[test]
    fn an_ignored_field_the_live_service_lacks_is_removed() {
        let mut bare = spec(1, &[]);
        bare.task_template
            .as_mut()
            .unwrap()
            .container_spec
            .as_mut()
            .unwrap()
            .env = None;
        let patterns = ["services.web.environment".to_owned()];
        let kept = keep_live_fields(
            spec(1, &["A=1", "B=2"]),
            &live(bare.clone()),
            "web",
            &patterns,
        );
        assert!(compare_service(&kept, &live(bare)).is_empty());
    }
}
