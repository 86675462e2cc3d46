//! `mixprobe data fetch`: download public datasets into the data-directory layout.
use mixprobe::data::fetch::{self, DATASETS, FetchOptions};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(
    after_help = "Datasets: gsm8k, humaneval, mt_bench (checksums pinned, verified), codealpaca, sharegpt \
(no published checksum: the sha256 is printed and recorded in OUT/FETCHED.json; pin it with --sha256). \
For sharegpt the full V3 JSON (~673 MB) is downloaded and a seeded subset is written to \
sharegpt/sharegpt_v3_subset_10k.jsonl.gz, the path the shipped recipes use."
)]
pub struct Args {
    /// Dataset to fetch: gsm8k, humaneval, mt_bench, codealpaca, sharegpt, or all.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// Data directory to write into (the layout recipes expect).
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
    /// Fetch from a mirror laid out like the data directory: each file comes from BASE_URL/<path>.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Expected sha256 (64 hex digits) for a single-file dataset without a pinned checksum.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Download again even if a file with the pinned checksum is already there.
    #[arg(long)]
    pub force: bool,
    /// Conversations in the derived ShareGPT subset.
    #[arg(long, default_value_t = 10_000)]
    pub subset_size: usize,
    /// Seed of the derived ShareGPT subset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// List the known datasets with their sources and exit.
    #[arg(long)]
    pub list: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.list {
        for d in DATASETS {
            println!("{:<11} {} [{}]", d.name, d.about, d.license);
            for f in d.files {
                println!(
                    "    {:<45} {}",
                    f.rel,
                    f.sha256.map(|s| &s[..16]).unwrap_or("(unpinned)")
                );
            }
        }
        return Ok(());
    }
    let name = args.name.as_deref().unwrap_or("all");
    let sets: Vec<_> = if name == "all" {
        DATASETS.iter().collect()
    } else {
        vec![fetch::dataset(name)?]
    };
    let opts = FetchOptions {
        base_url: args.base_url.clone(),
        force: args.force,
        sha256: args.sha256.clone(),
        progress: true,
    };
    for ds in sets {
        let files = fetch::fetch(ds, &args.out, &opts)?;
        for f in &files {
            let how = if f.up_to_date {
                "up to date"
            } else if f.verified {
                "verified"
            } else {
                "NOT verified (no pinned checksum; recorded in FETCHED.json)"
            };
            eprintln!(
                "{}: {} ({} bytes, sha256 {}) {how}",
                ds.name,
                args.out.join(&f.rel).display(),
                f.bytes,
                f.sha256
            );
        }
        if ds.name == "sharegpt" {
            let full = args.out.join(ds.files[0].rel);
            let subset = fetch::sharegpt_subset_path(&args.out);
            let (eligible, written, truncated) =
                fetch::sharegpt_subset(&full, &subset, args.subset_size, args.seed)?;
            eprintln!(
                "sharegpt: {} eligible conversations{}; wrote {written} (seed {}) to {}",
                eligible,
                if truncated {
                    " (input ended mid-record: the partial last record was skipped)"
                } else {
                    ""
                },
                args.seed,
                subset.display()
            );
        }
    }
    Ok(())
}
