//! Hidden-state probes: extraction of pooled embeddings, projection, clustering, interference
//! metrics.
//!
//! Pipeline: a [`spec::ProbeSpec`] (`probes/*.toml`) names probe sets, text, layers and pooling;
//! [`extract()`] runs models over it and writes a probe directory (`index.json`,
//! `<model>.safetensors`); [`project()`] draws 2-D maps with k-means clusters; [`metrics()`]
//! scores every (model, layer).
//!
//! The numerical parts take a matrix whose rows are examples and check their inputs, returning
//! [`crate::Error::Invalid`] instead of panicking:
//! - [`metrics`](mod@metrics): silhouette, Davies–Bouldin, kNN source overlap, adjusted Rand
//!   index, trustworthiness, linear CKA.
//! - [`pca`](mod@pca): principal components (linfa-reduction).
//! - [`cluster`]: seeded k-means (linfa-clustering).
//! - [`tsne`](mod@tsne): multithreaded Barnes–Hut t-SNE with an exact KL divergence.
pub mod cluster;
mod distance;
pub mod extract;
mod input;
pub mod metrics;
pub mod pca;
pub mod project;
pub mod spec;
pub mod summary;
pub mod tsne;

pub use extract::{
    ExtractIndex, ExtractOptions, ModelEntry, ModelRef, ProbeExample, SetSummary, extract,
    load_layer,
};
pub use project::{ProjectConfig, ProjectionFile, project};
pub use spec::{Layers, Method, Pooling, ProbeSpec};
pub use summary::{LayerMetrics, MetricsConfig, MetricsFile, metrics};
