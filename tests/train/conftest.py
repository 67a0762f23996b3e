"""Fixtures shared by the training tests: the tokenizer and processor of the shrunk nano config."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_synth import tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    from cordillera.model.tokenizer import load_tokenizer

    return load_tokenizer(tiny_config())


@pytest.fixture(scope="module")
def proc(tok):
    from cordillera.model.processor import VLAProcessor

    return VLAProcessor(tiny_config(), tok)
