"""The ``deploy/`` folder of a build: what to copy to a PYNQ board.

:func:`write_deploy` writes

* ``qnn_driver.py`` (:mod:`hdl.deploy.qnn_driver`, copied as is): the board-side driver,
  NumPy and PYNQ only, Python 3.8 syntax;
* ``accelerator.json``: :func:`accelerator_config`, the register map
  (:mod:`hdl.shell.regmap`), the values the constant registers read, the status and
  control bits, and the beat packing of this build's top;
* ``validate.py`` (:mod:`hdl.deploy.validate`) and ``testdata.npz``: the model's test
  frames with their true labels and the golden model's scores and labels;
* ``weights.bin`` when stages stream their weights from DDR: the weight buffer
  (:meth:`hdl.flow.network.NetworkSpec.weight_image`) that the driver places in
  contiguous DDR before the first frame, writing its address to WEIGHT_BASE_HI/LO
  (``accelerator.json["weights"]`` names the file; None without streamed stages);
* ``qnn.bit`` and ``qnn.hwh`` once Vivado has written them (:func:`copy_bitstream`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

__all__ = ["accelerator_config", "write_deploy", "copy_bitstream", "DRIVER", "VALIDATE",
           "BITFILE", "WEIGHTS"]

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "qnn_driver.py"
VALIDATE = HERE / "validate.py"
#: Name of the bitstream in ``deploy/`` (its ``.hwh`` beside it, as PYNQ wants).
BITFILE = "qnn.bit"
#: Name of the DDR weight buffer in ``deploy/``.
WEIGHTS = "weights.bin"
#: Alignment the weight buffer needs in DDR (the streamers ignore the low 12 bits).
WEIGHT_ALIGN = 4096


def accelerator_config(top, *, clock_mhz: float, model_name: str, dma: str = "dma",
                       accel: str | None = None, weight_bytes: int | None = None) -> dict:
    """``accelerator.json`` of a :class:`hdl.shell.axi.AxiTop`: registers from the
    register map, packing from the top's input and output formats."""
    from hdl.flow.vivado import ACCEL_CELL
    from hdl.shell import regmap

    values = top.register_values
    fields = {f.name for f in dataclasses.fields(values)}
    inf, outf = top.input_format, top.output_format
    in_beat, out_beat = inf.data_width // 8, outf.data_width // 8
    return {
        "model": model_name, "clock_mhz": float(clock_mhz), "bitfile": BITFILE,
        "dma": dma, "accel": accel or ACCEL_CELL,
        "registers": {r.name: r.offset for r in regmap.REGISTER_MAP},
        "max_batch": regmap.MAX_BATCH,
        "register_access": {r.name: r.access for r in regmap.REGISTER_MAP},
        "register_values": {r.name: getattr(values, r.source) for r in regmap.REGISTER_MAP
                            if r.access == "R" and r.source in fields},
        "bits": {k: v for k, v in vars(regmap).items()
                 if k.startswith(("STATUS_", "CONTROL_")) and isinstance(v, int)},
        "input": {"elements": inf.frame_elements, "bits": inf.bits, "slot_bits": inf.slot,
                  "codes_per_beat": inf.codes_per_beat, "beats_per_frame": inf.beats_per_frame,
                  "beat_bytes": in_beat, "frame_bytes": inf.beats_per_frame * in_beat},
        "output": {"classes": outf.classes, "word_bits": regmap.WORD,
                   "words_per_frame": outf.words_per_frame,
                   "beats_per_frame": outf.beats_per_frame, "beat_bytes": out_beat,
                   "frame_bytes": outf.beats_per_frame * out_beat},
        "weights": (None if not weight_bytes else
                    {"file": WEIGHTS, "bytes": int(weight_bytes), "align": WEIGHT_ALIGN,
                     "ports": len(top.weight_ports)}),
    }


def write_deploy(out_dir, *, top, clock_mhz: float, model, codes, labels=None,
                 weight_image: bytes | None = None) -> Path:
    """Write the ``deploy/`` folder (see the module docstring); ``codes`` are the test
    frames ``(N, H, W, C)``, ``labels`` their true classes (or None), ``weight_image``
    the DDR weight buffer of a top with weight streamers (required exactly then)."""
    from sim import golden

    if bool(top.weight_ports) != bool(weight_image):
        raise ValueError(f"weight_image must be given exactly when the top has weight streamers "
                         f"({len(top.weight_ports)} here), not {type(weight_image).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = accelerator_config(top, clock_mhz=clock_mhz, model_name=model.name,
                                weight_bytes=len(weight_image) if weight_image else None)
    if weight_image:
        (out / WEIGHTS).write_bytes(bytes(weight_image))
    (out / "accelerator.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(DRIVER, out / DRIVER.name)
    shutil.copyfile(VALIDATE, out / VALIDATE.name)
    codes = np.asarray(codes, dtype=np.int64)
    arrays = {"codes": codes.reshape(len(codes), -1).astype(np.uint16),
              "golden_scores": golden.run(model, codes).astype(np.int64),
              "golden_labels": golden.predict(model, codes).astype(np.int64)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    np.savez_compressed(out / "testdata.npz", **arrays)
    (out / "README.md").write_text(
        f"# {model.name} on the board\n\n"
        "Copy this folder to the board (PYNQ 2.7 or later), then:\n\n"
        "    sudo python3 validate.py        # accuracy and frames/s on the test frames\n\n"
        f"`{BITFILE}` and `{Path(BITFILE).with_suffix('.hwh')}` are copied here when Vivado has "
        "run (`../vivado/build.sh`); otherwise copy them from `../vivado/` after it ran.\n")
    return out


def copy_bitstream(vivado_dir, deploy_dir) -> bool:
    """Copy Vivado's ``<project>.bit`` and ``.hwh`` into ``deploy/`` as ``qnn.bit/.hwh``;
    False when Vivado has not written them."""
    vivado_dir, deploy_dir = Path(vivado_dir), Path(deploy_dir)
    bits = sorted(vivado_dir.glob("*.bit"))
    if not bits or not bits[0].with_suffix(".hwh").exists():
        return False
    shutil.copyfile(bits[0], deploy_dir / BITFILE)
    shutil.copyfile(bits[0].with_suffix(".hwh"), deploy_dir / Path(BITFILE).with_suffix(".hwh"))
    return True
