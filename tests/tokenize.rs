//! Tokenization against the SmolLM2 fixture (ids must match the reference exactly), loss-mask
//! spans checked by decoding the masked ids back to text, truncation counts, and BPE training.
mod common;

use mixprobe::data::bpe::{to_json, train_bpe};
use mixprobe::data::read::{Format, ReadOptions, read_file};
use mixprobe::data::template::ChatTemplate;
use mixprobe::data::tokenize::{ChatTokenizer, TokenizeStats, Tokenized};
use mixprobe::data::{Ability, Example, Meta, Role, Turn};
use std::path::{Path, PathBuf};

fn smollm(shared: &Path, template: ChatTemplate) -> ChatTokenizer {
    let p = shared.join("fixtures/smollm2-135m-instruct/tokenizer.json");
    ChatTokenizer::from_file(&p, template).unwrap()
}

fn example(id: &str, turns: Vec<Turn>) -> Example {
    Example {
        id: id.into(),
        ability: Ability::General,
        turns,
        meta: Meta::default(),
    }
}

/// The contiguous runs of masked ids.
fn masked_runs(t: &Tokenized) -> Vec<Vec<u32>> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut prev = false;
    for (&id, &m) in t.input_ids.iter().zip(&t.loss_mask) {
        if m {
            if !prev {
                runs.push(Vec::new());
            }
            runs.last_mut().unwrap().push(id);
        }
        prev = m;
    }
    runs
}

/// What the mask must cover, per assistant turn, independently of the template code: the
/// assistant's text and the end-of-turn marker (vicuna: after the space that follows `ASSISTANT:`).
fn expected_assistant_spans(template: ChatTemplate, turns: &[Turn]) -> Vec<String> {
    turns
        .iter()
        .filter(|t| t.role == Role::Assistant)
        .map(|t| match template {
            ChatTemplate::VicunaV11 => format!(" {}</s>", t.content),
            ChatTemplate::ChatMl => format!("{}<|im_end|>", t.content),
            ChatTemplate::Plain => format!("{}</s>", t.content),
        })
        .collect()
}

fn check_mask(tok: &ChatTokenizer, ex: &Example) {
    let t = tok.encode_example(ex).unwrap();
    assert_eq!(t.input_ids.len(), t.loss_mask.len());
    let decoded: Vec<String> = masked_runs(&t)
        .iter()
        .map(|r| tok.decode(r, false).unwrap())
        .collect();
    assert_eq!(
        decoded,
        expected_assistant_spans(tok.template(), &ex.turns),
        "{}",
        ex.id
    );
    // The whole sequence decodes back to the rendered text.
    assert_eq!(
        tok.decode(&t.input_ids, false).unwrap(),
        tok.template().render_text(&ex.turns)
    );
}

fn multi_turn() -> Example {
    example(
        "multi",
        vec![
            Turn::user("What is 2+2?"),
            Turn::assistant("2+2 = 4."),
            Turn::user("And times 3?"),
            Turn::assistant("4 * 3 = 12.\nSo the answer is 12."),
            Turn::user("Thanks!"),
            Turn::assistant("You're welcome."),
        ],
    )
}

#[test]
fn smollm2_fixture_ids_match_exactly() {
    let shared = require_shared!();
    let tok = smollm(&shared, ChatTemplate::ChatMl);
    assert_eq!(tok.bos(), None, "the SmolLM2 fixture prompts have no BOS");
    let text = std::fs::read_to_string(shared.join("fixtures/smollm2-135m-instruct/prompts.json"))
        .unwrap();
    let prompts: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(prompts.len(), 3);
    for p in &prompts {
        let text = p["text"].as_str().unwrap();
        let want: Vec<u32> = p["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode_text(text).unwrap(), want, "{text}");
        // In a ChatML generation prompt the user's text keeps exactly these ids, between
        // `<|im_start|>user\n` and `<|im_end|>`.
        let prompt = tok.encode_prompt(&[Turn::user(text)]).unwrap();
        let mut inner = tok.encode_text("<|im_start|>user\n").unwrap();
        inner.extend(&want);
        inner.push(2);
        assert!(
            prompt.windows(inner.len()).any(|w| w == inner.as_slice()),
            "{text}"
        );
        assert_eq!(
            prompt,
            tok.encode_text(&ChatTemplate::ChatMl.render_prompt(&[Turn::user(text)]))
                .unwrap()
        );
        assert!(prompt.ends_with(&tok.encode_text("<|im_start|>assistant\n").unwrap()));
    }
    assert_eq!(tok.encode_text("<|im_start|><|im_end|>").unwrap(), [1, 2]);
    assert_eq!(tok.end_of_turn_id(), Some(2));
}

#[test]
fn chatml_mask_covers_exactly_the_assistant_spans() {
    let shared = require_shared!();
    let tok = smollm(&shared, ChatTemplate::ChatMl);
    let single = example(
        "single",
        vec![
            Turn::user("What is 2+2?"),
            Turn::assistant("2+2 = 4.\n#### 4"),
        ],
    );
    check_mask(&tok, &single);
    check_mask(&tok, &multi_turn());
    let t = tok.encode_example(&multi_turn()).unwrap();
    // Every masked run ends with the <|im_end|> token, and the token after it is not masked.
    for r in masked_runs(&t) {
        assert_eq!(r.last(), Some(&2));
    }
    assert_eq!(
        t.loss_mask.iter().filter(|&&m| m).count(),
        t.assistant_tokens()
    );
    // Segment-by-segment encoding equals encoding the whole text here (ChatML's boundaries are
    // special tokens), so training sees the same ids as a plain encode of the rendered text.
    let whole = tok
        .encode_text(&ChatTemplate::ChatMl.render_text(&multi_turn().turns))
        .unwrap();
    assert_eq!(t.input_ids, whole);
    // A system turn replaces the default system prompt and is not trained on.
    let with_system = example(
        "sys",
        vec![
            Turn::system("Be terse."),
            Turn::user("Hi"),
            Turn::assistant("Hello."),
        ],
    );
    check_mask(&tok, &with_system);
}

#[test]
fn vicuna_mask_covers_exactly_the_assistant_spans() {
    let shared = require_shared!();
    let tok = smollm(&shared, ChatTemplate::VicunaV11);
    // SmolLM2 has no `</s>` token: the marker is ordinary text, masked with the answer.
    assert_eq!(tok.end_of_turn_id(), None);
    let single = example(
        "single",
        vec![Turn::user("Name a prime."), Turn::assistant("7 is prime.")],
    );
    check_mask(&tok, &single);
    check_mask(&tok, &multi_turn());
    // The tokens just before each masked run decode to `ASSISTANT:`.
    let t = tok.encode_example(&multi_turn()).unwrap();
    let starts: Vec<usize> = (0..t.loss_mask.len())
        .filter(|&i| t.loss_mask[i] && (i == 0 || !t.loss_mask[i - 1]))
        .collect();
    assert_eq!(starts.len(), 3);
    for s in starts {
        let before = tok.decode(&t.input_ids[..s], false).unwrap();
        assert!(before.ends_with(" ASSISTANT:"), "{before:?}");
    }
    let plain = smollm(&shared, ChatTemplate::Plain);
    check_mask(&plain, &multi_turn());
}

#[test]
fn mask_on_real_sharegpt_conversations() {
    let shared = require_shared!();
    let l = read_file(
        &shared.join("data/sharegpt/smoke_256.jsonl"),
        Some(Format::ShareGpt),
        &ReadOptions::default(),
    )
    .unwrap();
    let multi = l
        .examples
        .iter()
        .filter(|e| e.assistant_turns() >= 3)
        .take(10);
    for template in [ChatTemplate::ChatMl, ChatTemplate::VicunaV11] {
        let tok = smollm(&shared, template);
        for ex in multi.clone() {
            check_mask(&tok, ex);
        }
        // The batched (parallel) path gives exactly the per-example result.
        let some = &l.examples[..40];
        let many = tok.encode_many(some).unwrap();
        assert_eq!(many.len(), some.len());
        for (ex, t) in some.iter().zip(&many) {
            assert_eq!(t, &tok.encode_example(ex).unwrap(), "{}", ex.id);
        }
    }
}

#[test]
fn truncation_keeps_the_head_and_is_counted() {
    let shared = require_shared!();
    let tok = smollm(&shared, ChatTemplate::ChatMl);
    let long_answer = "word ".repeat(200);
    let long_question = "question ".repeat(200);
    let examples = vec![
        example("fits", vec![Turn::user("Hi"), Turn::assistant("Hello.")]),
        example(
            "cut",
            vec![Turn::user("Hi"), Turn::assistant(long_answer.trim())],
        ),
        example(
            "lost",
            vec![Turn::user(long_question.trim()), Turn::assistant("Yes.")],
        ),
        example("no-assistant", vec![Turn::user("Only a question")]),
    ];
    let max_len = 64;
    let (out, stats) = tok.encode_examples(&examples, max_len).unwrap();
    assert_eq!(
        stats,
        TokenizeStats {
            examples: 4,
            kept: 2,
            truncated: 1,
            dropped_truncated: 1,
            dropped_no_assistant: 1,
            tokens: out.iter().map(|t| t.input_ids.len()).sum(),
            assistant_tokens: out.iter().map(|t| t.assistant_tokens()).sum(),
        }
    );
    let ids: Vec<&str> = out.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["fits", "cut"]);
    let full = tok.encode_example(&examples[1]).unwrap();
    assert!(full.input_ids.len() > max_len);
    assert_eq!(out[1].input_ids, full.input_ids[..max_len]);
    assert_eq!(out[1].loss_mask, full.loss_mask[..max_len]);
    assert_eq!(out[0], tok.encode_example(&examples[0]).unwrap());
    assert!(tok.encode_examples(&examples, 0).is_err());
}

fn gsm8k_texts(shared: &Path, template: ChatTemplate) -> Vec<String> {
    let l = read_file(
        &shared.join("data/gsm8k/smoke_train_256.jsonl"),
        None,
        &ReadOptions::default(),
    )
    .unwrap();
    l.examples
        .iter()
        .map(|e| template.render_text(&e.turns))
        .collect()
}

#[test]
fn bpe_training_is_deterministic_and_round_trips() {
    let shared = require_shared!();
    let t = ChatTemplate::VicunaV11;
    let texts = gsm8k_texts(&shared, t);
    let a = train_bpe(texts.clone().into_iter(), 1000, t.special_tokens()).unwrap();
    let b = train_bpe(texts.clone().into_iter(), 1000, t.special_tokens()).unwrap();
    assert_eq!(to_json(&a).unwrap(), to_json(&b).unwrap());
    assert_eq!(a.get_vocab_size(true), 1000);
    for (i, s) in t.special_tokens().iter().enumerate() {
        assert_eq!(a.token_to_id(s), Some(i as u32), "{s}");
    }
    // No learned token holds a piece of the special text.
    let vocab = a.get_vocab(false);
    assert!(
        vocab.keys().all(|k| k == "</s>" || !k.contains("</s")),
        "a merge learned `</s`"
    );

    let tok = ChatTokenizer::new(a, t).unwrap();
    assert_eq!(tok.bos(), None);
    assert_eq!(tok.end_of_turn_id(), Some(1));
    for text in texts.iter().take(20).map(String::as_str).chain([
        "Unseen: café — 数学 🙂 \t tabs\n\nand  double  spaces ",
        "def f(x):\n    return x ** 2  # code",
    ]) {
        let ids = tok.encode_text(text).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    // With a `</s>` token, every masked run ends with it.
    let ex = example("m", multi_turn().turns);
    check_mask(&tok, &ex);
    let enc = tok.encode_example(&ex).unwrap();
    assert!(masked_runs(&enc).iter().all(|r| r.last() == Some(&1)));
    // Different data gives a different tokenizer (the test above can fail).
    let other = train_bpe(texts.into_iter().take(50), 1000, t.special_tokens()).unwrap();
    assert_ne!(to_json(&other).unwrap(), to_json(&b).unwrap());
}

#[test]
fn tokenizer_train_cli_is_deterministic_across_processes() {
    let shared = require_shared!();
    let dir = tempfile::tempdir().unwrap();
    let data = shared.join("data/gsm8k/smoke_train_256.jsonl");
    let run = |name: &str, template: &str| -> PathBuf {
        let out = dir.path().join(name);
        common::bin()
            .args(["tokenizer", "train"])
            .arg(&data)
            .args(["--vocab-size", "600", "--template", template, "--out"])
            .arg(&out)
            .assert()
            .success();
        out
    };
    let a = run("a.json", "chatml");
    let b = run("b.json", "chatml");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let tok = ChatTokenizer::from_file(&a, ChatTemplate::ChatMl).unwrap();
    assert_eq!(tok.vocab_size(), 600);
    assert_eq!(tok.encode_text("<|im_start|><|im_end|>").unwrap(), [1, 2]);
    let ex = example(
        "x",
        vec![
            Turn::user("How many?"),
            Turn::assistant("12 apples.\n#### 12"),
        ],
    );
    check_mask(&tok, &ex);
}
