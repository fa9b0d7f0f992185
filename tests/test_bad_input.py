"""Every kind of bad input ends with exit code 2 and a message naming the problem, before Ray."""

from __future__ import annotations

import pytest
import torch

from tune_rec.cli import main

GOOD_PARAMS = "params:\n  alpha: 1.0\n"
# settings.json of experiments that an export or a resume reads up to their tables.
EXPORTABLE_SETTINGS = (
    '{"name": "e", "metric": "map@10", "mode": "max", "fixed": {}, "data_settings": {}, '
    '"data": {}}'
)
RESUMABLE_SETTINGS = '{"num_samples": 2, "space": {"num_samples": 2, "params": {"alpha": 1.0}}}'

# (case id, files to write: name -> text, command line with {tmp} for the folder,
#  fragments that the error must contain)
CASES = [
    (
        "unknown key",
        {"s.yaml": "max_epoch: 3\n" + GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml"],
        ["max_epoch"],
    ),
    (
        "wrong type",
        {"s.yaml": "max_epochs: many\n" + GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml"],
        ["max_epochs", "many"],
    ),
    (
        "low above high",
        {"s.yaml": "params:\n  lr: {distribution: uniform, low: 0.1, high: 0.01}\n"},
        ["search", "--space", "{tmp}/s.yaml"],
        ["params.lr", "0.1"],
    ),
    (
        "log scale at zero",
        {"s.yaml": "params:\n  lr: {distribution: loguniform, low: 0, high: 1}\n"},
        ["search", "--space", "{tmp}/s.yaml"],
        ["params.lr.low", "0"],
    ),
    (
        "empty choices",
        {"s.yaml": "params:\n  embedding_dim: {distribution: choice, values: []}\n"},
        ["search", "--space", "{tmp}/s.yaml"],
        ["params.embedding_dim.values"],
    ),
    (
        "condition on missing param",
        {"s.yaml": "params:\n  alpha: {value: 1.0, when: {shedule: fixed}}\n"},
        ["search", "--space", "{tmp}/s.yaml"],
        ["shedule"],
    ),
    (
        "metric not reported",
        {"s.yaml": "metric: auc\n" + GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml"],
        ["metric", "auc"],
    ),
    (
        "grid with tpe",
        {
            "s.yaml": "searcher: {type: tpe}\n"
            "params:\n  lr: {distribution: grid, values: [0.1, 0.2]}\n"
        },
        ["search", "--space", "{tmp}/s.yaml"],
        ["grid", "params.lr"],
    ),
    ("yaml syntax", {"s.yaml": "params: [\n"}, ["search", "--space", "{tmp}/s.yaml"], ["line"]),
    ("missing space", {}, ["search", "--space", "{tmp}/none.yaml"], ["none.yaml"]),
    ("missing data file", {}, ["data", "info", "--data", "{tmp}/ratings.csv"], ["ratings.csv"]),
    (
        "unreadable data file",
        {"ratings.csv/inner": "x"},
        ["data", "info", "--data", "{tmp}/ratings.csv"],
        ["ratings.csv"],
    ),
    (
        "empty data file",
        {"ratings.csv": ""},
        ["data", "info", "--data", "{tmp}/ratings.csv"],
        ["ratings.csv", "empty"],
    ),
    (
        "wrong column count",
        {"ratings.tsv": "1\t2\n3\t4\n"},
        ["data", "info", "--data", "{tmp}/ratings.tsv"],
        ["ratings.tsv", "2"],
    ),
    (
        "non-numeric id",
        {"ratings.tsv": "1\t2\t3\nbob\t2\t4\n"},
        ["data", "info", "--data", "{tmp}/ratings.tsv"],
        ["bob"],
    ),
    (
        "non-numeric rating",
        {"ratings.tsv": "1\t2\t3\n1\t3\tgood\n"},
        ["data", "info", "--data", "{tmp}/ratings.tsv"],
        ["good"],
    ),
    (
        "rating outside scale",
        {
            "s.yaml": "data: {path: '{tmp}/r.tsv', rating_scale: [1, 5]}\n" + GOOD_PARAMS,
            "r.tsv": "1\t2\t3\n2\t3\t9\n",
        },
        ["search", "--space", "{tmp}/s.yaml"],
        ["9", "1", "5"],
    ),
    (
        "checksum mismatch",
        {"data/ml-100k/u.data": "1\t2\t3\t4\n"},
        ["data", "info", "--data-dir", "{tmp}/data"],
        ["u.data", "06416e59", "--force"],
    ),
    (
        "zero samples flag",
        {"s.yaml": GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml", "--num-samples", "0"],
        ["--num-samples", "0"],
    ),
    (
        "negative gpus flag",
        {"s.yaml": GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml", "--gpus-per-trial", "-1"],
        ["--gpus-per-trial", "-1"],
    ),
    (
        "mistyped flag",
        {"s.yaml": GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml", "--max-epoch", "3"],
        ["--max-epoch"],
    ),
    ("resume of non-experiment", {}, ["search", "--resume", "{tmp}"], ["{tmp}"]),
    (
        "report of corrupt trials table",
        {"e/settings.json": "{}", "e/trials.parquet": "not parquet"},
        ["report", "{tmp}/e"],
        ["{tmp}/e/trials.parquet is corrupt", "not a readable Parquet file", "restore it"],
    ),
    (
        "report of corrupt epochs table",
        {"e/settings.json": "{}", "e/epochs.parquet": "not parquet"},
        ["report", "{tmp}/e"],
        ["{tmp}/e/epochs.parquet is corrupt", "move it out of the folder"],
    ),
    (
        "report of corrupt settings",
        {"e/settings.json": "{broken"},
        ["report", "{tmp}/e"],
        ["{tmp}/e/settings.json is corrupt", "not valid JSON", "restore it"],
    ),
    (
        "export of corrupt trials table",
        {"e/settings.json": EXPORTABLE_SETTINGS, "e/trials.parquet": "not parquet"},
        ["export", "{tmp}/e"],
        ["{tmp}/e/trials.parquet is corrupt", "restore it"],
    ),
    (
        "export of corrupt settings",
        {"e/settings.json": "[1, 2]", "e/trials.parquet": "not parquet"},
        ["export", "{tmp}/e"],
        ["{tmp}/e/settings.json is corrupt", "JSON list", "restore it"],
    ),
    (
        "export of incomplete settings",
        {"e/settings.json": '{"metric": "map@10"}', "e/trials.parquet": "not parquet"},
        ["export", "{tmp}/e"],
        ["{tmp}/e/settings.json is corrupt", "lacks name, mode"],
    ),
    (
        "resume of corrupt settings",
        {"e/settings.json": "{broken"},
        ["search", "--resume", "{tmp}/e"],
        ["{tmp}/e/settings.json is corrupt", "not valid JSON", "--name"],
    ),
    (
        "resume of corrupt trials table",
        {"e/settings.json": RESUMABLE_SETTINGS, "e/trials.parquet": "not parquet"},
        ["search", "--resume", "{tmp}/e"],
        ["{tmp}/e/trials.parquet is corrupt", "restore it"],
    ),
    (
        "resume of corrupt epochs table",
        {"e/settings.json": RESUMABLE_SETTINGS, "e/epochs.parquet": "not parquet"},
        ["search", "--resume", "{tmp}/e"],
        ["{tmp}/e/epochs.parquet is corrupt", "restore it"],
    ),
    (
        "train on unknown device",
        {"c.yaml": "config: {alpha: 1.0, max_epochs: 1}\n"},
        ["train", "--config", "{tmp}/c.yaml", "--device", "banana"],
        ["--device 'banana' is not a torch device", "pass cpu, cuda or cuda:N"],
    ),
    (
        "train on cuda without a GPU",
        {"c.yaml": "config: {alpha: 1.0, max_epochs: 1}\n"},
        ["train", "--config", "{tmp}/c.yaml", "--device", "cuda"],
        ["--device cuda", "finds no CUDA GPU", "--device cpu"],
    ),
    (
        "seed above 2**32 - 1",
        {"s.yaml": GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml", "--seed", "4294967296"],
        ["--seed", "from 0 to 4294967295", "got 4294967296"],
    ),
    (
        "negative seed",
        {"s.yaml": GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml", "--seed", "-1"],
        ["--seed", "from 0 to 4294967295", "got -1"],
    ),
    (
        "seed above 2**32 - 1 in space",
        {"s.yaml": "seed: 4294967296\n" + GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml"],
        ["seed in {tmp}/s.yaml", "from 0 to 4294967295", "got 4294967296"],
    ),
    (
        "negative seed of data info",
        {},
        ["data", "info", "--seed", "-1"],
        ["--seed", "got -1"],
    ),
    (
        "relevance threshold above every rating",
        {"s.yaml": "data: {relevance_threshold: 10}\n" + GOOD_PARAMS},
        ["search", "--space", "{tmp}/s.yaml"],
        ["relevance_threshold = 10", "the highest is 5", "to 5 or less"],
    ),
    (
        "ratings too few for a validation split",
        {"s.yaml": GOOD_PARAMS, "r.tsv": "1\t1\t4\n1\t2\t5\n2\t1\t3\n2\t3\t4\n"},
        ["search", "--space", "{tmp}/s.yaml", "--data", "{tmp}/r.tsv"],
        ["validation split of r is empty", "at least 6 ratings", "the most of any user is 2"],
    ),
    (
        "results dir is a file",
        {"s.yaml": GOOD_PARAMS, "results": "a file"},
        ["search", "--space", "{tmp}/s.yaml", "--results-dir", "{tmp}/results"],
        ["--results-dir {tmp}/results is a file, not a folder"],
    ),
    (
        "results dir below a file",
        {"s.yaml": GOOD_PARAMS, "results": "a file"},
        ["search", "--space", "{tmp}/s.yaml", "--results-dir", "{tmp}/results/deeper"],
        ["cannot be created, because {tmp}/results is a file"],
    ),
]

# Marks of the cases that only a machine without a CUDA GPU can run.
CASE_MARKS = {
    "train on cuda without a GPU": pytest.mark.skipif(
        torch.cuda.is_available(), reason="PyTorch finds a CUDA GPU on this machine"
    ),
}


@pytest.mark.parametrize(
    "files, argv, fragments",
    [pytest.param(*case[1:], id=case[0], marks=CASE_MARKS.get(case[0], ())) for case in CASES],
)
def test_bad_input_exits_2_with_message(tmp_path, capsys, files, argv, fragments):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{tmp}", str(tmp_path)))
    command = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]

    try:
        code = main(command)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2, err
    for fragment in fragments:
        assert fragment.replace("{tmp}", str(tmp_path)) in err, (fragment, err)
    assert "Traceback" not in err
    import sys

    if "ray" in sys.modules:
        assert not sys.modules["ray"].is_initialized()


@pytest.mark.parametrize("name", [".", "..", "../escaped", "a/b"])
def test_name_with_path_rejected(tmp_path, capsys, name):
    space = tmp_path / "s.yaml"
    space.write_text(GOOD_PARAMS)
    (tmp_path / "results" / "kept").mkdir(parents=True)
    code = main(
        [
            "search",
            "--space",
            str(space),
            "--results-dir",
            str(tmp_path / "results"),
            "--name",
            name,
            "--overwrite",
        ]
    )
    assert code == 2
    assert "--name must be a plain folder name" in capsys.readouterr().err
    assert (tmp_path / "results" / "kept").is_dir()


def test_negative_max_failures_rejected(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text(GOOD_PARAMS)
    assert main(["search", "--space", str(space), "--max-failures", "-1"]) == 2
    assert "--max-failures must be 0" in capsys.readouterr().err
