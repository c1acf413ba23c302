//! Several compose files made one, as `docker stack deploy -c base.yml -c prod.yml` merges
//! them (docker/cli 20.10, `cli/compose/loader/merge.go`, which runs mergo with "override"
//! and "append slice" over its typed config).
//!
//! The rules that follow from that, file by file over the result so far:
//! - Services merge by name; a service only one file has is taken as it is.
//! - A scalar of the override replaces the base's unless it is Go's zero value (`""`, `0`,
//!   `false`, `0s`): `replicas: 0` or `read_only: false` cannot undo a base's value. Enums
//!   and CPU counts are strings to the CLI, so any written value replaces.
//! - Lists are appended: `command`, `entrypoint` and `healthcheck.test` too (20.10 has no
//!   rule for them), `volumes`, `cap_add`, `dns`, `extra_hosts`, placement constraints...
//! - Merged by key, the override's entry replacing: `ports` by published port (all
//!   unpublished ports share the key 0), `secrets` and `configs` by source, the result
//!   sorted by that key; `ulimits` by name; `environment`, `labels`, `sysctls`,
//!   `deploy.labels` and `logging.options` by key.
//! - `environment` keeps a base value the override leaves blank (`KEY` or `KEY=`).
//! - Network attachments merge by network; when both files give options, the override's
//!   `aliases` replace the base's; a bare attachment (`- net`, `net:`) changes nothing.
//! - `logging` merges options when the drivers agree (or one is unset) and the base has
//!   options at all (the CLI drops the override's otherwise); another driver replaces it.
//! - Sub-maps (`deploy`, its `resources`, `restart_policy`, `update_config`, `placement`,
//!   `healthcheck`, `credential_spec`) merge field by field under these rules.
//! - Top-level networks, volumes, secrets and configs are replaced whole by name.

use std::collections::{BTreeMap, HashSet};

use indexmap::IndexMap;
use serde_json::Value;

use super::{
    ByteSize, Command, ComposeFile, CredentialSpec, Deploy, FileRef, GoDuration, Healthcheck,
    ListOrMap, Logging, Placement, PortEntry, PortLong, ResourceLimits, ResourceReservations,
    Resources, RestartPolicy, ScalarMap, Service, ServiceNetwork, ServiceNetworks, StringOrList,
    UpdateConfig,
};
use crate::api::FieldError;

/// One compose file to merge, with what its typed form cannot tell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    pub compose: ComposeFile,
    /// `(service, network)` attachments written without options (`net:` in a map): the CLI
    /// reads them as "no options", which leaves the base's options alone, while the typed
    /// form reads them as `{}`.
    pub bare_attachments: HashSet<(String, String)>,
}

impl Layer {
    /// Parses one file (as [`ComposeFile::from_value`]) and notes its bare attachments.
    ///
    /// # Errors
    /// The file's first type error, at its path under `base_path`.
    pub fn from_value(value: Value, base_path: &str) -> Result<Self, FieldError> {
        let mut bare_attachments = HashSet::new();
        let services = value.get("services").and_then(Value::as_object);
        for (name, service) in services.into_iter().flatten() {
            let networks = service.get("networks").and_then(Value::as_object);
            for (network, options) in networks.into_iter().flatten() {
                if options.is_null() {
                    bare_attachments.insert((name.clone(), network.clone()));
                }
            }
        }
        Ok(Self {
            compose: ComposeFile::from_value(value, base_path)?,
            bare_attachments,
        })
    }
}

/// Merges `layers` in order, later files over earlier ones.
///
/// # Errors
/// `(index of the file being merged, path inside it, message)`: versions that differ (the
/// CLI refuses them), or a port or command the merge must read and cannot.
pub fn merge_layers(layers: Vec<Layer>) -> Result<ComposeFile, (usize, String, String)> {
    let mut layers = layers.into_iter().enumerate();
    let Some((_, first)) = layers.next() else {
        return Ok(ComposeFile::default());
    };
    let mut merged = first.compose;
    for (i, layer) in layers {
        merged = merge(merged, layer).map_err(|(path, message)| (i, path, message))?;
    }
    Ok(merged)
}

/// `version` as the CLI compares it: `3` is `3.0`.
fn normalized_version(version: Option<&str>) -> Option<&str> {
    version.map(|v| if v == "3" { "3.0" } else { v })
}

fn merge(mut base: ComposeFile, over: Layer) -> Result<ComposeFile, (String, String)> {
    let Layer {
        compose: over,
        bare_attachments,
    } = over;
    let (a, b) = (base.version.as_deref(), over.version.as_deref());
    if normalized_version(a) != normalized_version(b) {
        let shown = |v: Option<&str>| v.map_or("none".to_owned(), |v| format!("{v:?}"));
        return Err((
            "version".to_owned(),
            format!(
                "version {} differs from the first file's {}: docker stack deploy refuses files of different versions",
                shown(b),
                shown(a)
            ),
        ));
    }
    base.name = over.name.or(base.name);
    for (name, service) in over.services {
        let merged = match base.services.shift_remove(&name) {
            None => service,
            Some(earlier) => {
                let bare =
                    |network: &str| bare_attachments.contains(&(name.clone(), network.to_owned()));
                merge_service(earlier, service, &bare)
                    .map_err(|(field, message)| (format!("services.{name}.{field}"), message))?
            }
        };
        base.services.insert(name, merged);
    }
    // The CLI keeps its services sorted by name.
    base.services.sort_keys();
    base.networks.extend(over.networks);
    base.volumes.extend(over.volumes);
    base.secrets.extend(over.secrets);
    base.configs.extend(over.configs);
    Ok(base)
}

/// Go's zero value, which an override's value must not be to replace the base's.
trait GoZero {
    fn is_zero(&self) -> bool;
}

impl GoZero for String {
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}
impl GoZero for u64 {
    fn is_zero(&self) -> bool {
        *self == 0
    }
}
impl GoZero for i64 {
    fn is_zero(&self) -> bool {
        *self == 0
    }
}
impl GoZero for f64 {
    fn is_zero(&self) -> bool {
        *self == 0.0
    }
}
impl GoZero for bool {
    fn is_zero(&self) -> bool {
        !*self
    }
}
impl GoZero for GoDuration {
    fn is_zero(&self) -> bool {
        self.nanos() == 0
    }
}
impl GoZero for ByteSize {
    fn is_zero(&self) -> bool {
        self.bytes() == 0
    }
}

/// The override's value unless it is Go's zero and the base has one.
fn scalar<T: GoZero>(base: Option<T>, over: Option<T>) -> Option<T> {
    match (base, over) {
        (Some(base), Some(over)) if over.is_zero() => Some(base),
        (base, None) => base,
        (_, over) => over,
    }
}

/// Both merged by `f` when both are set, else whichever is.
fn both<T>(base: Option<T>, over: Option<T>, f: impl FnOnce(T, T) -> T) -> Option<T> {
    match (base, over) {
        (Some(base), Some(over)) => Some(f(base, over)),
        (base, over) => over.or(base),
    }
}

fn append<T>(mut base: Vec<T>, over: Vec<T>) -> Vec<T> {
    base.extend(over);
    base
}

fn append_opt<T>(base: Option<Vec<T>>, over: Option<Vec<T>>) -> Option<Vec<T>> {
    both(base, over, append)
}

fn append_strings(base: Option<StringOrList>, over: Option<StringOrList>) -> Option<StringOrList> {
    let f = |a: StringOrList, b: StringOrList| StringOrList::Many(append(a.to_vec(), b.to_vec()));
    both(base, over, f)
}

/// `command`/`entrypoint`: appended, as 20.10 appends them (a string split first, as the
/// CLI splits it when it loads the file).
fn append_command(base: Option<Command>, over: Option<Command>) -> Result<Option<Command>, String> {
    match (base, over) {
        (Some(a), Some(b)) => Ok(Some(Command::Exec(append(a.to_args()?, b.to_args()?)))),
        (base, over) => Ok(over.or(base)),
    }
}

/// `healthcheck.test`: appended; a string is `[CMD-SHELL, string]` to the CLI.
fn append_test(base: Option<StringOrList>, over: Option<StringOrList>) -> Option<StringOrList> {
    let list = |test: StringOrList| match test {
        StringOrList::One(shell) => vec!["CMD-SHELL".to_owned(), shell],
        StringOrList::Many(list) => list,
    };
    let f = |a, b| StringOrList::Many(append(list(a), list(b)));
    both(base, over, f)
}

/// A `map[string]string` (`labels`, `sysctls`): the override's entries replace.
fn string_map(base: Option<ListOrMap>, over: Option<ListOrMap>) -> Option<ListOrMap> {
    let f = |a: ListOrMap, b: ListOrMap| {
        let mut map = a.to_string_map();
        map.extend(b.to_string_map());
        ListOrMap::Map(map.into_iter().map(|(k, v)| (k, Some(v))).collect())
    };
    both(base, over, f)
}

/// `environment` (`map[string]*string`): a base value survives an override without one
/// (`KEY`) or with an empty one (`KEY=`); otherwise the override's entry replaces.
fn environment(base: Option<ListOrMap>, over: Option<ListOrMap>) -> Option<ListOrMap> {
    let f = |a: ListOrMap, b: ListOrMap| {
        let mut map: IndexMap<String, Option<String>> = a.entries('=').into_iter().collect();
        for (key, value) in b.entries('=') {
            let keep = map
                .get(&key)
                .is_some_and(|old| old.as_deref().is_some_and(|v| !v.is_empty()))
                && value.as_deref().is_none_or(str::is_empty);
            if !keep {
                map.insert(key, value);
            }
        }
        ListOrMap::Map(map)
    };
    both(base, over, f)
}

/// `extra_hosts`: appended, a map being the CLI's sorted `host:ip` list.
fn extra_hosts(base: Option<ListOrMap>, over: Option<ListOrMap>) -> Option<ListOrMap> {
    let list = |hosts: ListOrMap| match hosts {
        ListOrMap::List(items) => items,
        ListOrMap::Map(map) => {
            let mut items: Vec<String> = map
                .into_iter()
                .filter_map(|(host, ip)| Some(format!("{host}:{}", ip?)))
                .collect();
            items.sort();
            items
        }
    };
    let f = |a, b| ListOrMap::List(append(list(a), list(b)));
    both(base, over, f)
}

/// `ports`, merged by published port and sorted by it once the base has any.
fn ports(base: Vec<PortEntry>, over: Vec<PortEntry>) -> Result<Vec<PortEntry>, String> {
    if base.is_empty() {
        return Ok(over);
    }
    let mut by_published = BTreeMap::new();
    for entry in base.iter().chain(&over) {
        for port in entry.expand()? {
            by_published.insert(port.published, port);
        }
    }
    let set = |s: String| (!s.is_empty()).then_some(s);
    Ok(by_published
        .into_values()
        .map(|port| {
            PortEntry::Long(PortLong {
                target: port.target,
                published: (port.published != 0).then_some(port.published),
                protocol: set(port.protocol),
                mode: set(port.mode),
            })
        })
        .collect())
}

/// `secrets`/`configs`, merged by source and sorted by it once the base has any.
fn by_source(base: Vec<FileRef>, over: Vec<FileRef>) -> Vec<FileRef> {
    if base.is_empty() {
        return over;
    }
    let mut map = BTreeMap::new();
    for reference in base.into_iter().chain(over) {
        map.insert(reference.to_long().source, reference);
    }
    map.into_values().collect()
}

fn networks(
    base: Option<ServiceNetworks>,
    over: Option<ServiceNetworks>,
    bare: &dyn Fn(&str) -> bool,
) -> Option<ServiceNetworks> {
    // `None` is an attachment without options, as the CLI's nil pointer.
    let options = |networks: ServiceNetworks, bare: &dyn Fn(&str) -> bool| match networks {
        ServiceNetworks::List(names) => names.into_iter().map(|n| (n, None)).collect(),
        ServiceNetworks::Map(map) => map
            .into_iter()
            .map(|(n, o)| {
                let o = (!bare(&n)).then_some(o);
                (n, o)
            })
            .collect::<IndexMap<_, _>>(),
    };
    let f = |a: ServiceNetworks, b: ServiceNetworks| {
        // A bare attachment of the base merges as `{}` does: both take the override's
        // options, and both convert alike when the override has none.
        let mut map = options(a, &|_| false);
        for (name, new) in options(b, bare) {
            let merged = match (map.get_mut(&name).and_then(Option::take), new) {
                (Some(mut old), Some(new)) => {
                    old.aliases = new.aliases;
                    old.ipv4_address = scalar(old.ipv4_address, new.ipv4_address);
                    old.ipv6_address = scalar(old.ipv6_address, new.ipv6_address);
                    old.driver_opts = new.driver_opts.or(old.driver_opts);
                    Some(old)
                }
                (old, new) => new.or(old),
            };
            map.insert(name, merged);
        }
        if map.values().all(Option::is_none) {
            ServiceNetworks::List(map.into_keys().collect())
        } else {
            let map = map.into_iter().map(|(n, o)| (n, o.unwrap_or_default()));
            ServiceNetworks::Map(map.collect::<IndexMap<String, ServiceNetwork>>())
        }
    };
    both(base, over, f)
}

fn logging(base: Option<Logging>, over: Option<Logging>) -> Option<Logging> {
    let f = |mut a: Logging, b: Logging| {
        let (da, db) = (
            a.driver.as_deref().unwrap_or(""),
            b.driver.as_deref().unwrap_or(""),
        );
        if da != db && !da.is_empty() && !db.is_empty() {
            return b;
        }
        a.driver = scalar(a.driver, b.driver);
        // The CLI merges into a copy of the base's options map, so an override's options
        // only land in a map the base already has.
        if let (Some(ScalarMap(options)), Some(ScalarMap(new))) = (a.options.as_mut(), b.options) {
            options.extend(new);
        }
        a
    };
    both(base, over, f)
}

fn healthcheck(a: Healthcheck, b: Healthcheck) -> Healthcheck {
    Healthcheck {
        test: append_test(a.test, b.test),
        interval: scalar(a.interval, b.interval),
        timeout: scalar(a.timeout, b.timeout),
        retries: scalar(a.retries, b.retries),
        start_period: scalar(a.start_period, b.start_period),
        start_interval: scalar(a.start_interval, b.start_interval),
        disable: scalar(a.disable, b.disable),
    }
}

fn credential_spec(a: CredentialSpec, b: CredentialSpec) -> CredentialSpec {
    CredentialSpec {
        config: scalar(a.config, b.config),
        file: scalar(a.file, b.file),
        registry: scalar(a.registry, b.registry),
    }
}

fn update_config(a: UpdateConfig, b: UpdateConfig) -> UpdateConfig {
    UpdateConfig {
        parallelism: scalar(a.parallelism, b.parallelism),
        delay: scalar(a.delay, b.delay),
        failure_action: b.failure_action.or(a.failure_action),
        monitor: scalar(a.monitor, b.monitor),
        max_failure_ratio: scalar(a.max_failure_ratio, b.max_failure_ratio),
        order: b.order.or(a.order),
    }
}

fn resources(a: Resources, b: Resources) -> Resources {
    let limits = |a: ResourceLimits, b: ResourceLimits| ResourceLimits {
        cpus: b.cpus.or(a.cpus),
        memory: scalar(a.memory, b.memory),
        pids: scalar(a.pids, b.pids),
    };
    let reservations = |a: ResourceReservations, b: ResourceReservations| ResourceReservations {
        cpus: b.cpus.or(a.cpus),
        memory: scalar(a.memory, b.memory),
        generic_resources: append(a.generic_resources, b.generic_resources),
    };
    Resources {
        limits: both(a.limits, b.limits, limits),
        reservations: both(a.reservations, b.reservations, reservations),
    }
}

fn deploy(a: Deploy, b: Deploy) -> Deploy {
    let placement = |a: Placement, b: Placement| Placement {
        constraints: append(a.constraints, b.constraints),
        preferences: append(a.preferences, b.preferences),
        max_replicas_per_node: scalar(a.max_replicas_per_node, b.max_replicas_per_node),
    };
    let restart = |a: RestartPolicy, b: RestartPolicy| RestartPolicy {
        condition: b.condition.or(a.condition),
        delay: scalar(a.delay, b.delay),
        max_attempts: scalar(a.max_attempts, b.max_attempts),
        window: scalar(a.window, b.window),
    };
    Deploy {
        mode: b.mode.or(a.mode),
        replicas: scalar(a.replicas, b.replicas),
        labels: string_map(a.labels, b.labels),
        placement: both(a.placement, b.placement, placement),
        resources: both(a.resources, b.resources, resources),
        restart_policy: both(a.restart_policy, b.restart_policy, restart),
        update_config: both(a.update_config, b.update_config, update_config),
        rollback_config: both(a.rollback_config, b.rollback_config, update_config),
        endpoint_mode: b.endpoint_mode.or(a.endpoint_mode),
    }
}

/// One service of both files; an error is `(field, message)`.
fn merge_service(
    a: Service,
    b: Service,
    bare: &dyn Fn(&str) -> bool,
) -> Result<Service, (String, String)> {
    let field = |name: &'static str| move |message| (name.to_owned(), message);
    Ok(Service {
        image: scalar(a.image, b.image),
        command: append_command(a.command, b.command).map_err(field("command"))?,
        entrypoint: append_command(a.entrypoint, b.entrypoint).map_err(field("entrypoint"))?,
        environment: environment(a.environment, b.environment),
        env_file: append_strings(a.env_file, b.env_file),
        labels: string_map(a.labels, b.labels),
        ports: ports(a.ports, b.ports).map_err(field("ports"))?,
        networks: networks(a.networks, b.networks, bare),
        volumes: append(a.volumes, b.volumes),
        secrets: by_source(a.secrets, b.secrets),
        configs: by_source(a.configs, b.configs),
        healthcheck: both(a.healthcheck, b.healthcheck, healthcheck),
        hostname: scalar(a.hostname, b.hostname),
        user: scalar(a.user, b.user),
        working_dir: scalar(a.working_dir, b.working_dir),
        stop_grace_period: scalar(a.stop_grace_period, b.stop_grace_period),
        stop_signal: scalar(a.stop_signal, b.stop_signal),
        init: scalar(a.init, b.init),
        read_only: scalar(a.read_only, b.read_only),
        tmpfs: append_strings(a.tmpfs, b.tmpfs),
        cap_add: append(a.cap_add, b.cap_add),
        cap_drop: append(a.cap_drop, b.cap_drop),
        sysctls: string_map(a.sysctls, b.sysctls),
        ulimits: {
            let mut ulimits = a.ulimits;
            ulimits.extend(b.ulimits);
            ulimits
        },
        extra_hosts: extra_hosts(a.extra_hosts, b.extra_hosts),
        dns: append_strings(a.dns, b.dns),
        dns_search: append_strings(a.dns_search, b.dns_search),
        logging: logging(a.logging, b.logging),
        tty: scalar(a.tty, b.tty),
        stdin_open: scalar(a.stdin_open, b.stdin_open),
        isolation: scalar(a.isolation, b.isolation),
        oom_score_adj: scalar(a.oom_score_adj, b.oom_score_adj),
        credential_spec: both(a.credential_spec, b.credential_spec, credential_spec),
        deploy: both(a.deploy, b.deploy, deploy),
        restart: scalar(a.restart, b.restart),
        // Keys swarm ignores: only whether they are set matters (for the warning).
        build: b.build.or(a.build),
        cgroupns_mode: scalar(a.cgroupns_mode, b.cgroupns_mode),
        cgroup_parent: scalar(a.cgroup_parent, b.cgroup_parent),
        container_name: scalar(a.container_name, b.container_name),
        depends_on: b.depends_on.or(a.depends_on),
        devices: append_opt(a.devices, b.devices),
        domainname: scalar(a.domainname, b.domainname),
        expose: append_opt(a.expose, b.expose),
        external_links: append_opt(a.external_links, b.external_links),
        ipc: scalar(a.ipc, b.ipc),
        links: append_opt(a.links, b.links),
        mac_address: scalar(a.mac_address, b.mac_address),
        network_mode: scalar(a.network_mode, b.network_mode),
        pid: scalar(a.pid, b.pid),
        privileged: scalar(a.privileged, b.privileged),
        security_opt: append_opt(a.security_opt, b.security_opt),
        shm_size: b.shm_size.or(a.shm_size),
        userns_mode: scalar(a.userns_mode, b.userns_mode),
        profiles: append_opt(a.profiles, b.profiles),
        pull_policy: scalar(a.pull_policy, b.pull_policy),
        platform: scalar(a.platform, b.platform),
    })
}

#[cfg(test)]
mod tests;
