//! Nodes: listing, and updating a node's labels and availability at its version.

use bollard::models::{Node, NodeSpec};
use bollard::query_parameters::{ListNodesOptions, UpdateNodeOptions};

use super::{Access, Docker, DockerError};

impl Docker {
    /// Every node of the swarm; nodes are not created by swarmkeeper, so no label filter.
    ///
    /// # Errors
    /// [`DockerError::List`] when dockerd fails to answer.
    pub async fn list_nodes(&self) -> Result<Vec<Node>, DockerError> {
        self.call(
            Access::Read("node_list"),
            self.inner.list_nodes(None::<ListNodesOptions>),
        )
        .await
        .map_err(|source| DockerError::List {
            what: "nodes",
            source,
        })
    }

    /// Replaces a node's spec at `version` (its `Version.Index`). A lost race answers
    /// out of sequence ([`DockerError::is_out_of_sequence`], transient): re-read and retry.
    ///
    /// # Errors
    /// [`DockerError::UpdateNode`] when dockerd refuses, answers out of sequence, or does
    /// not answer.
    pub async fn update_node(
        &self,
        node: &str,
        version: u64,
        spec: NodeSpec,
    ) -> Result<(), DockerError> {
        let options = UpdateNodeOptions {
            version: i64::try_from(version).unwrap_or(i64::MAX),
        };
        self.call(
            self.write("node_update")?,
            self.inner.update_node(node, spec, options),
        )
        .await
        .map_err(|source| DockerError::UpdateNode {
            node: node.to_owned(),
            source,
        })
    }
}
