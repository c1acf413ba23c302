//! Validation rules shared by several kinds: names, references, images, addresses, placement.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use super::FieldError;

/// The rule for record names (and for the secrets, volumes and networks records name).
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_.-]{0,62}$";

static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(NAME_PATTERN).expect("valid regex"));
static CONSTRAINT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_.\-]+\s*(==|!=)\s*\S.*$").expect("valid regex"));
static ENV_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex"));

/// Whether `name` follows [`NAME_PATTERN`].
pub fn is_valid_name(name: &str) -> bool {
    NAME.is_match(name)
}

/// Collects the problems of one record.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    /// A name that follows [`NAME_PATTERN`].
    pub fn name(&mut self, path: &str, name: &str) {
        if !is_valid_name(name) {
            self.push(
                path,
                format!("{name:?} is not a valid name (lowercase letters, digits, '_', '.', '-'; at most 63; starting with a letter or digit)"),
            );
        }
    }

    pub fn not_empty(&mut self, path: &str, value: &str) {
        if value.trim().is_empty() {
            self.push(path, "must not be empty");
        }
    }

    /// An image reference: non-empty, no whitespace.
    pub fn image(&mut self, path: &str, image: &str) {
        if image.is_empty() || image.chars().any(char::is_whitespace) {
            self.push(path, format!("{image:?} is not an image reference"));
        }
    }

    /// Label keys as the Docker API takes them.
    pub fn labels(&mut self, path: &str, labels: &BTreeMap<String, String>) {
        for key in labels.keys() {
            if key.is_empty() || key.contains('=') || key.chars().any(char::is_whitespace) {
                self.push(
                    format!("{path}.{key}"),
                    "a label key must be non-empty, without '=' or whitespace",
                );
            }
        }
    }

    /// An environment variable name.
    pub fn env_name(&mut self, path: &str, name: &str) {
        if !ENV_NAME.is_match(name) {
            self.push(
                path,
                format!("{name:?} is not a valid environment variable name"),
            );
        }
    }

    /// A swarm placement constraint (`node.labels.usage == apps`).
    pub fn constraint(&mut self, path: &str, constraint: &str) {
        if !CONSTRAINT.is_match(constraint.trim()) {
            self.push(
                path,
                format!("{constraint:?} is not a placement constraint (expected `key == value` or `key != value`)"),
            );
        }
    }

    /// Names in a list that must be unique.
    pub fn unique<'a>(&mut self, path: &str, items: impl IntoIterator<Item = &'a str>) {
        let mut seen = std::collections::BTreeSet::new();
        for (i, item) in items.into_iter().enumerate() {
            if !seen.insert(item) {
                self.push(format!("{path}[{i}]"), format!("{item:?} is listed twice"));
            }
        }
    }
}

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not in CIDR notation (address/prefix)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{prefix:?} is not a prefix length (0 to {max})"))?;
        Ok(Self { addr, prefix })
    }

    /// Whether `addr` lies inside this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether `other` lies inside this network.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

#[cfg(test)]
impl Errors {
    /// What `validate` finds, one line per problem, as the kinds' tests compare them.
    pub(crate) fn found_by(validate: impl FnOnce(&mut Self)) -> Vec<String> {
        let mut errors = Self::default();
        validate(&mut errors);
        errors.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_contains() {
        let net = Cidr::parse("10.10.0.0/16").unwrap();
        assert!(net.contains("10.10.3.1".parse().unwrap()));
        assert!(!net.contains("10.11.0.1".parse().unwrap()));
        assert!(net.covers(&Cidr::parse("10.10.8.0/24").unwrap()));
        assert!(!net.covers(&Cidr::parse("10.0.0.0/8").unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        let v6 = Cidr::parse("fd00::/64").unwrap();
        assert!(v6.contains("fd00::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0", "10.0.0.0/33", "nope/8", "fd00::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_constraints() {
        let mut errors = Errors::default();
        errors.name("a", "db_user");
        errors.name("b", "kittenapi-db.v2");
        errors.constraint("c", "node.labels.usage == apps");
        errors.constraint("d", "node.role!=manager");
        assert!(errors.0.is_empty(), "{:?}", errors.0);
        errors.name("e", "Web");
        errors.name("f", "-web");
        errors.name("g", &"a".repeat(64));
        errors.constraint("h", "node.role manager");
        let paths: Vec<_> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["e", "f", "g", "h"]);
    }
}
