//! Networks, secrets and configs: listing by owner (with services, every
//! owned object at once), lookup by name, create and remove.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{
    Config, ConfigSpec, Network, NetworkCreateRequest, Secret, SecretSpec, Service,
};
use bollard::query_parameters::{ListConfigsOptions, ListNetworksOptions, ListSecretsOptions};

use super::labels::{self, Owner};
use super::{Access, Docker, DockerError};

type Filters = HashMap<String, Vec<String>>;

/// The `name` filter matches substrings, so only an exact name is kept.
fn by_name(name: &str) -> Filters {
    [("name".to_owned(), vec![name.to_owned()])].into()
}

fn exact<T>(found: Vec<T>, name: &str, name_of: impl Fn(&T) -> Option<&str>) -> Option<T> {
    found
        .into_iter()
        .find(|object| name_of(object) == Some(name))
}

fn list_error(what: &'static str) -> impl FnOnce(BollardError) -> DockerError {
    move |source| DockerError::List { what, source }
}

/// Every object one owner has in the swarm: services, networks, secret and
/// config versions (or every managed one in scope, without an owner).
#[derive(Debug, Default, Clone)]
pub struct OwnedObjects {
    pub services: Vec<Service>,
    pub networks: Vec<Network>,
    pub secrets: Vec<Secret>,
    pub configs: Vec<Config>,
}

/// An object's labels, as listings give them.
pub type Labels = Option<HashMap<String, String>>;

impl OwnedObjects {
    /// The labels of every object, whatever its type.
    pub fn labels(&self) -> impl Iterator<Item = Option<&HashMap<String, String>>> {
        let services = self
            .services
            .iter()
            .map(|s| s.spec.as_ref()?.labels.as_ref());
        let networks = self.networks.iter().map(|n| n.labels.as_ref());
        let secrets = self
            .secrets
            .iter()
            .map(|s| s.spec.as_ref()?.labels.as_ref());
        let configs = self
            .configs
            .iter()
            .map(|c| c.spec.as_ref()?.labels.as_ref());
        services.chain(networks).chain(secrets).chain(configs)
    }

    /// The objects whose labels `keep` accepts.
    #[must_use]
    pub fn filtered(&self, keep: impl Fn(Option<&HashMap<String, String>>) -> bool) -> Self {
        Self {
            services: self
                .services
                .iter()
                .filter(|s| keep(s.spec.as_ref().and_then(|s| s.labels.as_ref())))
                .cloned()
                .collect(),
            networks: self
                .networks
                .iter()
                .filter(|n| keep(n.labels.as_ref()))
                .cloned()
                .collect(),
            secrets: self
                .secrets
                .iter()
                .filter(|s| keep(s.spec.as_ref().and_then(|s| s.labels.as_ref())))
                .cloned()
                .collect(),
            configs: self
                .configs
                .iter()
                .filter(|c| keep(c.spec.as_ref().and_then(|s| s.labels.as_ref())))
                .cloned()
                .collect(),
        }
    }

    /// Each object's ID and labels, whatever its type.
    pub fn labelled(self) -> impl Iterator<Item = (Option<String>, Labels)> {
        let services = self
            .services
            .into_iter()
            .map(|s| (s.id, s.spec.and_then(|spec| spec.labels)));
        let networks = self.networks.into_iter().map(|n| (n.id, n.labels));
        let secrets = self
            .secrets
            .into_iter()
            .map(|s| (s.id, s.spec.and_then(|spec| spec.labels)));
        let configs = self
            .configs
            .into_iter()
            .map(|c| (c.id, c.spec.and_then(|spec| spec.labels)));
        services.chain(networks).chain(secrets).chain(configs)
    }
}

impl Docker {
    /// The managed objects of `owner` (or all in scope), of every type.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn list_owned(&self, owner: Option<&Owner>) -> Result<OwnedObjects, DockerError> {
        // Four independent reads: sent together, the pass waits for the slowest, not the sum.
        let (services, networks, secrets, configs) = tokio::try_join!(
            self.list_services(owner),
            self.list_networks(owner),
            self.list_secrets(owner),
            self.list_configs(owner),
        )?;
        Ok(OwnedObjects {
            services,
            networks,
            secrets,
            configs,
        })
    }

    async fn networks(&self, filters: Filters) -> Result<Vec<Network>, DockerError> {
        let options = ListNetworksOptions {
            filters: Some(filters),
        };
        self.call(
            Access::Read("network_list"),
            self.inner.list_networks(Some(options)),
        )
        .await
        .map_err(list_error("networks"))
    }

    async fn secrets(&self, filters: Filters) -> Result<Vec<Secret>, DockerError> {
        let options = ListSecretsOptions {
            filters: Some(filters),
        };
        self.call(
            Access::Read("secret_list"),
            self.inner.list_secrets(Some(options)),
        )
        .await
        .map_err(list_error("secrets"))
    }

    async fn configs(&self, filters: Filters) -> Result<Vec<Config>, DockerError> {
        let options = ListConfigsOptions {
            filters: Some(filters),
        };
        self.call(
            Access::Read("config_list"),
            self.inner.list_configs(Some(options)),
        )
        .await
        .map_err(list_error("configs"))
    }

    /// Managed networks, of one owner if given.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn list_networks(&self, owner: Option<&Owner>) -> Result<Vec<Network>, DockerError> {
        self.networks(labels::filters(owner, self.scope())).await
    }

    /// Managed secrets, of one owner if given. Swarm never returns a secret's data.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn list_secrets(&self, owner: Option<&Owner>) -> Result<Vec<Secret>, DockerError> {
        self.secrets(labels::filters(owner, self.scope())).await
    }

    /// Managed configs, of one owner if given.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn list_configs(&self, owner: Option<&Owner>) -> Result<Vec<Config>, DockerError> {
        self.configs(labels::filters(owner, self.scope())).await
    }

    /// The network called exactly `name`, managed or not (an `external` network must
    /// exist, whoever made it). A swarm-scoped one wins over a local one of the same name.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn inspect_network_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Network>, DockerError> {
        let mut found: Vec<Network> = self
            .networks(by_name(name))
            .await?
            .into_iter()
            .filter(|network| network.name.as_deref() == Some(name))
            .collect();
        found.sort_by_key(|network| network.scope.as_deref() != Some("swarm"));
        Ok(found.into_iter().next())
    }

    /// The secret called exactly `name`, managed or not.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn secret_by_name(&self, name: &str) -> Result<Option<Secret>, DockerError> {
        let found = self.secrets(by_name(name)).await?;
        Ok(exact(found, name, |secret| {
            secret.spec.as_ref()?.name.as_deref()
        }))
    }

    /// The config called exactly `name`, managed or not.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn config_by_name(&self, name: &str) -> Result<Option<Config>, DockerError> {
        let found = self.configs(by_name(name)).await?;
        Ok(exact(found, name, |config| {
            config.spec.as_ref()?.name.as_deref()
        }))
    }

    /// Creates a network and returns its ID.
    ///
    /// # Errors
    /// [`DockerError::CreateNetwork`] when dockerd refuses (a name taken, a bad subnet) or
    /// does not answer.
    pub async fn create_network(
        &self,
        request: NetworkCreateRequest,
    ) -> Result<String, DockerError> {
        let network = request.name.clone();
        let created = self
            .call(
                self.write("network_create")?,
                self.inner.create_network(request),
            )
            .await
            .map_err(|source| DockerError::CreateNetwork { network, source })?;
        Ok(created.id)
    }

    /// Removes a network by ID or name; one that is already gone counts as removed.
    ///
    /// # Errors
    /// [`DockerError::RemoveNetwork`] when dockerd refuses (still in use) or does not answer.
    pub async fn remove_network(&self, network: &str) -> Result<(), DockerError> {
        self.remove(
            self.write("network_remove")?,
            self.inner.remove_network(network),
        )
        .await
        .map_err(|source| DockerError::RemoveNetwork {
            network: network.to_owned(),
            source,
        })
    }

    /// Creates a secret (its data base64 in the spec) and returns its ID. Only the name
    /// is ever put in an error.
    ///
    /// # Errors
    /// [`DockerError::CreateSecret`] when dockerd refuses (a name taken) or does not answer.
    pub async fn create_secret(&self, spec: SecretSpec) -> Result<String, DockerError> {
        let secret = spec.name.clone().unwrap_or_default();
        let created = self
            .call(self.write("secret_create")?, self.inner.create_secret(spec))
            .await
            .map_err(|source| DockerError::CreateSecret { secret, source })?;
        Ok(created.id)
    }

    /// Removes a secret by ID or name; one that is already gone counts as removed.
    ///
    /// # Errors
    /// [`DockerError::RemoveSecret`] when dockerd refuses (still in use) or does not answer.
    pub async fn remove_secret(&self, secret: &str) -> Result<(), DockerError> {
        self.remove(
            self.write("secret_remove")?,
            self.inner.delete_secret(secret),
        )
        .await
        .map_err(|source| DockerError::RemoveSecret {
            secret: secret.to_owned(),
            source,
        })
    }

    /// Creates a config (its data base64 in the spec) and returns its ID.
    ///
    /// # Errors
    /// [`DockerError::CreateConfig`] when dockerd refuses (a name taken) or does not answer.
    pub async fn create_config(&self, spec: ConfigSpec) -> Result<String, DockerError> {
        let config = spec.name.clone().unwrap_or_default();
        let created = self
            .call(self.write("config_create")?, self.inner.create_config(spec))
            .await
            .map_err(|source| DockerError::CreateConfig { config, source })?;
        Ok(created.id)
    }

    /// Removes a config by ID or name; one that is already gone counts as removed.
    ///
    /// # Errors
    /// [`DockerError::RemoveConfig`] when dockerd refuses (still in use) or does not answer.
    pub async fn remove_config(&self, config: &str) -> Result<(), DockerError> {
        self.remove(
            self.write("config_remove")?,
            self.inner.delete_config(config),
        )
        .await
        .map_err(|source| DockerError::RemoveConfig {
            config: config.to_owned(),
            source,
        })
    }
}
