"""Every way a checkpoint can be wrong gets a CheckpointError that says what and where."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from formers.models.registry import ARCHITECTURES
from formers.training.checkpoint import (
    CheckpointError,
    load_model,
    load_training_state,
    save_checkpoint,
)
from training.checkpoint_helpers import (
    VOCAB,
    adam_with_schedule,
    tiny_config,
    tiny_model,
    tiny_tokenizer,
)


@pytest.fixture
def checkpoint(tmp_path):
    model = tiny_model()
    optimizer, _ = adam_with_schedule(model)
    return save_checkpoint(
        tmp_path / "ckpt", model, model.config.to_dict(), optimizer=optimizer, state={"step": 0}
    )


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    model = changes.pop("model", {})
    config = {**config, **changes, "model": {**config["model"], **model}}
    (path / "config.json").write_text(json.dumps(config))


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint directory at .*nowhere"):
        load_model(tmp_path / "nowhere")


def test_a_file_instead_of_a_directory(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is not a directory"):
        load_model(tmp_path / "model.safetensors")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_file_is_named(checkpoint, name):
    (checkpoint / name).unlink()
    with pytest.raises(CheckpointError, match=f"checkpoint .*ckpt has no {name}"):
        load_model(checkpoint)


@pytest.mark.parametrize("name", ["trainer_state.json", "optimizer.json", "optimizer.safetensors"])
def test_training_state_needs_its_files(checkpoint, name):
    (checkpoint / name).unlink()
    model = tiny_model()
    optimizer, _ = adam_with_schedule(model)
    with pytest.raises(CheckpointError, match=f"has no {name}"):
        load_training_state(checkpoint, model, optimizer)


def test_config_that_is_not_json(checkpoint):
    (checkpoint / "config.json").write_text('{"format": 1,\n  "model": }')
    with pytest.raises(CheckpointError, match=r"config.json is not valid JSON \(.* line 2"):
        load_model(checkpoint)


def test_unknown_architecture(checkpoint):
    _edit_config(checkpoint, architecture="mamba")
    expected = "unknown architecture 'mamba'; formers reads "
    with pytest.raises(CheckpointError, match=expected) as err:
        load_model(checkpoint)
    # The message names every architecture a checkpoint may have, from the one registry.
    for name in ARCHITECTURES:
        assert name in str(err.value).split("formers reads ")[1]


def test_newer_format(checkpoint):
    _edit_config(checkpoint, format=2)
    with pytest.raises(
        CheckpointError, match="has format 2; this version of formers reads format 1"
    ):
        load_model(checkpoint)


def test_unknown_model_key_lists_the_valid_ones(checkpoint):
    _edit_config(checkpoint, model={"d_modle": 16})
    with pytest.raises(CheckpointError, match=r"config.json: unknown .*'d_modle'.*valid keys"):
        load_model(checkpoint)


def test_weights_of_another_vocabulary_name_the_tensor_and_shapes(checkpoint):
    _edit_config(checkpoint, model={"vocab_size": 30})
    expected = (
        "checkpoint does not match the model: generator.weight has shape (24, 16), "
        "the model expects (30, 16)"
    )
    with pytest.raises(CheckpointError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_model(checkpoint)


def test_missing_and_unexpected_tensors_are_named(checkpoint):
    weights = load_file(checkpoint / "model.safetensors")
    del weights["encoder.layers.0.self_attn.q_proj.bias"]
    weights["extra.weight"] = torch.zeros(2, 2)
    save_file(weights, checkpoint / "model.safetensors")
    with pytest.raises(CheckpointError) as error:
        load_model(checkpoint)
    assert "encoder.layers.0.self_attn.q_proj.bias (16,) is missing" in str(error.value)
    assert "unexpected extra.weight (2, 2)" in str(error.value)


def test_training_state_into_another_model_names_the_first_tensors(checkpoint):
    model = tiny_model(d_model=32, num_heads=4)
    optimizer, _ = adam_with_schedule(model)
    with pytest.raises(CheckpointError, match=r"does not match the model: .*\(and \d+ more\)"):
        load_training_state(checkpoint, model, optimizer)


def test_optimizer_of_another_shape(checkpoint):
    model = tiny_model()
    optimizer = torch.optim.Adam(list(model.parameters())[:3])
    with pytest.raises(CheckpointError, match="optimizer state in .* does not fit the optimizer"):
        load_training_state(checkpoint, model, optimizer)


def test_corrupt_weights(checkpoint):
    (checkpoint / "model.safetensors").write_bytes(b"\x00\x01 not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors"):
        load_model(checkpoint)


def test_tokenizer_of_another_vocabulary(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "ckpt", model, model.config.to_dict(), tokenizer=None)
    tiny_tokenizer(VOCAB + 6).save(path)
    with pytest.raises(
        CheckpointError, match="the tokenizer has 30 tokens but the model's vocabulary has 24"
    ):
        load_model(path)


def test_save_refuses_a_tokenizer_of_another_vocabulary(tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer has 30 tokens"):
        save_checkpoint(
            tmp_path / "c", tiny_model(), tiny_config().to_dict(), tokenizer=tiny_tokenizer(30)
        )
    assert not (tmp_path / "c").exists()


def test_save_refuses_state_that_is_not_json(tmp_path):
    with pytest.raises(CheckpointError, match="trainer state 'sampler' cannot be saved as JSON"):
        save_checkpoint(
            tmp_path / "c", tiny_model(), tiny_config().to_dict(), state={"sampler": object()}
        )
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_an_invalid_config(tmp_path):
    with pytest.raises(CheckpointError, match="cannot save a checkpoint: unknown"):
        save_checkpoint(tmp_path / "c", tiny_model(), {"vocab_size": VOCAB, "layers": 2})


def test_a_directory_copied_without_its_weights(checkpoint, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="is it a complete formers checkpoint"):
        load_training_state(copy, tiny_model(), None)
