//! Time mixprobe's t-SNE on any `[n, d]` matrix and report its exact KL divergence.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example tsne_bench -- \
//!     --input out/tsne-bench/X.npy --threads 2 --repeats 3 --out out/tsne-bench
//! ```
//! Input: a `.npy` (float32/float64, C order, 2-D) or a `.safetensors` file (`--tensor NAME`,
//! F32, 2-D; the only tensor when omitted). Writes `<out>/ours.npy` (the map of the first run)
//! and `<out>/ours.json` (times, KL, parameters). `--kl-of FILE.npy` also prints the exact KL of
//! other tools' maps of the same input under our P (`--repeats 0` for only that), and `--linfa`
//! times linfa-tsne (the single-threaded reference) with the same perplexity and θ.
use anyhow::{Context, Result, bail};
use clap::Parser;
use mixprobe::probe::tsne::{Affinities, TsneParams, tsne};
use ndarray::Array2;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Input matrix, rows = examples (.npy or .safetensors).
    #[arg(long)]
    input: PathBuf,
    /// Tensor to read from a .safetensors input (default: its only tensor).
    #[arg(long)]
    tensor: Option<String>,
    /// Output folder for ours.npy and ours.json.
    #[arg(long, default_value = "out/tsne-bench")]
    out: PathBuf,
    /// Timed runs (the minimum is reported); 0 = only compute `--kl-of`.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Worker threads (0 = RAYON_NUM_THREADS or all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Perplexity.
    #[arg(long, default_value_t = 30.0)]
    perplexity: f64,
    /// Barnes–Hut opening angle.
    #[arg(long, default_value_t = 0.5)]
    theta: f64,
    /// Main-phase iterations (after 250 early-exaggeration iterations).
    #[arg(long, default_value_t = 500)]
    iterations: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Other maps (.npy, [n, 2]) of the same input whose exact KL to print.
    #[arg(long)]
    kl_of: Vec<PathBuf>,
    /// Also time linfa-tsne (single-threaded; 1000 iterations: 250 exaggerated).
    #[arg(long)]
    linfa: bool,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let x = read_matrix(&a.input, a.tensor.as_deref())?;
    println!("input {}: {} x {}", a.input.display(), x.nrows(), x.ncols());
    let params = TsneParams {
        perplexity: a.perplexity,
        theta: a.theta,
        iterations: a.iterations,
        seed: a.seed,
        threads: a.threads,
        ..TsneParams::default()
    };
    let mut summary = serde_json::json!({
        "input": a.input.display().to_string(), "n": x.nrows(), "d": x.ncols(),
        "threads": a.threads, "params": format!("{params:?}"),
    });
    let mut times = Vec::new();
    let mut first = None;
    for r in 0..a.repeats {
        let t = Instant::now();
        let out = tsne(x.view(), &params)?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "ours run {}: {secs:.3} s, exact KL {:.5}",
            r + 1,
            out.kl_divergence
        );
        times.push(secs);
        first.get_or_insert(out);
    }
    if let Some(first) = &first {
        std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
        write_npy(&a.out.join("ours.npy"), &first.embedding)?;
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "ours: min {min:.3} s over {} runs, exact KL {:.5}",
            times.len(),
            first.kl_divergence
        );
        summary["times_s"] = times.into();
        summary["min_s"] = min.into();
        summary["kl"] = first.kl_divergence.into();
    }
    if !a.kl_of.is_empty() || a.linfa {
        let p = Affinities::new(x.view(), a.perplexity)?;
        for path in &a.kl_of {
            let kl = p.kl_divergence(read_matrix(path, None)?.view())?;
            println!("exact KL of {} under our P: {kl:.5}", path.display());
        }
        if a.linfa {
            let (secs, kl) = run_linfa(&x, &p, &a)?;
            println!("linfa-tsne: {secs:.3} s, exact KL {kl:.5}");
            summary["linfa"] = serde_json::json!({"time_s": secs, "kl": kl});
        }
    }
    if first.is_some() {
        let json = a.out.join("ours.json");
        std::fs::write(&json, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
    }
    Ok(())
}

/// linfa-tsne with the same perplexity and θ, 1000 iterations (250 exaggerated), timed.
fn run_linfa(x: &Array2<f32>, p: &Affinities, a: &Args) -> Result<(f64, f64)> {
    use linfa::traits::Transformer;
    use rand_xoshiro::Xoshiro256Plus;
    use rand_xoshiro::rand_core::SeedableRng;
    let data = x.mapv(f64::from);
    let t = Instant::now();
    let y =
        linfa_tsne::TSneParams::embedding_size_with_rng(2, Xoshiro256Plus::seed_from_u64(a.seed))
            .perplexity(a.perplexity)
            .approx_threshold(a.theta)
            .max_iter(1000)
            .transform(data)?;
    let secs = t.elapsed().as_secs_f64();
    Ok((secs, p.kl_divergence(y.mapv(|v| v as f32).view())?))
}

/// A 2-D float matrix from .npy (f4/f8, C order) or .safetensors (F32).
fn read_matrix(path: &Path, tensor: Option<&str>) -> Result<Array2<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "safetensors") {
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let name = match tensor {
            Some(t) => t.to_string(),
            None => match st.names().as_slice() {
                [only] => only.to_string(),
                names => bail!(
                    "{}: has {} tensors, pick one with --tensor",
                    path.display(),
                    names.len()
                ),
            },
        };
        let t = st
            .tensor(&name)
            .with_context(|| format!("{}: no tensor {name}", path.display()))?;
        if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 2 {
            bail!(
                "{}: tensor {name} must be 2-D F32, is {:?} {:?}",
                path.display(),
                t.dtype(),
                t.shape()
            );
        }
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        return Ok(Array2::from_shape_vec((t.shape()[0], t.shape()[1]), v)?);
    }
    parse_npy(&bytes).with_context(|| {
        format!(
            "{}: expected a 2-D little-endian f4/f8 C-order .npy",
            path.display()
        )
    })
}

fn parse_npy(bytes: &[u8]) -> Result<Array2<f32>> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy file");
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => bail!("truncated header"),
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).context("truncated header")?)?;
    if header.contains("'fortran_order': True") {
        bail!("Fortran order");
    }
    let dims: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .context("no shape")?
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let [n, d] = dims[..] else {
        bail!("shape {dims:?} is not 2-D")
    };
    let data = &bytes[start + hlen..];
    let v: Vec<f32> = if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else if header.contains("'<f8'") {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect()
    } else {
        bail!("dtype is not <f4 or <f8");
    };
    if v.len() != n * d {
        bail!("{} values for shape ({n}, {d})", v.len());
    }
    Ok(Array2::from_shape_vec((n, d), v)?)
}

fn write_npy(path: &Path, y: &Array2<f32>) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        y.nrows(),
        y.ncols()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for v in y.iter() {
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
