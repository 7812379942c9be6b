"""End-to-end: `nao serve` without `-m` over a model store (a temporary NAO_HOME into which
Gemma-3-270M and Qwen2.5-Coder-1.5B are imported with `nao pull --link`), at most one model
loaded. Asked for Gemma, then Qwen, then Gemma (through the official `openai` and
`ollama` clients), each answer must come from the model named: its `model` field, and a
greedy continuation equal to the one that model gives when served alone. At the end
/api/ps shows exactly Gemma, and `keep_alive: 0` unloads it.

Environment: NAO_BIN, NAO_MODEL (Gemma), NAO_QWEN_MODEL (Qwen; default models/...).
"""

import os
import subprocess

import ollama
import openai
import pytest

import conftest

QWEN = os.environ.get("NAO_QWEN_MODEL", "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
GEMMA_NAME = "gemma3:latest"
QWEN_NAME = "qwen2.5-coder:1.5b"
PROMPT = "The capital of France is"
N_TOKENS = 6


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    for path in (conftest.MODEL, QWEN):
        if not os.path.exists(path):
            if os.environ.get("NAO_REQUIRE_MODELS"):
                pytest.fail(f"{path} is missing: run scripts/fetch_models.py")
            pytest.skip(f"{path} not found (run scripts/fetch_models.py)")
    home = str(tmp_path_factory.mktemp("nao-home"))
    for path, name in ((conftest.MODEL, "gemma3"), (QWEN, QWEN_NAME)):
        subprocess.run([conftest.NAO_BIN, "pull", "--link", os.path.abspath(path),
                        "--name", name], env={**os.environ, "NAO_HOME": home},
                       check=True, capture_output=True)
    return home


def complete(client, model):
    """`(model field, text)` of a short greedy completion."""
    r = client.completions.create(model=model, prompt=PROMPT, max_tokens=N_TOKENS,
                                  temperature=0)
    return r.model, r.choices[0].text


def test_models_load_on_demand_and_the_least_recently_used_is_unloaded(start_server, home):
    # Each model served alone (`-m NAME`): the reference continuations.
    expected = {}
    for name in (GEMMA_NAME, QWEN_NAME):
        alone = start_server(model=name, env={"NAO_HOME": home})
        expected[name] = complete(alone.client(), name)[1]
        alone.stop()
    assert expected[GEMMA_NAME] != expected[QWEN_NAME]

    s = start_server("--max-loaded", "1", model=None, env={"NAO_HOME": home})
    oa = s.client()
    ol = ollama.Client(host=s.base)
    listed = {m.id: m.model_extra["loaded"] for m in oa.models.list().data}
    assert listed == {GEMMA_NAME: False, QWEN_NAME: False}
    assert {m.model for m in ol.list().models} == {GEMMA_NAME, QWEN_NAME}
    assert ol.ps().models == []

    # Without its tag, as clients often send it; answered under the listed id.
    assert complete(oa, "gemma3") == (GEMMA_NAME, expected[GEMMA_NAME])
    assert [m.model for m in ol.ps().models] == [GEMMA_NAME]

    r = ol.generate(model=QWEN_NAME, prompt=PROMPT, raw=True,
                    options={"temperature": 0, "num_predict": N_TOKENS,
                             "repeat_penalty": 1.0})
    assert (r.model, r.response) == (QWEN_NAME, expected[QWEN_NAME])
    assert [m.model for m in ol.ps().models] == [QWEN_NAME]

    assert complete(oa, GEMMA_NAME) == (GEMMA_NAME, expected[GEMMA_NAME])
    assert [m.model for m in ol.ps().models] == [GEMMA_NAME]
    assert s.metrics()["nao_models_loaded"] == 1

    with pytest.raises(openai.NotFoundError) as e:
        complete(oa, "no-such-model")
    assert e.value.code == "model_not_found"
    with pytest.raises(ollama.ResponseError) as e:
        ol.generate(model="no-such-model", prompt="hi")
    assert e.value.status_code == 404
    with pytest.raises(openai.BadRequestError):
        complete(oa, "")

    # Ollama's unload request (what `ollama stop` sends).
    r = ol.generate(model=GEMMA_NAME, keep_alive=0)
    assert r.done_reason == "unload"
    assert ol.ps().models == []
    s.stop()
