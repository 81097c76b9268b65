"""`meanfield reproduce`: every entry's --quick through the CLI, bad input, and the
numbers of the reduced localisation and seed runs against the authors' stored ones."""

import json

import numpy as np
import pytest

import meanfield as mf
from meanfield.reproduce import ENTRIES, arc_clusters, load_reference
from meanfield.runs.cli import main


def _run(name, out):
    code = main(["reproduce", name, "--quick", "--out", str(out)])
    run = mf.load_run(out)
    return code, run


def test_list(capsys):
    assert main(["reproduce", "--list"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in ENTRIES)


def test_bad_input(tmp_path, capsys):
    assert main(["reproduce", "no-such-entry", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "perceptron-localisation" in err
    assert not (tmp_path / "x").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("")
    assert main(["reproduce", "temperature-laws", "--out", str(tmp_path / "full")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    args = ["reproduce", "temperature-laws", "--out", str(tmp_path / "full"), "--overwrite"]
    assert main(args) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["reproduce"]) == 2


def test_localisation_quick_matches_authors(tmp_path):
    code, run = _run("perceptron-localisation", tmp_path / "loc")
    assert code == 0 and run.results["agreed"]
    ref = load_reference("perceptron_localisation")["reduced"]["runs"]
    theirs = {r["beta"]: r for r in ref}
    rows = {r["quantity"]: r for r in run.results["comparison"]}
    for beta in (1.0, 50.0):
        t = theirs[beta]
        assert rows[f"beta = {beta:g}: atoms"]["ours"] == t["atoms"] == 3
        assert rows[f"beta = {beta:g}: steps to their stop rule"]["ours"] == t["steps"]
        assert abs(rows[f"beta = {beta:g}: mass 1"]["ours"] - t["masses"][0]) < 1e-12
        assert abs(rows[f"beta = {beta:g}: heaviest location (rad)"]["difference"]) < 1e-9
        assert rows[f"beta = {beta:g}: largest angle difference (rad)"]["ours"] < 6e-12
    assert (tmp_path / "loc" / "report.md").read_text().startswith("# Localisation")
    assert (tmp_path / "loc" / "localisation.png").is_file()


def test_seed_independence_of_the_heaviest_atom(tmp_path):
    code, run = _run("perceptron-seed-independence", tmp_path / "seeds")
    assert code == 0 and run.results["agreed"]
    scan = run.results["summary"]["scan"]
    at100 = next(s for s in scan if s["n"] == 100)
    assert at100["atoms"] == [3, 3, 3]
    # the heaviest atom sits at the same place for every seed; the others move more
    assert at100["location_spread"][0] < 1e-5
    assert at100["location_spread"][0] < 1e-2 * min(at100["location_spread"][1:])
    assert abs(np.mean([m[0] for m in at100["masses"]]) - 0.487) < 0.02


def test_staircase_quick(tmp_path):
    code, run = _run("metastability-staircase", tmp_path / "stairs")
    assert code == 0 and run.results["agreed"]
    by_beta = {r["beta"]: r for r in run.results["summary"]["runs"]}
    assert [round(s["level"], 6) for s in by_beta[500.0]["steps"]] == [0.44, 0.52]
    assert [round(s["level"], 6) for s in by_beta[4000.0]["steps"]] == [0.28, 0.44, 0.52]


@pytest.mark.parametrize("name", ["temperature-laws", "clustering-phase-diagram"])
def test_quick_entries_without_peer_code(tmp_path, name):
    code, run = _run(name, tmp_path / "out")
    assert code == 0
    assert run.results["entry"] == name and run.results["comparison"]
    json.dumps(run.results)
    assert (tmp_path / "out" / "report.md").is_file()


def test_arc_clusters_are_theirs():
    """Greedy arc grouping (their analysis._cluster_sizes), on a case where it differs
    from single linkage: a chain of gaps 0.06 with threshold 0.1."""
    theta = np.array([0.0, 0.06, 0.12, 0.18, 3.0])
    cl = arc_clusters(np.asarray(theta), 0.1)
    assert int(cl["count"]) == 3
    assert np.allclose(np.asarray(cl["masses"][:3]), [0.4, 0.4, 0.2])
    assert int(mf.atoms.cluster_count(mf.angles_to_circle(theta), tol=0.1)) == 2
