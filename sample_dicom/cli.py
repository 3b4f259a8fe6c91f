"""``telerad phantom OUTDIR``: write a digital CT-perfusion phantom as DICOM plus ground truth.

Examples::

    telerad phantom /tmp/ctp --seed 3 --lesion mca_right --noise 12
    telerad phantom /tmp/ctp --size 512 --slices 32 --times 40 --layout per_timepoint --shuffle
    telerad phantom /tmp/ctp --no-aif          # a real CTP without a usable AIF (analysis must fail)
    telerad phantom /tmp/tiles --tiles         # Kudo-style grid of CBF x MTT x delay
    telerad phantom /tmp/rand --random --seed 1003   # randomized head (issue 8 generalization set)

Writes the DICOM files, ``truth.json`` (true core, Tmax > 6 s and > 10 s
volumes and every parameter) and, with ``--truth-maps``, ``truth_maps.npz``.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from telerad.cliutil import ArgumentParser, configure_logging, run_cli
from telerad.errors import UsageError

PROG = "telerad phantom"
#: Field of view (mm) kept constant when --size changes, so the head keeps its size.
FOV_MM = 230.4


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Write a digital CT-perfusion phantom (DICOM CT images) with "
                       "its ground truth (truth.json).")
    p.add_argument("outdir", metavar="OUTDIR", help="folder to write (created; must be empty or absent)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same files")
    p.add_argument("--size", type=int, default=None, help="rows and columns (default 256; --random: drawn)")
    p.add_argument("--slices", type=int, default=None, help="slices (default 16; --random: drawn, this is a maximum)")
    p.add_argument("--times", type=int, default=40, help="time points (default 40)")
    p.add_argument("--dt", type=float, default=1.5, help="seconds between time points (default 1.5)")
    p.add_argument("--noise", type=float, default=10.0, help="noise standard deviation in HU (default 10)")
    p.add_argument("--lesion", choices=["mca_left", "mca_right", "none"], default="mca_left")
    p.add_argument("--core-scale", type=float, default=1.0, help="scale of the core zone (default 1)")
    p.add_argument("--penumbra-scale", type=float, default=1.0, help="scale of the penumbra zones (default 1)")
    p.add_argument("--delay", type=float, default=5.0, help="arterial delay of the penumbra in s (default 5)")
    p.add_argument("--motion", type=float, default=0.0, metavar="MM", help="maximum in-plane motion in mm")
    p.add_argument("--pixel-mm", type=float, default=None,
                   help=f"pixel spacing in mm (default {FOV_MM:g} / size, a {FOV_MM:g} mm field of view)")
    p.add_argument("--slice-mm", type=float, default=5.0, help="slice spacing in mm (default 5)")
    aif = p.add_mutually_exclusive_group()
    aif.add_argument("--no-aif", action="store_true", help="no contrast reaches the head (no usable AIF)")
    aif.add_argument("--weak-aif", action="store_true", help="a poor injection (AIF peak about 100 HU)")
    p.add_argument("--layout", choices=["single", "per_timepoint"], default="single",
                   help="one series, or one series per time point")
    p.add_argument("--shuffle", action="store_true", help="random file names and write order, one flat folder")
    p.add_argument("--tiles", action="store_true", help="write the Kudo-style tile phantom instead of a head")
    p.add_argument("--random", action="store_true",
                   help="a randomized head drawn from --seed (anatomy, vessels, residue family, sampling, noise, "
                        "motion, slab and matrix; sample_dicom.random_phantom); other options except --size and "
                        "--slices are ignored")
    p.add_argument("--truth-maps", action="store_true", help="also write truth_maps.npz (true maps per voxel)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log verbosity")
    return p


def _check(args) -> None:
    if args.random and args.tiles:
        raise UsageError("--random and --tiles are different phantoms; choose one.")
    if args.random and args.size not in (None, 256, 512):
        raise UsageError(f"--size with --random should be 256 or 512, not {args.size}.")
    for name, value, low in (("--size", args.size, 16), ("--slices", args.slices, 1), ("--times", args.times, 2)):
        if value is not None and value < low:
            raise UsageError(f"{name} should be at least {low}, not {value}.")
    if args.dt <= 0 or args.noise < 0 or args.motion < 0:
        raise UsageError("--dt must be positive; --noise and --motion must not be negative.")
    out = Path(args.outdir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"'{out}' exists and is not an empty folder; choose a new OUTDIR.")


def _tile_series(tp, seed: int):
    from sample_dicom.writer import uid_from
    from triage.series import PerfusionSeries

    nz, ny, nx = tp.hu.shape[1:]
    dz, dy, dx = tp.spacing_mm
    affine = np.array([[dx, 0, 0, -(nx - 1) / 2 * dx], [0, dy, 0, -(ny - 1) / 2 * dy],
                       [0, 0, dz, -(nz - 1) / 2 * dz], [0, 0, 0, 1.0]])
    return PerfusionSeries(hu=tp.hu, times_s=tp.times_s, spacing_mm=tuple(map(float, tp.spacing_mm)), affine=affine,
                           study_instance_uid=uid_from("tiles-study", seed),
                           series_instance_uid=uid_from("tiles-series", seed), source={"phantom": "tiles"})


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level or "WARNING")
    _check(args)
    from sample_dicom.writer import write_phantom

    t0 = time.perf_counter()
    if args.random:
        from sample_dicom.random_phantom import make_random_phantom

        phantom = make_random_phantom(args.seed, matrix=args.size, max_slices=args.slices)
        truth_maps = phantom.truth_maps
    elif args.tiles:
        from sample_dicom.tiles import make_tile_phantom

        tp = make_tile_phantom(seed=args.seed, n_times=args.times, dt_s=args.dt, noise_hu=args.noise)

        # write_phantom needs only .series and .truth
        phantom = SimpleNamespace(series=_tile_series(tp, args.seed), truth={**tp.truth, "phantom": "tiles"})
        truth_maps = tp.truth_maps
    else:
        from sample_dicom.phantom import make_phantom

        size, slices = args.size or 256, args.slices or 16
        pixel = args.pixel_mm or FOV_MM / size
        phantom = make_phantom(
            seed=args.seed, shape=(slices, size, size), n_times=args.times, dt_s=args.dt,
            noise_hu=args.noise, lesion=args.lesion, core_scale=args.core_scale,
            penumbra_scale=args.penumbra_scale, delay_s=args.delay, motion_mm=args.motion,
            spacing_mm=(args.slice_mm, pixel, pixel),
            aif="none" if args.no_aif else "weak" if args.weak_aif else "normal")
        truth_maps = phantom.truth_maps
    t1 = time.perf_counter()
    out = write_phantom(phantom, args.outdir, layout=args.layout, shuffle=args.shuffle, seed=args.seed)
    if args.truth_maps:
        np.savez_compressed(out / "truth_maps.npz", **{k: np.asarray(v) for k, v in truth_maps.items()})
    t2 = time.perf_counter()
    nt, nz, ny, nx = phantom.series.hu.shape
    truth = phantom.truth
    print(f"wrote {nt * nz} DICOM images ({nt} time points x {nz} slices of {ny}x{nx}, layout {args.layout}"
          f"{', shuffled' if args.shuffle else ''}) and truth.json to {out} "
          f"in {t2 - t0:.1f} s (phantom {t1 - t0:.1f} s, DICOM {t2 - t1:.1f} s)")
    if not args.tiles:
        vols = ", ".join(f"{k} {float(truth[k]):.1f} mL" for k in ("core_ml", "tmax6_ml", "tmax10_ml") if k in truth)
        print(f"truth: {vols}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, lambda: _run(argv))
