//! GGUF import: de-quantization on hand-built blocks with hand-computed values, the q/k
//! un-permutation, parser errors on garbage / truncated / hostile headers, a synthetic tiny LLaMA
//! imported end to end, and the real SmolLM2-135M-Instruct Q4_1 GGUF checked against the
//! transformers reference fixtures (tokenizer ids, config, embeddings, and block 0 recomputed
//! here from the imported weights).
mod common;

use mixprobe::gguf::{
    GgmlType, GgufFile, Header, dequantize, import_gguf, permute_qk, unpermute_qk,
};
use safetensors::SafeTensors;
use serde_json::Value as Json;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// A minimal GGUF writer for synthetic files.

const T_U32: u32 = 4;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_I32: u32 = 5;

struct Gguf {
    version: u32,
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

impl Gguf {
    fn new() -> Self {
        Gguf {
            version: 3,
            kv: Vec::new(),
            n_kv: 0,
            infos: Vec::new(),
            n_tensors: 0,
            data: Vec::new(),
        }
    }
    fn key(&mut self, k: &str, ty: u32) {
        put_str(&mut self.kv, k);
        self.kv.extend(ty.to_le_bytes());
        self.n_kv += 1;
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k, T_STRING);
        put_str(&mut self.kv, v);
        self
    }
    fn u32(&mut self, k: &str, v: u32) -> &mut Self {
        self.key(k, T_U32);
        self.kv.extend(v.to_le_bytes());
        self
    }
    fn f32(&mut self, k: &str, v: f32) -> &mut Self {
        self.key(k, T_F32);
        self.kv.extend(v.to_le_bytes());
        self
    }
    fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k, T_BOOL);
        self.kv.push(v as u8);
        self
    }
    fn strs(&mut self, k: &str, v: &[&str]) -> &mut Self {
        self.key(k, T_ARRAY);
        self.kv.extend(T_STRING.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for s in v {
            put_str(&mut self.kv, s);
        }
        self
    }
    fn i32s(&mut self, k: &str, v: &[i32]) -> &mut Self {
        self.key(k, T_ARRAY);
        self.kv.extend(T_I32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            self.kv.extend(x.to_le_bytes());
        }
        self
    }
    /// A tensor with ggml dims (ne0 first) and raw data, aligned to 32.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, bytes: &[u8]) -> &mut Self {
        self.data.resize(self.data.len().next_multiple_of(32), 0);
        put_str(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
        self
    }
    fn f32_tensor(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        self.tensor(name, dims, 0, &f32_bytes(values))
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(self.version.to_le_bytes());
        b.extend(self.n_tensors.to_le_bytes());
        b.extend(self.n_kv.to_le_bytes());
        b.extend(&self.kv);
        b.extend(&self.infos);
        b.resize(b.len().next_multiple_of(32), 0);
        b.extend(&self.data);
        b
    }
    fn write(&self, dir: &Path, name: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.bytes()).unwrap();
        p
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16_bits(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

fn parse(bytes: &[u8]) -> mixprobe::Result<Header> {
    Header::read(bytes, bytes.len() as u64, Path::new("test.gguf"))
}

fn parse_err(bytes: &[u8]) -> String {
    match parse(bytes) {
        Ok(_) => panic!("expected a parse error"),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// De-quantization on hand-built blocks.

#[test]
fn dequantize_float_types() {
    let f32s = f32_bytes(&[1.5, -2.25]);
    assert_eq!(
        dequantize(GgmlType::F32, &f32s, 2).unwrap(),
        vec![1.5, -2.25]
    );
    // f16 0x3C00 = 1.0, 0xC100 = -2.5, 0x3555 ≈ 0.33325195
    let f16s = [0x00, 0x3C, 0x00, 0xC1, 0x55, 0x35];
    assert_eq!(
        dequantize(GgmlType::F16, &f16s, 3).unwrap(),
        vec![1.0, -2.5, 0.333_251_95]
    );
    // bf16 0x3FC0 = 1.5, 0xC080 = -4.0
    let bf16s = [0xC0, 0x3F, 0x80, 0xC0];
    assert_eq!(
        dequantize(GgmlType::BF16, &bf16s, 2).unwrap(),
        vec![1.5, -4.0]
    );
}

#[test]
fn dequantize_q8_0() {
    // d = 0.5, q_j = j − 16 → (j − 16)·0.5; a second block with d = −2, q = 127 and −128.
    let mut b = f16_bits(0.5).to_vec();
    b.extend((0..32).map(|j| (j as i8 - 16) as u8));
    b.extend(f16_bits(-2.0));
    b.extend([127u8, 0x80].iter().chain([0u8; 30].iter()));
    let y = dequantize(GgmlType::Q8_0, &b, 64).unwrap();
    for (j, &v) in y[..32].iter().enumerate() {
        assert_eq!(v, (j as f32 - 16.0) * 0.5, "element {j}");
    }
    assert_eq!(&y[32..35], &[-254.0, 256.0, -0.0]);
}

#[test]
fn dequantize_q4_0() {
    // d = 2; byte j has low nibble j (element j) and high nibble 15 − j (element j + 16).
    let mut b = f16_bits(2.0).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
    assert_eq!(y[0], -16.0); // (0 − 8)·2
    assert_eq!(y[8], 0.0);
    assert_eq!(y[15], 14.0); // (15 − 8)·2
    assert_eq!(y[16], 14.0); // high nibble of byte 0 = 15
    assert_eq!(y[31], -16.0); // high nibble of byte 15 = 0
    for j in 0..16 {
        assert_eq!(y[j], (j as f32 - 8.0) * 2.0);
        assert_eq!(y[j + 16], (7.0 - j as f32) * 2.0);
    }
}

#[test]
fn dequantize_q4_1() {
    // d = 0.5, m = −1; same nibble order as Q4_0; q·d + m.
    let mut b = f16_bits(0.5).to_vec();
    b.extend(f16_bits(-1.0));
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
    assert_eq!(
        (y[0], y[1], y[15], y[16], y[31]),
        (-1.0, -0.5, 6.5, 6.5, -1.0)
    );
    for j in 0..16 {
        assert_eq!(y[j], j as f32 * 0.5 - 1.0);
        assert_eq!(y[j + 16], (15 - j) as f32 * 0.5 - 1.0);
    }
}

#[test]
fn dequantize_q4_k() {
    // d = 1, dmin = 0.5. Packed 6-bit scales/mins, decoded by hand (ggml get_scale_min_k4):
    //   sub-block j:   0   1   2   3   4          5   6          7
    //   scale:         1   2   3   4   1|1<<4=17  3   5          7
    //   min:           5   6   7   8   2          4   6|2<<4=38  8
    let scales = [65u8, 2, 3, 4, 5, 6, 135, 8, 0x21, 0x43, 0x65, 0x87];
    let mut b = f16_bits(1.0).to_vec();
    b.extend(f16_bits(0.5));
    b.extend(scales);
    b.extend([0x31u8; 128]); // low nibble 1 (even sub-blocks), high nibble 3 (odd sub-blocks)
    let y = dequantize(GgmlType::Q4_K, &b, 256).unwrap();
    // value = d·scale·q − dmin·min
    let expected = [
        1.0 - 2.5,
        6.0 - 3.0,
        3.0 - 3.5,
        12.0 - 4.0,
        17.0 - 1.0,
        9.0 - 2.0,
        5.0 - 19.0,
        21.0 - 4.0,
    ];
    for (j, &e) in expected.iter().enumerate() {
        assert!(
            y[32 * j..32 * (j + 1)].iter().all(|&v| v == e),
            "sub-block {j}: {:?} vs {e}",
            &y[32 * j..32 * j + 2]
        );
    }
}

#[test]
fn dequantize_q6_k() {
    // ql bytes 0x21 (low nibble 1, high 2), qh bytes 0b11_10_01_00 (2-bit fields 0,1,2,3),
    // scales k+1 except scale[3] = −2, d = 0.5. In each half of 128 and group g of 32:
    //   q = [1|0<<4, 1|1<<4, 2|2<<4, 2|3<<4] − 32 = [−31, −15, 2, 18]
    //   value = d · scale[8·half + l/16 + 2g] · q_g
    let mut sc: Vec<i8> = (1..=16).collect();
    sc[3] = -2;
    let mut b = vec![0x21u8; 128];
    b.extend([0xE4u8; 64]);
    b.extend(sc.iter().map(|&s| s as u8));
    b.extend(f16_bits(0.5));
    let y = dequantize(GgmlType::Q6_K, &b, 256).unwrap();
    assert_eq!(y[0], -15.5); // 0.5·1·(−31)
    assert_eq!(y[16], -31.0); // 0.5·2·(−31)
    assert_eq!(y[48], 15.0); // g=1, l=16: 0.5·scale[3]=−2 ·(−15)
    assert_eq!(y[64], 5.0); // g=2, l=0: 0.5·scale[4]=5 ·2
    assert_eq!(y[128 + 96], 135.0); // half 1, g=3: 0.5·15·18
    let q = [-31.0f32, -15.0, 2.0, 18.0];
    for half in 0..2 {
        for g in 0..4 {
            for l in 0..32 {
                let s = sc[8 * half + l / 16 + 2 * g] as f32;
                assert_eq!(
                    y[128 * half + 32 * g + l],
                    0.5 * s * q[g],
                    "half {half} g {g} l {l}"
                );
            }
        }
    }
}

#[test]
fn dequantize_rejects_wrong_lengths() {
    assert!(dequantize(GgmlType::Q4_0, &[0u8; 17], 32).is_err());
    assert!(dequantize(GgmlType::Q8_0, &[0u8; 34], 31).is_err());
    assert!(dequantize(GgmlType::F32, &[0u8; 8], 3).is_err());
}

// ---------------------------------------------------------------------------------------------
// The q/k permutation.

#[test]
fn unpermute_known_example() {
    // One head of dim 6, one column: HF rows [0 1 2 | 3 4 5] (two halves) are interleaved by
    // llama.cpp into [0 3 1 4 2 5].
    let hf: Vec<f32> = (0..6).map(|x| x as f32).collect();
    assert_eq!(
        permute_qk(&hf, 6, 1, 1).unwrap(),
        vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    );
    assert_eq!(
        unpermute_qk(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0], 6, 1, 1).unwrap(),
        hf
    );
    // Two heads of dim 4, two columns: rows move as whole rows, per head.
    let rows = |r: &[usize]| -> Vec<f32> {
        r.iter()
            .flat_map(|&i| [i as f32 * 10.0, i as f32 * 10.0 + 1.0])
            .collect()
    };
    let hf = rows(&[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        permute_qk(&hf, 8, 2, 2).unwrap(),
        rows(&[0, 2, 1, 3, 4, 6, 5, 7])
    );
}

#[test]
fn permute_then_unpermute_is_identity() {
    let w: Vec<f32> = (0..(12 * 64 * 5))
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    for heads in [1, 3, 12] {
        let p = permute_qk(&w, 768, 5, heads).unwrap();
        assert_ne!(p, w, "{heads} heads");
        assert_eq!(unpermute_qk(&p, 768, 5, heads).unwrap(), w);
        assert_eq!(
            permute_qk(&unpermute_qk(&w, 768, 5, heads).unwrap(), 768, 5, heads).unwrap(),
            w
        );
    }
    assert!(unpermute_qk(&w, 768, 5, 7).is_err()); // 768 rows do not split into 7 heads
    assert!(unpermute_qk(&w[1..], 768, 5, 1).is_err());
}

// ---------------------------------------------------------------------------------------------
// Parser errors.

fn small_gguf() -> Gguf {
    let mut g = Gguf::new();
    g.str("general.architecture", "llama")
        .u32("llama.block_count", 1)
        .strs("tokenizer.ggml.tokens", &["a", "b"]);
    g.f32_tensor("x.weight", &[4, 2], &[1.0; 8])
        .f32_tensor("y.weight", &[3], &[2.0; 3]);
    g
}

#[test]
fn parses_a_valid_header() {
    let bytes = small_gguf().bytes();
    let h = parse(&bytes).unwrap();
    assert_eq!(
        (h.version, h.metadata().len(), h.tensors.len(), h.alignment),
        (3, 3, 2, 32)
    );
    assert_eq!(h.str("general.architecture").unwrap(), "llama");
    assert_eq!(h.u64("llama.block_count").unwrap(), 1);
    let x = h.tensor("x.weight").unwrap();
    assert_eq!(
        (x.dims.clone(), x.hf_shape(), x.ty, x.n_bytes),
        (vec![4, 2], vec![2, 4], GgmlType::F32, 32)
    );
    assert_eq!(h.data_offset % 32, 0);
    assert_eq!(h.file_len, bytes.len() as u64);
    // Version 2 has the same layout.
    let mut g = small_gguf();
    g.version = 2;
    assert_eq!(parse(&g.bytes()).unwrap().version, 2);
    // Typed access errors name the key.
    let e = h.u64("general.architecture").unwrap_err().to_string();
    assert!(
        e.contains("general.architecture") && e.contains("string"),
        "{e}"
    );
    assert!(
        h.str("general.name")
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}

#[test]
fn rejects_garbage_and_bad_versions() {
    let e = parse_err(b"PK\x03\x04 this is a zip file, not a model");
    assert!(e.contains("not a GGUF file"), "{e}");
    assert!(parse_err(b"").contains("truncated"));
    assert!(parse_err(b"GGU").contains("truncated"));
    for (version, what) in [
        (1u32, "version 1"),
        (4, "version 4"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        let mut g = small_gguf();
        g.version = version;
        let e = parse_err(&g.bytes());
        assert!(e.contains(what), "{e}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = small_gguf().bytes();
    for len in 0..bytes.len() {
        let r = parse(&bytes[..len]);
        assert!(
            r.is_err(),
            "a file cut to {len} of {} bytes parsed",
            bytes.len()
        );
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("truncated") || e.contains("not a GGUF"),
            "cut at {len}: {e}"
        );
    }
}

#[test]
fn hostile_counts_do_not_allocate() {
    let header = |n_tensors: u64, n_kv: u64| {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    };
    assert!(parse_err(&header(u64::MAX, 0)).contains("truncated"));
    assert!(parse_err(&header(0, u64::MAX)).contains("truncated"));
    assert!(parse_err(&header(1 << 40, 1 << 40)).contains("truncated"));
    // A key whose length is huge.
    let mut b = header(0, 1);
    b.extend(u64::MAX.to_le_bytes());
    b.extend([0u8; 64]);
    assert!(parse_err(&b).contains("truncated"));
    // An array with 2^62 elements.
    let mut b = header(0, 1);
    put_str(&mut b, "k");
    b.extend(T_ARRAY.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend((1u64 << 62).to_le_bytes());
    b.extend([0u8; 64]);
    assert!(parse_err(&b).contains("truncated"));
    // Arrays nested without end.
    let mut b = header(0, 1);
    put_str(&mut b, "k");
    b.extend(T_ARRAY.to_le_bytes());
    for _ in 0..200 {
        b.extend(T_ARRAY.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    assert!(parse_err(&b).contains("nested"));
    // Tensor dims whose product overflows, and a tensor larger than the file.
    let mut g = Gguf::new();
    g.tensor("t", &[u64::MAX, 4], 0, &[]);
    assert!(parse_err(&g.bytes()).contains("overflow"));
    let mut g = Gguf::new();
    g.tensor("t", &[1 << 30, 1 << 20], 0, &[0; 16]);
    assert!(parse_err(&g.bytes()).contains("runs past the end"));
}

#[test]
fn rejects_malformed_entries() {
    let mut g = Gguf::new();
    g.key("flag", T_BOOL);
    g.kv.push(2);
    assert!(parse_err(&g.bytes()).contains("neither 0 nor 1"));
    let mut g = Gguf::new();
    g.key("k", 99);
    g.kv.extend([0u8; 16]);
    assert!(parse_err(&g.bytes()).contains("unknown metadata value type 99"));
    let mut g = Gguf::new();
    g.u32("a", 1).u32("a", 2);
    assert!(parse_err(&g.bytes()).contains("duplicate metadata key 'a'"));
    let mut g = Gguf::new();
    g.f32_tensor("t", &[1], &[0.0])
        .f32_tensor("t", &[1], &[0.0]);
    assert!(parse_err(&g.bytes()).contains("duplicate tensor name 't'"));
    let mut g = Gguf::new();
    g.f32_tensor("t", &[1, 1, 1, 1, 1], &[0.0]);
    assert!(parse_err(&g.bytes()).contains("5 dimensions"));
    let mut g = Gguf::new();
    g.tensor("q", &[64, 2], 13, &[0; 352]);
    let e = parse_err(&g.bytes());
    assert!(
        e.contains("'q'") && e.contains("Q5_K") && e.contains("Q4_1"),
        "{e}"
    );
    let mut g = Gguf::new();
    g.tensor("q", &[40], 8, &[0; 68]);
    assert!(parse_err(&g.bytes()).contains("not a multiple of the Q8_0 block size 32"));
    let mut g = Gguf::new();
    g.u32("general.alignment", 24).f32_tensor("t", &[1], &[0.0]);
    assert!(parse_err(&g.bytes()).contains("power of two"));
    let mut g = Gguf::new();
    g.f32_tensor("t", &[1], &[0.0]);
    let at = g.infos.len() - 8;
    g.infos[at..].copy_from_slice(&4u64.to_le_bytes());
    assert!(parse_err(&g.bytes()).contains("not aligned"));
    let e = GgufFile::open(Path::new("/nonexistent/model.gguf"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nonexistent/model.gguf"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// A synthetic tiny LLaMA imported end to end.

/// hidden 8, 2 heads of dim 4, 1 key/value head, FFN 3, vocab 5, 1 layer; HF weights are
/// `hf_weights(seed, n)` and q/k are stored permuted the way llama.cpp's converter does.
/// `strs` overrides string metadata; the tensor named `skip` is left out.
fn tiny_llama(with_output: bool, strs: &[(&str, &str)], skip: &str) -> Gguf {
    let hf = hf_weights;
    let s = |k: &'static str, v: &'static str| -> (&'static str, String) {
        (
            k,
            strs.iter()
                .find(|o| o.0 == k)
                .map_or(v.to_string(), |o| o.1.to_string()),
        )
    };
    let mut g = Gguf::new();
    for (k, v) in [
        s("general.architecture", "llama"),
        s("general.name", "tiny"),
        s("tokenizer.ggml.model", "gpt2"),
        s("tokenizer.ggml.pre", "gpt-2"),
        s("tokenizer.chat_template", "{{ messages }}"),
        s("general.license", "mit"),
    ] {
        g.str(k, &v);
    }
    g.u32("llama.block_count", 1)
        .u32("llama.context_length", 64)
        .u32("llama.embedding_length", 8)
        .u32("llama.feed_forward_length", 3)
        .u32("llama.attention.head_count", 2)
        .u32("llama.attention.head_count_kv", 1)
        .f32("llama.rope.freq_base", 5000.0)
        .f32("llama.attention.layer_norm_rms_epsilon", 1e-6)
        .u32("llama.rope.dimension_count", 4)
        .strs(
            "tokenizer.ggml.tokens",
            &["<|endoftext|>", "a", "b", "ab", "<tool>"],
        )
        .i32s("tokenizer.ggml.token_type", &[3, 1, 1, 1, 4])
        .strs("tokenizer.ggml.merges", &["a b"])
        .u32("tokenizer.ggml.bos_token_id", 0)
        .u32("tokenizer.ggml.eos_token_id", 0)
        .bool("tokenizer.ggml.add_bos_token", true);
    let tensors: [(&str, Vec<u64>, Vec<f32>); 11] = [
        ("token_embd.weight", vec![8, 5], hf(0, 40)),
        ("blk.0.attn_norm.weight", vec![8], hf(1, 8)),
        (
            "blk.0.attn_q.weight",
            vec![8, 8],
            permute_qk(&hf(2, 64), 8, 8, 2).unwrap(),
        ),
        (
            "blk.0.attn_k.weight",
            vec![8, 4],
            permute_qk(&hf(3, 32), 4, 8, 1).unwrap(),
        ),
        ("blk.0.attn_v.weight", vec![8, 4], hf(4, 32)),
        ("blk.0.attn_output.weight", vec![8, 8], hf(5, 64)),
        ("blk.0.ffn_norm.weight", vec![8], hf(6, 8)),
        ("blk.0.ffn_gate.weight", vec![8, 3], hf(7, 24)),
        ("blk.0.ffn_up.weight", vec![8, 3], hf(8, 24)),
        ("blk.0.ffn_down.weight", vec![3, 8], hf(9, 24)),
        ("output_norm.weight", vec![8], hf(10, 8)),
    ];
    for (name, dims, values) in tensors.iter().filter(|t| t.0 != skip) {
        g.f32_tensor(name, dims, values);
    }
    if with_output {
        // As F16, to exercise the conversion: values k/8 are exact in f16.
        let bytes: Vec<u8> = (0..40).flat_map(|k| f16_bits(k as f32 / 8.0)).collect();
        g.tensor("output.weight", &[8, 5], 1, &bytes);
    }
    g
}

fn hf_weights(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((seed * 131 + i) as f32 * 0.1).sin())
        .collect()
}

fn tensor_f32(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

fn read_json(p: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

#[test]
fn imports_a_synthetic_llama() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = hf_weights;
    for with_output in [false, true] {
        let src = tiny_llama(with_output, &[], "").write(tmp.path(), "tiny.gguf");
        let out = tmp.path().join(format!("hf-{with_output}"));
        let report = import_gguf(&src, &out, false).unwrap();
        assert_eq!(report.hparams.tie_word_embeddings, !with_output);
        assert_eq!(
            report.metadata_not_used,
            vec!["general.license".to_string()]
        );
        assert_eq!(report.tensor_count, 11 + with_output as usize);
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.names().len(), 11 + with_output as usize);
        assert_eq!(
            tensor_f32(&st, "model.layers.0.self_attn.q_proj.weight"),
            (vec![8, 8], hf(2, 64))
        );
        assert_eq!(
            tensor_f32(&st, "model.layers.0.self_attn.k_proj.weight"),
            (vec![4, 8], hf(3, 32))
        );
        assert_eq!(
            tensor_f32(&st, "model.layers.0.self_attn.v_proj.weight"),
            (vec![4, 8], hf(4, 32))
        );
        assert_eq!(
            tensor_f32(&st, "model.layers.0.self_attn.o_proj.weight"),
            (vec![8, 8], hf(5, 64))
        );
        assert_eq!(
            tensor_f32(&st, "model.layers.0.input_layernorm.weight"),
            (vec![8], hf(1, 8))
        );
        assert_eq!(
            tensor_f32(&st, "model.layers.0.post_attention_layernorm.weight"),
            (vec![8], hf(6, 8))
        );
        assert_eq!(
            tensor_f32(&st, "model.layers.0.mlp.gate_proj.weight"),
            (vec![3, 8], hf(7, 24))
        );
        assert_eq!(
            tensor_f32(&st, "model.layers.0.mlp.up_proj.weight"),
            (vec![3, 8], hf(8, 24))
        );
        assert_eq!(
            tensor_f32(&st, "model.layers.0.mlp.down_proj.weight"),
            (vec![8, 3], hf(9, 24))
        );
        assert_eq!(
            tensor_f32(&st, "model.embed_tokens.weight"),
            (vec![5, 8], hf(0, 40))
        );
        assert_eq!(tensor_f32(&st, "model.norm.weight"), (vec![8], hf(10, 8)));
        if with_output {
            let (shape, v) = tensor_f32(&st, "lm_head.weight");
            assert_eq!((shape, v[1], v[39]), (vec![5, 8], 1.0 / 8.0, 39.0 / 8.0));
        } else {
            assert!(st.tensor("lm_head.weight").is_err());
        }

        let c = read_json(&out.join("config.json"));
        assert_eq!(c["architectures"][0], "LlamaForCausalLM");
        assert_eq!(c["model_type"], "llama");
        assert_eq!(
            (c["hidden_size"].as_u64(), c["intermediate_size"].as_u64()),
            (Some(8), Some(3))
        );
        assert_eq!(
            (
                c["num_attention_heads"].as_u64(),
                c["num_key_value_heads"].as_u64()
            ),
            (Some(2), Some(1))
        );
        assert_eq!(
            (c["head_dim"].as_u64(), c["num_hidden_layers"].as_u64()),
            (Some(4), Some(1))
        );
        assert_eq!(c["rope_theta"], 5000.0);
        assert_eq!(c["rms_norm_eps"].as_f64().unwrap(), 1e-6f32 as f64);
        assert_eq!(c["max_position_embeddings"], 64);
        assert_eq!(c["vocab_size"], 5);
        assert_eq!(c["tie_word_embeddings"], !with_output);
        assert_eq!(
            (c["bos_token_id"].as_u64(), c["eos_token_id"].as_u64()),
            (Some(0), Some(0))
        );
        assert!(c.get("pad_token_id").is_none());
        assert_eq!(c["torch_dtype"], "float32");
        let gc = read_json(&out.join("generation_config.json"));
        assert_eq!(gc["eos_token_id"], 0);

        let tok = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
        // add_bos_token: the post-processor prepends <|endoftext|>; "ab" merges into one token.
        assert_eq!(tok.encode("ab", true).unwrap().get_ids(), &[0, 3]);
        assert_eq!(tok.encode("ba<tool>", false).unwrap().get_ids(), &[2, 1, 4]);
        assert_eq!(tok.decode(&[0, 3, 1], true).unwrap(), "aba");
        let tc = read_json(&out.join("tokenizer_config.json"));
        assert_eq!(tc["chat_template"], "{{ messages }}");
        assert_eq!(tc["bos_token"], "<|endoftext|>");
        assert_eq!(tc["add_bos_token"], true);
        let tj = read_json(&out.join("tokenizer.json"));
        let added = tj["added_tokens"].as_array().unwrap();
        assert_eq!(added.len(), 2);
        assert_eq!(
            (added[0]["content"].as_str(), added[0]["special"].as_bool()),
            (Some("<|endoftext|>"), Some(true))
        );
        assert_eq!(
            (added[1]["content"].as_str(), added[1]["special"].as_bool()),
            (Some("<tool>"), Some(false))
        );
        let report = read_json(&out.join("import_report.json"));
        assert_eq!(report["tensors_by_type"]["F32"], 11);
        assert_eq!(
            report["tensors_by_type"]["F16"].as_u64(),
            with_output.then_some(1)
        );
    }
}

#[test]
fn import_refuses_what_it_cannot_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = |g: Gguf| {
        let src = g.write(tmp.path(), "bad.gguf");
        let e = import_gguf(&src, &out, false).unwrap_err();
        assert!(!out.exists());
        assert!(e.is_user_error());
        e.to_string()
    };
    let e = err(tiny_llama(false, &[("general.architecture", "qwen2")], ""));
    assert!(e.contains("architecture 'qwen2' is not supported"), "{e}");
    let e = err(tiny_llama(
        false,
        &[("tokenizer.ggml.pre", "llama-bpe")],
        "",
    ));
    assert!(e.contains("tokenizer.ggml.pre is 'llama-bpe'"), "{e}");
    let e = err(tiny_llama(false, &[("tokenizer.ggml.model", "llama")], ""));
    assert!(e.contains("only 'gpt2'"), "{e}");
    let e = err(tiny_llama(false, &[], "blk.0.ffn_up.weight"));
    assert!(
        e.contains("1 LLaMA tensor(s) missing, first: blk.0.ffn_up.weight"),
        "{e}"
    );
    let mut g = tiny_llama(false, &[], "");
    g.f32_tensor("rope_freqs.weight", &[2], &[1.0, 1.0]);
    let e = err(g);
    assert!(
        e.contains("not part of a plain LLaMA model, first: rope_freqs.weight"),
        "{e}"
    );
    let mut g = tiny_llama(false, &[], "");
    g.u32("llama.expert_count", 8);
    assert!(err(g).contains("mixture-of-experts"));
    let mut g = tiny_llama(false, &[], "blk.0.ffn_down.weight");
    g.f32_tensor("blk.0.ffn_down.weight", &[8, 3], &[0.0; 24]); // transposed
    let e = err(g);
    assert!(
        e.contains("'blk.0.ffn_down.weight' has shape [3, 8] (HF order), expected [8, 3]"),
        "{e}"
    );

    // An existing output is refused without overwrite and replaced with it.
    let src = tiny_llama(false, &[], "").write(tmp.path(), "ok.gguf");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let e = import_gguf(&src, &out, false).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    assert!(out.join("keep.txt").exists());
    import_gguf(&src, &out, true).unwrap();
    assert!(!out.join("keep.txt").exists() && out.join("model.safetensors").exists());
    let leftovers = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".mixprobe-import")
        })
        .count();
    assert_eq!(leftovers, 0);
}

// ---------------------------------------------------------------------------------------------
// The real SmolLM2-135M-Instruct Q4_1 GGUF against the transformers reference fixtures.

const HIDDEN: usize = 576;

/// Import the shared SmolLM2 GGUF into `dir/smollm2` through the library.
fn import_smollm2(shared: &Path, dir: &Path) -> std::path::PathBuf {
    let out = dir.join("smollm2");
    let t0 = std::time::Instant::now();
    import_gguf(
        &shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        &out,
        false,
    )
    .unwrap();
    eprintln!("import-gguf SmolLM2: {:.2} s", t0.elapsed().as_secs_f64());
    out
}

fn fixture(shared: &Path, name: &str) -> std::path::PathBuf {
    shared.join("fixtures/smollm2-135m-instruct").join(name)
}

fn ref_ids(st: &SafeTensors, name: &str) -> Vec<u32> {
    let t = st.tensor(name).unwrap();
    t.data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn smollm2_cli_summary_and_errors() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let gguf = shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = tmp.path().join("model");
    let run = |extra: &[&str]| {
        let mut cmd = common::bin();
        cmd.arg("model")
            .arg("import-gguf")
            .arg(&gguf)
            .arg("--out")
            .arg(&out)
            .args(extra);
        cmd.assert()
    };
    let ok = run(&[]).success();
    let stdout = String::from_utf8_lossy(&ok.get_output().stdout).to_string();
    for want in [
        "architecture   llama",
        "layers         30 (hidden 576, intermediate 1536, heads 9/3 kv, head dim 64)",
        "272 GGUF (F32 61, Q4_1 210, Q8_0 1) → 272 HF f32",
        "parameters     134515008 (134.5M)",
        "49152 tokens, 48900 merges, 17 special",
        &out.display().to_string(),
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let again = run(&[]).code(2);
    assert!(String::from_utf8_lossy(&again.get_output().stderr).contains("already exists"));
    run(&["--force"]).success();
    let report = read_json(&out.join("import_report.json"));
    assert_eq!(
        report["source_sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(report["parameters"], 134_515_008u64);

    let garbage = tmp.path().join("garbage.gguf");
    std::fs::write(&garbage, b"definitely not a model file").unwrap();
    let bad = common::bin()
        .args(["model", "import-gguf"])
        .arg(&garbage)
        .arg("--out")
        .arg(tmp.path().join("x"))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&bad.get_output().stderr).to_string();
    assert!(
        stderr.contains("garbage.gguf") && stderr.contains("not a GGUF file"),
        "{stderr}"
    );
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn smollm2_tokenizer_and_config_match_fixtures() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let out = import_smollm2(&shared, tmp.path());

    // The tokenizer encodes the fixture prompts to exactly their ids, and is the same JSON
    // document transformers built from this GGUF.
    let tok = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let prompts = read_json(&fixture(&shared, "prompts.json"));
    for p in prompts.as_array().unwrap() {
        let want: Vec<u32> = p["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let text = p["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, true).unwrap().get_ids(),
            &want[..],
            "{text}"
        );
        assert_eq!(tok.decode(&want, false).unwrap(), text);
    }
    assert_eq!(
        read_json(&out.join("tokenizer.json")),
        read_json(&fixture(&shared, "tokenizer.json"))
    );

    // config.json agrees with transformers' config wherever both have a key.
    let ours = read_json(&out.join("config.json"));
    let theirs = read_json(&fixture(&shared, "config.json"));
    let mut overlap = Vec::new();
    for (k, v) in ours.as_object().unwrap() {
        if let Some(t) = theirs.get(k) {
            match (v.as_f64(), t.as_f64()) {
                (Some(a), Some(b)) => assert_eq!(a, b, "{k}"),
                _ => assert_eq!(v, t, "{k}"),
            }
            overlap.push(k.as_str());
        }
    }
    for k in [
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "rms_norm_eps",
        "vocab_size",
        "max_position_embeddings",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "model_type",
    ] {
        assert!(overlap.contains(&k), "{k} not compared");
    }
    assert_eq!(ours["rope_theta"], theirs["rope_parameters"]["rope_theta"]);
    assert_eq!(ours["torch_dtype"], theirs["dtype"]);
    let tc = read_json(&out.join("tokenizer_config.json"));
    let fixture_tc = read_json(&fixture(&shared, "tokenizer_config.json"));
    for k in ["bos_token", "eos_token", "pad_token", "unk_token"] {
        assert_eq!(tc[k], fixture_tc[k], "{k}");
    }
    let template = std::fs::read_to_string(fixture(&shared, "chat_template.jinja")).unwrap();
    assert_eq!(
        tc["chat_template"].as_str().unwrap(),
        template.trim_end_matches('\n')
    );
}

/// Block 0 of a LLaMA decoder in plain f64 (HF semantics: RMSNorm, rotate-half RoPE,
/// grouped-query causal attention, SiLU-gated MLP) for a check independent of the model layer.
struct Block0<'a> {
    st: &'a SafeTensors<'a>,
}

impl Block0<'_> {
    fn w(&self, name: &str) -> Vec<f32> {
        tensor_f32(self.st, &format!("model.layers.0.{name}.weight")).1
    }

    fn forward(&self, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
        const EPS: f64 = 9.999999747378752e-06;
        let (n_head, n_kv, hd, theta) = (9usize, 3usize, 64usize, 100000f64);
        let norm = |x: &[f64], w: &[f32]| -> Vec<f64> {
            let r = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + EPS).sqrt();
            x.iter().zip(w).map(|(v, &w)| v * r * w as f64).collect()
        };
        let matvec = |w: &[f32], x: &[f64]| -> Vec<f64> {
            w.chunks_exact(x.len())
                .map(|row| row.iter().zip(x).map(|(&a, b)| a as f64 * b).sum())
                .collect()
        };
        let rope = |v: &mut [f64], pos: usize| {
            for head in v.chunks_exact_mut(hd) {
                for i in 0..hd / 2 {
                    let angle = pos as f64 * theta.powf(-((2 * i) as f64) / hd as f64);
                    let (s, c) = angle.sin_cos();
                    let (a, b) = (head[i], head[i + hd / 2]);
                    head[i] = a * c - b * s;
                    head[i + hd / 2] = b * c + a * s;
                }
            }
        };
        let (wq, wk, wv, wo) = (
            self.w("self_attn.q_proj"),
            self.w("self_attn.k_proj"),
            self.w("self_attn.v_proj"),
            self.w("self_attn.o_proj"),
        );
        let (n1, n2) = (
            self.w("input_layernorm"),
            self.w("post_attention_layernorm"),
        );
        let (wg, wu, wd) = (
            self.w("mlp.gate_proj"),
            self.w("mlp.up_proj"),
            self.w("mlp.down_proj"),
        );
        let mut q = Vec::new();
        let mut k = Vec::new();
        let mut v = Vec::new();
        for (pos, row) in x.iter().enumerate() {
            let h = norm(row, &n1);
            let (mut qi, mut ki) = (matvec(&wq, &h), matvec(&wk, &h));
            rope(&mut qi, pos);
            rope(&mut ki, pos);
            q.push(qi);
            k.push(ki);
            v.push(matvec(&wv, &h));
        }
        let mut out = Vec::new();
        for t in 0..x.len() {
            let mut attn = vec![0f64; n_head * hd];
            for head in 0..n_head {
                let kvh = head / (n_head / n_kv);
                let qh = &q[t][head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (0..=t)
                    .map(|s| {
                        qh.iter()
                            .zip(&k[s][kvh * hd..(kvh + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (s, p) in e.iter().enumerate() {
                    for d in 0..hd {
                        attn[head * hd + d] += p / z * v[s][kvh * hd + d];
                    }
                }
            }
            let r: Vec<f64> = x[t]
                .iter()
                .zip(matvec(&wo, &attn))
                .map(|(a, b)| a + b)
                .collect();
            let h = norm(&r, &n2);
            let (g, u) = (matvec(&wg, &h), matvec(&wu, &h));
            let act: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            out.push(
                r.iter()
                    .zip(matvec(&wd, &act))
                    .map(|(a, b)| a + b)
                    .collect(),
            );
        }
        out
    }
}

#[test]
fn smollm2_weights_match_the_reference() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let out = import_smollm2(&shared, tmp.path());
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.names().len(), 1 + 30 * 9 + 1);
    assert!(
        st.tensor("lm_head.weight").is_err(),
        "tied embeddings: no lm_head"
    );
    assert_eq!(
        tensor_f32(&st, "model.layers.29.self_attn.k_proj.weight").0,
        vec![192, HIDDEN]
    );
    assert_eq!(
        tensor_f32(&st, "model.layers.29.mlp.down_proj.weight").0,
        vec![HIDDEN, 1536]
    );
    let (shape, embed) = tensor_f32(&st, "model.embed_tokens.weight");
    assert_eq!(shape, vec![49152, HIDDEN]);

    let ref_bytes = std::fs::read(fixture(&shared, "reference.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&ref_bytes).unwrap();
    let block0 = Block0 { st: &st };
    for p in 0..3 {
        let ids = ref_ids(&reference, &format!("p{p}.input_ids"));
        // hidden.0 is the embedding lookup: the Q8_0 de-quantization exactly.
        let x: Vec<f32> = ids
            .iter()
            .flat_map(|&id| embed[id as usize * HIDDEN..(id as usize + 1) * HIDDEN].to_vec())
            .collect();
        let want0 = tensor_f32(&reference, &format!("p{p}.hidden.0")).1;
        assert_eq!(max_abs_diff(&x, &want0), 0.0, "p{p} embeddings");
        // hidden.1 is block 0's output: Q4_1 weights, the q/k un-permutation and F32 norms.
        let rows: Vec<Vec<f64>> = x
            .chunks_exact(HIDDEN)
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect();
        let got: Vec<f32> = block0
            .forward(&rows)
            .into_iter()
            .flatten()
            .map(|v| v as f32)
            .collect();
        let want1 = tensor_f32(&reference, &format!("p{p}.hidden.1")).1;
        let diff = max_abs_diff(&got, &want1);
        eprintln!("p{p}: block 0 max |diff| = {diff:e}");
        assert!(
            diff < 1e-4,
            "p{p}: block 0 differs from the reference by {diff}"
        );
    }
}
