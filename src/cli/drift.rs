//! `drift`: the records in etcd against the live swarm, field by field.

use crate::controllers;
use crate::report;

use super::{Failure, GlobalOpts, parse_kind};

/// How `drift` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftOutput {
    Table,
    Json,
    Markdown,
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
    let ctx = global.context(None).await?;
    let drift = controllers::drift(&ctx, kind, name)
        .await
        .map_err(Failure::error)?;
    let text = match output {
        DriftOutput::Table => report::drift::table(&drift),
        DriftOutput::Json => report::drift::json(&drift),
        DriftOutput::Markdown => report::drift::markdown(&drift),
    };
    print!("{text}");
    Ok(if exit_code && drift.has_drift() { 2 } else { 0 })
}
