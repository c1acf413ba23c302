//! `DatabaseUser`: a user (and optionally its database) in PostgreSQL or MySQL/MariaDB,
//! with a generated password delivered as a swarm secret.

use std::sync::LazyLock;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::rules::Errors;
use super::secret_value::SecretValue;

static IDENTIFIER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_$-]*$").expect("valid regex"));
/// A template that starts with `scheme://` (`jdbc:postgresql://` too) renders a URL.
static URL_SCHEME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9+.:-]*://").expect("valid regex"));
/// What a user or password in a URL is escaped from: everything but RFC 3986's
/// unreserved characters, so `@`, `:`, `/`, `?`, `#` and `%` cannot end the
/// userinfo early, and every URL parser decodes it back.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9]([A-Za-z0-9_-]{0,62})?\.?)+$|^\[?[0-9A-Fa-f:.]+\]?$")
        .expect("valid regex")
});

/// The desired user, its grants and the secrets that deliver its password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseUserSpec {
    pub engine: Engine,
    pub server: DatabaseServer,
    /// The user to create.
    pub user: String,
    /// The database the privileges are granted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Create `database`, owned by `user`, when it does not exist.
    #[serde(default)]
    pub create_database: bool,
    /// Privileges granted on `database` (`ALL`, `SELECT`, `INSERT`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileges: Vec<String>,
    /// The swarm secret (a logical name, used by stacks as `external`) holding the password.
    pub password_secret: String,
    /// Length of the generated password.
    #[serde(default = "default_password_length")]
    #[schemars(range(min = 16, max = 128))]
    pub password_length: u16,
    /// An extra secret holding a connection string built from a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret: Option<ConnectionSecret>,
    /// What happens to the user when the record is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// With `deletionPolicy: Delete`, drop `database` too (never without it).
    #[serde(default)]
    pub drop_database: bool,
    /// Raise to rotate the password (a new secret version; services move to it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rotation: u32,
}

fn default_password_length() -> u16 {
    32
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Mysql,
    Mariadb,
}

impl Engine {
    pub fn default_port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mysql | Engine::Mariadb => 3306,
        }
    }

    /// The longest user name the engine takes (MySQL's 32, which MariaDB takes too).
    fn max_user_len(self) -> usize {
        match self {
            Engine::Postgres => 63,
            Engine::Mysql | Engine::Mariadb => 32,
        }
    }

    /// The longest database name the engine keeps whole.
    fn max_database_len(self) -> usize {
        match self {
            Engine::Postgres => 63,
            Engine::Mysql | Engine::Mariadb => 64,
        }
    }
}

/// How swarmkeeper reaches the server as its administrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseServer {
    pub host: String,
    /// Defaults to the engine's port (5432, 3306).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub admin_user: String,
    /// The `Secret` record holding the administrator's password.
    pub admin_password_secret: String,
    /// TLS to the server, as libpq's `sslmode`: `require` encrypts without
    /// verifying the certificate, `verify-full` verifies it against `caSecret`.
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// The `Secret` record holding the CA certificate (PEM) for `verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
}

/// TLS to a database server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, plain otherwise.
    #[default]
    Prefer,
    Require,
    VerifyFull,
}

/// A secret whose value is `template` with the placeholders filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionSecret {
    pub name: String,
    /// Text with `{{user}}`, `{{password}}`, `{{host}}`, `{{port}}`, `{{database}}`.
    pub template: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the user and its data when the record is deleted.
    #[default]
    Retain,
    /// Drop the user when the record is deleted (the database only with `dropDatabase`).
    Delete,
}

/// The values a connection template may use.
#[derive(Debug, Clone, Copy)]
pub struct TemplateValues<'a> {
    pub user: &'a str,
    pub password: &'a SecretValue,
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
}

/// One piece of a parsed template.
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

const PLACEHOLDERS: [&str; 5] = ["user", "password", "host", "port", "database"];

/// Splits a template into text and placeholders, naming the first problem.
fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        pieces.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("unclosed \"{{\"")?;
        let name = after[..end].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}} (known: user, password, host, port, database)"
            ));
        }
        pieces.push(Piece::Placeholder(name));
        rest = &after[end + 2..];
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

impl ConnectionSecret {
    /// The secret's value: the template with its placeholders filled in. In a
    /// URL template (`scheme://...`) the user and the password are
    /// percent-encoded, so any character a password holds keeps the URL whole.
    ///
    /// # Errors
    /// The template is invalid (records that passed validation never are), or the
    /// password is not UTF-8.
    pub fn render(&self, values: &TemplateValues<'_>) -> Result<SecretValue, String> {
        let password = values
            .password
            .expose_str()
            .ok_or("the password is not UTF-8 text")?;
        let port = values.port.to_string();
        let url = URL_SCHEME.is_match(&self.template);
        // Copies of the password are wiped when dropped, as the value itself is.
        let escape = |text: &str| -> Zeroizing<String> {
            Zeroizing::new(if url {
                utf8_percent_encode(text, USERINFO).to_string()
            } else {
                text.to_owned()
            })
        };
        let (user, password) = (escape(values.user), escape(password));
        let mut out = String::with_capacity(self.template.len() + password.len());
        for piece in parse_template(&self.template)? {
            out.push_str(match piece {
                Piece::Text(text) => text,
                Piece::Placeholder("user") => &user,
                Piece::Placeholder("password") => &password,
                Piece::Placeholder("host") => values.host,
                Piece::Placeholder("port") => &port,
                Piece::Placeholder(_) => values.database,
            });
        }
        Ok(SecretValue::from(out))
    }
}

impl DatabaseServer {
    /// The port, or the engine's default.
    pub fn port_for(&self, engine: Engine) -> u16 {
        self.port.unwrap_or(engine.default_port())
    }
}

impl DatabaseUserSpec {
    pub(crate) fn validate(&self, errors: &mut Errors) {
        if !HOST.is_match(&self.server.host) {
            errors.push(
                "spec.server.host",
                format!("{:?} is not a host name or address", self.server.host),
            );
        }
        if self.server.port == Some(0) {
            errors.push("spec.server.port", "must be between 1 and 65535");
        }
        errors.not_empty("spec.server.adminUser", &self.server.admin_user);
        errors.name(
            "spec.server.adminPasswordSecret",
            &self.server.admin_password_secret,
        );
        let max = self.engine.max_user_len();
        if !IDENTIFIER.is_match(&self.user) || self.user.len() > max {
            errors.push(
                "spec.user",
                format!(
                    "{:?} is not a user name (letters, digits, '_', '$', '-'; at most {max})",
                    self.user
                ),
            );
        }
        let max = self.engine.max_database_len();
        if let Some(database) = &self.database
            && (!IDENTIFIER.is_match(database) || database.len() > max)
        {
            errors.push(
                "spec.database",
                format!(
                    "{database:?} is not a database name (letters, digits, '_', '$', '-'; at most {max})"
                ),
            );
        }
        if self.database.is_none() {
            if self.create_database {
                errors.push("spec.createDatabase", "needs spec.database");
            }
            if !self.privileges.is_empty() {
                errors.push(
                    "spec.privileges",
                    "privileges are granted on spec.database; set it",
                );
            }
        }
        for (i, privilege) in self.privileges.iter().enumerate() {
            // The engine's allow-list is the one `db` grants from: what it would
            // refuse later is refused here, before anything is written.
            if crate::db::normalize_privilege(self.engine, privilege).is_err() {
                errors.push(
                    format!("spec.privileges[{i}]"),
                    format!(
                        "{privilege:?} is not a privilege {:?} grants (known: {})",
                        self.engine,
                        crate::db::known_privileges(self.engine).join(", ")
                    ),
                );
            }
        }
        if self.server.ssl_mode == SslMode::VerifyFull && self.server.ca_secret.is_none() {
            errors.push("spec.server.caSecret", "sslMode verify-full needs a CA");
        }
        if let Some(ca) = &self.server.ca_secret {
            errors.name("spec.server.caSecret", ca);
        }
        if self.drop_database && self.deletion_policy != DeletionPolicy::Delete {
            errors.push("spec.dropDatabase", "needs deletionPolicy: Delete");
        }
        errors.name("spec.passwordSecret", &self.password_secret);
        if !(16..=128).contains(&self.password_length) {
            errors.push("spec.passwordLength", "must be between 16 and 128");
        }
        if let Some(connection) = &self.connection_secret {
            errors.name("spec.connectionSecret.name", &connection.name);
            if connection.name == self.password_secret {
                errors.push(
                    "spec.connectionSecret.name",
                    "must differ from spec.passwordSecret",
                );
            }
            match parse_template(&connection.template) {
                Err(message) => errors.push("spec.connectionSecret.template", message),
                Ok(pieces) => {
                    let uses_database = pieces
                        .iter()
                        .any(|piece| matches!(piece, Piece::Placeholder("database")));
                    if uses_database && self.database.is_none() {
                        errors.push(
                            "spec.connectionSecret.template",
                            "uses {{database}} but spec.database is not set",
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> DatabaseUserSpec {
        let mut base = serde_json::json!({
            "engine": "postgres",
            "server": {"host": "db", "adminUser": "postgres", "adminPasswordSecret": "pg_admin"},
            "user": "app", "database": "app", "passwordSecret": "app_password"
        });
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn errors_of(spec: &DatabaseUserSpec) -> Vec<String> {
        Errors::found_by(|errors| spec.validate(errors))
    }

    #[test]
    fn defaults() {
        let spec = spec(serde_json::json!({}));
        assert_eq!(spec.server.port_for(spec.engine), 5432);
        assert_eq!(Engine::Mariadb.default_port(), 3306);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(spec.password_length, 32);
        assert!(errors_of(&spec).is_empty());
    }

    #[test]
    fn template_renders_only_known_placeholders() {
        let connection = ConnectionSecret {
            name: "uri".into(),
            template: "postgres://{{user}}:{{ password }}@{{host}}:{{port}}/{{database}}".into(),
        };
        let password = SecretValue::from("pw");
        let rendered = connection
            .render(&TemplateValues {
                user: "u",
                password: &password,
                host: "db",
                port: 5432,
                database: "d",
            })
            .unwrap();
        assert_eq!(rendered.expose_str(), Some("postgres://u:pw@db:5432/d"));

        let bad = spec(serde_json::json!({
            "connectionSecret": {"name": "uri", "template": "{{user}}:{{secret}}"}
        }));
        assert_eq!(
            errors_of(&bad),
            [
                "spec.connectionSecret.template: unknown placeholder {{secret}} (known: user, password, host, port, database)"
            ]
        );
        let unclosed = spec(serde_json::json!({
            "connectionSecret": {"name": "uri", "template": "{{user"}
        }));
        assert_eq!(
            errors_of(&unclosed),
            ["spec.connectionSecret.template: unclosed \"{{\""]
        );
    }

    fn render(template: &str, user: &str, password: &str) -> String {
        let connection = ConnectionSecret {
            name: "uri".into(),
            template: template.into(),
        };
        let password = SecretValue::from(password);
        let values = TemplateValues {
            user,
            password: &password,
            host: "db",
            port: 5432,
            database: "d",
        };
        let rendered = connection.render(&values).unwrap();
        rendered.expose_str().unwrap().to_owned()
    }

    #[test]
    fn a_url_template_escapes_the_user_and_the_password() {
        let password = "p@ss:w/rd?x#y%z é";
        let url = render(
            "postgres://{{user}}:{{password}}@{{host}}:{{port}}/{{database}}",
            "a@b",
            password,
        );
        assert_eq!(
            url,
            "postgres://a%40b:p%40ss%3Aw%2Frd%3Fx%23y%25z%20%C3%A9@db:5432/d"
        );
        // The URL parses whole, and the userinfo decodes back to the values.
        let (userinfo, rest) = url["postgres://".len()..].rsplit_once('@').unwrap();
        assert_eq!(rest, "db:5432/d");
        let (user, escaped) = userinfo.split_once(':').unwrap();
        let decoded = percent_encoding::percent_decode_str(escaped).decode_utf8();
        assert_eq!(decoded.unwrap(), password);
        assert_eq!(user, "a%40b");
        let jdbc = render(
            "jdbc:mysql://{{host}}/{{database}}?user={{user}}&password={{password}}",
            "u",
            "a&b=c",
        );
        assert_eq!(jdbc, "jdbc:mysql://db/d?user=u&password=a%26b%3Dc");
        // Not a URL: the values as they are.
        assert_eq!(
            render(
                "host={{host}} user={{user}} password={{password}}",
                "u",
                "p@:/"
            ),
            "host=db user=u password=p@:/"
        );
    }

    #[test]
    fn cross_field_rules() {
        let mut no_db = spec(serde_json::json!({
            "createDatabase": true, "privileges": ["ALL"],
            "connectionSecret": {"name": "app_password", "template": "{{database}}"}
        }));
        no_db.database = None;
        assert_eq!(
            errors_of(&no_db),
            [
                "spec.createDatabase: needs spec.database",
                "spec.privileges: privileges are granted on spec.database; set it",
                "spec.connectionSecret.name: must differ from spec.passwordSecret",
                "spec.connectionSecret.template: uses {{database}} but spec.database is not set",
            ]
        );
        let injected = spec(serde_json::json!({"user": "a; DROP", "privileges": ["ALL; DROP"]}));
        assert_eq!(errors_of(&injected).len(), 2);
    }

    #[test]
    fn privileges_and_name_lengths_follow_the_engine() {
        let unknown = spec(serde_json::json!({"privileges": ["connect", "FROBNICATE"]}));
        let errors = errors_of(&unknown);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("spec.privileges[1]: \"FROBNICATE\" is not a privilege"),
            "{errors:?}"
        );
        let mysql_only = spec(serde_json::json!({"privileges": ["LOCK TABLES"]}));
        assert_eq!(errors_of(&mysql_only).len(), 1);
        let on_mariadb = spec(serde_json::json!({
            "engine": "mariadb", "privileges": ["lock  tables", "ALL PRIVILEGES"],
            "database": "d".repeat(64)
        }));
        assert!(
            errors_of(&on_mariadb).is_empty(),
            "{:?}",
            errors_of(&on_mariadb)
        );
        let long_on_postgres = spec(serde_json::json!({"database": "d".repeat(64)}));
        assert_eq!(errors_of(&long_on_postgres).len(), 1);
        let long_on_mariadb =
            spec(serde_json::json!({"engine": "mariadb", "database": "d".repeat(65)}));
        assert_eq!(errors_of(&long_on_mariadb).len(), 1);
    }
}
