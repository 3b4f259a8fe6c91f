"""The varied phantom cases of the acceptance tests (shared by tests and docs/perfusion.md).

Noise is per voxel, so it depends on the pixel size: 10 HU at 0.9 mm equals 5 HU at 1.8 mm after the
pipeline's 2x2 binning. The 128x128 cases have 1.8 mm pixels, so their noise is given at that size.
"""

SMALL = {"shape": (12, 128, 128), "spacing_mm": (5.0, 1.8, 1.8)}

#: name -> make_phantom keyword arguments. Noise 5-12 HU, 1.0-2.0 s sampling, both sides, motion,
#: lesion-free brains, small and large cores, several delays and two resolutions.
CASES = {
    "left_default_256": {"seed": 0},
    "right_noise12_bigcore_256": {"seed": 1, "lesion": "mca_right", "noise_hu": 12.0, "core_scale": 2.0},
    "left_dt2_delay4.5_noise5_256": {"seed": 2, "delay_s": 4.5, "dt_s": 2.0, "n_times": 32, "noise_hu": 5.0},
    "left_noise8_128": {"seed": 3, "noise_hu": 8.0, **SMALL},
    "right_dt1_128": {"seed": 4, "lesion": "mca_right", "dt_s": 1.0, "n_times": 60, "noise_hu": 6.0, **SMALL},
    "left_motion3mm_256": {"seed": 5, "motion_mm": 3.0},
    "none_256": {"seed": 6, "lesion": "none"},
    "none_noise12_128": {"seed": 7, "lesion": "none", "noise_hu": 12.0, **SMALL},  # harsh: 24 HU at 0.9 mm
    "right_smallcore_128": {"seed": 8, "lesion": "mca_right", "core_scale": 0.4, "penumbra_scale": 0.7,
                            "noise_hu": 5.0, **SMALL},
    "left_hugecore_128": {"seed": 9, "core_scale": 4.0, "penumbra_scale": 1.6, "noise_hu": 6.0, **SMALL},
    "left_delay5.5_noise6_128": {"seed": 10, "delay_s": 5.5, "noise_hu": 6.0, **SMALL},
    "right_bigpenumbra_dt1.25_128": {"seed": 11, "lesion": "mca_right", "penumbra_scale": 1.5, "dt_s": 1.25,
                                     "n_times": 48, "noise_hu": 5.0, **SMALL},
    "right_dt1.75_noise6_256": {"seed": 13, "lesion": "mca_right", "dt_s": 1.75, "n_times": 36, "noise_hu": 6.0,
                                "shape": (10, 256, 256)},
    "left_motion2mm_noise8_256": {"seed": 14, "motion_mm": 2.0, "noise_hu": 8.0, "shape": (10, 256, 256)},
}
