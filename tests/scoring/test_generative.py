"""Generation and imputation on small trained models, through the library only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aeops.data import ImageInputs, TabularInputs, WindowInputs, fit_scaler
from aeops.models import ModelConfig, build_model
from aeops.scoring import InputSchemaError, Predictor
from aeops.scoring.generative import (
    GenerationError,
    column_means,
    generate_samples,
    impute_values,
    imputed_frame,
    samples_frame,
)
from aeops.training import TrainingConfig, fit

COLUMNS = ["a", "b", "c", "d", "e", "f"]


def low_rank_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Six columns driven by two factors, on very different scales and offsets."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 2))
    mixing = np.array([[1.0, 0.5, -1.0, 0.2, 0.8, -0.6], [0.3, -1.0, 0.4, 1.0, -0.5, 0.9]])
    values = factors @ mixing + 0.05 * rng.normal(size=(n, 6))
    values = values * np.array([1, 10, 100, 0.1, 5, 1000]) + np.array([0, 50, -300, 2, 0, 1e4])
    return pd.DataFrame(values, columns=COLUMNS)


def trained_predictor(kind: str, tmp_path: Path) -> Predictor:
    frame = low_rank_table()
    inputs = TabularInputs(tuple(COLUMNS))
    scaler = fit_scaler(inputs.raw_values(frame), COLUMNS, "standard")
    samples = inputs.samples(frame, scaler)
    config = ModelConfig(
        kind=kind, architecture="mlp", latent_dim=2, hidden_dims=(32,), dropout=0.0, beta=0.1
    )
    model = build_model(config, (len(COLUMNS),))
    training = TrainingConfig(
        epochs=150, batch_size=64, lr=3e-3, seed=0, checkpoint_dir=str(tmp_path), progress=False
    )
    fit(model, samples[:500], samples[500:], training)
    return Predictor(model=model, inputs=inputs, scaler=scaler)


@pytest.fixture(scope="module")
def vae(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return trained_predictor("vae", tmp_path_factory.mktemp("vae"))


def test_generated_rows_are_in_original_units_and_follow_the_data(vae: Predictor) -> None:
    samples = generate_samples(vae, 2000, seed=3)
    frame = samples_frame(vae, samples)
    assert list(frame.columns) == ["sample", *COLUMNS]
    assert frame["sample"].tolist() == list(range(2000))
    data = low_rank_table()
    # Inverse-scaled: each column's centre and spread are the data's (1e4 offset, x1000).
    spread = data.std()
    assert ((frame[COLUMNS].mean() - data.mean()).abs() < 0.5 * spread).all()
    ratio = frame[COLUMNS].std() / spread
    assert ((ratio > 0.3) & (ratio < 2.0)).all(), ratio
    # The samples keep the data's correlations (two factors, not independent columns).
    real = data.corr().to_numpy()
    fake = frame[COLUMNS].corr().to_numpy()
    assert np.abs(real - fake).max() < 0.35


def test_generated_tables_name_their_sample_column_apart_from_the_model_s_own() -> None:
    # A feature named "sample" (or "step" for a series) made pandas refuse the table.
    config = ModelConfig(kind="vae", architecture="mlp", latent_dim=1, hidden_dims=(4,))
    table = TabularInputs(("sample", "_sample", "x"))
    values = np.random.default_rng(0).normal(size=(20, 3))
    predictor = Predictor(
        build_model(config, (3,)), table, fit_scaler(values, list(table.columns), "standard")
    )
    frame = samples_frame(predictor, generate_samples(predictor, 2))
    assert list(frame.columns) == ["__sample", "sample", "_sample", "x"]
    assert frame["__sample"].tolist() == [0, 1]
    window = WindowInputs(columns=("step", "sample"), length=4, stride=4)
    predictor = Predictor(
        build_model(config.model_copy(update={"architecture": "recurrent"}), (4, 2)),
        window,
        fit_scaler(values[:, :2], ["step", "sample"], "standard"),
    )
    frame = samples_frame(predictor, generate_samples(predictor, 2))
    assert list(frame.columns) == ["_sample", "_step", "step", "sample"]
    assert frame["_step"].tolist() == [0, 1, 2, 3] * 2


def test_the_same_seed_gives_the_same_samples_and_another_seed_others(vae: Predictor) -> None:
    first = generate_samples(vae, 16, seed=7)
    np.testing.assert_array_equal(first, generate_samples(vae, 16, seed=7))
    assert not np.allclose(first, generate_samples(vae, 16, seed=8))
    cooler = generate_samples(vae, 500, seed=7, temperature=0.2)
    assert cooler.std(axis=0).sum() < generate_samples(vae, 500, seed=7).std(axis=0).sum()


def test_generation_needs_a_vae_and_a_sensible_request(tmp_path: Path, vae: Predictor) -> None:
    vanilla = Predictor(
        model=build_model(ModelConfig(architecture="mlp", latent_dim=2), (6,)),
        inputs=vae.inputs,
        scaler=vae.scaler,
    )
    with pytest.raises(GenerationError, match=r"model.kind='vanilla'.*model.kind=vae"):
        generate_samples(vanilla, 4)
    with pytest.raises(GenerationError, match="num_samples must be at least 1"):
        generate_samples(vae, 0)
    with pytest.raises(GenerationError, match="temperature must be positive"):
        generate_samples(vae, 4, temperature=0.0)


def _mask(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    hidden = rng.random(frame.shape) < fraction
    hidden[hidden.all(axis=1), 0] = False
    masked = frame.mask(hidden)
    return masked, hidden


def _normalised_rmse(guess: np.ndarray, truth: np.ndarray, hidden: np.ndarray) -> float:
    spread = truth.std(axis=0)
    return float(np.sqrt(np.mean(((guess - truth) / spread)[hidden] ** 2)))


def test_vae_imputation_beats_column_means_and_keeps_observed_values(vae: Predictor) -> None:
    truth = low_rank_table(n=300, seed=11)
    masked, hidden = _mask(truth, 0.25, seed=1)
    imputation = impute_values(vae, masked)
    np.testing.assert_array_equal(imputation.missing, hidden)
    assert not np.isnan(imputation.values).any()
    assert 1 <= imputation.iterations <= 50
    filled = imputed_frame(vae, masked, imputation)
    # Observed values come back bit for bit; only the gaps changed.
    observed = ~hidden
    np.testing.assert_array_equal(filled.to_numpy()[observed], truth.to_numpy()[observed])
    column_means = masked.fillna(masked.mean()).to_numpy()
    vae_error = _normalised_rmse(filled.to_numpy(), truth.to_numpy(), hidden)
    mean_error = _normalised_rmse(column_means, truth.to_numpy(), hidden)
    # Two factors explain the data, so the observed columns pin the missing ones.
    assert vae_error < 0.5 * mean_error, (vae_error, mean_error)


def test_imputation_iterates_to_a_fixed_point(vae: Predictor) -> None:
    masked, _ = _mask(low_rank_table(n=100, seed=5), 0.3, seed=2)
    once = impute_values(vae, masked, max_iterations=1)
    converged = impute_values(vae, masked, max_iterations=500, tolerance=1e-4)
    assert once.iterations == 1 and 1 < converged.iterations < 500
    assert converged.last_change < 1e-4 < once.last_change
    again = impute_values(vae, masked, max_iterations=500, tolerance=1e-4)
    np.testing.assert_array_equal(converged.values, again.values)


def test_imputation_of_complete_rows_changes_nothing(vae: Predictor) -> None:
    frame = low_rank_table(n=20, seed=9)
    imputation = impute_values(vae, frame)
    assert imputation.iterations == 0 and not imputation.missing.any()
    pd.testing.assert_frame_equal(imputed_frame(vae, frame, imputation), frame)


def test_a_column_with_no_observed_value_starts_from_the_training_centre(
    vae: Predictor,
) -> None:
    frame = low_rank_table(n=50, seed=4)
    frame["f"] = np.nan
    imputation = impute_values(vae, frame)
    assert np.isfinite(imputation.values).all()
    # Reconstructed from the other five columns, not left at the centre.
    truth = low_rank_table(n=50, seed=4)["f"].to_numpy()
    error = np.sqrt(np.mean((imputation.values[:, 5] - truth) ** 2))
    assert error < 0.5 * truth.std()


def test_an_unobserved_column_starts_inside_the_training_range() -> None:
    scaler = fit_scaler(np.array([[0.0, 10.0], [4.0, 30.0]]), ["a", "b"], "minmax")
    values = np.array([[1.0, np.nan], [3.0, np.nan]])
    # a: its observed mean; b: the middle of its training range, not the minimum (10).
    np.testing.assert_allclose(column_means(values, scaler), [2.0, 20.0])


def test_imputation_refuses_infinite_values_and_a_bad_iteration_count(vae: Predictor) -> None:
    frame = low_rank_table(n=10)
    frame.loc[3, "b"] = np.inf
    message = r"1 infinite value\(s\).*row position 3, column 'b'"
    with pytest.raises(InputSchemaError, match=message):
        impute_values(vae, frame)
    with pytest.raises(ValueError, match="max_iterations must be at least 1"):
        impute_values(vae, low_rank_table(n=10), max_iterations=0)


def _prior_draws(predictor: Predictor, n: int, seed: int = 0) -> np.ndarray:
    """The scaled samples the VAE decodes from ``generate_samples``'s codes."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        return predictor.model.eval().generate(n, generator=generator).float().numpy()


def test_windows_and_images_generate_and_impute_in_their_own_shapes(tmp_path: Path) -> None:
    config = ModelConfig(kind="vae", latent_dim=3, hidden_dims=(8,), dropout=0.0)
    window = WindowInputs(columns=("x", "y"), length=8, stride=4)
    series = pd.DataFrame(
        {"x": np.sin(np.arange(64) / 3), "y": np.cos(np.arange(64) / 3) * 10 + 1000}
    )
    scaler = fit_scaler(window.raw_values(series), ["x", "y"], "standard")
    predictor = Predictor(
        model=build_model(config.model_copy(update={"architecture": "recurrent"}), (8, 2)),
        inputs=window,
        scaler=scaler,
    )
    frame = samples_frame(predictor, generate_samples(predictor, 3))
    assert list(frame.columns) == ["sample", "step", "x", "y"]
    assert frame["sample"].tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert frame["step"].tolist() == list(range(8)) * 3
    # Each reading in its own units: the scaled (W, T, F) windows are read per feature.
    scaled = scaler.transform(frame[["x", "y"]].to_numpy())
    np.testing.assert_allclose(
        scaled.reshape(3, 8, 2), _prior_draws(predictor, 3), rtol=1e-4, atol=1e-4
    )
    gappy = series.copy()
    gappy.loc[[5, 20, 21], "y"] = np.nan
    filled = imputed_frame(predictor, gappy, impute_values(predictor, gappy))
    assert filled["y"].notna().all()
    pd.testing.assert_series_equal(filled["x"], series["x"])

    image = ImageInputs(column="image", shape=(1, 6, 6))
    pixels = np.random.default_rng(0).random((10, 36)) * 200 + 40  # pixel units
    predictor = Predictor(
        model=build_model(config.model_copy(update={"architecture": "conv"}), (1, 6, 6)),
        inputs=image,
        scaler=fit_scaler(pixels, ["image"], "minmax", per_column=False),
    )
    generated = samples_frame(predictor, generate_samples(predictor, 4))
    assert list(generated.columns) == ["sample", "image"]
    assert all(cell.shape == (36,) for cell in generated["image"])
    scaled = predictor.scaler.transform(np.stack(generated["image"]))  # back in pixel units
    np.testing.assert_allclose(
        scaled.reshape(4, 1, 6, 6), _prior_draws(predictor, 4), rtol=1e-4, atol=1e-4
    )
    # A reconstruction of scaled zeros is the darkest training pixel, in pixel units.
    np.testing.assert_allclose(
        image.row_reconstructions(2, np.zeros((2, 1, 6, 6)), predictor.scaler), pixels.min()
    )
    holes = pixels.copy()
    holes[0, :5] = np.nan
    images = pd.DataFrame({"image": list(holes)})
    result = imputed_frame(predictor, images, impute_values(predictor, images))
    assert np.isfinite(result["image"][0]).all()
    np.testing.assert_array_equal(result["image"][0][5:], pixels[0, 5:])
