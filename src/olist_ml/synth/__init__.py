"""Seeded synthetic Olist data generator (exact Kaggle schema, calibrated behaviour).

`generate(out_dir, seed=42, scale=1.0, gzip=False)` writes every Olist CSV and returns rows per
file; `calibration_table(real_dir, synth_dir)` compares the generated data with the real one.
"""

from .generator import generate

__all__ = ["generate", "calibration_table"]


def calibration_table(real_dir, synth_dir):  # noqa: D103 (lazy import keeps `import olist_ml.synth` light)
    from .calibration import calibration_table as _ct

    return _ct(real_dir, synth_dir)
