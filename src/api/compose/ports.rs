//! A service's `ports:` entries: the short syntax (`"3000:80"`, ranges, `/udp`) or the
//! long form, expanded to the ports swarm publishes as the docker CLI expands them.

use schemars::JsonSchema;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::values::long_form;

/// One `ports:` entry: short syntax (`"3000:80"`, `"8080:80/udp"`, `"127.0.0.1:80:80"`,
/// `"9000-9002:9000-9002"`, `80`) or the long form.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PortEntry {
    Short(String),
    Long(PortLong),
}

/// The long form of a port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortLong {
    pub target: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl<'de> Deserialize<'de> for PortEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Self::Short(s)),
            Value::Number(n) => Ok(Self::Short(n.to_string())),
            value @ Value::Object(_) => long_form(value).map(Self::Long),
            other => Err(D::Error::custom(format!(
                "expected a port string, number or object, found {other}"
            ))),
        }
    }
}

/// A port as swarm takes it, after expansion of the short syntax.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortSpec {
    pub published: u32,
    pub target: u32,
    pub protocol: String,
    pub mode: String,
}

fn parse_port_range(text: &str, what: &str) -> Result<(u32, u32), String> {
    let parse = |s: &str| -> Result<u32, String> {
        match s.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Ok(p),
            _ => Err(format!("invalid {what} port {s:?}: must be 1-65535")),
        }
    };
    match text.split_once('-') {
        Some((start, end)) => {
            let (start, end) = (parse(start)?, parse(end)?);
            if end < start {
                return Err(format!("invalid {what} port range {text:?}"));
            }
            Ok((start, end))
        }
        None => parse(text).map(|p| (p, p)),
    }
}

impl PortEntry {
    /// The swarm ports this entry stands for; a range is one port per number, as the CLI
    /// expands it. Short-form ports are published in ingress mode; a host IP is ignored, as the
    /// CLI ignores it (with a warning).
    ///
    /// # Errors
    /// A message describing the malformed entry.
    pub fn expand(&self) -> Result<Vec<PortSpec>, String> {
        match self {
            Self::Long(long) => {
                if !(1..=65535).contains(&long.target) {
                    return Err(format!(
                        "invalid target port {}: must be 1-65535",
                        long.target
                    ));
                }
                if long.published.is_some_and(|p| p > 65535) {
                    return Err("invalid published port: must be 0-65535".to_owned());
                }
                let protocol = long.protocol.clone().unwrap_or_default();
                if !["", "tcp", "udp", "sctp"].contains(&protocol.as_str()) {
                    return Err(format!("invalid protocol {protocol:?}: tcp, udp or sctp"));
                }
                let mode = long.mode.clone().unwrap_or_default();
                if !["", "ingress", "host"].contains(&mode.as_str()) {
                    return Err(format!("invalid port mode {mode:?}: ingress or host"));
                }
                Ok(vec![PortSpec {
                    published: long.published.unwrap_or(0),
                    target: long.target,
                    protocol,
                    mode,
                }])
            }
            Self::Short(text) => expand_short_port(text),
        }
    }
}

fn expand_short_port(text: &str) -> Result<Vec<PortSpec>, String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, proto)) => (spec, proto.to_ascii_lowercase()),
        None => (text, "tcp".to_owned()),
    };
    if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
        return Err(format!("invalid protocol {protocol:?} in port {text:?}"));
    }
    // "ip:published:target", "published:target" or "target"; an IPv6 host ip is bracketed.
    let (host, container) = match spec.rsplit_once(':') {
        Some((host, container)) => (Some(host), container),
        None => (None, spec),
    };
    let published = host.map(|h| match h.rsplit_once(':') {
        Some((_ip, published)) => published,
        None => h,
    });
    let (target_start, target_end) = parse_port_range(container, "target")?;
    let published = match published.filter(|p| !p.is_empty()) {
        Some(p) => Some(parse_port_range(p, "published")?),
        None => None,
    };
    let mut ports = Vec::new();
    match published {
        None => {
            for target in target_start..=target_end {
                ports.push((0, target));
            }
        }
        Some((pub_start, pub_end)) if target_start == target_end => {
            for published in pub_start..=pub_end {
                ports.push((published, target_start));
            }
        }
        Some((pub_start, pub_end)) => {
            if pub_end - pub_start != target_end - target_start {
                return Err(format!(
                    "port ranges in {text:?} differ in size: published and target must match"
                ));
            }
            for offset in 0..=(target_end - target_start) {
                ports.push((pub_start + offset, target_start + offset));
            }
        }
    }
    // The CLI walks the entry's ports by their `target/protocol` key sorted as strings,
    // so `99-100` comes out as 100 then 99; published ports of one target keep their order.
    ports.sort_by_cached_key(|(_, target)| format!("{target}/{protocol}"));
    Ok(ports
        .into_iter()
        .map(|(published, target)| PortSpec {
            published,
            target,
            protocol: protocol.clone(),
            mode: "ingress".to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(entry: &str) -> Vec<(u32, u32, String, String)> {
        PortEntry::Short(entry.to_owned())
            .expand()
            .unwrap()
            .into_iter()
            .map(|p| (p.published, p.target, p.protocol, p.mode))
            .collect()
    }

    #[test]
    fn short_ports_expand_like_the_cli() {
        let ing = || "ingress".to_owned();
        let tcp = || "tcp".to_owned();
        assert_eq!(ports("3000:80"), vec![(3000, 80, tcp(), ing())]);
        assert_eq!(ports("80"), vec![(0, 80, tcp(), ing())]);
        assert_eq!(ports("8080:80/udp"), vec![(8080, 80, "udp".into(), ing())]);
        assert_eq!(
            ports("127.0.0.1:5000:5000"),
            vec![(5000, 5000, tcp(), ing())]
        );
        assert_eq!(ports("[::1]:5000:5000"), vec![(5000, 5000, tcp(), ing())]);
        assert_eq!(
            ports("9000-9001:8000-8001"),
            vec![(9000, 8000, tcp(), ing()), (9001, 8001, tcp(), ing())]
        );
        assert_eq!(
            ports("9000-9001:80"),
            vec![(9000, 80, tcp(), ing()), (9001, 80, tcp(), ing())]
        );
        assert_eq!(
            ports("53-54"),
            vec![(0, 53, tcp(), ing()), (0, 54, tcp(), ing())]
        );
    }

    #[test]
    fn a_port_range_comes_out_in_the_cli_string_order() {
        let targets = |entry| ports(entry).into_iter().map(|p| p.1).collect::<Vec<_>>();
        assert_eq!(targets("99-101"), vec![100, 101, 99]);
        assert_eq!(targets("9-10/udp"), vec![10, 9]);
        let pairs = ports("29996-29997:98-99");
        assert_eq!((pairs[0].0, pairs[0].1), (29996, 98));
        assert_eq!((pairs[1].0, pairs[1].1), (29997, 99));
    }

    #[test]
    fn bad_ports_are_rejected() {
        for entry in [
            "0", "70000", "80:http", "1-2:3-5", "80/icmp", "a:b:c:80", "5-3",
        ] {
            assert!(
                PortEntry::Short(entry.to_owned()).expand().is_err(),
                "{entry}"
            );
        }
        let long = PortLong {
            target: 0,
            published: None,
            protocol: None,
            mode: None,
        };
        assert!(PortEntry::Long(long).expand().is_err());
    }
}
