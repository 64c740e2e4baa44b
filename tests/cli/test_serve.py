"""``formers serve`` over real HTTP on 127.0.0.1: answers equal the library's, bad input gets a
clear 4xx, and 50 concurrent requests are all answered (each with its own text's answer).

References: the answers are compared with the library functions run directly on the same
checkpoint (:func:`translate`, :func:`generate`, :func:`classify`, :func:`fill_masks`,
:func:`capture_attention`), which their own tests check against PyTorch and Hugging Face.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest
from tolerance import FP32

pytest.importorskip("fastapi", reason="formers serve needs fastapi (pip install formers[serve])")
pytest.importorskip("uvicorn", reason="formers serve needs uvicorn (pip install formers[serve])")
httpx = pytest.importorskip("httpx", reason="the HTTP tests need httpx (the dev extra)")

from serve_helpers import running  # noqa: E402

from formers.inference.encoder import classify, fill_masks  # noqa: E402
from formers.inference.generate import generate  # noqa: E402
from formers.inference.translate import translate  # noqa: E402
from formers.serve import Limits, ModelService  # noqa: E402
from formers.training.checkpoint import load_model  # noqa: E402
from formers.viz import capture_attention  # noqa: E402

SENTENCES = [
    "the quick brown fox",
    "a cat sat on the mat",
    "naïve café owners",
    "the lazy dog looked at the cat",
    "tokenization works",
]
LIMITS = Limits(max_chars=200, max_tokens=40, max_batch=8, max_new_tokens=16, max_beam=5)
SCORES = dict(rel=FP32, abs=1e-6)  # scores of about 1-10, float32 rounding of their scale


@pytest.fixture(scope="module")
def translator(spm_translator):
    with running(spm_translator, LIMITS) as url:
        yield url


@pytest.fixture(scope="module")
def reference(spm_translator):
    model, tokenizer, _ = load_model(spm_translator)
    return model, tokenizer


def post(url: str, path: str, body, **kwargs) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60, **kwargs)


def test_health_names_the_model_and_limits(translator, spm_translator):
    answer = httpx.get(translator + "/health").json()
    assert answer["status"] == "ok"
    assert (answer["family"], answer["task"]) == ("encoder-decoder", "translate")
    assert answer["checkpoint"] == spm_translator.name  # not its path on the server
    assert answer["limits"] == {**LIMITS.to_dict(), "max_tokens": 40}
    assert answer["parameters"] > 0 and answer["batches"] >= 0
    assert answer["defaults"] == {"beam": 4, "lenpen": 0.6, "lenpen_form": "gnmt"}  # no recipe


def test_translate_defaults_come_from_the_checkpoints_recipe(reference):
    """Options a request leaves out are the recipe's [decode] (the beam capped at the limit)."""
    model, tokenizer = reference
    config = {"architecture": "transformer", "model": model.config.to_dict(),
              "decode": {"beam": 9, "lenpen": 2.0, "lenpen_form": "power"}}  # fmt: skip
    service = ModelService(model, tokenizer, config, limits=LIMITS, batching=False)
    assert service.describe()["defaults"] == {"beam": 5, "lenpen": 2.0, "lenpen_form": "power"}
    got = service.translate(SENTENCES[:3])["translations"]
    expected = translate(model, tokenizer, SENTENCES[:3], beam=5, lenpen=2.0, lenpen_form="power")
    assert [t["score"] for t in got] == pytest.approx([e[0].score for e in expected], **SCORES)
    got = service.translate(SENTENCES[:3], lenpen_form="gnmt")["translations"]
    expected = translate(model, tokenizer, SENTENCES[:3], beam=5, lenpen=2.0)
    assert [t["score"] for t in got] == pytest.approx([e[0].score for e in expected], **SCORES)
    # /attention without a target draws the translation /translate gives
    power = translate(model, tokenizer, SENTENCES, beam=5, lenpen=2.0, lenpen_form="power")
    default = translate(model, tokenizer, SENTENCES)  # beam 4, GNMT 0.6
    assert [service.attention(text)["text"]["tgt"] for text in SENTENCES] == [
        e[0].text for e in power
    ]
    assert [e[0].text for e in default] != [e[0].text for e in power]  # the check can fail


def test_translate_equals_the_library(translator, reference):
    model, tokenizer = reference
    expected = [t[0] for t in translate(model, tokenizer, SENTENCES, beam=3, lenpen=1.0)]
    batch = post(translator, "/translate", {"texts": SENTENCES, "beam": 3, "lenpen": 1.0})
    assert batch.status_code == 200, batch.text
    got = batch.json()["translations"]
    assert [t["text"] for t in got] == [e.text for e in expected]
    assert [t["score"] for t in got] == pytest.approx([e.score for e in expected], **SCORES)
    assert len({t["text"] for t in got}) > 1  # the texts differ: the order check means something
    one = post(translator, "/translate", {"text": SENTENCES[1], "beam": 3, "lenpen": 1.0})
    assert one.json()["translations"][0]["text"] == expected[1].text
    power = translate(model, tokenizer, SENTENCES[:2], beam=3, lenpen=1.0, lenpen_form="power")
    body = {"texts": SENTENCES[:2], "beam": 3, "lenpen": 1.0, "lenpen_form": "power"}
    got = post(translator, "/translate", body).json()["translations"]
    assert [t["score"] for t in got] == pytest.approx([p[0].score for p in power], **SCORES)
    assert got[0]["score"] != pytest.approx(expected[0].score, abs=1e-3)  # the form is used


def test_attention_equals_capture(translator, reference):
    model, tokenizer = reference
    expected = capture_attention(model, tokenizer, SENTENCES[0], "the cat")
    answer = post(translator, "/attention", {"text": SENTENCES[0], "tgt": "the cat"}).json()
    assert (answer["source"], answer["target"]) == (expected.source, expected.target)
    for view in ("encoder", "decoder", "cross"):
        np.testing.assert_allclose(answer["views"][view], expected.views[view], atol=1e-4)
    searched = post(translator, "/attention", {"text": SENTENCES[0], "beam": 2}).json()
    assert searched["text"]["tgt"] == translate(model, tokenizer, SENTENCES[:1], beam=2)[0][0].text


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/translate", {"text": ""}, 400, "text is empty"),
        ("/translate", {"text": "   "}, 400, "text is empty"),
        ("/translate", {"texts": []}, 400, "no texts"),
        ("/translate", {"texts": ["ok", " "]}, 400, r"texts\[1\] is empty"),
        ("/translate", {"text": "x" * 201}, 413, "201 characters; the limit is 200"),
        ("/translate", {"text": "the cat " * 14}, 413, "tokens; the limit is 40"),
        ("/translate", {"texts": ["a cat"] * 9}, 413, "9 texts in one request; the limit is 8"),
        ("/translate", {"text": "a cat", "beam": 0}, 400, r"beam must be an integer in \[1, 128\]"),
        ("/translate", {"text": "a cat", "beam": 6}, 413, r"beam 6 is over this server's limit"),
        ("/translate", {"text": "a cat", "lenpen": -1}, 400, r"lenpen must be a number in \[0.0, "),
        ("/translate", {"text": "a cat", "lenpen": 1e308}, 400, r"lenpen must be .*got 1e\+308"),
        ("/translate", {"text": "a cat", "beam": 10**9}, 400, r"beam must be an integer in \[1,"),
        ("/attention", {"text": "a cat", "beam": 6}, 413, r"beam 6 is over this server's limit"),
        ("/translate", {"text": "a cat", "lenpen_form": "x"}, 400, "lenpen_form must be one of"),
        ("/translate", {"text": "a", "texts": ["b"]}, 422, "exactly one of 'text'"),
        ("/translate", {}, 422, "^body: give exactly one of 'text'"),
        ("/translate", {"text": 3}, 422, "text: Input should be a valid string"),
        ("/translate", {"txt": "a cat"}, 422, "unknown field 'txt'; valid fields: text, texts"),
        ("/translate", [1, 2], 422, "Input should be a valid dictionary"),
        ("/generate", {"prompt": "a cat"}, 404, "does not generate; it answers POST /translate"),
        ("/classify", {"text": "a cat"}, 404, "it answers POST /translate"),
        ("/attention", {"text": "a cat", "tgt": " "}, 400, "tgt is empty"),
        (
            "/attention",
            {"text": "a cat", "tgt": "the cat " * 46},
            413,
            "138 tokens; the limit is 90",
        ),
        ("/attention", {"text": "a cat", "tgt": "the cat " * 30}, 400, "decoder's 64 learned posi"),
    ],
)
def test_bad_requests_get_a_clear_4xx(translator, path, body, status, message):
    response = post(translator, path, body)
    assert response.status_code == status, response.text
    assert re.search(message, response.json()["detail"]), response.json()


def test_a_target_may_be_longer_than_a_source(translator):
    # 42 tokens: more than a source may have (40), as a translation of one may (40 + 50)
    answer = post(translator, "/attention", {"text": "a cat", "tgt": "the cat " * 14})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["target"]) == 43  # BOS + 42


@pytest.mark.parametrize("value", [b"NaN", b"Infinity"])
def test_a_non_finite_length_penalty_is_400(translator, value):
    """JSON has no NaN or infinity, but Python's parser reads them: they are refused."""
    response = httpx.post(
        translator + "/translate",
        content=b'{"text": "a cat", "lenpen": ' + value + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "lenpen must be a finite number" in response.json()["detail"]


def test_malformed_json_is_400(translator):
    response = httpx.post(
        translator + "/translate",
        content=b'{"text": "a cat",',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed JSON")


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_a_body_that_is_not_json_is_415(translator, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.post(translator + "/translate", content=b'{"text": "a"}', headers=headers)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["detail"]


def test_body_limits(spm_translator):
    with running(spm_translator, LIMITS, max_body_bytes=200) as url:
        big = post(url, "/translate", {"texts": ["a cat " * 5] * 8})
        assert big.status_code == 413 and "the limit is 200" in big.json()["detail"]
        assert post(url, "/translate", {"text": "a cat"}).status_code == 200
        # a chunked body has no Content-Length: refused before it is read
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.putrequest("POST", "/translate")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        body = json.dumps({"text": "a cat"}).encode()
        connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        response = connection.getresponse()
        assert response.status == 411
        assert "Content-Length" in json.loads(response.read())["detail"]
        connection.close()


def test_fifty_concurrent_requests_are_all_answered(translator, reference):
    model, tokenizer = reference
    texts = [f"{SENTENCES[i % len(SENTENCES)]} {'dog ' * (i % 7)}".strip() for i in range(50)]
    expected = [t[0].text for t in translate(model, tokenizer, texts, beam=2)]

    def ask(text: str) -> tuple[int, str]:
        response = post(translator, "/translate", {"text": text, "beam": 2})
        return response.status_code, response.json()["translations"][0]["text"]

    batches = httpx.get(translator + "/health").json()["batches"]
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(ask, texts))
    assert [status for status, _ in answers] == [200] * 50
    assert [text for _, text in answers] == expected  # each request got its own text's answer
    assert len(set(expected)) > 3
    # the requests shared forward passes (dynamic batching), and that changed no answer above
    assert httpx.get(translator + "/health").json()["batches"] - batches < 50


def test_page_is_self_contained(translator):
    page = httpx.get(translator + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "formersAttention" in page.text and 'id="form"' in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing from the web
    assert httpx.get(translator + "/docs").status_code == 404  # Swagger UI would need a CDN
    assert "/translate" in httpx.get(translator + "/openapi.json").json()["paths"]


def test_generate_equals_the_library(char_gpt):
    model, tokenizer, _ = load_model(char_gpt)
    prompt = "hello wo"
    ids = tokenizer.encode(prompt)
    new = generate(model, ids, max_new_tokens=10, temperature=0.9, top_k=5, seed=7)
    expected = tokenizer.decode([*ids, *new])
    with running(char_gpt, Limits(max_new_tokens=10)) as url:
        body = {"prompt": prompt, "max_new_tokens": 10, "temperature": 0.9, "top_k": 5, "seed": 7}
        answer = post(url, "/generate", body).json()
        assert answer["text"] == expected and answer["tokens"] == len(new)
        assert answer["prompt"] + answer["completion"] == answer["text"]
        too_many = post(url, "/generate", {**body, "max_new_tokens": 11})
        assert too_many.status_code == 413 and "limit of 10" in too_many.json()["detail"]
        too_long = post(url, "/generate", {"prompt": "h" * 25, "max_new_tokens": 5})  # context 24
        assert too_long.status_code == 413 and "the limit is 24" in too_long.json()["detail"]
        bad = post(url, "/generate", {"prompt": "he", "temperature": -1, "max_new_tokens": 5})
        assert bad.status_code == 400 and "temperature" in bad.json()["detail"]
        tgt = post(url, "/attention", {"text": "he", "tgt": "x"})
        assert tgt.status_code == 400 and "tgt is for translation" in tgt.json()["detail"]
        record = post(url, "/attention", {"text": prompt}).json()
        assert record["family"] == "decoder-only" and record["causal"]
        weights = np.array(record["views"]["self"])  # (L, H, n, n)
        assert np.allclose(np.triu(weights, k=1), 0)  # causal: nothing above the diagonal


def test_classify_and_fill_equal_the_library(bert_classifier, bert_mlm):
    texts = ["the movie was wonderful", "a dull film with no heart"]
    model, tokenizer, _ = load_model(bert_classifier)
    probs = classify(model, tokenizer, texts)
    with running(bert_classifier) as url:
        got = post(url, "/classify", {"texts": texts}).json()["predictions"]
        np.testing.assert_allclose([g["probabilities"] for g in got], probs.numpy(), atol=FP32)
        assert [g["label"] for g in got] == probs.argmax(-1).tolist()
        assert post(url, "/fill", {"text": "a [MASK]"}).status_code == 404
    model, tokenizer, _ = load_model(bert_mlm)
    masked = ["the movie was [MASK] and moving", "[MASK] cat sat on the [MASK]"]
    expected = fill_masks(model, tokenizer, masked, top_k=3)
    with running(bert_mlm) as url:
        got = post(url, "/fill", {"texts": masked, "top_k": 3}).json()["fills"]
        assert [g["text"] for g in got] == [e.text for e in expected]
        assert [len(g["masks"]) for g in got] == [1, 2]
        assert got[1]["masks"][0][0]["token"] == expected[1].candidates[0][0][0]


def test_cli_serves_on_localhost(spm_translator):
    command = [sys.executable, "-m", "formers.cli.main", "serve", "--checkpoint",
               str(spm_translator), "--port", "0", "--threads", "1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, lines = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            if found:
                break
        assert found, "".join(lines)
        assert "serving encoder-decoder model" in "".join(lines)
        url = f"http://127.0.0.1:{found.group(1)}"
        assert httpx.get(url + "/health").json()["task"] == "translate"
        answer = post(url, "/translate", {"text": SENTENCES[0]})
        assert answer.status_code == 200 and "translations" in answer.json()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_cli_refuses_bad_options(spm_translator, capsys):
    from formers.cli.main import main

    assert main(["serve", "--checkpoint", str(spm_translator), "--max-chars", "0"]) == 2
    assert "limits must be >= 1: max_chars=0" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(spm_translator), "--port", "70000"]) == 2
    assert "--port must be in [0, 65535]" in capsys.readouterr().err


def test_a_bert_body_serves_embeddings(bert_body):
    from formers.inference.encoder import embed

    texts = ["the movie was wonderful", "a dull film with no heart"]
    model, tokenizer, _ = load_model(bert_body)
    expected = embed(model, tokenizer, texts).numpy()
    with running(bert_body) as url:
        assert httpx.get(url + "/health").json()["task"] == "embed"
        got = np.array(post(url, "/embed", {"texts": texts}).json()["embeddings"])
        np.testing.assert_allclose(got, expected, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert (
            post(url, "/classify", {"text": "a"})
            .json()["detail"]
            .endswith("it answers POST /embed (and POST /attention)")
        )


def test_a_missing_checkpoint_is_refused(tmp_path, capsys):
    from formers.cli.main import main

    assert main(["serve", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err


def _events(response) -> list[dict]:
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = [m for m in response.text.split("\n\n") if m]
    assert all(m.startswith("data: ") for m in messages)
    return [json.loads(m.removeprefix("data: ")) for m in messages]


def test_generation_streams_the_same_text(char_gpt):
    body = {"prompt": "hello wo", "max_new_tokens": 12, "temperature": 0.9, "seed": 3}
    with running(char_gpt) as url:
        whole = post(url, "/generate", body).json()
        events = _events(post(url, "/generate", {**body, "stream": True}))
        *tokens, last = events
        assert last == {"done": True, **whole}
        assert len(tokens) >= 2 and all(set(t) == {"token"} for t in tokens)
        assert "".join(t["token"] for t in tokens) == whole["completion"]
        refused = post(url, "/generate", {**body, "stream": True, "max_new_tokens": 0})
        assert refused.status_code == 400  # a refused stream is a plain JSON error


def test_a_client_that_leaves_a_stream_frees_the_model(char_gpt):
    limits = Limits(max_new_tokens=5000)
    model, _, _ = load_model(char_gpt)
    with running(char_gpt, limits) as url:
        body = {"prompt": "hello", "max_new_tokens": 5000, "stream": True}
        with httpx.Client(base_url=url, timeout=30) as client:
            with client.stream("POST", "/generate", json=body) as response:
                first = next(response.iter_lines())
                assert first.startswith("data: ")
            # the connection is closed mid-stream; the next request must not wait for 5000 tokens
            start = time.monotonic()
            answer = client.post("/generate", json={"prompt": "hello", "max_new_tokens": 3})
            assert answer.status_code == 200 and answer.json()["tokens"] == 3
            assert time.monotonic() - start < 20


def _count_encodes(service):
    calls = []
    encode = service.tokenizer.encode
    service.tokenizer.encode = lambda text, **options: calls.append(text) or encode(text, **options)
    return calls


def test_the_tokenizer_runs_once_per_served_text(spm_translator, reference, bert_classifier,
                                                 bert_mlm):  # fmt: skip
    service = ModelService.load(spm_translator, limits=LIMITS)
    calls = _count_encodes(service)
    answer = service.translate(SENTENCES[:3], beam=2)
    assert sorted(calls) == sorted(SENTENCES[:3])  # once each: checking the request
    model, tokenizer = reference
    expected = translate(model, tokenizer, SENTENCES[:3], beam=2, lenpen=0.6)
    assert [t["text"] for t in answer["translations"]] == [h[0].text for h in expected]
    texts = ["a gripping film", "dull and long"]
    service = ModelService.load(bert_classifier)
    calls = _count_encodes(service)
    answer = service.classify(texts)
    assert sorted(calls) == sorted(texts)
    model, tokenizer, _ = load_model(bert_classifier)
    probabilities = classify(model, tokenizer, texts)
    served = np.array([p["probabilities"] for p in answer["predictions"]])
    np.testing.assert_allclose(served, probabilities.numpy(), atol=1e-6)
    service = ModelService.load(bert_mlm)
    calls = _count_encodes(service)
    service.fill(["a [MASK] film"])
    assert calls == ["a [MASK] film"]
