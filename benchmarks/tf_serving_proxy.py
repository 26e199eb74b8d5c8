"""An export run the way TF Serving's C++ model server runs it: the MetaGraph and its
SignatureDefs loaded into a v1 session, every input fed (TensorFlow 2.12's SignatureDef
has no defaults), no tfhf and no transformers imported. For a generation export (lm,
summarize, translate) it decodes greedily, with 4 beams (summarize and translate) and
sampled, through `serving_default` and through `stream_start`/`stream_continue` chained
a token at a time, and prints the texts as one JSON line.

Run it with the TensorFlow that TF Serving links beside the project's own and compare:

  python3 -m venv /tmp/tf212
  /tmp/tf212/bin/pip install 'tensorflow==2.12.*' 'tensorflow-text==2.12.*'
  /tmp/tf212/bin/python benchmarks/tf_serving_proxy.py savedmodels/translate/1 > old.json
  python benchmarks/tf_serving_proxy.py savedmodels/translate/1 > new.json
  cmp old.json new.json   # the same bytes: the same texts

The script exits 1 when a chained stream does not end in `serving_default`'s text, or when
an export's `serving_default_xla` (XLA-compiled: TF Serving runs it only with
--xla_cpu_compilation_enabled) writes other text.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops, as TF Serving links them)

TEXTS = [
    "Insert a page break before the selected paragraph.",
    "Opens the Print dialog.",
    "a fine film with a warm heart",
    "Choose Format - Cells and click the Numbers tab.",
]
# Every control an export may take, at the value a request would send for plain decoding.
PLAIN = {
    "max_new_tokens": 24,
    "num_beams": 1,
    "length_penalty": 1.0,
    "temperature": 0.0,
    "top_k": 0,
    "top_p": 1.0,
    "seed": 0,
    "no_repeat_ngram_size": 0,
    "min_new_tokens": 0,
}
SETTINGS = {
    "greedy": {},
    "beams": {"num_beams": 4, "length_penalty": 2.0, "no_repeat_ngram_size": 3},
    "sampled": {"temperature": 1.2, "top_k": 20, "seed": 7},
}


class Session:
    """The export's signatures, run by name on numpy feeds in one v1 session."""

    def __init__(self, path: str):
        tf.compat.v1.disable_eager_execution()
        self.session = tf.compat.v1.Session(graph=tf.Graph())
        with self.session.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], path)
        self.signatures = meta.signature_def

    def inputs(self, name: str) -> list[str]:
        return sorted(self.signatures[name].inputs)

    def string_key(self, name: str, side: str) -> str:
        keys = getattr(self.signatures[name], side)
        return next(k for k, v in keys.items() if v.dtype == tf.string.as_datatype_enum)

    def __call__(self, name: str, feeds: dict) -> dict:
        signature = self.signatures[name]
        feed = {}
        for key, info in signature.inputs.items():
            dtype = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
            feed[info.name] = np.asarray(feeds[key], dtype=dtype)
        return self.session.run({k: v.name for k, v in signature.outputs.items()}, feed)


def decode_all(session: Session, texts: list[str]) -> tuple[dict, bool]:
    """({setting: {"whole": texts, "streamed": texts, "chunks": n}}, every stream equal)."""
    source = session.string_key("serving_default", "inputs")
    target = session.string_key("serving_default", "outputs")
    streams = "stream_start" in session.signatures
    results, equal = {}, True
    for setting, given in SETTINGS.items():
        if given.get("num_beams", 1) > 1 and "num_beams" not in session.inputs("serving_default"):
            continue  # an lm export decodes without beams
        values = {**PLAIN, **given}

        def controls(name, values=values):
            return {k: [values[k]] for k in session.inputs(name) if k in values}

        out = session("serving_default", {source: texts, **controls("serving_default")})
        whole = [t.decode("utf-8") for t in out[target]]
        results[setting] = {"whole": whole}
        if "serving_default_xla" in session.signatures:  # needs XLA (TF Serving: a flag)
            out = session("serving_default_xla", {source: texts, **controls("serving_default")})
            results[setting]["xla"] = [t.decode("utf-8") for t in out[target]]
            equal &= results[setting]["xla"] == whole
        if not streams:
            continue
        chunk = {"chunk_tokens": [1]}
        out = session("stream_start", {source: texts, **controls("stream_start"), **chunk})
        chunks = 1
        while not out["finished"].all():
            state = {k: v for k, v in out.items() if k in session.inputs("stream_continue")}
            out = session("stream_continue", {**state, **controls("stream_continue"), **chunk})
            chunks += 1
        streamed = [t.decode("utf-8") for t in out[target]]
        results[setting].update(streamed=streamed, chunks=chunks)
        equal &= streamed == whole
    return results, equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="a version folder, e.g. savedmodels/translate/1")
    parser.add_argument("--texts", default="", help="a JSON list of texts (default: four)")
    parser.add_argument("--max_new_tokens", type=int, default=PLAIN["max_new_tokens"])
    args = parser.parse_args()
    PLAIN["max_new_tokens"] = args.max_new_tokens
    texts = json.loads(args.texts) if args.texts else TEXTS
    session = Session(args.export)
    results, equal = decode_all(session, texts)
    print(
        json.dumps({"signatures": sorted(session.signatures), "texts": results}, ensure_ascii=False)
    )
    checked = "every stream" + (
        " and serving_default_xla" if "serving_default_xla" in session.signatures else ""
    )
    verdict = f"{checked}: serving_default's text" if equal else f"{checked}: A TEXT DIFFERS"
    print(f"TensorFlow {tf.__version__}: {len(texts)} texts; {verdict}", file=sys.stderr)
    sys.exit(0 if equal else 1)


if __name__ == "__main__":
    main()
