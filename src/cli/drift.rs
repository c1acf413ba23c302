//! `drift`: the records in etcd against the live swarm, field by field.

use crate::controllers::{self, Context, RecordKey, network, node, stack};
use crate::docker::Docker;
use crate::plan::drift::DriftReport;
use crate::report;

use super::{Failure, GlobalOpts, parse_kind};

/// How `drift` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftOutput {
    Table,
    Json,
    Markdown,
}

/// Computes the drift of every record that has a drift model (all, of a kind, or one).
///
/// # Errors
/// When etcd or dockerd fails.
pub async fn report(
    ctx: &Context,
    kind: Option<crate::api::Kind>,
    name: Option<&str>,
) -> Result<DriftReport, controllers::Error> {
    let keys = controllers::all_keys(ctx).await?;
    let mut out = DriftReport::default();
    for key in keys {
        if kind.is_some_and(|k| k != key.kind) || name.is_some_and(|n| n != key.name) {
            continue;
        }
        if let Some(d) = record_drift(ctx, &key).await? {
            out.records.push(d);
        }
    }
    Ok(out)
}

async fn record_drift(
    ctx: &Context,
    key: &RecordKey,
) -> Result<Option<crate::plan::drift::RecordDrift>, controllers::Error> {
    let stored = ctx.store.get_record(key.kind.as_str(), &key.name).await?;
    match key.kind {
        crate::api::Kind::Stack => Ok(Some(stack::drift(ctx, &key.name, stored).await?)),
        crate::api::Kind::Network => Ok(Some(network::drift(ctx, &key.name, stored).await?)),
        crate::api::Kind::Node => Ok(Some(node::drift(ctx, &key.name, stored).await?)),
        _ => Ok(None),
    }
}

/// Runs `drift`.
///
/// # Errors
/// An unknown kind (exit 64), or etcd/dockerd failures (exit 1).
pub async fn drift(
    global: &GlobalOpts,
    kind: Option<&str>,
    name: Option<&str>,
    output: DriftOutput,
    exit_code: bool,
) -> Result<u8, Failure> {
    let kind = kind.map(parse_kind).transpose()?;
    let store = global.store().await?;
    let ctx = Context {
        keyring: global.keyring(&store, false).await?,
        store,
        docker: Docker::connect()
            .await
            .map_err(Failure::error)?
            .scoped(&global.prefix),
        resync: std::time::Duration::from_secs(300),
    };
    let drift = report(&ctx, kind, name).await.map_err(Failure::error)?;
    let text = match output {
        DriftOutput::Table => report::drift::table(&drift),
        DriftOutput::Json => report::drift::json(&drift),
        DriftOutput::Markdown => report::drift::markdown(&drift),
    };
    print!("{text}");
    Ok(if exit_code && drift.has_drift() { 2 } else { 0 })
}
