"""The atsnet reconstructor: streaming equals whole-recording runs, edges, registry, auto."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spkrecon.io.source import ArraySource  # noqa: E402
from spkrecon.methods import create, get_class  # noqa: E402
from spkrecon.models.atsnet import ATSNet, ATSNetConfig, predict, save_atsnet  # noqa: E402


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "motion"])
def tiny_weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> str:
    torch.manual_seed(0)
    model = ATSNet(ATSNetConfig(widths=(4, 8), mixture=True, motion=request.param)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_atsnet(model, path)
    return str(path)


def _spikes(t: int = 300, h: int = 12, w: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.02, 0.4, (h, w))
    return (rng.random((t, h, w)) < rate).astype(np.uint8)


def test_registered_with_a_summary_and_parameters() -> None:
    cls = get_class("atsnet")
    assert "adaptive" in cls.summary.lower()
    assert {"weights", "device", "precision", "batch_size", "alpha", "flips"} <= set(
        cls.parameter_names())


def test_stream_in_chunks_equals_one_window_per_frame(tiny_weights: str) -> None:
    spikes = _spikes()
    method = create("atsnet", weights=tiny_weights, precision="fp32")  # compared with fp32 predict
    method.batch_frames = 7  # many chunks, each re-reading the window around it
    wanted = [0, 5, 100, 150, 151, 299]
    streamed = dict(method.stream(ArraySource(spikes), wanted))
    r = method.config.radius
    for idx in (150, 151):  # windows inside the recording: read as they are
        win = torch.from_numpy(spikes[idx - r:idx + r + 1][None])
        with torch.inference_mode():
            direct = predict(method.model, win, method.flips)[0].numpy()
        np.testing.assert_allclose(streamed[idx], direct, atol=1e-6)
    assert sorted(streamed) == wanted


def test_edges_are_completed_by_reflection(tiny_weights: str) -> None:
    spikes = _spikes(t=40)
    method = create("atsnet", weights=tiny_weights, precision="fp32")
    out = method(spikes, [0, 20, 39])
    assert out.shape == (3, 12, 10) and out.dtype == np.float32
    from spkrecon.methods.spk2imgnet import reflect_index

    r = method.config.radius
    win = torch.from_numpy(spikes[reflect_index(np.arange(-r, r + 1), 40)][None])
    with torch.inference_mode():
        direct = predict(method.model, win, method.flips)[0].numpy()
    np.testing.assert_allclose(out[0], direct, atol=1e-6)


def test_batch_size_does_not_change_results(tiny_weights: str) -> None:
    spikes = _spikes(t=60)
    one = create("atsnet", weights=tiny_weights, batch_size=1)(spikes, [10, 11, 12])
    three = create("atsnet", weights=tiny_weights, batch_size=3)(spikes, [10, 11, 12])
    np.testing.assert_allclose(one, three, atol=1e-5)


def test_spk2imgnet_refuses_atsnet_weights_with_a_hint(tiny_weights: str) -> None:
    from spkrecon.errors import WeightsError

    with pytest.raises(WeightsError, match="--method atsnet"):
        create("spk2imgnet", weights=tiny_weights)


def test_auto_prefers_atsnet_over_the_lite_network_without_full_weights(
        tiny_weights: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from spkrecon.methods import build
    from spkrecon.methods.auto import ATS_NAME, choose_auto
    from spkrecon.models.weights import DEFAULT_NAME, ENV_VAR, find_weights

    if find_weights(DEFAULT_NAME) is not None:
        pytest.skip("full Spk2ImgNet weights are installed here")
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(tiny_weights, folder / f"{ATS_NAME}.pt")
    monkeypatch.setenv(ENV_VAR, str(folder))
    name, params, why = choose_auto()
    assert name == "atsnet" and params["weights"] == str(folder / "atsnet.pt")
    assert "no full Spk2ImgNet weights" in why
    method, said = build("auto")
    assert method.name == "atsnet" and "using atsnet" in (said or "")


def test_auto_runs_atsnet_weights_given_with_weights(tiny_weights: str) -> None:
    """``--weights`` with an ATSNet file picks atsnet (it used to pick spk2imgnet and fail)."""
    from spkrecon.methods import build
    from spkrecon.methods.auto import choose_auto

    name, params, why = choose_auto(weights=tiny_weights)
    assert (name, params) == ("atsnet", {"weights": tiny_weights}) and "--weights" in why
    method, said = build("auto", weights=tiny_weights)
    assert method.name == "atsnet" and "using atsnet" in (said or "")


def test_cli_video_with_atsnet_weights_and_no_method(tiny_weights: str, tmp_path) -> None:
    import imageio_ffmpeg
    from typer.testing import CliRunner

    from spkrecon.cli.app import app
    from spkrecon.io import write_dat

    dat, out = tmp_path / "r.dat", tmp_path / "r.mp4"
    write_dat(dat, _spikes(t=120, h=16, w=24))
    res = CliRunner().invoke(app, ["video", str(dat), "--height", "16", "--width", "24",
                                   "--weights", tiny_weights, "-o", str(out), "--stride", "20"])
    assert res.exit_code == 0, res.output
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert "using atsnet" in res.output and frames == 6


def test_precision_auto_is_bf16_only_on_a_cpu_that_does_it_natively(tiny_weights: str) -> None:
    from spkrecon.methods.spk2imgnet import cpu_native_bf16, resolve_precision

    native = cpu_native_bf16()
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    method = create("atsnet", weights=tiny_weights, device="cpu")
    assert method.precision == ("bf16" if native else "fp32")  # what ran, not "auto"
    assert method.params()["precision"] == method.precision


def test_bf16_runs_only_the_network_in_bf16_and_stays_close_to_fp32(tiny_weights: str) -> None:
    spikes = _spikes(t=300, h=24, w=40, seed=5)
    full = create("atsnet", weights=tiny_weights, device="cpu", precision="fp32")(spikes, [150])
    half = create("atsnet", weights=tiny_weights, device="cpu", precision="bf16")(spikes, [150])
    assert half.dtype == np.float32 and half.shape == full.shape
    # Measured: 6e-4 / 8e-5 (max / mean); with the features in bf16 too (the motion
    # estimate's filters) the motion network moved 0.028 / 0.0033.
    assert np.abs(half - full).max() < 0.005
    assert np.abs(half - full).mean() < 0.0005


def test_flips_average_the_network_over_mirror_images(tiny_weights: str) -> None:
    from spkrecon.models.atsnet import pad_to, window_features

    method = create("atsnet", weights=tiny_weights, precision="fp32")
    model, cfg = method.model, method.config
    spikes = _spikes(t=2 * cfg.radius + 1, h=16, w=24, seed=3)
    win = torch.from_numpy(spikes[None])
    with torch.inference_mode():
        x, s = window_features(win, cfg)

        def mirrored(dims: tuple[int, ...]) -> torch.Tensor:
            xf = x.flip(dims).clone() if dims else x
            if cfg.motion:  # the velocity's components point the other way in a mirror
                names = cfg.channel_names
                if -1 in dims:
                    xf[:, names.index("vx")] *= -1
                if -2 in dims:
                    xf[:, names.index("vy")] *= -1
            xp, (h, w) = pad_to(xf, model.multiple)
            y = model(xp)[:, 0, :h, :w]
            return y.flip(dims) if dims else y

        one = (mirrored(()) * s[:, 0]).clamp(0, 1)
        two = ((mirrored(()) + mirrored((-1,))) / 2 * s[:, 0]).clamp(0, 1)
        four = (sum(mirrored(d) for d in ((), (-1,), (-2,), (-2, -1))) / 4 * s[:, 0]).clamp(0, 1)
        np.testing.assert_allclose(predict(model, win, 1), one, atol=1e-6)
        np.testing.assert_allclose(predict(model, win, 2), two, atol=1e-6)
        np.testing.assert_allclose(predict(model, win, 4), four, atol=1e-6)
        assert float((four - one).abs().max()) > 1e-4  # the mirror passes do differ
        with pytest.raises(ValueError, match="flips"):
            predict(model, win, 3)
    out = create("atsnet", weights=tiny_weights, flips=4, precision="fp32")(spikes, [cfg.radius])
    np.testing.assert_allclose(out[0], four[0].numpy(), atol=1e-6)


def test_flips_is_a_checked_method_parameter(tiny_weights: str) -> None:
    from spkrecon.errors import ParameterError
    from spkrecon.methods.params import convert_params

    assert convert_params("atsnet", {"flips": "4"}) == {"flips": 4}
    with pytest.raises(ParameterError, match="flips"):
        convert_params("atsnet", {"flips": "3"})
    with pytest.raises(ParameterError, match="flips"):
        create("atsnet", weights=tiny_weights, flips=3)
