#!/usr/bin/env python3
"""A randomly initialised model with SmolLM2-135M's exact architecture, for GPU checks on a machine
that has no copy of the real weights (the device machine reaches no network and the GGUF is too big
to carry). torch.manual_seed(0) then LlamaForCausalLM(config) in fp32, saved as a Hugging Face
directory (config.json, model.safetensors, tokenizer.json).

With --reference, also runs transformers in fp32 (TF32 off) on --device over the first --limit
prompts (one by one, no special tokens) and writes every hidden state and the final norm of each
prompt to a safetensors file: p{n}.hidden.{i} ([1, T, d], i = 0..L-1 before the final norm),
p{n}.final_norm, p{n}.ids (int64).
"""
import argparse, json, os, shutil


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config-dir", required=True, help="directory with SmolLM2's config.json and tokenizer.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", help="JSONL with a question/instruction/text field")
    ap.add_argument("--limit", type=int, default=3)
    ap.add_argument("--reference", help="write transformers' hidden states here")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tf32", action="store_true",
                    help="also run with TF32 matrix products and print how far they are from fp32 "
                         "(the envelope a TF32 implementation lands in)")
    args = ap.parse_args()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from tokenizers import Tokenizer
    from safetensors.torch import save_file

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = LlamaConfig.from_pretrained(args.config_dir)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).float().eval()
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    shutil.copy(os.path.join(args.config_dir, "tokenizer.json"), args.out)
    print(f"saved {sum(p.numel() for p in model.parameters())} parameters to {args.out}")
    if not args.reference:
        return
    tok = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))
    texts = []
    for line in open(args.prompts):
        if line.strip():
            r = json.loads(line)
            texts.append(next(r[k] for k in ("question", "instruction", "text") if k in r))
        if len(texts) == args.limit:
            break
    model = model.to(args.device)
    out = {}
    with torch.inference_mode():
        for n, t in enumerate(texts):
            ids = tok.encode(t, add_special_tokens=False).ids
            o = model.model(input_ids=torch.tensor([ids], device=args.device), output_hidden_states=True)
            hs = o.hidden_states  # L + 1 states, the last one final-normed
            for i, h in enumerate(hs[:-1]):
                out[f"p{n}.hidden.{i}"] = h.float().cpu().contiguous()
            out[f"p{n}.final_norm"] = hs[-1].float().cpu().contiguous()
            out[f"p{n}.ids"] = torch.tensor(ids, dtype=torch.int64)
    save_file(out, args.reference)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        with torch.inference_mode():
            for n, t in enumerate(texts):
                ids = out[f"p{n}.ids"].tolist()
                o = model.model(input_ids=torch.tensor([ids], device=args.device), output_hidden_states=True)
                hs = o.hidden_states
                d = [float((h.float().cpu() - out[f"p{n}.hidden.{i}"]).abs().max()) for i, h in enumerate(hs[:-1])]
                dn = float((hs[-1].float().cpu() - out[f"p{n}.final_norm"]).abs().max())
                print(json.dumps({"prompt": n, "tf32_vs_fp32_max_abs_diff": max(d + [dn]),
                                  "worst": f"hidden.{d.index(max(d))}" if max(d) >= dn else "final_norm",
                                  "final_norm_diff": dn}))
        torch.backends.cuda.matmul.allow_tf32 = False
    print(f"reference for {len(texts)} prompts on {args.device} -> {args.reference}")


if __name__ == "__main__":
    main()
