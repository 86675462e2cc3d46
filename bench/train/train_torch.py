#!/usr/bin/env python3
"""Side-by-side peer for bench/train/run.sh (mixprobe bench train): PyTorch training throughput on the same model shape.

A ~20M-parameter LlamaForCausalLM (hidden 256, 4 layers, 4 heads, MLP 1024, vocab 32000, untied
head), batches of 8 x 128 random tokens with labels = input_ids, torch.optim.AdamW, clip_grad_norm_
1.0, fp32 (TF32 off, PyTorch's default) on CPU with the given thread count, or on the GPU with
--device cuda (each timed step ends with torch.cuda.synchronize()). One warm-up step, then --steps
timed steps. Prints one JSON line: {"impl", "params", "tokens_per_s", "seconds", "peak_rss_mib", ...}.
"""
import argparse, json, resource, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                    help="fp32 (TF32 off), tf32 (allow_tf32: f32 matrix products on TF32 tensor cores), "
                         "bf16 (torch.autocast bfloat16: mixed precision, f32 weights)")
    args = ap.parse_args()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=32000, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=args.seq,
        tie_word_embeddings=False, attn_implementation=args.attn,
    )
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    model = LlamaForCausalLM(cfg).float().to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    params = sum(p.numel() for p in model.parameters())
    times = []
    for step in range(args.steps + 1):
        ids = torch.randint(0, 32000, (args.batch, args.seq)).to(dev)
        sync()
        t0 = time.perf_counter()
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        el = time.perf_counter() - t0
        print(f"step {step}: loss {loss.item():.4f} {el:.3f}s", flush=True)
        if step > 0:
            times.append(el)
    total = sum(times)
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} ({args.attn} attention)", "precision": args.precision,
        "params": params, "batch": args.batch, "seq": args.seq, "steps": args.steps,
        "device": args.device, "threads": args.threads, "seconds": total,
        "tokens_per_s": args.steps * args.batch * args.seq / total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
