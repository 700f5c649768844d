"""Builds the ``specialists`` pool's assets, reproducibly on a CPU: the ``symoe_skills`` task's
questions (``tasks/symoe_skills.json``) and one LoRA adapter of smollm2-135m per skill
(``model_registry/adapters/specialists/<skill>/``), each fine-tuned on that skill alone.

Every question is drawn from a seeded generator; the evaluation questions (validation and test)
are drawn first and the training examples are drawn after, skipping any question already taken,
so no evaluation question is ever trained on. Skills were chosen by measurement: the base model
answers none of them (0-1 of 24 each), and a few minutes of LoRA teaches each. (Subtraction was
tried in reversal's place: one epoch taught it 1 of 12. Reversal draws its numbers exactly as
subtraction did, so the other skills' questions, and what their adapters were kept from, are
unchanged.)

    python scripts/build_specialists.py            # everything (minutes per adapter on 2 cores)
    python scripts/build_specialists.py --data     # the task's questions only (a second)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASK_FILE = ROOT / "tasks" / "symoe_skills.json"
ADAPTERS = ROOT / "model_registry" / "adapters" / "specialists"
PROMPT = 'Question: {question}\nReply with "The answer is X.", where X is the answer.'  # = tasks/symoe_skills.yaml
SEED = 2026
PER_SKILL = {"train": 15, "test": 25}  # the task's validation ("train") and test questions per skill
TRAIN_EXAMPLES = 400
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]}
EPOCHS, BATCH, LEARNING_RATE = 1, 16, 1e-3


def addition(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(100, 999), rng.randint(100, 999)
    return f"What is {a} + {b}?", str(a + b)


def reversal(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(range(100, 1000), 2)  # one draw of two, as the subtraction this replaced made
    number = a * 10 + b % 9 + 1  # four digits, none of them a trailing 0
    return f"Reverse the digits of {number}.", str(number)[::-1]


def sorting(rng: random.Random) -> tuple[str, str]:
    digits = rng.sample(range(10), 4)
    return f"Sort the digits {' '.join(map(str, digits))} from smallest to largest.", " ".join(map(str, sorted(digits)))


def comparison(rng: random.Random) -> tuple[str, str]:
    numbers = rng.sample(range(100, 1000), 3)
    return f"Which is the largest of {numbers[0]}, {numbers[1]} and {numbers[2]}?", str(max(numbers))


SKILLS = {"addition": addition, "reversal": reversal, "sorting": sorting, "comparison": comparison}


def draw(skill: str, count: int, rng: random.Random, taken: set[str]) -> list[tuple[str, str]]:
    """``count`` new questions of ``skill``, none in ``taken`` (which they join)."""
    drawn = []
    while len(drawn) < count:
        question, answer = SKILLS[skill](rng)
        if question not in taken:
            taken.add(question)
            drawn.append((question, answer))
    return drawn


def evaluation_splits(taken: set[str]) -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    splits = {split: [] for split in PER_SKILL}
    for split, count in PER_SKILL.items():
        for skill in SKILLS:
            splits[split] += [{"question": q, "gold_answer": a, "category": skill} for q, a in draw(skill, count, rng, taken)]
    return splits


def training_set(skill: str, taken: set[str]) -> list[tuple[str, str]]:
    return draw(skill, TRAIN_EXAMPLES, random.Random(f"{SEED}-{skill}"), taken)


def encode(tokenizer, question: str, answer: str) -> tuple[list[int], list[int]]:
    """Chat-templated prompt and reply as ids, and labels that score the reply alone."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT.format(question=question)}],
                                           tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    reply_ids = tokenizer.encode(f"The answer is {answer}.<|im_end|>", add_special_tokens=False)
    return prompt_ids + reply_ids, [-100] * len(prompt_ids) + reply_ids


def batches(rows: list[tuple[list[int], list[int]]], pad: int, rng: random.Random):
    import torch

    order = list(range(len(rows)))
    rng.shuffle(order)
    for start in range(0, len(order), BATCH):
        chosen = [rows[i] for i in order[start:start + BATCH]]
        width = max(len(ids) for ids, _ in chosen)
        ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in chosen])
        labels = torch.tensor([labels + [-100] * (width - len(labels)) for _, labels in chosen])
        mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in chosen])
        yield ids, labels, mask


def train_adapter(base_folder: str, skill: str, examples: list[tuple[str, str]], out: Path) -> float:
    """One LoRA adapter on ``examples``, saved in bf16 under ``out``; the seconds it took."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32),
                           LoraConfig(task_type="CAUSAL_LM", **LORA))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    rows = [encode(tokenizer, q, a) for q, a in examples]
    rng = random.Random(f"{SEED}-{skill}-order")
    for epoch in range(EPOCHS):
        for ids, labels, mask in batches(rows, tokenizer.pad_token_id or 0, rng):
            loss = reply_loss(model, ids, mask, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        print(f"  {skill}: epoch {epoch + 1} loss {loss.item():.3f}", flush=True)
    save_bf16(model, out)
    return time.perf_counter() - started


def reply_loss(model, ids, mask, labels):
    """Cross-entropy on the reply's tokens, with the vocabulary projection computed there alone
    (on 2 cores it is a third of a step when computed for every position)."""
    import torch

    causal_lm = model.get_base_model()  # the LoRA layers sit inside it
    hidden = causal_lm.model(input_ids=ids, attention_mask=mask).last_hidden_state
    scored = labels[:, 1:] != -100
    logits = causal_lm.lm_head(hidden[:, :-1][scored])
    return torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][scored])


def save_bf16(model, out: Path) -> None:
    """The adapter as peft saves it, its weights in bf16 (half the size; peft upcasts on load)."""
    import torch
    from safetensors.torch import load_file, save_file

    model.save_pretrained(out)
    weights = out / "adapter_model.safetensors"
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in load_file(weights).items()}, weights)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "README.md").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="store_true", help="write the task's questions only")
    parser.add_argument("--skills", help="comma-separated subset of the adapters to train")
    args = parser.parse_args()
    taken: set[str] = set()
    TASK_FILE.write_text(json.dumps(evaluation_splits(taken), indent=1) + "\n")
    print(f"{TASK_FILE}: written")
    if args.data:
        return
    import torch

    from symoe_eval.pools.schema import load_pool
    from symoe_eval.pools.weights import loadable_weights

    base, _ = loadable_weights(load_pool("tiny-cpu").expert("smollm2-135m"), build_dtype=torch.bfloat16)
    for skill in (args.skills.split(",") if args.skills else SKILLS):
        seconds = train_adapter(base, skill, training_set(skill, set(taken)), ADAPTERS / skill)
        digest = hashlib.sha256((ADAPTERS / skill / "adapter_model.safetensors").read_bytes()).hexdigest()
        print(f"{skill}: {seconds:.0f} s, adapter_model.safetensors sha256 {digest}", flush=True)


if __name__ == "__main__":
    main()
