//! llama.cpp's q/k row permutation. Its converter (HF → GGUF) reorders the rows of `q_proj` and
//! `k_proj` from Hugging Face's rotate-half rope layout to ggml's interleaved-pair layout:
//! `w.reshape(n_head, 2, head_dim/2, cols).swapaxes(1, 2).reshape(rows, cols)`. Within a head,
//! HF row `s·head_dim/2 + j` becomes GGUF row `2·j + s`.
use crate::error::{Error, Result};

/// Apply llama.cpp's permutation (HF layout → GGUF layout) to a row-major `[rows, cols]` matrix
/// with `n_head` heads (for k, the number of key/value heads).
pub fn permute_qk(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Result<Vec<f32>> {
    reorder(w, rows, cols, n_head, true)
}

/// Undo llama.cpp's permutation (GGUF layout → HF layout).
pub fn unpermute_qk(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Result<Vec<f32>> {
    reorder(w, rows, cols, n_head, false)
}

fn reorder(w: &[f32], rows: usize, cols: usize, n_head: usize, to_gguf: bool) -> Result<Vec<f32>> {
    if rows.checked_mul(cols) != Some(w.len()) {
        return Err(Error::invalid(
            "q/k permutation",
            format!("{} values is not a {rows}×{cols} matrix", w.len()),
        ));
    }
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        return Err(Error::invalid(
            "q/k permutation",
            format!("{rows} rows do not split into {n_head} heads of an even size"),
        ));
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for j in 0..half {
                let hf = h * head_dim + s * half + j;
                let gguf = h * head_dim + 2 * j + s;
                let (dst, src) = if to_gguf { (gguf, hf) } else { (hf, gguf) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}
