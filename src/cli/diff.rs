//! `diff`: the records in files against the records in etcd, and what the
//! controller would do to the live swarm if the files were applied (a
//! section `apply --dry-run` prints too).
//!
//! # Guarantees
//! - Reads only. Nothing is written to etcd, and the Docker connection is
//!   fenced shut: even a write asked for by mistake is refused before it is sent.
//! - No secret value is printed: records show their keyed digests, plans name
//!   objects and fields only.
//! - dockerd unreachable: the live comparison is skipped, and said so; the
//!   exit code then depends on the records only.
//!
//! # Caveats
//! A DatabaseUser's plan needs its server, observed as the administrator and
//! as the user: `diff` never connects to a database (a CI job checking a pull
//! request should not hold production database credentials, and a user whose
//! password is not generated yet has nothing to compare), so it says the plan
//! was not computed; `drift` compares the server once the record is applied.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::apply::{digest_keyring, load, record_id, require_key, stored_values};
use super::{Failure, GlobalOpts};
use crate::api::Kind;
use crate::api::load::{LoadedRecord, load_paths};
use crate::controllers::{self, Context, RecordKey};
use crate::docker::Docker;
use crate::gitops::owner;
use crate::plan::diff;
use crate::report::plan::{self as would, RecordPlan, WouldDo};
use crate::runtime::Fence;
use crate::store::{Store, Versioned};

/// Runs `diff`: for each record in the files, what an apply would change in
/// etcd, then what the controller would do in the swarm; with `exit_code`,
/// exit 2 when either would change something (as `drift` does).
///
/// # Errors
/// Invalid records (exit 64) or etcd failures (exit 1).
pub async fn diff(global: &GlobalOpts, files: &[PathBuf], exit_code: bool) -> Result<u8, Failure> {
    let loaded = load(files)?;
    let keys = global.key_files()?;
    require_key(&loaded, keys.is_some())?;
    let store = global.store().await?;
    let carries_secrets = loaded.iter().any(|l| !l.secrets.is_empty());
    let keyring = digest_keyring(&store, keys, carries_secrets).await?;
    let values = stored_values(&loaded, keyring.as_ref());
    let mut changed = false;
    for (l, desired) in loaded.iter().zip(&values) {
        let (kind, name) = l.record.key();
        match store
            .get_record(kind.as_str(), name)
            .await
            .map_err(Failure::error)?
        {
            None => {
                changed = true;
                println!("{} would be created", record_id(l));
            }
            Some(v) => {
                // Ownership is apply's bookkeeping, not what the files say.
                let fields = diff::diff(desired, &owner::without_origin(&v.value), &[]);
                if fields.is_empty() {
                    println!("{} unchanged", record_id(l));
                    continue;
                }
                changed = true;
                println!("{} would be configured:", record_id(l));
                for f in fields {
                    println!(
                        "  {}: {} -> {}",
                        f.path,
                        show(f.live.as_ref()),
                        show(f.desired.as_ref())
                    );
                }
            }
        }
    }
    let live = live_section(global, store, &loaded, values).await?;
    print!("{}", live.text);
    Ok(if exit_code && (changed || live.changes) {
        2
    } else {
        0
    })
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "<unset>".to_string(), |v| v.to_string())
}

/// Prints what the controller would do for the records in `files`, after
/// `apply --dry-run` printed what it would write. The files were validated
/// (and their warnings printed) by the dry run already.
///
/// # Errors
/// Invalid records (exit 64) or etcd failures (exit 1).
pub async fn dry_run(global: &GlobalOpts, files: &[PathBuf]) -> Result<(), Failure> {
    let env = |name: &str| std::env::var(name).ok();
    let loaded = load_paths(files, &env).map_err(|e| Failure::Invalid(e.to_string()))?;
    let store = global.store().await?;
    let carries_secrets = loaded.iter().any(|l| !l.secrets.is_empty());
    let keyring = digest_keyring(&store, global.key_files()?, carries_secrets).await?;
    let values = stored_values(&loaded, keyring.as_ref());
    let live = live_section(global, store, &loaded, values).await?;
    print!("{}", live.text);
    Ok(())
}

/// The "would do" section, and whether it changes something live.
struct Section {
    text: String,
    changes: bool,
}

/// A Docker connection that reads only: its fence is revoked, so every
/// write is refused before it is sent.
fn read_only(docker: Docker) -> Docker {
    let fence = Fence::until(tokio::time::Instant::now());
    fence.revoke();
    docker.fenced(fence)
}

/// Plans every record that has a plan against the live swarm.
///
/// # Errors
/// When the stored digest key does not open with the keys, or etcd fails.
async fn live_section(
    global: &GlobalOpts,
    store: Store,
    loaded: &[LoadedRecord],
    values: Vec<Value>,
) -> Result<Section, Failure> {
    let planned = |kind: Kind| {
        matches!(
            kind,
            Kind::Stack | Kind::Network | Kind::Node | Kind::DatabaseUser
        )
    };
    if !loaded.iter().any(|l| planned(l.record.kind)) {
        return Ok(Section {
            text: String::new(),
            changes: false,
        });
    }
    let docker = match Docker::connect().await {
        Ok(docker) => read_only(docker.scoped(&global.prefix)),
        Err(err) => {
            return Ok(Section {
                text: would::skipped(&format!("dockerd unreachable ({err})")),
                changes: false,
            });
        }
    };
    // The controller plans with the stored digest key, whether or not these
    // records carry secrets: a stack's secret versions are named by it.
    let keyring = global.keyring(&store, false).await?;
    let ctx = Context::new(store, docker, keyring, Duration::from_secs(300));
    let mut plans = Vec::new();
    for (l, value) in loaded.iter().zip(values) {
        if !planned(l.record.kind) {
            continue;
        }
        let would = match would_do(&ctx, l, value).await {
            Ok(would) => would,
            Err(err) => WouldDo::NotComputed(err.to_string()),
        };
        plans.push(RecordPlan {
            record: record_id(l),
            would,
        });
    }
    // What the write counter says (zero: the connection is read-only), for
    // anyone checking that a preview left the swarm alone.
    tracing::debug!(
        reads = ctx.docker.reads(),
        writes = ctx.docker.writes(),
        "live comparison done"
    );
    Ok(Section {
        changes: plans.iter().any(RecordPlan::changes),
        text: would::text(&plans),
    })
}

/// What the controller would do for one record of the files, by its kind's plan.
async fn would_do(
    ctx: &Context,
    l: &LoadedRecord,
    value: Value,
) -> Result<WouldDo, controllers::Error> {
    let (kind, name) = l.record.key();
    let key = RecordKey::new(kind, name);
    if !l.secrets.is_empty() && ctx.keyring.is_none() {
        // Versions are named by a keyed digest of the value: without the key
        // the names (and so the plan) cannot be known.
        return Ok(WouldDo::NotComputed(
            "its secret values are compared only with --secret-key-file".into(),
        ));
    }
    let stored = ctx.store.get_record(kind.as_str(), name).await?;
    let versioned = Versioned {
        value: value.clone(),
        mod_revision: 0,
        create_revision: 0,
    };
    let drift = match kind {
        Kind::Stack => {
            // A record the files leave as it is keeps its generation, and with
            // it what the controller decided for that generation.
            let generation = stored.filter(|s| s.value == value).map(|s| s.mod_revision);
            let preview =
                controllers::stack::preview(ctx, &key, value, &l.secrets, generation).await?;
            return Ok(match preview {
                Ok(p) => WouldDo::Actions(would::stack(&p.plan, p.report_only)),
                Err(message) => WouldDo::NotComputed(message),
            });
        }
        Kind::Network => controllers::network::drift(ctx, name, Some(versioned)).await?,
        Kind::Node => controllers::node::drift(ctx, name, Some(versioned)).await?,
        // DatabaseUser, the one other kind with a plan.
        _ => {
            return Ok(WouldDo::NotComputed(
                "needs the database, which a preview never connects to (`drift` compares it once applied)"
                    .into(),
            ));
        }
    };
    Ok(match (drift.error, kind) {
        (Some(message), _) => WouldDo::NotComputed(message),
        (None, Kind::Node) => WouldDo::Actions(would::node(&drift.objects)),
        (None, _) => {
            let mut actions = would::network(&drift.objects);
            for a in &mut actions {
                // As the Network controller does: a name it does not own is never taken over.
                if a.verb == would::Verb::Create
                    && ctx.docker.inspect_network_by_name(name).await?.is_some()
                {
                    a.verb = would::Verb::Keep(
                        "a network of this name exists that swarmkeeper does not manage: the record fails",
                    );
                }
            }
            WouldDo::Actions(actions)
        }
    })
}
