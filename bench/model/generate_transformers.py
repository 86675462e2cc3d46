#!/usr/bin/env python3
"""Side-by-side peer for `mixprobe bench generate`: transformers greedy generation.

Same prompts as forward_transformers.py; each call generates exactly --max-new-tokens new tokens
per prompt (min_new_tokens = max_new_tokens, so no stop token ends it early, as in
`mixprobe bench generate`), greedy, with the KV cache. --batch N left-pads batches of N prompts
sorted by length (transformers' way to batch generation). Prints one JSON line.
"""
import argparse, json, resource, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(f"{args.model}/tokenizer.json")
    qs = [json.loads(l)["question"] for l in open(args.prompts) if l.strip()][: args.limit]
    ids = [tok.encode(q, add_special_tokens=False).ids for q in qs]
    if args.batch == 1:
        calls = [[x] for x in ids]
    else:
        ids.sort(key=len)
        calls = [ids[i : i + args.batch] for i in range(0, len(ids), args.batch)]
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    model.eval()

    def run(seqs, n):
        t = max(len(s) for s in seqs)
        inp = torch.tensor([[0] * (t - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (t - len(s)) + [1] * len(s) for s in seqs])
        out = model.generate(input_ids=inp, attention_mask=mask, max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, pad_token_id=0)
        return out.shape[0] * (out.shape[1] - t)

    with torch.inference_mode():
        run(calls[0], 2)  # warm-up
        t0 = time.perf_counter()
        new = sum(run(seqs, args.max_new_tokens) for seqs in calls)
        dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "transformers", "bench": "generate", "batch": args.batch,
                      "torch": torch.__version__, "new_tokens": new, "seconds": dt,
                      "new_tokens_per_s": new / dt, "threads": args.threads,
                      "peak_rss_mib": rss}))


if __name__ == "__main__":
    main()
