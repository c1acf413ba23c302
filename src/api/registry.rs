//! `Registry`: a private image registry run as a swarm service, and the credentials
//! sent as registry auth for images it serves.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::placement::Placement;
use super::rules::Errors;

static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
        .expect("valid regex")
});

/// A registry at `address`; swarmkeeper runs it when `deploy` is set, and sends
/// `credentials` with services whose images are served from `address`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySpec {
    /// `host[:port]` as image references name it (`127.0.0.1:5000/app:1`).
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<RegistryDeploy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

/// The registry service swarmkeeper runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryDeploy {
    /// A `registry:2`-compatible image.
    pub image: String,
    /// Published port (host mode, on the nodes that run it).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Named volume holding the images; the registry stores on the container's filesystem
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub placement: Placement,
    /// htpasswd users; the registry is open when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<RegistryUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RegistryTls>,
}

fn default_port() -> u16 {
    5000
}

fn is_default(placement: &Placement) -> bool {
    *placement == Placement::default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryUser {
    pub name: String,
    /// The `Secret` record holding this user's password.
    pub password_secret: String,
}

/// TLS for the registry: `Secret` records holding the PEM certificate (chain) and key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryTls {
    pub certificate_secret: String,
    pub key_secret: String,
}

/// The registry auth sent with services that use images from `address`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    /// The `Secret` record holding the password.
    pub password_secret: String,
}

/// Checks `host[:port]`, where host is a DNS name, an IPv4 address or a bracketed IPv6 one.
fn check_address(address: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("unclosed '['")?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("expected ':' after ']'")?),
        };
        (None, port)
    } else {
        match address.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(address), None),
        }
    };
    if let Some(host) = host
        && !HOSTNAME.is_match(host)
    {
        return Err(format!("{host:?} is not a host name or address"));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!("{port:?} is not a port"));
    }
    Ok(())
}

impl RegistrySpec {
    pub(crate) fn validate(&self, errors: &mut Errors) {
        if let Err(message) = check_address(&self.address) {
            errors.push("spec.address", format!("{message} (expected host[:port])"));
        }
        if let Some(deploy) = &self.deploy {
            errors.image("spec.deploy.image", &deploy.image);
            if deploy.port == 0 {
                errors.push("spec.deploy.port", "must be between 1 and 65535");
            }
            if let Some(volume) = &deploy.volume {
                errors.name("spec.deploy.volume", volume);
            }
            deploy.placement.validate("spec.deploy.placement", errors);
            for (i, user) in deploy.users.iter().enumerate() {
                if user.name.is_empty()
                    || user.name.contains(':')
                    || user.name.chars().any(char::is_whitespace)
                {
                    errors.push(
                        format!("spec.deploy.users[{i}].name"),
                        "must be non-empty, without ':' or whitespace",
                    );
                }
                errors.name(
                    &format!("spec.deploy.users[{i}].passwordSecret"),
                    &user.password_secret,
                );
            }
            errors.unique(
                "spec.deploy.users",
                deploy.users.iter().map(|u| u.name.as_str()),
            );
            if let Some(tls) = &deploy.tls {
                errors.name("spec.deploy.tls.certificateSecret", &tls.certificate_secret);
                errors.name("spec.deploy.tls.keySecret", &tls.key_secret);
            }
            if let Some(credentials) = &self.credentials
                && !deploy.users.is_empty()
                && !deploy.users.iter().any(|u| u.name == credentials.username)
            {
                errors.push(
                    "spec.credentials.username",
                    format!("{:?} is not one of spec.deploy.users", credentials.username),
                );
            }
        }
        if let Some(credentials) = &self.credentials {
            errors.not_empty("spec.credentials.username", &credentials.username);
            errors.name(
                "spec.credentials.passwordSecret",
                &credentials.password_secret,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for good in [
            "127.0.0.1:5000",
            "registry.example.com",
            "reg:443",
            "[::1]:5000",
            "[fd00::1]",
        ] {
            assert_eq!(check_address(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "reg:0",
            "reg:x",
            "http://reg",
            "reg/x:5000",
            "[::1",
            "[zz]:5000",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_name_a_deployed_user() {
        let spec: RegistrySpec = serde_json::from_value(serde_json::json!({
            "address": "127.0.0.1:5000",
            "deploy": {"image": "registry:2", "users": [{"name": "ci", "passwordSecret": "pw"}]},
            "credentials": {"username": "cd", "passwordSecret": "pw"}
        }))
        .unwrap();
        assert_eq!(spec.deploy.as_ref().unwrap().port, 5000);
        assert_eq!(
            Errors::found_by(|errors| spec.validate(errors)),
            ["spec.credentials.username: \"cd\" is not one of spec.deploy.users"]
        );
    }
}
