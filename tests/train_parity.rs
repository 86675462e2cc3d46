//! Optimizer parity with PyTorch: three AdamW steps on the tiny-llama fixture reproduce
//! torch's losses, pre-clip gradient norms and final weights (fixtures/tiny-llama/
//! train_reference.safetensors, computed with torch.optim.AdamW and clip_grad_norm_).
mod common;

use mixprobe::model::{CpuAutodiff, Llama, load_hf_dir};
use mixprobe::train::batch::{MicroBatch, Sample};
use mixprobe::train::optim::{AdamW, AdamWConfig, clip_scale, global_grad_norm};
use mixprobe::train::step::accumulate;
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use std::collections::BTreeMap;

struct Reference {
    ids: Vec<i64>,
    mask: Vec<u8>,
    loss: Vec<f32>,
    grad_norm: Vec<f32>,
    finals: BTreeMap<String, Vec<f32>>,
}

fn read_reference(path: &std::path::Path) -> Reference {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| {
        let v = st.tensor(name).unwrap();
        assert_eq!(v.dtype(), Dtype::F32, "{name}");
        v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect::<Vec<f32>>()
    };
    let ids_view = st.tensor("input_ids").unwrap();
    assert_eq!(ids_view.shape(), &[3, 2, 12]);
    let ids = ids_view
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mask = st.tensor("target_mask").unwrap().data().to_vec();
    let finals = st
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("final.").map(|s| (s.to_string(), f32s(n))))
        .collect();
    Reference {
        ids,
        mask,
        loss: f32s("loss"),
        grad_norm: f32s("grad_norm_before_clip"),
        finals,
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn three_adamw_steps_match_pytorch() {
    let shared = require_shared!();
    let dir = shared.join("fixtures/tiny-llama");
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("train_reference.json")).unwrap())
            .unwrap();
    let r = read_reference(&dir.join("train_reference.safetensors"));
    let betas = params["betas"].as_array().unwrap();
    let config = AdamWConfig {
        beta1: betas[0].as_f64().unwrap(),
        beta2: betas[1].as_f64().unwrap(),
        eps: params["eps"].as_f64().unwrap(),
        weight_decay: params["weight_decay"].as_f64().unwrap(),
    };
    let clip = params["clip_norm"].as_f64().unwrap();
    let lrs: Vec<f64> = params["lrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();

    let mut model: Llama<CpuAutodiff> = load_hf_dir(&dir, &Default::default()).unwrap().model;
    let mut opt = AdamW::new(config);
    for (s, &lr) in lrs.iter().enumerate() {
        let samples: Vec<Sample> = (0..2)
            .map(|row| {
                let at = (s * 2 + row) * 12;
                Sample {
                    ids: r.ids[at..at + 12].iter().map(|&x| x as u32).collect(),
                    mask: r.mask[at..at + 12].iter().map(|&m| m != 0).collect(),
                    group: 0,
                }
            })
            .collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        let mb = MicroBatch::new(&refs, 0).unwrap();
        let (grads, stats) = accumulate(&model, &[mb], 1).unwrap();
        let norm = global_grad_norm(&model, &grads);
        eprintln!(
            "step {s}: loss {:.7} (torch {:.7}), grad norm {:.7} (torch {:.7})",
            stats.loss, r.loss[s], norm, r.grad_norm[s]
        );
        assert!(
            (stats.loss - r.loss[s] as f64).abs() < 1e-4,
            "step {s} loss"
        );
        assert!(
            (norm - r.grad_norm[s] as f64).abs() < 1e-4,
            "step {s} grad norm"
        );
        model = opt.step(model, grads, lr, clip_scale(norm, clip));
    }
    let mut worst = (String::new(), 0f32);
    for (name, p) in model.named_params() {
        let expect = r
            .finals
            .get(&name)
            .unwrap_or_else(|| panic!("reference lacks final.{name}"));
        let d = max_abs_diff(&p.to_host().data, expect);
        if d > worst.1 {
            worst = (name.clone(), d);
        }
        assert!(d < 1e-4, "{name}: max |Δ| {d}");
    }
    assert_eq!(
        model.named_params().len(),
        r.finals.len(),
        "every parameter is compared"
    );
    eprintln!("final weights: worst max |Δ| {:.2e} ({})", worst.1, worst.0);
}

#[test]
fn optimizer_state_round_trips_through_the_host_exactly() {
    let shared = require_shared!();
    let dir = shared.join("fixtures/tiny-llama");
    let r = read_reference(&dir.join("train_reference.safetensors"));
    let config = AdamWConfig {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let sample = |s: usize| Sample {
        ids: r.ids[s * 24..s * 24 + 12]
            .iter()
            .map(|&x| x as u32)
            .collect(),
        mask: vec![true; 12],
        group: 0,
    };
    let run_step = |model: Llama<CpuAutodiff>, opt: &mut AdamW<_>, s: usize| {
        let smp = sample(s);
        let (grads, _) = accumulate(&model, &[MicroBatch::new(&[&smp], 0).unwrap()], 1).unwrap();
        opt.step(model, grads, 1e-2, 1.0)
    };
    let base: Llama<CpuAutodiff> = load_hf_dir(&dir, &Default::default()).unwrap().model;
    // Uninterrupted: three steps.
    let mut opt = AdamW::new(config);
    let mut a = base.clone();
    for s in 0..3 {
        a = run_step(a, &mut opt, s);
    }
    // Interrupted after one step: state through the host, weights through a checkpoint dir.
    let mut opt = AdamW::new(config);
    let b = run_step(base, &mut opt, 0);
    let state = opt.to_host(&b);
    assert_eq!(state.step, 1);
    assert_eq!(state.moments.len(), b.named_params().len());
    let tmp = tempfile::tempdir().unwrap();
    mixprobe::model::save_hf_dir(&b, tmp.path(), None).unwrap();
    let mut b: Llama<CpuAutodiff> = load_hf_dir(tmp.path(), &Default::default()).unwrap().model;
    let mut opt = AdamW::from_host(config, &state, &b).unwrap();
    for s in 1..3 {
        b = run_step(b, &mut opt, s);
    }
    for ((name, x), (_, y)) in a.named_params().into_iter().zip(b.named_params()) {
        assert_eq!(
            x.to_host().data,
            y.to_host().data,
            "{name} differs after resuming"
        );
    }
}
