"""Sharded training for real (engine tier): every trainer under DeepSpeed ZeRO-3 and FSDP2 with 2 CPU
processes (gloo), launched as users launch it — ``accelerate launch --config_file recipes/accelerate/
{zero3,fsdp2}_cpu.yaml -m clinrl …``.

Each sharded run is SIGKILLed (rank 0, ``tests.reliability.interrupt after-save``) right after a checkpoint
and ``--resume``d from the sharded checkpoint to the final step; the final folder must be a consolidated
Hugging Face model that ``from_pretrained`` loads (no 0-element tensors), and the loss curve must match a
single-process run of the same recipe and seed with the same global batch (2 × per-device batch) within
``LOSS_RTOL``. LoRA runs save an adapter that loads and ``clinrl merge`` turns into a full model.

Needs the engine venv (deepspeed built with DS_BUILD_OPS=0; ``DS_ACCELERATOR=cpu``). Budget: each 2-process
launch costs ~20-60 s of imports on a 2-core box, so each trainer × backend is one killed + one resumed
launch, and the single-process references are shared per trainer (module-scoped fixtures).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = REPO / "src" / "clinrl" / "recipes" / "accelerate"
BACKENDS = {"zero3": ACCELERATE / "zero3_cpu.yaml", "fsdp2": ACCELERATE / "fsdp2_cpu.yaml"}
# Sharded (2 ranks × batch b) vs one process over the same 2b samples per step (SFT: batch 2b, its token-mean
# loss is averaged across ranks by TRL; PRM: 2 accumulated batches of b, as its loss is a per-batch mean):
# the same arithmetic up to float32 reduction order.
LOSS_RTOL = 1e-3
FIGURES = Path(os.environ.get("CLINRL_ENGINE_FIGURES", "")) if os.environ.get("CLINRL_ENGINE_FIGURES") else None
ENV = {
    **os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
}  # fmt: skip


def _record(name: str, **figures) -> None:
    """Append measured figures (times, loss differences) to $CLINRL_ENGINE_FIGURES when set (for the docs)."""
    print(name, json.dumps(figures))
    if FIGURES:
        with FIGURES.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"name": name, **figures}) + "\n")


def _accelerate() -> str:
    found = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if not found:
        pytest.skip("accelerate is not installed")
    return found


def _launch(
    backend: str, argv: list[str], *, kill_after: int | None = None, port: int
) -> tuple[subprocess.CompletedProcess, float]:
    """``accelerate launch`` 2 CPU processes of ``clinrl argv`` under ``backend`` (through
    :mod:`tests.engines.run_clinrl`, which keeps FSDP real on CPU); ``kill_after=N``: rank 0 SIGKILLs itself
    right after ``checkpoint-N`` is complete (the launcher then stops the other rank)."""
    pytest.importorskip("deepspeed") if backend == "zero3" else None
    entry = ["-m", "tests.engines.run_clinrl", *(["--kill-after", str(kill_after)] if kill_after else [])]
    cmd = [_accelerate(), "launch", "--config_file", str(BACKENDS[backend]), "--main_process_port", str(port),
           *entry, *[str(a) for a in argv]]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    seconds = round(time.monotonic() - start, 1)
    if kill_after is None:
        assert done.returncode == 0 or _aborted_at_exit(done), done.stderr[-4000:]
    else:
        assert done.returncode != 0, "the run was meant to be killed"
    return done, seconds


def _aborted_at_exit(done: subprocess.CompletedProcess) -> bool:
    """A known flake (about 1 FSDP2 GRPO launch in 6 here): after the run has written everything, one rank
    aborts while the interpreter exits ("terminate called without an active exception", a C++ thread still
    joinable at teardown). The callers then check every output; this only keeps that teardown from failing
    the tier, and says so."""
    known = "terminate called without an active exception" in done.stderr
    if known:
        print("note: a rank aborted at interpreter exit after the run finished (known teardown flake)")
    return known


def _single(argv: list[str]) -> float:
    """One process, the same CLI (the reference run)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "clinrl", *[str(a) for a in argv]], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return round(time.monotonic() - start, 1)


def _losses(folder: Path) -> dict[int, float]:
    state = json.loads((folder / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def _assert_consolidated(folder: Path) -> None:
    """Every saved tensor has elements (ZeRO-3 once wrote still-partitioned 0-element tensors)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    assert files, f"no safetensors in {folder}"
    for path in files:
        with safe_open(str(path), "pt") as fh:
            empty = [k for k in fh.keys() if 0 in fh.get_slice(k).get_shape()]
            assert not empty, f"{path.name}: 0-element tensors {empty[:3]}"


def _compare(name: str, reference: dict[int, float], sharded: dict[int, float], **figures) -> None:
    assert sorted(sharded) == sorted(reference), (sharded, reference)
    worst = max(abs(sharded[s] - reference[s]) / max(abs(reference[s]), 1e-8) for s in reference)
    _record(name, max_rel_loss_diff=round(worst, 5), steps=len(reference), final_loss=sharded[max(sharded)],
            reference_final_loss=reference[max(reference)], **figures)  # fmt: skip
    assert worst <= LOSS_RTOL, (worst, reference, sharded)


def _kill_and_resume(
    name: str, backend: str, argv: list[str], out: Path, final: int, kill_after: int, port: int
) -> dict:
    _, killed_s = _launch(backend, argv, kill_after=kill_after, port=port)
    assert (out / f"checkpoint-{kill_after}" / "trainer_state.json").is_file()
    assert not (out / f"checkpoint-{final}").exists()
    _, resumed_s = _launch(backend, [*argv, "--resume"], port=port)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == final
    _assert_consolidated(out)
    return {"killed_launch_s": killed_s, "resumed_launch_s": resumed_s}


# ------------------------------------------------------------------------------------------------ PRM
PRM_STEPS, PRM_KILL = 4, 2


def _prm_argv(kind: str, out: Path, accumulation: int, gold: Path, model: Path | None) -> list:
    """The PRM's losses are means over each batch's label targets, so 2 ranks × batch 4 are compared with one
    process accumulating 2 batches of 4 (the same samples, and the same mean of two batch means)."""
    common = ["--output_dir", out, "--training.max_steps", PRM_STEPS, "--training.save_steps", PRM_KILL, "--training.logging_steps", 1,
              "--training.per_device_train_batch_size", 4, "--training.gradient_accumulation_steps", accumulation,
              "--progress", "false", "--data", f"[{gold}]", "--seed", 7]  # fmt: skip
    if kind == "causal":
        return ["prm", "train", "--config", REPO / "src" / "clinrl" / "recipes" / "prm" / "tiny_causal.yaml", "--max_notes", 16,
                "--max_length", 512, "--tiny_hidden_size", 32, "--tiny_layers", 1, "--tiny_heads", 2,
                "--tiny_vocab_size", 512, *common]  # fmt: skip
    return ["prm", "train", "--config", REPO / "src" / "clinrl" / "recipes" / "prm" / "cpu_minilm.yaml", "--model", model,
            "--max_notes", 16, "--max_length", 64, "--mark_unsupported", 0, "--training.learning_rate", 1e-3,
            "--training.warmup_steps", 0, "--num_threads", 1, *common]  # fmt: skip


@pytest.fixture(scope="module")
def prm_inputs(tmp_path_factory):
    """A small gold-note file and a tiny random BERT encoder (stands in for MiniLM)."""
    import torch

    torch.manual_seed(0)
    from transformers import BertConfig, BertForTokenClassification

    from clinrl.prm import demo_data_dir
    from clinrl.prm.schema import load_notes, save_notes
    from tests.helpers.tokenizers import make_tiny_tokenizer

    root = tmp_path_factory.mktemp("prm_inputs")
    notes = [n for n in load_notes(demo_data_dir() / "prm_clinic_gold.json.gz") if not n.is_error_sample][:12]
    save_notes(notes, root / "gold.json")
    bert = root / "bert"
    tokenizer = make_tiny_tokenizer(chat_template=False)
    tokenizer.save_pretrained(bert)
    # no dropout: each rank draws its own dropout masks, which a single process cannot reproduce
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, classifier_dropout=0.0)  # fmt: skip
    BertForTokenClassification(config).save_pretrained(bert)
    return root / "gold.json", bert


@pytest.fixture(scope="module")
def prm_reference(prm_inputs, tmp_path_factory):
    """Single-process runs (2 accumulated batches of 4) of both PRM heads: their loss curves."""
    gold, bert = prm_inputs
    curves = {}
    for kind in ("causal", "encoder"):
        out = tmp_path_factory.mktemp(f"prm_single_{kind}") / "run"
        seconds = _single(_prm_argv(kind, out, 2, gold, bert))
        curves[kind] = (_losses(out), seconds)
    return curves


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("kind", ["causal", "encoder"])
def test_prm_sharded_kill_resume_load_and_loss(kind, backend, prm_inputs, prm_reference, tmp_path):
    from clinrl.prm.model import load_prm, slot_probabilities
    from clinrl.prm.schema import load_notes

    gold, bert = prm_inputs
    out = tmp_path / "run"
    port = 29600 + 10 * ("causal", "encoder").index(kind) + sorted(BACKENDS).index(backend)
    figures = _kill_and_resume(
        f"prm {kind} {backend}", backend, _prm_argv(kind, out, 1, gold, bert), out, PRM_STEPS, PRM_KILL, port
    )
    loaded = load_prm(out)  # from_pretrained of the consolidated folder
    note = load_notes(gold)[0]
    probs = slot_probabilities(loaded, note)
    assert len(probs) == note.n_label_positions and all(0 < p < 1 for p in probs)
    reference, single_s = prm_reference[kind]
    _compare(f"prm {kind} {backend}", reference, _losses(out), single_process_s=single_s, **figures)


# ------------------------------------------------------------------------------------------------ DRG SFT
SFT_STEPS, SFT_KILL = 4, 2


@pytest.fixture(scope="module")
def workspace():
    from tests.drg.tiny_training import tiny_workspace

    return tiny_workspace()


def _sft_argv(ws, out: Path, batch: int, *extra) -> list:
    return ["drg", "sft", "--config", REPO / "src" / "clinrl" / "recipes" / "drg" / "tiny" / "sft.yaml", "--model", ws.model,
            "--data", ws.sft, "--output_dir", out, "--limit", 16, "--max_prompt_tokens", 480,
            "--training.max_length", 528, "--training.max_steps", SFT_STEPS, "--training.per_device_train_batch_size", batch,
            "--training.save_strategy", "steps", "--training.save_steps", SFT_KILL, "--training.logging_steps", 1,
            "--training.disable_tqdm", "true", "--seed", 7, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def sft_reference(workspace, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft_single") / "run"
    seconds = _single(_sft_argv(workspace, out, 4))
    return _losses(out), seconds


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_sft_sharded_kill_resume_load_and_loss(backend, workspace, sft_reference, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    port = 29640 + sorted(BACKENDS).index(backend)
    figures = _kill_and_resume(
        f"drg sft {backend}", backend, _sft_argv(workspace, out, 2), out, SFT_STEPS, SFT_KILL, port
    )
    model = AutoModelForCausalLM.from_pretrained(out)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in AutoModelForCausalLM.from_pretrained(workspace.model).parameters()
    )
    reference, single_s = sft_reference
    _compare(f"drg sft {backend}", reference, _losses(out), single_process_s=single_s, **figures)


# ------------------------------------------------------------------------------------------------ GRPO
def _grpo_argv(ws, out: Path, *extra) -> list:
    return ["drg", "grpo", "--config", REPO / "src" / "clinrl" / "recipes" / "drg" / "tiny" / "vanilla_dense.yaml", "--model", ws.model,
            "--data", ws.rl, "--output_dir", out, "--limit", 8, "--max_prompt_tokens", 480,
            "--difficulty_file", ws.difficulty, "--training.max_steps", 3, "--training.num_generations", 2,
            "--training.per_device_train_batch_size", 2, "--training.max_completion_length", 8, "--training.save_strategy", "steps",
            "--training.save_steps", 1, "--training.logging_steps", 1, "--training.disable_tqdm", "true", *extra]  # fmt: skip


def _notes_argv(out: Path, *extra) -> list:
    from tests.notes.tiny_models import tiny_policy_dir, tiny_prm_dir

    return ["notes", "grpo", "--config", REPO / "src" / "clinrl" / "recipes" / "notes" / "tiny" / "grpo_prm.yaml",
            "--model", tiny_policy_dir(), "--prm", tiny_prm_dir(), "--output_dir", out, "--limit", 4,
            "--max_dialogue_tokens", 48, "--training.max_steps", 3, "--training.num_generations", 2,
            "--training.per_device_train_batch_size", 2, "--training.max_completion_length", 12, "--training.save_strategy", "steps",
            "--training.save_steps", 1, "--training.logging_steps", 1, "--training.disable_tqdm", "true", *extra]  # fmt: skip


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("trainer", ["drg", "notes"])
def test_grpo_sharded_kill_resume_and_load(trainer, backend, workspace, tmp_path):
    """GRPO (transformers rollouts) is killed after checkpoint 2, resumed to step 3, and saves a model that
    loads and generates. The loss curve is not compared: each rank samples its own completions."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    argv = _grpo_argv(workspace, out) if trainer == "drg" else _notes_argv(out)
    port = 29660 + 10 * ("drg", "notes").index(trainer) + sorted(BACKENDS).index(backend)
    figures = _kill_and_resume(f"{trainer} grpo {backend}", backend, argv, out, 3, 2, port)
    _record(f"{trainer} grpo {backend}", **figures)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    ids = tokenizer("Hello", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3


# ------------------------------------------------------------------------------------------------ LoRA + merge
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_lora_sft_and_grpo_sharded_save_adapters_that_merge(backend, workspace, tmp_path):
    """LoRA (the recipes' ``lora:`` block) under sharding: SFT then GRPO from the merged SFT model, each
    saving an adapter that peft loads; ``clinrl merge`` writes full models that ``from_pretrained`` loads."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    lora = ["--lora.enabled", "true", "--lora.r", 4, "--lora.alpha", 8]
    port = 29680 + sorted(BACKENDS).index(backend)
    sft = tmp_path / "sft"
    _, sft_s = _launch(backend, [*_sft_argv(workspace, sft, 2, *lora), "--training.save_strategy", "no"], port=port)
    assert (sft / "adapter_model.safetensors").is_file() and not (sft / "model.safetensors").exists()
    _assert_consolidated(sft)
    merged = tmp_path / "sft_merged"
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "clinrl", "merge", "--adapter", str(sft), "--out", str(merged)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    merge_s = round(time.monotonic() - start, 1)
    assert done.returncode == 0, done.stderr[-3000:]
    base = AutoModelForCausalLM.from_pretrained(workspace.model)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(workspace.model), str(sft)).eval()
    full = AutoModelForCausalLM.from_pretrained(merged).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(full(ids).logits, adapted(ids).logits, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(full(ids).logits, base(ids).logits)  # the adapter was trained
    grpo = tmp_path / "grpo"
    argv = _grpo_argv(workspace, grpo, *lora, "--training.save_strategy", "no", "--training.max_steps", 1)
    argv[argv.index("--model") + 1] = merged
    _, grpo_s = _launch(backend, argv, port=port)
    assert (grpo / "adapter_model.safetensors").is_file()
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(merged), str(grpo))
    _record(f"lora {backend}", sft_launch_s=sft_s, merge_s=merge_s, grpo_launch_s=grpo_s)
