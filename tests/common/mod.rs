//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::path::PathBuf;

/// The shared data/fixtures directory (`../shared` next to the repository, or `$MIXPROBE_SHARED`).
/// Returns None, printing a visible SKIP line, when it is absent (a user's clone). `.ci/run`
/// sets `MIXPROBE_REQUIRE_SHARED=1`, which turns absence into a failure so CI never skips.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("MIXPROBE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("data").is_dir() {
        return Some(dir);
    }
    if std::env::var_os("MIXPROBE_REQUIRE_SHARED").is_some() {
        panic!(
            "MIXPROBE_REQUIRE_SHARED is set but {} has no data/",
            dir.display()
        );
    }
    eprintln!(
        "SKIP: {} not found; tests that need ../shared are skipped",
        dir.display()
    );
    None
}

/// `shared()` or return early from the test.
#[macro_export]
macro_rules! require_shared {
    () => {
        match common::shared() {
            Some(d) => d,
            None => return,
        }
    };
}

/// The compiled binary.
pub fn bin() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("mixprobe").expect("binary built")
}

/// Every F32/I64 tensor of a reference safetensors file (../shared/fixtures) as (shape, f32
/// values); I64 tensors (input ids) are converted.
pub fn read_reference(
    path: &std::path::Path,
) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    use safetensors::tensor::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let data = match v.dtype() {
                Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                Dtype::I64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                d => panic!("unexpected dtype {d:?}"),
            };
            (name, (v.shape().to_vec(), data))
        })
        .collect()
}

/// The fixture's `input_ids` as a batch (pad id 0).
pub fn fixture_batch(
    reference: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
) -> mixprobe::model::TokenBatch {
    let (shape, ids) = &reference["input_ids"];
    let rows: Vec<Vec<u32>> = ids
        .chunks(shape[1])
        .map(|r| r.iter().map(|&x| x as u32).collect())
        .collect();
    mixprobe::model::TokenBatch::new(&rows, 0).unwrap()
}

/// The largest absolute elementwise difference.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
