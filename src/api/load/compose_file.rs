//! The compose-file loader: a Stack's `composeFile` read and stored inline, interpolated
//! (from apply's environment and the Stack's `envFiles`), its services' `env_file`s merged
//! into their environment, its relative and `~/` bind-mount paths made absolute, and its
//! `file:` configs and secrets read at apply time (a config's content inlined, a secret's
//! value taken out to be sealed).

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use super::env_files::{read_dotenv_files, resolve_environment};
use super::files::{read_swarm_object, read_text, utf8};
use super::yaml::parse_documents;
use super::{SECRET_REFERENCE_KEY, SecretMaterial, stack_secret_prefix};
use crate::api::FieldError;
use crate::api::interpolate::{Env, interpolate_compose};
use crate::api::secret_value::SecretValue;

/// Turns a Stack's spec as written into the form stored: compose inline, interpolated,
/// with relative paths resolved and file contents read.
pub(super) struct StackLoader<'a, 'e> {
    pub(super) stack: &'a str,
    pub(super) env: Env<'e>,
    pub(super) errors: &'a mut Vec<FieldError>,
    pub(super) warnings: &'a mut Vec<String>,
    pub(super) secrets: &'a mut Vec<SecretMaterial>,
}

impl StackLoader<'_, '_> {
    pub(super) fn prepare(&mut self, spec: &mut Map<String, Value>, record_folder: &Path) {
        let mut folder = record_folder.to_owned();
        if !spec.contains_key("compose")
            && let Some(Value::String(relative)) = spec.get("composeFile")
        {
            let path = record_folder.join(relative);
            match read_text(&path).and_then(|text| parse_compose(&text)) {
                Ok(compose) => {
                    spec.remove("composeFile");
                    spec.insert("compose".to_owned(), compose);
                    folder = path.parent().unwrap_or(record_folder).to_owned();
                }
                Err(message) => {
                    return self
                        .errors
                        .push(FieldError::new("spec.composeFile", message));
                }
            }
        }
        let dotenv = match spec.remove("envFiles") {
            None => Default::default(),
            Some(Value::Array(files)) => {
                let mut names = Vec::new();
                for (i, file) in files.iter().enumerate() {
                    match file.as_str() {
                        Some(name) => names.push(name.to_owned()),
                        None => {
                            return self.errors.push(FieldError::new(
                                format!("spec.envFiles[{i}]"),
                                "expected a file name",
                            ));
                        }
                    }
                }
                match read_dotenv_files(&names, record_folder) {
                    Ok(vars) => vars,
                    Err((i, message)) => {
                        return self
                            .errors
                            .push(FieldError::new(format!("spec.envFiles[{i}]"), message));
                    }
                }
            }
            Some(_) => {
                return self.errors.push(FieldError::new(
                    "spec.envFiles",
                    "expected a list of file names",
                ));
            }
        };
        let Some(compose) = spec.get_mut("compose") else {
            return;
        };
        // As `docker compose`: the shell's environment wins over the `.env` files.
        let interpolation_env = |name: &str| (self.env)(name).or_else(|| dotenv.get(name).cloned());
        let mut unset = Vec::new();
        interpolate_compose(
            compose,
            "spec.compose",
            &interpolation_env,
            self.errors,
            &mut unset,
        );
        self.warnings.extend(unset.into_iter().map(|name| {
            format!("spec.compose: variable {name} is not set, defaulting to a blank string")
        }));
        let Some(compose) = compose.as_object_mut() else {
            return;
        };
        let base = std::path::absolute(&folder).unwrap_or(folder);
        if let Some(Value::Object(services)) = compose.get_mut("services") {
            for (name, service) in services.iter_mut() {
                let Some(service) = service.as_object_mut() else {
                    continue;
                };
                self.merge_env_files(name, service, &base);
                if let Some(Value::Array(volumes)) = service.get_mut("volumes") {
                    let home = (self.env)("HOME");
                    for volume in volumes.iter_mut() {
                        resolve_bind(volume, &base, home.as_deref());
                    }
                }
            }
        }
        if let Some(Value::Object(configs)) = compose.get_mut("configs") {
            for (name, config) in configs.iter_mut() {
                self.inline_config(name, config, &base);
            }
        }
        if let Some(Value::Object(secrets)) = compose.get_mut("secrets") {
            for (name, secret) in secrets.iter_mut() {
                self.seal_stack_secret(name, secret, &base);
            }
        }
    }

    /// Stores a service's `env_file`s merged into its `environment`, as the CLI merges them.
    fn merge_env_files(&mut self, name: &str, service: &mut Map<String, Value>, base: &Path) {
        match resolve_environment(service, base, self.env) {
            Ok(None) => {}
            Ok(Some(environment)) => {
                service.remove("env_file");
                service.insert("environment".to_owned(), environment);
            }
            Err((field, message)) => self.errors.push(FieldError::new(
                format!("spec.compose.services.{name}.{field}"),
                message,
            )),
        }
    }

    fn inline_config(&mut self, name: &str, config: &mut Value, base: &Path) {
        let Some(config) = config.as_object_mut() else {
            return;
        };
        let Some(Value::String(file)) = config.get("file") else {
            return;
        };
        let path = base.join(file);
        match read_swarm_object(&path).and_then(|bytes| utf8(&path, bytes)) {
            Ok(content) => {
                config.remove("file");
                config.insert("content".to_owned(), Value::String(content));
            }
            Err(message) => self.errors.push(FieldError::new(
                format!("spec.compose.configs.{name}.file"),
                message,
            )),
        }
    }

    fn seal_stack_secret(&mut self, name: &str, secret: &mut Value, base: &Path) {
        let Some(secret) = secret.as_object_mut() else {
            return;
        };
        let Some(Value::String(file)) = secret.get("file") else {
            return;
        };
        match read_swarm_object(&base.join(file)) {
            Ok(bytes) => {
                let store_key = format!("{}{name}", stack_secret_prefix(self.stack));
                secret.remove("file");
                secret.insert(
                    SECRET_REFERENCE_KEY.to_owned(),
                    Value::String(store_key.clone()),
                );
                self.secrets.push(SecretMaterial {
                    store_key,
                    value: SecretValue::new(bytes),
                });
            }
            Err(message) => self.errors.push(FieldError::new(
                format!("spec.compose.secrets.{name}.file"),
                message,
            )),
        }
    }
}

fn parse_compose(text: &str) -> Result<Value, String> {
    let mut documents = parse_documents(text, false)?;
    match (documents.pop(), documents.is_empty()) {
        (Some(compose @ Value::Object(_)), true) => Ok(compose),
        _ => Err("a compose file must hold exactly one mapping".to_owned()),
    }
}

/// Makes a bind-mount source absolute, as the docker CLI does: a leading `~` becomes
/// `home` (apply's `HOME`; kept when unset), then a relative path is taken against `base`.
/// In the short form (`./data:/data`) a source starting with `.` or `~` is a path (anything
/// else without `/` is a volume name); in the long form, any `source` of `type: bind`.
fn resolve_bind(volume: &mut Value, base: &Path, home: Option<&str>) {
    let resolve = |source: &str| {
        let source = match (source.strip_prefix('~'), home) {
            (Some(rest), Some(home)) => format!("{home}{rest}"),
            _ => source.to_owned(),
        };
        match Path::new(&source).is_absolute() {
            true => source,
            false => clean(&base.join(source)).display().to_string(),
        }
    };
    match volume {
        Value::String(short) => {
            if let Some((source, rest)) = short.split_once(':')
                && (source == "."
                    || source == ".."
                    || source.starts_with("./")
                    || source.starts_with("../")
                    || source.starts_with('~'))
            {
                *short = format!("{}:{rest}", resolve(source));
            }
        }
        Value::Object(long) => {
            if long.get("type").and_then(Value::as_str) == Some("bind")
                && let Some(Value::String(source)) = long.get_mut("source")
            {
                *source = resolve(source);
            }
        }
        _ => {}
    }
}

/// Removes `.` and `..` lexically (the path names a file on a node, not here).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load::fixtures::{folder, load_one};
    use crate::api::load::load_paths;

    const STACK_RECORD: &str = "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: web}\nspec:\n  composeFile: compose/web.yml\n";

    const COMPOSE: &str = r#"
services:
  web:
    image: "nginx:${TAG:-1.25}"
    command: ["sh", "-c", "echo $$HOME ${UNSET_ONE}"]
    volumes:
      - ./html:/usr/share/nginx/html:ro
      - ../shared:/shared
      - data:/data
      - type: bind
        source: ./conf
        target: /etc/nginx/conf.d
      - type: volume
        source: cache
        target: /cache
    configs: [site]
    secrets: [token]
volumes:
  data: {}
  cache: {}
configs:
  site:
    file: ./site.conf
secrets:
  token:
    file: ./token.txt
    labels: {a: b}
"#;

    #[test]
    fn compose_file_is_read_interpolated_and_stored_inline() {
        let dir = folder(&[
            ("stacks/web.yaml", STACK_RECORD),
            ("stacks/compose/web.yml", COMPOSE),
            ("stacks/compose/site.conf", "server { listen 80; }\n"),
            ("stacks/compose/token.txt", "canary-stack-3"),
        ]);
        let env = |name: &str| (name == "TAG").then(|| "1.27".to_owned());
        let loaded = load_paths(&[dir.path().join("stacks/web.yaml")], &env).unwrap();
        let item = &loaded[0];
        let spec = &item.record.to_value()["spec"];
        assert!(spec.get("composeFile").is_none());
        let compose = &spec["compose"];
        let web = &compose["services"]["web"];
        assert_eq!(web["image"], "nginx:1.27");
        assert_eq!(web["command"][2], "echo $HOME ");
        let base = std::path::absolute(dir.path().join("stacks/compose")).unwrap();
        let volumes = web["volumes"].as_array().unwrap();
        assert_eq!(
            volumes[0],
            format!("{}:/usr/share/nginx/html:ro", base.join("html").display())
        );
        assert_eq!(
            volumes[1],
            format!(
                "{}:/shared",
                base.parent().unwrap().join("shared").display()
            )
        );
        assert_eq!(volumes[2], "data:/data");
        assert_eq!(
            volumes[3]["source"],
            base.join("conf").display().to_string()
        );
        assert_eq!(volumes[4]["source"], "cache");
        assert_eq!(
            compose["configs"]["site"],
            serde_json::json!({"content": "server { listen 80; }\n"})
        );
        assert_eq!(
            compose["secrets"]["token"],
            serde_json::json!({"labels": {"a": "b"}, "x-swarmkeeper-secret": "stack:web:token"})
        );
        assert_eq!(
            item.secrets,
            [SecretMaterial {
                store_key: "stack:web:token".into(),
                value: SecretValue::from("canary-stack-3")
            }]
        );
        assert!(!item.record.to_value().to_string().contains("canary"));
        assert_eq!(
            item.warnings,
            ["spec.compose: variable UNSET_ONE is not set, defaulting to a blank string"]
        );
    }

    #[test]
    fn env_files_env_file_and_home_are_resolved_at_apply() {
        let dir = folder(&[
            (
                "web.yaml",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: web}\nspec:\n  composeFile: compose/web.yml\n  envFiles: [vars/base.env, vars/prod.env]\n  ignoreDifferences: [services.web.deploy.replicas]\n",
            ),
            (
                "compose/web.yml",
                "services:\n  web:\n    image: app:${TAG}\n    env_file: web.env\n    environment: {WHO: '${WHO}'}\n    volumes: ['~/data:/data', {type: bind, source: ~/conf, target: /conf}]\n    deploy: {replicas: '${REPLICAS}'}\n",
            ),
            ("compose/web.env", "FROM_FILE=1\nWHO=file\n"),
            ("vars/base.env", "TAG=1.0\nWHO=dotenv\nREPLICAS=2\n"),
            ("vars/prod.env", "TAG=1.1\n"),
        ]);
        let env = |name: &str| match name {
            "WHO" => Some("shell".to_owned()),
            "HOME" => Some("/home/ci".to_owned()),
            _ => None,
        };
        let loaded = load_paths(&[dir.path().join("web.yaml")], &env).unwrap();
        let spec = &loaded[0].record.to_value()["spec"];
        assert!(spec.get("envFiles").is_none(), "read, not stored");
        assert_eq!(spec["ignoreDifferences"][0], "services.web.deploy.replicas");
        let web = &spec["compose"]["services"]["web"];
        assert_eq!(web["image"], "app:1.1");
        assert_eq!(web["deploy"]["replicas"], 2);
        assert!(web.get("env_file").is_none());
        assert_eq!(
            web["environment"],
            serde_json::json!({"FROM_FILE": "1", "WHO": "shell"})
        );
        assert_eq!(web["volumes"][0], "/home/ci/data:/data");
        assert_eq!(web["volumes"][1]["source"], "/home/ci/conf");
    }

    #[test]
    fn an_ignored_difference_must_name_a_service_field() {
        let dir = folder(&[(
            "web.yaml",
            "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: web}\nspec:\n  compose: {services: {web: {image: x}}}\n  ignoreDifferences: [services.web.deploy.replicas, services.*.labels, services.api.image, deploy.replicas]\n",
        )]);
        let err = load_one(dir.path()).unwrap_err();
        let paths: Vec<_> = err.problems.iter().filter_map(|p| p.path.clone()).collect();
        assert_eq!(
            paths,
            ["spec.ignoreDifferences[2]", "spec.ignoreDifferences[3]"],
            "{err}"
        );
    }

    #[test]
    fn compose_problems_name_their_path() {
        let dir = folder(&[
            (
                "web.yaml",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: web}\nspec:\n  compose:\n    services:\n      web: {image: \"app:${TAG:?set TAG}\"}\n    configs:\n      c: {file: missing.conf}\n",
            ),
            (
                "other.yaml",
                "apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: other}\nspec:\n  composeFile: nope.yml\n",
            ),
        ]);
        let err = load_one(dir.path()).unwrap_err();
        let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0]
                .contains("other.yaml: document 1 (Stack/other): spec.composeFile: cannot read"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("web.yaml: document 1 (Stack/web): spec.compose.services.web.image: required variable TAG is missing a value: set TAG"), "{}", lines[1]);
        assert!(
            lines[2].contains("(Stack/web): spec.compose.configs.c.file: cannot read"),
            "{}",
            lines[2]
        );
    }
}
