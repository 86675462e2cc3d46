#!/usr/bin/env python3
"""Side-by-side peer for `mixprobe bench forward`: transformers forward with all hidden states.

Runs the same prompts (the first N "question" fields of a GSM8K-format JSONL, tokenized with the
model's tokenizer.json, no special tokens, no chat template) through the decoder stack
(`model.model`, which returns every hidden state, the last one final-normed, and computes no
logits, like `mixprobe bench forward`), on CPU with the given thread count, or on the GPU with
--device cuda (fp32, TF32 off: PyTorch's default). --batch 1 runs them
one by one; --batch N sorts them by length and runs right-padded batches of N with an attention
mask (padding not counted). Prints one JSON line.
"""
import argparse, json, resource, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="Hugging Face model directory")
    ap.add_argument("--prompts", required=True, help="GSM8K-format JSONL; the questions are used")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
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

    def tensors(seqs):
        t = max(len(s) for s in seqs)
        inp = torch.tensor([s + [0] * (t - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (t - len(s)) for s in seqs])
        return inp.to(args.device), mask.to(args.device)

    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).to(args.device)
    model.eval()
    with torch.inference_mode():
        inp, mask = tensors(calls[0])
        model.model(input_ids=inp, attention_mask=mask, output_hidden_states=True)  # warm-up
        t0 = time.perf_counter()
        for seqs in calls:
            inp, mask = tensors(seqs)
            out = model.model(input_ids=inp, attention_mask=mask, output_hidden_states=True)
            _ = out.hidden_states[-1][0, 0, 0].item()
        dt = time.perf_counter() - t0
    n = sum(len(x) for x in ids)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "transformers", "bench": "forward", "batch": args.batch,
                      "torch": torch.__version__, "device": args.device, "tokens": n, "seconds": dt,
                      "tokens_per_s": n / dt, "threads": args.threads, "peak_rss_mib": rss}))


if __name__ == "__main__":
    main()
