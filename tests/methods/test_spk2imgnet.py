"""The spk2imgnet reconstructor: streaming, block reuse, edges, padding, devices, auto."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from spkrecon.errors import DeviceError, ParameterError, WeightsError  # noqa: E402
from spkrecon.io import ArraySource, write_dat  # noqa: E402
from spkrecon.io.dat import DatRecording  # noqa: E402
from spkrecon.methods import available, create  # noqa: E402
from spkrecon.methods.spk2imgnet import Spk2ImgNet, reflect_index  # noqa: E402
from spkrecon.models import weights as W  # noqa: E402
from spkrecon.models.spk2imgnet import ModulatedDeformConv, Spk2ImgNetConfig  # noqa: E402
from spkrecon.models.spk2imgnet import Spk2ImgNet as Net  # noqa: E402
from spkrecon.pipeline import output_indices, reconstruct  # noqa: E402
from spkrecon.tonemap import ToneMapper  # noqa: E402

CFG = Spk2ImgNetConfig(features=16, num_blocks=1)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _random_net(cfg: Spk2ImgNetConfig = CFG, seed: int = 0) -> Net:
    """Random weights whose deformable offsets are not zero (so alignment matters)."""
    torch.manual_seed(seed)
    net = Net(cfg)
    for mod in net.modules():
        if isinstance(mod, ModulatedDeformConv):
            torch.nn.init.normal_(mod.conv_offset_mask.weight, std=0.05)
    with torch.no_grad():
        net.rec_conv2.bias.fill_(0.3)  # outputs mostly inside [0, 1], so clipping is rare
    return net.eval()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "random.pt"
    net = _random_net()
    W.save_checkpoint(W.Checkpoint(net.state_dict(), CFG.to_dict(), 0.6,
                                   W.make_meta(training_data="random weights")), path)
    return path


@pytest.fixture(scope="module")
def spikes():
    rng = np.random.default_rng(3)
    rate = np.linspace(0.1, 0.5, 30)[None, :] * np.ones((22, 1))
    return (rng.random((64, 22, 30)) < rate).astype(np.uint8)  # 22x30: padded to 24x32


def _direct(weights_file, spikes, t):
    """The plain network on frame t's window, built independently (np.pad reflect, symmetric)."""
    net = _random_net()
    padded = np.pad(spikes, ((20, 20), (0, 0), (0, 0)), mode="reflect")[t:t + 41]
    padded = np.pad(padded, ((0, 0), (0, 2), (0, 2)), mode="symmetric")
    with torch.inference_mode():
        image, _ = net(torch.from_numpy(padded).float()[None])
    return image[0, 0, :22, :30].clamp(0, 1).numpy()


def test_registered():
    assert "spk2imgnet" in available()
    names = Spk2ImgNet.parameter_names()
    for p in ("weights", "device", "precision", "channels_last", "compile", "batch_size",
              "cache_mb", "alpha"):
        assert p in names


@pytest.mark.parametrize("t", [0, 3, 25, 63])
def test_matches_the_network_on_reflected_windows(weights_file, spikes, t):
    m = create("spk2imgnet", weights=str(weights_file), device="cpu")
    out = m(spikes, [t])
    assert out.shape == (1, 22, 30) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], _direct(weights_file, spikes, t), atol=1e-5)


@pytest.mark.parametrize("stride", [1, 7, 3])
def test_block_reuse_changes_nothing_and_encodes_each_block_once(weights_file, spikes, stride):
    idx = list(range(0, 64, stride))
    reuse = create("spk2imgnet", weights=str(weights_file), device="cpu", batch_size=2)
    naive = create("spk2imgnet", weights=str(weights_file), device="cpu", reuse=False,
                   batch_size=3)
    a, b = reuse(spikes, idx), naive(spikes, idx)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    centres = {t + o for t in idx for o in (-14, -7, 0, 7, 14)}
    assert reuse.counts == {"blocks": len(centres), "frames": len(idx)}
    assert naive.counts["blocks"] == 5 * len(idx)
    if stride in (1, 7):
        assert len(centres) <= len(idx) + 28  # about one block per output frame


def test_a_cache_over_cache_mb_falls_back_to_whole_windows(weights_file, spikes):
    idx = list(range(0, 40))
    small = create("spk2imgnet", weights=str(weights_file), device="cpu", cache_mb=0.5)
    # 22x30 pads to 24x32; 28 + 1 blocks of 16 * (1 + 1/4 + 1/16) + 4 channels in fp32
    assert small.cache_bytes(22, 30) == 29 * 25 * 24 * 32 * 4 > 0.5 * 2**20
    roomy = create("spk2imgnet", weights=str(weights_file), device="cpu", cache_mb=4)
    a, b = small(spikes, idx), roomy(spikes, idx)
    assert not small.reusing and roomy.reusing
    assert small.counts["blocks"] == 5 * len(idx) and roomy.counts["blocks"] < 2 * len(idx)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    with pytest.raises(ParameterError, match="cache_mb"):
        create("spk2imgnet", weights=str(weights_file), device="cpu", cache_mb=-1)


def test_separate_encoders_run_every_window_whole(spikes, tmp_path):
    cfg = Spk2ImgNetConfig.preset("net_b", features=8, num_blocks=1, separate_encoders=True)
    torch.manual_seed(2)
    net = Net(cfg).eval()
    with torch.no_grad():
        net.rec_conv2.bias.fill_(0.3)
    path = tmp_path / "sep.pt"
    W.save_checkpoint(W.Checkpoint(net.state_dict(), cfg.to_dict(), 0.6,
                                   W.make_meta(training_data="random weights")), path)
    m = create("spk2imgnet", weights=str(path), device="cpu", batch_size=2)
    assert not m.reuse  # a block's features depend on its position in the window
    out = m(spikes, [20, 21])
    padded = np.pad(spikes[:62], ((0, 0), (0, 2), (0, 2)), mode="symmetric")
    with torch.inference_mode():
        want = net(torch.from_numpy(padded[1:42]).float()[None])[0][0, 0, :22, :30]
    np.testing.assert_allclose(out[1], want.clamp(0, 1).numpy(), atol=1e-5)
    assert m.counts["blocks"] == 10


def test_streams_from_a_file_with_small_reads(weights_file, spikes, tmp_path):
    path = tmp_path / "rec.dat"
    spikes = np.ascontiguousarray(spikes[:, :, :28])  # whole bytes per .dat frame
    write_dat(path, spikes)
    src = DatRecording(path, 22, 28)
    m = Spk2ImgNet(weights=str(weights_file), device="cpu", batch_size=3)
    m.read_chunk = 5  # slide the frame window through many reads
    got = dict(m.stream(src, range(2, 64, 2)))
    want = m(spikes, range(2, 64, 2))
    assert list(got) == list(range(2, 64, 2))
    np.testing.assert_allclose(np.stack(list(got.values())), want, atol=1e-6)


def test_pipeline_alpha_tone_mapping(weights_file, spikes):
    m = Spk2ImgNet(weights=str(weights_file), device="cpu")
    src = ArraySource(spikes)
    idx = output_indices(src, m, 10, 20, 5)
    rates = dict(m.stream(src, idx))
    images = dict(reconstruct(src, m, idx, ToneMapper("alpha", alpha=0.6)))
    assert list(images) == [10, 15]
    for k, img in images.items():
        assert 0 <= rates[k].min() and rates[k].max() <= 1
        np.testing.assert_allclose(img, np.clip(rates[k] / 0.6, 0, 1), atol=1e-6)


def test_short_recordings(weights_file, spikes):
    m = Spk2ImgNet(weights=str(weights_file), device="cpu")
    assert m.min_frames == 21
    out = m(spikes[:21])  # every frame, windows completed by reflection
    assert out.shape == (21, 22, 30) and np.isfinite(out).all()
    with pytest.raises(ParameterError, match="at least 21"):
        m(spikes[:20], [5])


def test_reconstruct_on_a_chunk_in_any_order(weights_file, spikes):
    m = Spk2ImgNet(weights=str(weights_file), device="cpu")
    out = m.reconstruct(spikes, np.array([30, 10, 30]))
    np.testing.assert_allclose(out[0], out[2])
    np.testing.assert_allclose(out[1], m(spikes, [10])[0], atol=1e-6)


def test_channels_last_and_bf16(weights_file, spikes):
    ref = Spk2ImgNet(weights=str(weights_file), device="cpu")(spikes, [30])
    cl = Spk2ImgNet(weights=str(weights_file), device="cpu", channels_last=True)(spikes, [30])
    np.testing.assert_allclose(cl, ref, atol=1e-5)
    bf = Spk2ImgNet(weights=str(weights_file), device="cpu", precision="bf16")(spikes, [30])
    assert np.abs(bf - ref).mean() < 0.02


def test_devices_and_precisions_are_checked(weights_file):
    with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
        Spk2ImgNet(weights=str(weights_file), device="cpu", precision="fp16")
    with pytest.raises(ParameterError, match="unknown precision"):
        Spk2ImgNet(weights=str(weights_file), device="cpu", precision="fp8")
    with pytest.raises(ParameterError, match="unknown device"):
        Spk2ImgNet(weights=str(weights_file), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            Spk2ImgNet(weights=str(weights_file), device="cuda:0")
        assert Spk2ImgNet(weights=str(weights_file), device="auto").device == "cpu"


def test_missing_weights_say_where_they_were_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(WeightsError) as err:
        create("spk2imgnet", weights="no-such-weights", device="cpu")
    msg = str(err.value)
    assert str(tmp_path / "no-such-weights.pt") in msg
    assert "spkrecon weights import" in msg and "spkrecon train" in msg


# -- --method auto ------------------------------------------------------------------------
@pytest.fixture
def only_tmp_locations(tmp_path, monkeypatch):
    """Weights lookup confined to one temporary folder (nothing shipped interferes)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(W, "search_locations", lambda: [("env", folder)])
    return folder


def test_auto_without_weights_picks_tfp(only_tmp_locations):
    from spkrecon.methods.auto import choose_auto

    name, params, why = choose_auto()
    assert (name, params) == ("tfp", {})
    assert "no Spk2ImgNet weights" in why
    name, params, why = choose_auto(weights="mine.pt")
    assert (name, params) == ("spk2imgnet", {"weights": "mine.pt"}) and "--weights" in why


def test_auto_prefers_the_lite_model_without_a_gpu(only_tmp_locations, weights_file):
    import shutil

    from spkrecon.methods import build
    from spkrecon.methods.auto import choose_auto

    shutil.copy(weights_file, only_tmp_locations / f"{W.DEFAULT_NAME}.pt")
    name, _, why = choose_auto()
    if torch.cuda.is_available():
        assert name == "spk2imgnet" and "CUDA GPU" in why
        return
    assert name == "tfp" and "no CUDA GPU" in why
    shutil.copy(weights_file, only_tmp_locations / f"{W.LITE_NAME}.pt")
    name, params, why = choose_auto()
    assert name in ("spk2imgnet", W.LITE_NAME)
    assert params["weights"].endswith(f"{W.LITE_NAME}.pt")
    assert W.LITE_NAME in why
    method, said = build("auto", alpha=0.6)
    assert isinstance(method, Spk2ImgNet) and "spk2imgnet" in said


def test_reflect_index():
    np.testing.assert_array_equal(reflect_index(np.arange(-3, 8), 5),
                                  [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_the_cpu(weights_file, spikes):
    idx = range(0, 64, 3)
    cpu = Spk2ImgNet(weights=str(weights_file), device="cpu")(spikes, idx)
    gpu = Spk2ImgNet(weights=str(weights_file), device="cuda", batch_size=4)
    assert gpu.device.startswith("cuda")
    np.testing.assert_allclose(gpu(spikes, idx), cpu, atol=1e-4)
    naive = Spk2ImgNet(weights=str(weights_file), device="cuda", reuse=False)(spikes, idx)
    np.testing.assert_allclose(naive, cpu, atol=1e-4)
    for precision in ("bf16", "fp16"):
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            continue
        low = Spk2ImgNet(weights=str(weights_file), device="cuda", precision=precision,
                         channels_last=True)(spikes, idx)
        assert np.abs(low - cpu).mean() < 0.02

