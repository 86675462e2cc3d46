use mixprobe::model::*;
use std::time::Instant;
#[test]
fn bench() {
    let m = load_hf_dir::<CpuBackend>(std::path::Path::new("/tmp/smol"), &Default::default()).unwrap().model;
    let seq: Vec<u32> = (0..100).map(|i| (i * 37 % 40000) as u32 + 10).collect();
    let mode = std::env::var("BENCH").unwrap_or_default();
    if mode.contains("fwd") {
        for (label, opts) in [
            ("hidden all, no logits", ForwardOptions { hidden: HiddenSelect::All, ..Default::default() }),
            ("everything", ForwardOptions::everything()),
        ] {
            let batch = TokenBatch::new(&[seq.clone()], 0).unwrap();
            let _ = m.forward(&batch, &opts).unwrap();
            let t = Instant::now();
            let reps = 5;
            for _ in 0..reps { let o = m.forward(&batch, &opts).unwrap(); for (_, h) in o.hidden { let _ = HostTensor::from_tensor(h); } if let Some(l) = o.logits { let _ = HostTensor::from_tensor(l); } }
            let el = t.elapsed().as_secs_f64();
            eprintln!("{label} bs 1: {:.0} tok/s", (reps * 100) as f64 / el);
        }
    }
    if mode.contains("gen") {
        for bs in [1usize, 8] {
            let prompts = vec![seq[..40].to_vec(); bs];
            let t = Instant::now();
            let out = generate(&m, &prompts, &GenerateConfig { max_new_tokens: 16, ..Default::default() }).unwrap();
            let el = t.elapsed().as_secs_f64();
            let n: usize = out.iter().map(|o| o.len()).sum();
            eprintln!("generate bs {bs}: {n} tokens in {el:.2}s = {:.1} tok/s", n as f64 / el);
        }
    }
}
