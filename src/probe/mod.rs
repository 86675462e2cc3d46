//! Hidden-state probes: projection, clustering, interference metrics.
//!
//! Every function takes a matrix whose rows are examples (e.g. one pooled hidden state per
//! example) and checks its inputs, returning [`crate::Error::Invalid`] instead of panicking.
//! - [`metrics`]: silhouette, Davies–Bouldin, kNN source overlap, adjusted Rand index,
//!   trustworthiness, linear CKA.
//! - [`pca`]: principal components (linfa-reduction).
//! - [`cluster`]: seeded k-means (linfa-clustering).
//! - [`tsne`]: multithreaded Barnes–Hut t-SNE with an exact KL divergence.
pub mod cluster;
mod distance;
mod input;
pub mod metrics;
pub mod pca;
pub mod tsne;
