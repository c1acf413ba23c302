//! What a stack wants and what it has: the converted compose file with its
//! secret and config versions resolved ([`Desired`]), the live objects it owns
//! ([`Live`]), and the IDs services refer to ([`Ids`]). Pure: the reconciler
//! reads the values and lists the objects; this only combines them.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use bollard::models::{
    Config, ConfigSpec, Driver, NetworkCreateRequest, Secret, SecretSpec, Service, ServiceSpec,
};

use super::compare::{add_labels, json_hash, network_ids, versioned_name};
use super::ignore::keep_live_fields;
use crate::api::SecretValue;
use crate::docker::labels::SPEC_HASH;
use crate::plan::convert::{self, NetworkObject, ServiceObject, StackObjects};

/// The live objects one stack record owns.
pub use crate::docker::OwnedObjects as Live;

/// A secret or config version: immutable content under a versioned name.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The name the compose file gives it (`<stack>_<key>`, or its `name:`).
    pub logical: String,
    pub versioned: String,
    pub labels: HashMap<String, String>,
    /// The content, redacted in Debug output: it may be a secret's.
    content: SecretValue,
    /// A secret's driver plugin, when not the built-in store.
    driver: Option<Driver>,
    /// The template driver (`template_driver:`), when the content is a template.
    templating: Option<Driver>,
}

/// How a secret or config version is stored, besides its content.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drivers<'a> {
    pub driver: Option<&'a Driver>,
    pub templating: Option<&'a Driver>,
}

impl Blob {
    /// The version of `content` named `name`, whose `digest` (keyed for a
    /// secret, so the name does not let anyone test guesses) names the version.
    ///
    /// # Errors
    /// When the versioned name would be too long for swarm.
    pub fn new(
        name: &str,
        labels: &HashMap<String, String>,
        owner_labels: &BTreeMap<String, String>,
        digest: &str,
        content: SecretValue,
        drivers: Drivers<'_>,
    ) -> Result<Self, String> {
        // Drivers are immutable too: a change of driver is a new version.
        let digest = match (drivers.driver, drivers.templating) {
            (None, None) => digest.to_string(),
            (driver, templating) => json_hash(&(digest, driver, templating)),
        };
        let versioned = versioned_name(name, &digest)?;
        let mut labels = labels.clone();
        labels.extend(owner_labels.clone());
        labels.insert(SPEC_HASH.to_string(), digest);
        Ok(Self {
            logical: name.to_string(),
            versioned,
            labels,
            content,
            driver: drivers.driver.cloned(),
            templating: drivers.templating.cloned(),
        })
    }

    /// The content in base64, as the Engine API takes it: made only for the request.
    fn data(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.content.expose())
    }

    /// The request that creates this version as a swarm secret.
    #[must_use]
    pub fn secret_spec(&self) -> SecretSpec {
        SecretSpec {
            name: Some(self.versioned.clone()),
            labels: Some(self.labels.clone()),
            data: Some(self.data()),
            driver: self.driver.clone(),
            templating: self.templating.clone(),
        }
    }

    /// The request that creates this version as a swarm config.
    #[must_use]
    pub fn config_spec(&self) -> ConfigSpec {
        ConfigSpec {
            name: Some(self.versioned.clone()),
            labels: Some(self.labels.clone()),
            data: Some(self.data()),
            templating: self.templating.clone(),
        }
    }
}

/// Everything the record wants, converted and with secret values resolved.
#[derive(Debug, Default)]
pub struct Desired {
    pub objects: StackObjects,
    pub secrets: Vec<Blob>,
    pub configs: Vec<Blob>,
    /// The labels every object of the stack carries: managed, owner, scope.
    pub owner_labels: BTreeMap<String, String>,
    /// `spec.ignoreDifferences`: compose paths of fields whose live values are kept.
    pub ignore_differences: Vec<String>,
}

impl Desired {
    /// What a deleted record wants: nothing, so everything it owned is an orphan.
    #[must_use]
    pub fn nothing() -> Self {
        Self::default()
    }

    /// The network as swarmkeeper creates it: the converted request plus ownership labels.
    #[must_use]
    pub fn network_request(&self, net: &NetworkObject) -> NetworkCreateRequest {
        let mut spec = net.spec.clone();
        add_labels(&mut spec.labels, &self.owner_labels);
        let hash = json_hash(&spec);
        spec.labels
            .get_or_insert_with(HashMap::new)
            .insert(SPEC_HASH.into(), hash);
        spec
    }

    /// The spec a service should have, with references resolved as far as `ids` knows.
    #[must_use]
    pub fn service_spec(&self, obj: &ServiceObject, ids: &Ids) -> ServiceSpec {
        let mut spec = obj.spec.clone();
        convert::rename_secret_refs(&mut spec, &ids.secrets);
        convert::rename_config_refs(&mut spec, &ids.configs);
        add_labels(&mut spec.labels, &self.owner_labels);
        // The hash covers what the record asked for, before IDs that change on recreate.
        let hash = json_hash(&spec);
        network_ids(&mut spec, &ids.networks);
        spec.labels
            .get_or_insert_with(HashMap::new)
            .insert(SPEC_HASH.to_string(), hash);
        spec
    }

    /// The spec an existing service should have: [`Desired::service_spec`] with the live
    /// values of the fields `spec.ignoreDifferences` names (its hash label still that of
    /// the record, so a scaled service is not "changed" by its hash).
    #[must_use]
    pub fn service_spec_over(&self, obj: &ServiceObject, ids: &Ids, live: &Service) -> ServiceSpec {
        keep_live_fields(
            self.service_spec(obj, ids),
            live,
            &obj.key,
            &self.ignore_differences,
        )
    }
}

/// IDs of the objects services refer to, by swarm name.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    pub networks: HashMap<String, String>,
    /// Logical name -> (versioned name, ID).
    pub secrets: HashMap<String, (String, String)>,
    pub configs: HashMap<String, (String, String)>,
}

impl Ids {
    /// Adds the live objects that already are the desired ones: every owned
    /// network by name, and each secret and config version that exists.
    pub fn add_known(&mut self, desired: &Desired, live: &Live) {
        for n in &live.networks {
            if let (Some(name), Some(id)) = (&n.name, &n.id) {
                self.networks.insert(name.clone(), id.clone());
            }
        }
        let secrets: Vec<_> = live
            .secrets
            .iter()
            .map(|s| (secret_name(s), &s.id))
            .collect();
        let configs: Vec<_> = live
            .configs
            .iter()
            .map(|c| (config_name(c), &c.id))
            .collect();
        for (blobs, map, names) in [
            (&desired.secrets, &mut self.secrets, secrets),
            (&desired.configs, &mut self.configs, configs),
        ] {
            for b in blobs {
                if let Some((_, Some(id))) =
                    names.iter().find(|(n, _)| *n == Some(b.versioned.as_str()))
                {
                    map.insert(b.logical.clone(), (b.versioned.clone(), id.clone()));
                }
            }
        }
    }
}

/// A live service's name.
#[must_use]
pub fn service_name(s: &Service) -> Option<&str> {
    s.spec.as_ref().and_then(|s| s.name.as_deref())
}

/// A live secret's name.
#[must_use]
pub fn secret_name(s: &Secret) -> Option<&str> {
    s.spec.as_ref().and_then(|s| s.name.as_deref())
}

/// A live config's name.
#[must_use]
pub fn config_name(c: &Config) -> Option<&str> {
    c.spec.as_ref().and_then(|s| s.name.as_deref())
}
