//! `mixprobe data fetch`: download the public datasets from their canonical URLs into the data
//! directory layout the recipes expect, verifying sha256 checksums.
//!
//! Files whose upstream bytes are pinned (GSM8K, HumanEval, MT-Bench — fetched from fixed git
//! commits) are verified against a checksum compiled into the binary; a mismatch is an error and the
//! file is not written. Code Alpaca and ShareGPT have no published checksum for their canonical
//! files: they are downloaded, their sha256 is printed and recorded in `FETCHED.json`, and the user
//! may pin it with `--sha256`. Every write is atomic (temp file, fsync, rename), so an interrupted
//! download never leaves a partial file under the final name.
use crate::error::{Error, Result};
use crate::util;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One file of a dataset: where it goes in the data directory and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct RemoteFile {
    /// Path relative to the data directory (also the path under a `--base-url` mirror).
    pub rel: &'static str,
    pub url: &'static str,
    /// Pinned sha256 of the upstream bytes, when known.
    pub sha256: Option<&'static str>,
}

/// A named public dataset.
#[derive(Debug, Clone, Copy)]
pub struct Dataset {
    pub name: &'static str,
    pub about: &'static str,
    pub license: &'static str,
    pub files: &'static [RemoteFile],
}

/// The datasets `fetch` knows, with their canonical sources.
pub const DATASETS: &[Dataset] = &[
    Dataset {
        name: "gsm8k",
        about: "GSM8K grade-school math, train (7,473) and test (1,319)",
        license: "MIT",
        files: &[
            RemoteFile {
                rel: "gsm8k/train.jsonl",
                url: const_format_url::GSM8K_TRAIN,
                sha256: Some("17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),
            },
            RemoteFile {
                rel: "gsm8k/test.jsonl",
                url: const_format_url::GSM8K_TEST,
                sha256: Some("3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
            },
        ],
    },
    Dataset {
        name: "humaneval",
        about: "OpenAI HumanEval, 164 Python problems with tests",
        license: "MIT",
        files: &[RemoteFile {
            rel: "humaneval/HumanEval.jsonl.gz",
            url: "https://raw.githubusercontent.com/openai/human-eval/6d43fb980f9fee3c892a914eda09951f772ad10d/data/HumanEval.jsonl.gz",
            sha256: Some("b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"),
        }],
    },
    Dataset {
        name: "mt_bench",
        about: "MT-Bench: 80 two-turn questions, GPT-4 reference answers, FastChat judge prompts",
        license: "Apache-2.0",
        files: &[
            RemoteFile {
                rel: "mt_bench/question.jsonl",
                url: const_format_url::MT_QUESTION,
                sha256: Some("119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"),
            },
            RemoteFile {
                rel: "mt_bench/reference_answer/gpt-4.jsonl",
                url: const_format_url::MT_REFERENCE,
                sha256: Some("f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f"),
            },
            RemoteFile {
                rel: "mt_bench/judge_prompts.jsonl",
                url: const_format_url::MT_JUDGE,
                sha256: Some("fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6"),
            },
        ],
    },
    Dataset {
        name: "codealpaca",
        about: "Code Alpaca 20k instructions (no published checksum: recorded on first fetch)",
        license: "CC BY-NC 4.0 (data)",
        files: &[RemoteFile {
            rel: "codealpaca/code_alpaca_20k.json",
            url: "https://raw.githubusercontent.com/sahil280114/codealpaca/2f78ddc5c682ed6738ad092bbbfa59ba915afcb0/data/code_alpaca_20k.json",
            sha256: None,
        }],
    },
    Dataset {
        name: "sharegpt",
        about: "ShareGPT V3 (unfiltered, cleaned, split), ~673 MB JSON list; a seeded 10k JSONL.gz subset is derived from it (no published checksum: recorded on first fetch)",
        license: "unstated upstream (commonly listed as Apache-2.0); user-shared ChatGPT conversations",
        files: &[RemoteFile {
            rel: "sharegpt/ShareGPT_V3_unfiltered_cleaned_split.json",
            url: "https://huggingface.co/datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/resolve/main/ShareGPT_V3_unfiltered_cleaned_split.json",
            sha256: None,
        }],
    },
];

/// Pinned-commit URLs of the multi-file datasets.
mod const_format_url {
    pub const GSM8K_TRAIN: &str = "https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data/train.jsonl";
    pub const GSM8K_TEST: &str = "https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data/test.jsonl";
    pub const MT_QUESTION: &str = "https://raw.githubusercontent.com/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d/fastchat/llm_judge/data/mt_bench/question.jsonl";
    pub const MT_REFERENCE: &str = "https://raw.githubusercontent.com/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d/fastchat/llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl";
    pub const MT_JUDGE: &str = "https://raw.githubusercontent.com/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d/fastchat/llm_judge/data/mt_bench/judge_prompts.jsonl";
}

/// Look a dataset up by name.
pub fn dataset(name: &str) -> Result<&'static Dataset> {
    DATASETS.iter().find(|d| d.name == name).ok_or_else(|| {
        let names: Vec<_> = DATASETS.iter().map(|d| d.name).collect();
        Error::invalid(
            "dataset",
            format!("unknown dataset {name:?}; known: {}, all", names.join(", ")),
        )
    })
}

/// Options for [`fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Replace each file's URL with `<base_url>/<rel>` (a mirror laid out like the data dir).
    pub base_url: Option<String>,
    /// Re-download even when a file with the right checksum exists.
    pub force: bool,
    /// Expected sha256 for a dataset with a single unpinned file.
    pub sha256: Option<String>,
    /// Show a progress bar.
    pub progress: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fetched {
    pub rel: String,
    pub url: String,
    pub sha256: String,
    pub bytes: u64,
    /// True when the checksum was checked against a pinned or user-given value.
    pub verified: bool,
    /// True when an existing file already had the pinned checksum (nothing downloaded).
    pub up_to_date: bool,
}

/// Download every file of `ds` into `out`, verifying checksums; returns what was fetched.
pub fn fetch(ds: &Dataset, out: &Path, opts: &FetchOptions) -> Result<Vec<Fetched>> {
    if opts.sha256.is_some() && ds.files.len() != 1 {
        return Err(Error::invalid(
            "--sha256",
            format!(
                "dataset {} has {} files; --sha256 needs exactly one",
                ds.name,
                ds.files.len()
            ),
        ));
    }
    let mut done = Vec::new();
    for f in ds.files {
        let expected = opts
            .sha256
            .as_deref()
            .or(f.sha256)
            .map(str::to_ascii_lowercase);
        if let Some(e) = &expected
            && (e.len() != 64 || !e.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(Error::invalid(
                "--sha256",
                format!("{e:?} is not 64 hex digits"),
            ));
        }
        let dest = out.join(f.rel);
        if !opts.force
            && let Some(e) = &expected
            && dest.is_file()
            && util::sha256_file(&dest)? == *e
        {
            let bytes = std::fs::metadata(&dest)
                .map_err(|err| Error::io(&dest, err))?
                .len();
            done.push(Fetched {
                rel: f.rel.into(),
                url: f.url.into(),
                sha256: e.clone(),
                bytes,
                verified: true,
                up_to_date: true,
            });
            continue;
        }
        let url = match &opts.base_url {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), f.rel),
            None => f.url.to_string(),
        };
        let (sha, bytes) = download(&url, &dest, expected.as_deref(), opts.progress)?;
        done.push(Fetched {
            rel: f.rel.into(),
            url,
            sha256: sha,
            bytes,
            verified: expected.is_some(),
            up_to_date: false,
        });
    }
    record(out, ds, &done)?;
    Ok(done)
}

/// Stream `url` into a temp file beside `dest` while hashing; check the hash; rename into place.
fn download(
    url: &str,
    dest: &Path,
    expected: Option<&str>,
    progress: bool,
) -> Result<(String, u64)> {
    let fetch_err = |message: String| Error::Fetch {
        url: url.to_string(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| fetch_err(e.to_string()))?;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut reader = resp.into_body().into_reader();
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let bar = if progress {
        let b = indicatif::ProgressBar::new(total.unwrap_or(0));
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("static template"),
        );
        b.set_message(
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n_total = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| fetch_err(format!("reading body: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(|e| Error::io(tmp.path(), e))?;
        n_total += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if let Some(t) = total
        && t != n_total
    {
        return Err(fetch_err(format!(
            "expected {t} bytes (Content-Length), got {n_total}"
        )));
    }
    let sha = hex::encode(hasher.finalize());
    if let Some(e) = expected
        && sha != e
    {
        return Err(fetch_err(format!(
            "sha256 mismatch for {}: expected {e}, got {sha}; nothing was written",
            dest.display()
        )));
    }
    util::set_readable(tmp.path())?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok((sha, n_total))
}

/// Merge this fetch into `<out>/FETCHED.json` (dataset → files with url, sha256, bytes).
fn record(out: &Path, ds: &Dataset, files: &[Fetched]) -> Result<()> {
    let path = out.join("FETCHED.json");
    let mut all: serde_json::Map<String, serde_json::Value> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::file(&path, format!("not valid JSON: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    all.insert(
        ds.name.to_string(),
        serde_json::json!({ "license": ds.license, "files": files }),
    );
    util::write_json(&path, &all)
}

/// Derive a seeded subset of ShareGPT conversations as JSONL.gz from the full V3 JSON list.
///
/// Records are parsed one by one, so a truncated file (as some mirrors ship) yields its complete
/// records and reports the partial tail. Eligible = at least one human/user turn and one
/// gpt/assistant turn. `n` eligible records are drawn without replacement with
/// `util::rng(seed, "sharegpt-subset")` and written in file order, unchanged. Returns
/// (eligible, written, truncated_tail).
pub fn sharegpt_subset(
    input: &Path,
    output: &Path,
    n: usize,
    seed: u64,
) -> Result<(usize, usize, bool)> {
    let bytes = std::fs::read(input).map_err(|e| Error::io(input, e))?;
    let mut pos = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| Error::file(input, "empty file, expected a JSON list"))?;
    if bytes[pos] != b'[' {
        return Err(Error::file(
            input,
            "expected a JSON list of ShareGPT conversations",
        ));
    }
    pos += 1;
    let mut records: Vec<(usize, usize)> = Vec::new();
    let mut eligible = Vec::new();
    let mut truncated = false;
    loop {
        while pos < bytes.len() && (bytes[pos].is_ascii_whitespace() || bytes[pos] == b',') {
            pos += 1;
        }
        if pos >= bytes.len() {
            truncated = true;
            break;
        }
        if bytes[pos] == b']' {
            break;
        }
        let mut stream =
            serde_json::Deserializer::from_slice(&bytes[pos..]).into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(v)) => {
                let end = pos + stream.byte_offset();
                let roles: Vec<&str> = v["conversations"]
                    .as_array()
                    .map(|c| c.iter().filter_map(|t| t["from"].as_str()).collect())
                    .unwrap_or_default();
                let human = roles.iter().any(|r| matches!(*r, "human" | "user"));
                let gpt = roles
                    .iter()
                    .any(|r| matches!(*r, "gpt" | "chatgpt" | "assistant"));
                if human && gpt {
                    eligible.push(records.len());
                }
                records.push((pos, end));
                pos = end;
            }
            Some(Err(e)) if e.is_eof() => {
                truncated = true;
                break;
            }
            Some(Err(e)) => {
                return Err(Error::record(
                    input,
                    crate::error::Location::Index(records.len()),
                    format!("invalid JSON: {e}"),
                ));
            }
            None => break,
        }
    }
    use rand::seq::index::sample;
    let mut rng = util::rng(seed, "sharegpt-subset");
    let take = n.min(eligible.len());
    let mut chosen: Vec<usize> = sample(&mut rng, eligible.len(), take)
        .into_iter()
        .map(|i| eligible[i])
        .collect();
    chosen.sort_unstable();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in &chosen {
        let (s, e) = records[*i];
        let v: serde_json::Value =
            serde_json::from_slice(&bytes[s..e]).map_err(|err| Error::Internal(err.to_string()))?;
        let line = serde_json::to_string(&v).map_err(|err| Error::Internal(err.to_string()))?;
        gz.write_all(line.as_bytes())
            .and_then(|_| gz.write_all(b"\n"))
            .map_err(|err| Error::io(output, err))?;
    }
    let data = gz.finish().map_err(|e| Error::io(output, e))?;
    util::write_atomic(output, &data)?;
    Ok((eligible.len(), chosen.len(), truncated))
}

/// The path of the derived subset the recipes use.
pub fn sharegpt_subset_path(data_dir: &Path) -> PathBuf {
    data_dir.join("sharegpt/sharegpt_v3_subset_10k.jsonl.gz")
}
