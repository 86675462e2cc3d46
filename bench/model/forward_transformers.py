#!/usr/bin/env python3
"""Side-by-side peer for `mixprobe bench forward`: transformers forward with all hidden states.

Runs the same prompts (GSM8K questions, tokenized with the model's tokenizer.json, no special
tokens) one at a time with output_hidden_states=True on CPU with the given thread count and prints
one JSON line: {"impl": "transformers", "tokens": N, "seconds": S, "tokens_per_s": R}.
"""
import argparse, json, time

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="Hugging Face model directory")
    ap.add_argument("--prompts", required=True, help="GSM8K-format JSONL; the questions are used")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM
    from tokenizers import Tokenizer
    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(f"{args.model}/tokenizer.json")
    qs = [json.loads(l)["question"] for l in open(args.prompts) if l.strip()][: args.n]
    ids = [tok.encode(q, add_special_tokens=False).ids for q in qs]
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    model.eval()
    with torch.inference_mode():
        model(torch.tensor([ids[0]]), output_hidden_states=True)  # warm-up
        t0 = time.perf_counter()
        for x in ids:
            out = model(torch.tensor([x]), output_hidden_states=True)
            _ = out.hidden_states[-1].sum().item()
        dt = time.perf_counter() - t0
    n = sum(len(x) for x in ids)
    print(json.dumps({"impl": "transformers", "torch": torch.__version__, "tokens": n, "seconds": dt, "tokens_per_s": n / dt}))

if __name__ == "__main__":
    main()
