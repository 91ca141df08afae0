"""The sweep's search-space file: checked before anything starts, one sentence naming the key.

None of these tests needs Ray: a bad file must be refused before Ray is even imported.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from digitnet.cli import main
from digitnet.cluster.space import SweepSpec, load_spec
from digitnet.errors import DigitnetError

GOOD = """
dataset = "digits"
search = "random"
trials = 8
[space]
model = "mlp"
lr = { loguniform = [1e-4, 1e-2] }
batch_size = { choice = [32, 64] }
epochs = { randint = [2, 5] }
hidden = { choice = ["16", "32,16"] }
augment = { choice = ["none", "light"] }
"""


def write(tmp_path, text: str):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_a_good_space_file_reads_with_its_varied_parameters_and_horizon(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.dataset == "digits" and spec.effective_trials == 8
    assert spec.space.varied() == ["hidden", "augment", "lr", "batch_size", "epochs"]
    assert spec.space.max_epochs() == 5


def test_options_override_the_file(tmp_path):
    spec = load_spec(write(tmp_path, GOOD), trials=3, search="optuna")
    assert (spec.effective_trials, spec.search) == (3, "optuna")


def test_grid_search_runs_the_grid_once_by_default():
    assert SweepSpec(search="grid").effective_trials == 1 and SweepSpec().effective_trials == 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[space]\nlerning_rate = 0.1\n", "unknown key space.lerning_rate"),
        ("trails = 3\n", "unknown key trails"),
        ("[space]\nbatch_size = { choise = [1, 2] }\n", "unknown key space.batch_size.choise"),
        ("[space]\nlr = { loguniform = [0, 0.01] }\n", "space.lr: a loguniform range must be above 0"),
        ("[space]\nepochs = { randint = [12, 4] }\n", "space.epochs: the range \\[12, 4\\] is empty"),
        ("[space]\nepochs = { uniform = [1, 4] }\n", "space.epochs: epochs cannot be a uniform range"),
        ("[space]\naugment = { choice = ['none', 'stong'] }\n", "space.augment: 'stong' is not none or one of"),
        ("[space]\nlr = -0.1\n", "space.lr: -0.1 is not a learning rate"),
        ("[space]\nhidden = '128,x'\n", "space.hidden: '128,x' is not a list of layer sizes"),
        ("[space]\nmodel = { choice = [] }\n", "space.model.choice: list should have at least 1 item"),
        ("search = 'grid'\n[space]\nlr = { uniform = [0.001, 0.01] }\n", "grid search needs choice lists"),
        ("dataset = 'mnistt'\n", "dataset: 'mnistt' is not a dataset"),
        ("trials = 0\n", "trials: input should be greater than or equal to 1"),
        ("space = 3\n", "space: input should be a valid dictionary"),
        ("[space\n", "not a TOML file"),
    ],
)
def test_a_bad_space_file_is_refused_in_one_sentence_naming_the_key(tmp_path, text, message):
    with pytest.raises(DigitnetError, match=message):
        load_spec(write(tmp_path, text))


def test_the_sweep_command_names_a_typo_before_anything_starts(tmp_path):
    result = CliRunner().invoke(
        main, ["sweep", str(write(tmp_path, "[space]\nlerning_rate = 0.1\n")), "--dir", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert "unknown key space.lerning_rate; nothing was started." in result.output
    assert "Traceback" not in result.output and not (tmp_path / "s").exists()


def test_an_unreachable_address_is_a_clear_message_not_a_hang():
    from digitnet.cluster.runtime import check_reachable

    with pytest.raises(DigitnetError, match="No Ray cluster answers at 127.0.0.1:1"):
        check_reachable("127.0.0.1:1", timeout=2)
    with pytest.raises(DigitnetError, match="is not HOST:PORT"):
        check_reachable("nowhere")


def test_without_ray_the_commands_say_how_to_install_it(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    for command in (
        ["sweep", "--dataset", "digits", "--dir", str(tmp_path / "s")],
        ["ensemble", "--dataset", "digits"],
    ):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, result.output
        assert "pip install 'digitnet[cluster]'" in result.output
