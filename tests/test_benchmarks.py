"""The benchmark scripts run (a tiny smoke run; the figures themselves are not tested)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from formers.inference.onednn import onednn_available

ROOT = Path(__file__).resolve().parents[1]


def test_train_throughput_writes_json(tmp_path):
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--device", "cpu",
        "--preset", "transformer_tiny", "--rounds", "1", "--warmup", "1", "--batch-size", "4",
        "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["equivalence"]["max_abs_logit_diff"] < 1e-4
    for model in ("formers", "torch"):
        assert result["results"][model]["median_tokens_per_s"] > 0
    assert result["results"]["ratio_ours_over_torch"] > 0


def test_hf_decoding_writes_json(tmp_path):
    pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "hf_decoding.py"), "--size", "tiny",
        "--rounds", "1", "--warmup", "0", "--batch-size", "4", "--new-tokens", "6",
        "--vocab", "100", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    for mode in ("greedy", "beam"):
        r = result["results"][mode]
        assert r["identical_tokens"]
        assert r["output_shape"] == [4, 6]
        assert r["formers"]["median_tokens_per_s"] > 0 and r["ratio_ours_over_hf"] > 0


def test_attention_capture_writes_json(tmp_path):
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "attention_capture.py"), "--size", "tiny",
        "--rounds", "2", "--warmup", "1", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"encoder_decoder", "decoder_only", "encoder_only"}
    for r in result["results"].values():
        agree = r["agreement"]
        assert agree["max_abs_diff_default_vs_reference"] < 1e-5
        assert agree["max_abs_diff_default_vs_capture"] < 1e-4
        assert agree["max_abs_row_sum_error"] < 1e-5
        assert r["capture_leaves_no_state"]
        for variant in ("default", "reference", "default_after_capture", "capture"):
            assert r["timings"][variant]["median_ms"] > 0
        for stat in ("wall_min", "cpu_median", "wall_median"):
            assert set(r["ratios"][stat]) == {
                "default_over_reference", "default_after_capture_over_default",
                "capture_over_default",
            }  # fmt: skip
            assert all(x > 0 for x in r["ratios"][stat].values())


def _tiny_translator(tmp_path):
    """A tiny translation checkpoint and three sentences for the serving benchmarks."""
    pytest.importorskip("fastapi", reason="needs pip install 'formers[serve]'")
    pytest.importorskip("uvicorn", reason="needs pip install 'formers[serve]'")
    from formers.data.tokenizer import Tokenizer
    from formers.models import TransformerConfig, build_transformer
    from formers.training.checkpoint import save_checkpoint

    texts = ["the cat sat on the mat", "a dog runs in the park", "two men play football"] * 4
    tokenizer = Tokenizer.train(texts, 40)
    cfg = TransformerConfig(
        vocab_size=tokenizer.vocab_size, d_model=16, d_ff=32, num_heads=2, num_encoder_layers=1,
        num_decoder_layers=1, dropout=0.0, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
    )  # fmt: skip
    save_checkpoint(tmp_path / "ckpt", build_transformer(cfg), cfg.to_dict(), tokenizer=tokenizer)
    (tmp_path / "input.txt").write_text("\n".join(texts[:3]) + "\n", encoding="utf-8")
    return tmp_path / "ckpt", tmp_path / "input.txt"


def test_serve_throughput_writes_json(tmp_path):
    checkpoint, sentences = _tiny_translator(tmp_path)
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "serve_throughput.py"), "--checkpoint",
        str(checkpoint), "--input", str(sentences), "--requests", "12",
        "--concurrency", "6", "--beam", "2", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["translations_that_differ"] == 0
    assert result["results"]["no_batching"]["model_batches"] == 12  # one per request
    assert 1 <= result["results"]["batching"]["model_batches"] <= 12
    for r in result["results"].values():
        assert r["requests_per_s"] > 0 and r["latency_p95_s"] >= r["latency_median_s"] > 0


def test_nanogpt_reference_is_nanogpt_and_writes_json(tmp_path):
    data = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
    if not data.is_file():
        pytest.skip(f"Tiny Shakespeare is not at {data} (the offline copy in ../shared/data)")
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "nanogpt_reference.py"), "--seeds", "1337",
        "--max-iters", "120", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    # seed 1337's first estimate is nanoGPT's published "step 0: train loss 4.1676, val loss
    # 4.1649" only with nanoGPT's vocabulary, split, initialization and random stream
    assert result["step0_matches_nanogpt"] is True
    run = result["runs"]["1337"]
    assert run["formers"]["step"] == 120
    # after 120 of nanoGPT's steps both models are far below the uniform 4.17 and near each other
    assert run["reference"]["whole_valid_loss"] < 3.0
    assert abs(run["formers"]["whole_valid_loss"] - run["reference"]["whole_valid_loss"]) < 0.1


def test_relative_skew_writes_json(tmp_path):
    out = tmp_path / "result.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "relative_skew.py"), "--lengths", "32", "64",
           "--repeats", "1", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    rows = json.loads(out.read_text())["results"]
    assert [row["length"] for row in rows] == [32, 64]
    for row in rows:
        assert row["explicit"]["agrees_with_other_method"] and row["skew"]["finite"]
        skew, explicit = row["skew"], row["explicit"]
        assert explicit["relative_embeddings_mb"] == pytest.approx(
            skew["relative_embeddings_mb"] * row["length"], rel=0.05
        )  # L x L x D against L x D


def test_serve_load_writes_json(tmp_path):
    checkpoint, sentences = _tiny_translator(tmp_path)
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), "--checkpoint",
        str(checkpoint), "--input", str(sentences), "--sentences", "3", "--clients", "3",
        "--seconds", "2", "--beam", "2", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    r = json.loads(out.read_text())["results"]
    assert r["answered"] > 0 and r["dropped"] == 0 and r["wrong"] == 0
    assert r["latency_p99_s"] >= r["latency_p95_s"] >= r["latency_p50_s"] > 0


def test_runtimes_writes_json(tmp_path):
    pytest.importorskip("ctranslate2")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("transformers")
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "runtimes.py"), "--size", "tiny", "--rounds",
        "2", "--warmup", "0", "--batch-size", "4", "--batch-one", "2", "--new-tokens", "6",
        "--vocab", "100", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["device"]["cpu"]
    for mode in ("greedy_batch4", "greedy_batch1", "beam_batch4", "beam_batch1"):
        rows = result["results"][mode]
        assert rows["formers"]["tokens_per_s"] > 0 and rows["ct2-int8"]["tokens_per_s"] > 0
        assert rows["ct2"]["identical_to_formers"] and rows["transformers"]["identical_to_formers"]
        assert rows["formers-mkl"]["identical_to_formers"]
        formers = rows["formers"]
        assert formers["best_tokens_per_s"] >= formers["tokens_per_s"]  # the fastest of 2 rounds
        assert formers["best_s"] == min(formers["seconds_per_round"])
        assert formers["best_speed_over_ct2"] > 0
    assert result["gemm"]["formers"] in ("torch", "numpy", "onednn", "mixed")
    assert result["device"]["cpu_details"]["torch_capability"]
    assert result["results"]["greedy_batch4"]["onnxruntime"]["identical_to_formers"]
    assert result["results"]["beam_batch4"]["onnxruntime"] == {"supported": False}


def test_runtimes_builds_only_the_runtimes_asked(tmp_path, monkeypatch):
    """A subset runs without exporting or loading the others (as on a GPU machine without
    CTranslate2): here their packages cannot be imported, and only the subset's rows are
    written."""
    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import runtimes

    for package in ("ctranslate2", "onnxruntime"):
        monkeypatch.setitem(sys.modules, package, None)  # import raises ImportError
    result = runtimes.main([
        "--size", "tiny", "--rounds", "1", "--warmup", "0", "--batch-size", "2", "--batch-one",
        "1", "--new-tokens", "4", "--vocab", "100", "--runtimes", "formers", "transformers",
        "--out", str(tmp_path / "result.json"),
    ])  # fmt: skip
    for rows in result["results"].values():
        assert set(rows) == {"formers", "transformers"}
        assert rows["transformers"]["identical_to_formers"]


def test_runtimes_refuses_a_runtime_whose_package_is_missing(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import runtimes

    monkeypatch.setattr(runtimes, "installed", lambda package: None)
    with pytest.raises(SystemExit):
        runtimes.parse_args(["--runtimes", "formers", "ct2-int8"])
    err = capsys.readouterr().err
    assert "--runtimes ct2-int8 needs ctranslate2" in err and ".[ct2]" in err
    assert runtimes.parse_args(["--runtimes", "formers"]).runtimes == ["formers"]


def test_decode_attempts_writes_json(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "decode_attempts.py"), "--size", "tiny",
        "--rounds", "1", "--batch-size", "4", "--batch-one", "2", "--new-tokens", "6",
        "--vocab", "100", "--attempts", "mkl-column-major", "standard-layout", "onednn-packed",
        "fused-qkv", "static-cache", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    for mode in ("greedy_batch4", "greedy_batch1", "beam_batch4", "beam_batch1"):
        rows = result["results"][mode]
        alone = {"products_alone", "products_alone_numpy"} | (
            {"products_alone_onednn"} if onednn_available() else set()
        )
        assert set(rows) == {"formers", "mkl-column-major", "standard-layout", "onednn-packed",
                             "fused-qkv", "static-cache", *alone}  # fmt: skip
        assert rows["products_alone"]["tokens_per_s"] > rows["formers"]["tokens_per_s"] > 0
        assert all(rows[name]["tokens_per_s"] > 0 for name in alone)
        for name in ("onednn-packed", "mkl-column-major", "fused-qkv"):
            assert rows[name]["identical_to_formers"], name
    assert result["results"]["greedy_batch4"]["static-cache"]["identical_to_formers"]
    assert result["results"]["beam_batch4"]["static-cache"] == {"supported": False}


def test_gemm_shapes_writes_json(tmp_path):
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "gemm_shapes.py"), "--megabytes", "0.5",
        "--rounds", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["threads"] == 1 and result["device"]["cpu"]
    assert len(result["rows"]) == 13 * 4
    assert all(row["torch_us"] > 0 and row["numpy_us"] > 0 for row in result["rows"])
    if onednn_available():
        assert all(row["onednn_us"] > 0 and row["onednn_speed_up"] > 0 for row in result["rows"])


@pytest.mark.parametrize(
    ("backend", "min_rows"),
    [("numpy", 1)] + [pytest.param("onednn", rows, marks=pytest.mark.skipif(
        not onednn_available(), reason="this PyTorch has no oneDNN")) for rows in (1, 4)],
)  # fmt: skip
def test_decode_attempts_skips_exactly_the_products(monkeypatch, backend, min_rows):
    """``outside_products`` times a decode whose NumPy or oneDNN products are lookups: inside
    the block the layers (module and flat-step form, planned there as a decode plans it) return
    the ready output, after it they multiply; also the ``F.linear`` a oneDNN layer runs below
    its ``min_rows`` (3 rows under 4: MKL's one-row products on Intel)."""
    pytest.importorskip("transformers")
    import torch
    from torch import nn

    from formers.inference.gemm import row_product, use_gemm

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import decode_attempts

    layer = use_gemm(nn.Linear(512, 512), backend)
    if backend == "onednn":
        layer.min_rows = min_rows
    x = torch.randn(3, 512)
    with torch.no_grad():
        expected = nn.functional.linear(x, layer.weight, layer.bias)
        with decode_attempts.products_skipped():
            flat = row_product(layer, x)
            skipped, again = layer(x), flat(x)
        flat = row_product(layer, x)
        assert skipped.shape == (3, 512) and torch.equal(again, skipped)  # one per shape
        assert not torch.allclose(skipped, expected)
        torch.testing.assert_close(layer(x), expected)
        torch.testing.assert_close(flat(x), expected)
