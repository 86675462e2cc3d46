//! `mixprobe probe|project|metrics`: extract pooled hidden states of probe sets, map them to
//! 2-D, and score how the sources separate (logic in `mixprobe::probe`).
use mixprobe::model::MatmulPrecision;
use mixprobe::model::device::DeviceKind;
use mixprobe::probe::{
    ExtractOptions, Layers, Method, MetricsConfig, ModelRef, ProbeSpec, ProjectConfig,
    ProjectionFile, extract, metrics, project,
};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `mixprobe probe`.
#[derive(clap::Args)]
#[command(
    after_help = "Writes OUT/index.json (models, examples with source and text, per-set counts, the spec) and \
    OUT/<name>.safetensors with one tensor layer.<i> [n_examples, hidden] f32 per kept layer \
    (layer 0 = embeddings, i = output of block i before the final norm)."
)]
pub struct ProbeArgs {
    /// Probe specification (TOML), e.g. probes/paper.toml.
    #[arg(long, value_name = "SPEC")]
    pub spec: PathBuf,
    /// Directory the spec's set paths are relative to (e.g. ../shared/data or a `data synth` dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Model directory (config.json, model.safetensors, tokenizer.json); repeat for several.
    #[arg(long = "model", value_name = "DIR", required = true)]
    pub models: Vec<PathBuf>,
    /// Name of each model in the outputs, in --model order (default: the directory's name, or
    /// <run>-final / <run>-stage-N for run checkpoints).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Output directory (created; index.json and the .safetensors files are overwritten).
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Sequences per forward batch (length-bucketed).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub batch_size: usize,
    /// Replace the spec's layers: comma-separated indices or all, first, middle, last, a/b.
    #[arg(long, value_name = "LAYERS")]
    pub layers: Option<Layers>,
    /// Where to run; cuda falls back to the CPU with a warning when unavailable.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Precision of the CPU's f32 matrix products: high (the default: each product as three
    /// bf16 products on Intel AMX tiles, about 1e-5 relative error per product, pooled states
    /// within 1e-4 of their largest value; runs as highest on a CPU without AMX) or highest
    /// (IEEE f32 everywhere, for bit-level comparisons with an f32 reference). index.json
    /// records what ran. [default: high]
    #[arg(long, value_enum)]
    pub matmul_precision: Option<MatmulPrecision>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `mixprobe project`.
#[derive(clap::Args)]
#[command(
    after_help = "Writes DIR/projection/<model>/layer-<i>.<tsne|pca>.csv (id,source,x,y,cluster) and a .json \
    beside it (points, parameters, KL divergence or explained variance). Clusters: k-means with \
    k = number of sources on the full-dimensional states."
)]
pub struct ProjectArgs {
    /// Probe directory written by `mixprobe probe`.
    pub dir: PathBuf,
    /// Projection method (default: the spec's `projection`).
    #[arg(long, value_enum)]
    pub method: Option<Method>,
    /// t-SNE perplexity (at most (n - 1) / 3).
    #[arg(long, default_value_t = 30.0)]
    pub perplexity: f64,
    /// Seed of t-SNE and k-means.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Principal components computed before t-SNE.
    #[arg(long, default_value_t = 50)]
    pub pca_dims: usize,
    /// Only these layers (comma-separated indices); all kept layers by default.
    #[arg(long, value_delimiter = ',', value_name = "LAYERS")]
    pub layers: Option<Vec<usize>>,
    /// t-SNE worker threads (0 = all cores or RAYON_NUM_THREADS).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `mixprobe metrics`.
#[derive(clap::Args)]
pub struct MetricsArgs {
    /// Probe directory written by `mixprobe probe` (maps from `mixprobe project` are used for
    /// trustworthiness when present).
    pub dir: PathBuf,
    /// Output JSON file (default: DIR/metrics.json).
    #[arg(long, value_name = "METRICS.json")]
    pub out: Option<PathBuf>,
    /// Neighbours for the kNN overlap and trustworthiness.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Seed of k-means (for the adjusted Rand index).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// z-score every hidden dimension over the examples before silhouette, Davies–Bouldin, kNN
    /// overlap and k-means (CKA and trustworthiness stay on the raw states). Pretrained models'
    /// few huge "massive activation" dimensions otherwise dominate every distance.
    #[arg(long)]
    pub standardize: bool,
}

/// Extract pooled hidden states.
pub fn run_probe(args: ProbeArgs) -> anyhow::Result<()> {
    if !args.names.is_empty() && args.names.len() != args.models.len() {
        return Err(crate::cli::UserError(format!(
            "--name was given {} time(s) for {} --model(s): give one name per model or none",
            args.names.len(),
            args.models.len()
        ))
        .into());
    }
    let spec = ProbeSpec::load(&args.spec)?;
    let models: Vec<ModelRef> = args
        .models
        .iter()
        .enumerate()
        .map(|(i, dir)| match args.names.get(i) {
            Some(name) => ModelRef {
                name: name.clone(),
                dir: dir.clone(),
            },
            None => ModelRef::from_dir(dir),
        })
        .collect();
    let opts = ExtractOptions {
        batch_size: args.batch_size,
        device: args.device,
        progress: !args.quiet,
        layers: args.layers,
        matmul_precision: args.matmul_precision.unwrap_or(MatmulPrecision::High),
    };
    let start = Instant::now();
    let index = extract(&spec, &args.data_dir, &models, &args.out, &opts)?;
    // A note only when the flag was given: without AMX the default runs as highest quietly.
    if let (Some(m), Some(requested)) = (
        index
            .models
            .first()
            .filter(|_| args.device == DeviceKind::Cpu),
        args.matmul_precision,
    ) {
        crate::cli::model::note_precision(requested, m.matmul_precision);
    }
    for s in &index.sets {
        println!(
            "set {:<10} {}: {} records ({} malformed skipped, {} excluded, {} without text), {} sampled",
            s.name,
            s.path.display(),
            s.records,
            s.skipped,
            s.excluded,
            s.no_text,
            s.sampled
        );
    }
    for m in &index.models {
        println!(
            "model {:<20} {} examples, {} tokens ({} truncated), layers {:?}: {:.1} s forward, {:.0} tokens/s",
            m.name,
            index.examples.len(),
            m.tokens,
            m.truncated,
            m.layers,
            m.forward_seconds,
            m.tokens_per_second()
        );
    }
    println!(
        "wrote {} in {:.1} s",
        args.out.join("index.json").display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Draw the 2-D maps.
pub fn run_project(args: ProjectArgs) -> anyhow::Result<()> {
    let method = match args.method {
        Some(m) => m,
        None => {
            mixprobe::probe::ExtractIndex::load(&args.dir)?
                .spec
                .projection
        }
    };
    let cfg = ProjectConfig {
        method,
        perplexity: args.perplexity,
        seed: args.seed,
        pca_dims: args.pca_dims,
        layers: args.layers,
        threads: args.threads,
        progress: !args.quiet,
    };
    let start = Instant::now();
    project(&args.dir, &cfg)?;
    let index = mixprobe::probe::ExtractIndex::load(&args.dir)?;
    let mut maps = 0;
    for m in &index.models {
        for &l in &m.layers {
            let path = mixprobe::probe::project::projection_path(&args.dir, &m.name, l, method);
            if cfg.layers.as_ref().is_none_or(|w| w.contains(&l)) && path.is_file() {
                maps += 1;
                if let Some(kl) = ProjectionFile::load(&path)?.kl_divergence {
                    println!("{} layer {l}: KL {kl:.4}", m.name);
                }
            }
        }
    }
    println!(
        "wrote {maps} {} maps under {} in {:.1} s",
        method.as_str(),
        args.dir.join("projection").display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Score every (model, layer).
pub fn run_metrics(args: MetricsArgs) -> anyhow::Result<()> {
    let cfg = MetricsConfig {
        k: args.k,
        seed: args.seed,
        standardize: args.standardize,
    };
    let file = metrics(&args.dir, &cfg)?;
    let out = args.out.unwrap_or_else(|| args.dir.join("metrics.json"));
    mixprobe::util::write_json(&out, &file)?;
    print!("{}", file.table());
    println!("wrote {}", out.display());
    Ok(())
}
