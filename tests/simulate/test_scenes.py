"""Scenes from files: loading, frame folders, video files, flow interpolation."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spkrecon.errors import InputError, ParameterError
from spkrecon.simulate.flow import estimate_flow, interpolate, prepare_pair
from spkrecon.simulate.scenes import (
    VideoScene,
    count_video_frames,
    input_kind,
    iter_frame_files,
    iter_video_frames,
    list_frames,
    load_grey,
    resize_cover,
)
from spkrecon.simulate.synthetic import street_scene

T64 = torch.float64


def shifted(img: torch.Tensor, dx: float, dy: float, h: int = 120, w: int = 180
            ) -> torch.Tensor:
    """View ``(1, 1, h, w)`` of ``img`` at offset (20 + dx, 20 + dy), bilinear."""
    ih, iw = img.shape
    gy, gx = torch.meshgrid(torch.arange(h) + 20.0 + dy, torch.arange(w) + 20.0 + dx,
                            indexing="ij")
    grid = torch.stack([(2 * gx + 1) / iw - 1, (2 * gy + 1) / ih - 1], -1)[None]
    return F.grid_sample(img[None, None], grid, align_corners=False)


def psnr(a: torch.Tensor, b: torch.Tensor, border: int = 8) -> float:
    d = (a - b)[..., border:-border, border:-border]
    return float(10 * torch.log10(1 / d.pow(2).mean()))


@pytest.fixture(scope="module")
def street() -> torch.Tensor:
    return street_scene(170, 230, 4)


def test_flow_recovers_a_translation(street: torch.Tensor) -> None:
    i0, i1 = shifted(street, 0, 0), shifted(street, 4.6, -2.2)
    flow = estimate_flow(i0, i1)[0, :, 12:-12, 12:-12]
    # i0(x) = i1(x + flow): the content moved by (-4.6, +2.2).
    assert abs(float(flow[0].median()) + 4.6) < 0.1
    assert abs(float(flow[1].median()) - 2.2) < 0.1
    err = ((flow[0] + 4.6) ** 2 + (flow[1] - 2.2) ** 2).sqrt()
    assert float(err.flatten().quantile(0.9)) < 0.5


def test_flow_interpolation_beats_blending(street: torch.Tensor) -> None:
    i0, i1, mid = shifted(street, 0, 0), shifted(street, 5.0, 2.0), shifted(street, 2.5, 1.0)
    pair = prepare_pair(i0, i1)
    out = interpolate(pair, torch.tensor([0.0, 0.5, 1.0]))
    assert psnr(out[0, 0], i0[0, 0]) > 60 and psnr(out[0, 2], i1[0, 0]) > 60
    flow_db = psnr(out[0, 1], mid[0, 0])
    blend_db = psnr(0.5 * (i0 + i1)[0, 0], mid[0, 0])
    assert flow_db > 30 and flow_db > blend_db + 10


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio tries its legacy plugins
def test_load_grey_and_kinds(tmp_path: Path) -> None:
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 1] = 255
    iio.imwrite(tmp_path / "g.png", rgb)
    assert np.allclose(load_grey(tmp_path / "g.png"), 0.587, atol=1e-6)
    deep = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000)
    iio.imwrite(tmp_path / "d.png", deep)
    assert np.allclose(load_grey(tmp_path / "d.png"), deep / 65535.0, atol=1e-6)
    assert input_kind(tmp_path / "g.png") == "image"
    assert input_kind(tmp_path) == "frames"
    (tmp_path / "x.txt").write_text("no")
    with pytest.raises(InputError):
        input_kind(tmp_path / "x.txt")
    with pytest.raises(InputError):
        input_kind(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError):
        load_grey(tmp_path / "bad.png")


def test_resize_cover_crops_the_centre() -> None:
    img = torch.zeros(100, 300)
    img[:, 100:200] = 1.0
    out = resize_cover(img, 50, 50)
    assert out.shape == (50, 50)
    assert float(out.mean()) > 0.95  # the centre third, scaled by 1/2


def write_frames(folder: Path, n: int, street: torch.Tensor, speed: float = 3.0) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(n):
        frame = shifted(street, speed * i, 0, 64, 96)[0, 0].numpy()
        p = folder / f"frame_{i}.png"  # natural order: frame_2 before frame_10
        iio.imwrite(p, (frame * 255 + 0.5).astype(np.uint8))
        paths.append(p)
    return paths


def test_frame_folder_scene(tmp_path: Path, street: torch.Tensor) -> None:
    paths = write_frames(tmp_path / "clip", 11, street)
    assert list_frames(tmp_path / "clip") == paths
    frames = [load_grey(p) for p in paths]
    for interp in ("linear", "flow"):
        scene = VideoScene(iter_frame_files(paths), len(paths), None, 4.0, interp)
        assert scene.num_steps == 41 and (scene.height, scene.width) == (64, 96)
        light = scene.light_at(torch.arange(0, 12, dtype=T64))  # frames 0..2 and between
        assert np.allclose(light[0, 0].numpy(), frames[0], atol=1e-5)
        assert np.allclose(light[0, 8].numpy(), frames[2], atol=1e-5)
        if interp == "flow":  # the half-way light is the half-way shift, not a double image
            mid = shifted(street, 1.5, 0, 64, 96)[0, 0]
            assert psnr(light[0, 2], mid) > 25
            assert psnr(light[0, 2], mid) > psnr(0.5 * (light[0, 0] + light[0, 4]), mid) + 5
        with pytest.raises(ParameterError):
            scene.light_at(torch.zeros(1, dtype=T64))  # read forward only
    small = VideoScene(iter_frame_files(paths), len(paths), (32, 40), 2.0, "linear")
    assert small.light_at(torch.zeros(1, dtype=T64)).shape == (1, 1, 32, 40)


def test_video_file_scene(tmp_path: Path, street: torch.Tensor) -> None:
    path = tmp_path / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (96, 64), pix_fmt_in="gray",
                                         pix_fmt_out="yuv444p", quality=None,
                                         output_params=["-crf", "0"], macro_block_size=1)
    writer.send(None)
    for i in range(6):
        frame = shifted(street, 2.0 * i, 0, 64, 96)[0, 0].numpy()
        writer.send(np.ascontiguousarray((frame * 255 + 0.5).astype(np.uint8)))
    writer.close()
    assert input_kind(path) == "video"
    assert count_video_frames(path) == 6
    first = next(iter_video_frames(path))
    assert first.shape == (64, 96)
    scene = VideoScene(iter_video_frames(path), 6, (32, 48), 3.0, "flow")
    assert scene.num_steps == 16
    light = scene.light_at(torch.arange(16, dtype=T64))
    assert light.shape == (1, 16, 32, 48)
    assert float(light.min()) >= 0 and float(light.max()) <= 1
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError):
        count_video_frames(tmp_path / "broken.mp4")


def test_davis_interpolation(shared_dir: Path) -> None:
    clip = shared_dir / "data" / "videos" / "davis_blackswan"
    if not clip.is_dir():
        pytest.skip("DAVIS clips are not present")
    fr = [resize_cover(torch.from_numpy(load_grey(clip / f"frame_{i:04d}.jpg")), 125, 200)
          [None, None] for i in (0, 1, 2)]
    mid = interpolate(prepare_pair(fr[0], fr[2]), torch.tensor([0.5]))[0, 0]
    flow_db = psnr(mid, fr[1][0, 0])
    blend_db = psnr(0.5 * (fr[0] + fr[2])[0, 0], fr[1][0, 0])
    assert flow_db > blend_db + 2
