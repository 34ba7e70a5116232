"""Claims: bootstrap intervals, Wilcoxon/Holm, the three verdicts, shared frames, convergence notes."""
import numpy as np
import pandas as pd
import pytest

from choirbench import ChoirbenchError
from choirbench.evaluation.aggregate import shared_frames
from choirbench.evaluation.claims import (bootstrap_median_ci, check_claims, claim_p_value, convergence,
                                          convergence_table, holm, verdict)
from choirbench.evaluation.tables import claims_markdown


def decide(d, kind="beats", margin=0.0):
    lo, hi = bootstrap_median_ci(d)
    p = claim_p_value(d, kind, margin)
    return verdict(kind, margin, lo, hi, holm([p])[0])


@pytest.mark.parametrize("shift", [-2.0, 0.0, 1.5, 7.0])
def test_bootstrap_interval_of_a_known_shift_covers_it(shift):
    rng = np.random.default_rng(11)
    d = shift + rng.standard_normal(200)
    lo, hi = bootstrap_median_ci(d)
    assert lo < shift < hi
    assert hi - lo < 0.6  # and is not vacuous
    assert (lo, hi) == bootstrap_median_ci(d)  # seeded


def test_verdicts_on_hand_made_differences():
    rng = np.random.default_rng(12)
    noise = rng.standard_normal(40)
    assert decide(3.0 + noise) == "holds"
    assert decide(-3.0 + noise) == "refuted"
    assert decide(0.1 * noise) == "inconclusive"
    # a margin moves the line: +3 dB beats the mixture by 1 dB, not by 5 dB
    assert decide(3.0 + noise, margin=1.0) == "holds"
    assert decide(3.0 + noise, margin=5.0) == "refuted"
    assert decide(3.0 + noise, margin=3.0) == "inconclusive"
    # "within 1 dB": equivalence needs the whole interval inside the tolerance
    assert decide(0.1 * noise, "within", 1.0) == "holds"
    assert decide(3.0 + 0.2 * noise, "within", 1.0) == "refuted"
    assert decide(0.9 + noise, "within", 1.0) == "inconclusive"


def test_verdict_needs_the_interval_and_the_corrected_p_value():
    assert verdict("beats", 0.0, 0.2, 1.0, 0.01) == "holds"
    assert verdict("beats", 0.0, 0.2, 1.0, 0.2) == "inconclusive"     # interval alone is not enough
    assert verdict("beats", 0.0, -0.1, 1.0, 0.001) == "inconclusive"  # nor the p-value alone
    assert verdict("beats", 0.0, -1.0, -0.2, 0.9) == "refuted"
    assert verdict("beats", 0.0, np.nan, np.nan, 0.0) == "inconclusive"
    with pytest.raises(ValueError):
        verdict("ties", 0.0, 0.0, 1.0, 0.0)


def test_holm_matches_hand_computation():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])


def write_log(path, valid, steps_per_valid=10):
    rows = []
    for i, loss in enumerate(valid, start=1):
        step = i * steps_per_valid
        rows.append({"step": step, "split": "train", "loss": loss * 1.1, "lr": 1e-3, "elapsed_s": step / 10})
        rows.append({"step": step, "split": "valid", "loss": loss, "lr": 1e-3, "elapsed_s": step / 10})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_convergence_from_train_logs(tmp_path):
    early = write_log(tmp_path / "a.csv", [5, 4, 3, 3.1, 3.2, 3.05])
    info = convergence(early, steps=100, patience=3)
    assert info["ended_by"] == "early stopping" and info["converged"] and info["steps_run"] == 60
    falling = write_log(tmp_path / "b.csv", [5, 4, 3, 2.5, 2.0, 1.6])
    info = convergence(falling, steps=60, patience=3)
    assert info["ended_by"] == "step budget" and not info["converged"] and info["last_change"] < -0.1
    assert "step budget at 60/60 steps" in info["note"]
    flat = write_log(tmp_path / "c.csv", [5, 3, 2.0, 2.001, 1.999, 1.998])
    info = convergence(flat, steps=60, patience=10)
    assert info["ended_by"] == "step budget" and info["converged"] and "plateau" in info["note"]
    (tmp_path / "bad.csv").write_text("step,loss\n1,2\n")
    with pytest.raises(ChoirbenchError, match="bad.csv"):
        convergence(tmp_path / "bad.csv")


def long_table(scores: dict[str, np.ndarray], metric="SI-SDR", seeds=None) -> pd.DataFrame:
    """scores: method -> [excerpts, voices, frames] (one seed unless ``seeds`` gives more)."""
    rows = []
    for method, values in scores.items():
        for seed in (seeds or {}).get(method, [0]):
            shift = 0.05 * seed
            for e, v, f in np.ndindex(values.shape):
                rows.append({"dataset": "d", "method": method, "seed": seed, "J": 2, "example_id": f"x{e}",
                             "voice": "SATB"[v], "frame": f, "metric": metric, "value": values[e, v, f] + shift})
    return pd.DataFrame(rows)


def test_shared_frames_drop_a_frame_any_method_skipped():
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(3, 2, 4)), rng.normal(size=(3, 2, 4))
    a[0, 0, 1] = np.nan
    table = long_table({"nmf1": a, "mixture": b})
    shared = shared_frames(table, ["nmf1", "mixture"])
    assert len(shared) == len(table) - 2
    assert not ((shared["example_id"] == "x0") & (shared["voice"] == "S") & (shared["frame"] == 1)).any()


def test_check_claims_gives_interval_p_value_verdict_and_budget_note(tmp_path):
    rng = np.random.default_rng(14)
    base = rng.normal(0, 3, size=(10, 2, 4))
    table = long_table({"mixture": base, "nmf1": base + 8 + 0.3 * rng.standard_normal(base.shape),
                        "sf-us-full": base + 2 + 0.3 * rng.standard_normal(base.shape),
                        "sf-us-full-synth": base + 2 + 0.3 * rng.standard_normal(base.shape)},
                       seeds={"sf-us-full": [0, 1], "sf-us-full-synth": [0, 1]})
    training = {"sf-us-full": {"trained_by": "sf-us-full", "steps": 60, "patience": 3},
                "sf-us-full-synth": {"trained_by": "sf-us-full", "steps": 60, "patience": 3}}
    for seed, valid in ((0, [5, 4, 3, 3.1, 3.2, 3.3]), (1, [5, 4, 3, 2.5, 2.0, 1.6])):
        write_log(tmp_path / "sf-us-full" / f"seed{seed}" / "train_log.csv", valid)
    runs = convergence_table(sorted(tmp_path.rglob("train_log.csv")), training)
    claims = check_claims(table, training, runs).set_index("claim")
    nmf = claims.loc["NMF1 beats the mixture by at least 5 dB"]
    assert nmf["verdict"] == "holds" and nmf["ci_low"] > 5 and nmf["n_pairs"] == 20
    assert not nmf["budget_limited"] and nmf["convergence"] == "no trained model"
    sf = claims.loc["source-filter (unsupervised) beats score-informed NMF"]
    assert sf["verdict"] == "refuted" and sf["budget_limited"] and "seed 1 " in sf["convergence"]
    assert sf["per_seed"].count("/") == 1  # one median difference per training seed
    masking = claims.loc[["masking beats direct synthesis"]]
    assert set(masking["metric"]) == {"SI-SDR"}  # only the metrics the table has
    assert masking["verdict"].iloc[0] == "inconclusive"
    assert claims["p_holm"].ge(claims["p_value"]).all()
    text = claims_markdown(claims.reset_index(), runs)
    assert "had not converged" in text.splitlines()[2] and "budget-limited" in text


def test_a_table_given_twice_is_refused(tmp_path):
    from choirbench.evaluation.aggregate import read_tables

    path = tmp_path / "J2.parquet"
    long_table({"nmf1": np.zeros((1, 1, 2))}).to_parquet(path, index=False)
    assert len(read_tables([path])) == 2
    with pytest.raises(ChoirbenchError, match="nmf1 seed 0 J=2 twice"):
        read_tables([path, path])


def test_verdict_settings_come_from_the_config_and_change_the_verdicts(tmp_path):
    rng = np.random.default_rng(15)
    base = rng.normal(0, 3, size=(6, 2, 4))
    # nmf1 beats the mixture by ~5.6 dB: above the 5 dB margin, but with a p-value between 0.001 and 0.05
    table = long_table({"mixture": base, "nmf1": base + 5.6 + 0.8 * rng.standard_normal(base.shape)})
    row = lambda settings: check_claims(table, settings=settings).set_index("claim").loc[  # noqa: E731
        "NMF1 beats the mixture by at least 5 dB"]
    loose, strict = row({"alpha": 0.05}), row({"alpha": 0.001})
    assert 0.001 < loose["p_holm"] < 0.05
    assert loose["verdict"] == "holds" and strict["verdict"] == "inconclusive"
    assert strict["ci_high"] - strict["ci_low"] > loose["ci_high"] - loose["ci_low"]  # a 99.9 % interval is wider
    lows = {row({"bootstrap_resamples": 99, "bootstrap_seed": seed})["ci_low"] for seed in range(5)}
    assert len(lows) > 1  # the seed and the resample count are used
    text = claims_markdown(check_claims(table, settings={"bootstrap_resamples": 199}), None,
                           {"bootstrap_resamples": 199})
    assert "199 resamples" in text
    with pytest.raises(ChoirbenchError, match=r"verdicts\.alhpa is unknown"):
        check_claims(table, settings={"alhpa": 0.01})
    with pytest.raises(ChoirbenchError, match=r"verdicts\.alpha must be < 1"):
        check_claims(table, settings={"alpha": 1.5})


def test_f0_cost_is_the_paired_drop_from_truth_to_mixture_f0_per_voice():
    from choirbench.evaluation.tables import f0_cost, f0_cost_markdown

    rng = np.random.default_rng(16)
    base = rng.normal(5, 3, size=(12, 2, 4))
    # mixture F0 costs the soprano (voice 0) 4 dB and the alto (voice 1) 1 dB
    cost_by_voice = np.array([4.0, 1.0])[None, :, None]
    table = long_table({"nmf2": base, "nmf2-mixf0": base - cost_by_voice + 0.1 * rng.standard_normal(base.shape)})
    cost = f0_cost(table, {"nmf2-mixf0": "nmf2"})
    row = cost.iloc[0]
    assert (row["entry"], row["truth_twin"], row["J"], row["metric"], row["n_pairs"]) == ("nmf2-mixf0", "nmf2", 2,
                                                                                         "SI-SDR", 24)
    assert abs(row["drop_S"] - 4.0) < 0.2 and abs(row["drop_A"] - 1.0) < 0.2
    assert row["ci_low"] <= row["drop"] <= row["ci_high"] and 1.0 < row["drop"] < 4.0
    text = f0_cost_markdown(cost)
    assert "nmf2-mixf0 (nmf2)" in text and "drop S" in text
    assert f0_cost(table, {"sf-us-full-mixf0": "sf-us-full"}).empty  # entries that did not run: no row
    assert "No entry" in f0_cost_markdown(f0_cost(table, {}))
