"""Shared fixtures: a tiny saved base model and tiny data files, built once per test session.

Why session-scoped: building and saving even a tiny model costs seconds; every training, sampling and loss
test reads the same one (and never writes into it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO.parent / "shared" / "benchmarks"


@pytest.fixture(scope="session")
def smoke_config() -> dict:
    from quagmire.config import load_config

    return load_config(REPO / "config" / "smoke.yaml")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory, smoke_config: dict) -> Path:
    """The smoke world's pools and benchmarks, written as the `world` rule writes them."""
    from quagmire.world.data import WORLD_BENCHMARKS_FILE, build_world, write_world, write_world_benchmark

    out = tmp_path_factory.mktemp("world")
    write_world(build_world(smoke_config["world"], seed=0), out, {"seed": 0})
    for name in smoke_config["world"]["benchmarks"]:
        write_world_benchmark(out / WORLD_BENCHMARKS_FILE, name, out / "benchmarks" / f"{name}.parquet")
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide Llama model pre-trained for a few steps, saved like the `pretrain` rule saves it."""
    import torch

    from quagmire.world.model import TinyModelSpec, build_model
    from quagmire.world.pretrain import PretrainSettings, pretrain, pretrain_corpus, save_base
    from quagmire.world.tokenizer import build_tokenizer

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("base") / "base"
    tokenizer = build_tokenizer()
    spec = TinyModelSpec(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    model = build_model(spec, tokenizer, seed=0)
    settings = PretrainSettings(steps=5, batch_size=8)
    stats = pretrain(model, tokenizer, pretrain_corpus(settings), settings)
    save_base(model, tokenizer, out, stats)
    return out


# A minimal chat template over the embedded tokenizer's characters, for the chat-model code paths.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ '<bos>User: ' + m['content'] + ' ' }}"
    "{% else %}{{ 'Assistant: ' + m['content'] + '<eos>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)


@pytest.fixture(scope="session")
def chat_base(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base model with a tokenizer that has a chat template, as a hub instruct model would have."""
    import shutil

    from quagmire.hf import load_tokenizer

    out = tmp_path_factory.mktemp("chat") / "base"
    shutil.copytree(tiny_base, out)
    tokenizer = load_tokenizer(out)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The whole smoke DAG, run once per test session in a scratch folder: (workdir, configfile).

    Session-scoped: the DAG tests dry-run their changes against it and the Slurm test compares its tables with it.
    """
    import shutil

    from dagrun import snakemake

    workdir = tmp_path_factory.mktemp("dag")
    configfile = workdir / "smoke.yaml"
    shutil.copy(REPO / "config" / "smoke.yaml", configfile)
    snakemake(workdir, configfile)
    return workdir, configfile


@pytest.fixture(scope="session")
def sft_data(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 rows of the tiny world's SFT pool: the subset the training and snapshot tests fine-tune on."""
    import pandas as pd

    path = tmp_path_factory.mktemp("subset") / "random-32.parquet"
    pd.read_parquet(tiny_world / "sft.parquet").head(32).to_parquet(path)
    return path
