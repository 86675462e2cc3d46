#!/usr/bin/env python3
"""Peer of `mixprobe probe`: pooled hidden states of the same prompts with transformers.

Reads the examples of a probe directory written by `mixprobe probe` (OUT/index.json: the exact
texts encoded), tokenizes them with the model's tokenizer.json (no special tokens, cut to
--max-tokens, as mixprobe does for SmolLM2), runs them with output_hidden_states=True on the CPU
with --threads threads, in length-sorted batches of --batch-size (right padding + attention
mask), mean-pools every layer over the real tokens, and prints one JSON line:
{"impl": "transformers", "batch_size": B, "tokens": N, "seconds": S, "tokens_per_s": R}.
Timing covers the forward passes and pooling only (model loading and tokenization excluded),
after one warm-up batch. --check FILE compares the pooled vectors with mixprobe's safetensors.
--decoder-only runs the decoder stack alone (`model.model`, as AutoModel would), skipping the
language-model head's logits that `model(...)` computes at every position: the faster of the two
ways a user would write it. --blocks N keeps only the first N decoder blocks (implies
--decoder-only): the hand-optimised peer of a one-layer probe, which needs nothing past block N
(hidden_states[N] of the truncated model is then after the final norm, so it is not compared).
"""
import argparse, json, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="Hugging Face model directory")
    ap.add_argument("--probe-dir", required=True, help="output directory of `mixprobe probe`")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--check", help="mixprobe safetensors file to compare the pooled vectors with")
    ap.add_argument("--decoder-only", action="store_true",
                    help="run model.model (no logits) instead of the causal-LM model")
    ap.add_argument("--blocks", type=int,
                    help="keep only the first N decoder blocks (implies --decoder-only)")
    ap.add_argument("--matmul-precision", choices=["highest", "high", "medium"], default="highest",
                    help="torch.set_float32_matmul_precision: on this CPU, \"medium\" lets oneDNN run "
                         "f32 matrix products as one bf16 pass on AMX; \"high\" and \"highest\" stay f32")
    args = ap.parse_args()
    if args.blocks is not None:
        args.decoder_only = True
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    index = json.load(open(f"{args.probe_dir}/index.json"))
    texts = [e["text"] for e in index["examples"]]
    tok = Tokenizer.from_file(f"{args.model}/tokenizer.json")
    ids = [tok.encode(t, add_special_tokens=False).ids[: args.max_tokens] for t in texts]
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    if args.blocks is not None:
        model.model.layers = model.model.layers[: args.blocks]
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    pooled = [None] * len(ids)

    def run(batch):
        t = max(len(ids[i]) for i in batch)
        x = torch.zeros((len(batch), t), dtype=torch.long)
        mask = torch.zeros((len(batch), t), dtype=torch.long)
        for r, i in enumerate(batch):
            x[r, : len(ids[i])] = torch.tensor(ids[i])
            mask[r, : len(ids[i])] = 1
        net = model.model if args.decoder_only else model
        out = net(input_ids=x, attention_mask=mask, output_hidden_states=True)
        w = (mask / mask.sum(1, keepdim=True)).unsqueeze(-1).float()
        # hidden_states[-1] is after the final norm in transformers; mixprobe stores the
        # pre-norm residual stream for the last layer, so the last one is not comparable.
        layers = torch.stack([(h * w).sum(1) for h in out.hidden_states], 1)
        for r, i in enumerate(batch):
            pooled[i] = layers[r]

    with torch.inference_mode():
        run(batches[-1])  # warm-up (the shortest batch)
        t0 = time.perf_counter()
        for b in batches:
            run(b)
        dt = time.perf_counter() - t0
    n = sum(len(x) for x in ids)
    res = {"impl": "transformers", "torch": torch.__version__, "threads": args.threads,
           "decoder_only": args.decoder_only, "blocks": args.blocks,
           "matmul_precision": args.matmul_precision,
           "batch_size": args.batch_size, "tokens": n, "seconds": dt, "tokens_per_s": n / dt}
    if args.check:
        from safetensors.numpy import load_file
        ours = load_file(args.check)
        worst = None
        n_layers = len(pooled[0]) - 1
        for name, m in ours.items():
            layer = int(name.split(".")[1])
            if layer >= n_layers:
                continue
            ref = torch.stack([p[layer] for p in pooled]).numpy()
            worst = max(worst or 0.0, float(abs(ref - m).max()))
        res["max_abs_diff_vs_mixprobe"] = worst
    print(json.dumps(res))


if __name__ == "__main__":
    main()
