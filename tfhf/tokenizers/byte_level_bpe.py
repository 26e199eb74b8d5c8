"""GPT-2's byte-level BPE in TensorFlow ops, so a SavedModel can take and return raw text.

It reproduces `transformers.GPT2TokenizerFast` (tokenizers' ByteLevel pre-tokenizer
with GPT-2's split pattern, then BPE) token for token, using only core TensorFlow
ops and one TF Text op (RegexSplitWithOffsets). The vocabulary and merges become
SavedModel assets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import tensorflow as tf
import tensorflow_text as tf_text

from tfhf.errors import TfhfError

# What tokenizers' regex engine (Oniguruma) counts as `\s`. RE2's own `\s` is ASCII only, so
# the class is spelled out: the ASCII controls, NEL and the Unicode separators (Z*).
_SPACE = r"\t\n\x{0B}\x{0C}\r\x{85}\p{Z}"
# GPT-2's pattern without its one look-ahead (`\s+(?!\S)`), which RE2 cannot express; the
# cuts made in `ByteLevelBPE.pre_tokenize` give the same pieces.
_PIECE = rf"'s|'t|'re|'ve|'m|'ll|'d| ?\p{{L}}+| ?\p{{N}}+| ?[^{_SPACE}\p{{L}}\p{{N}}]+|[{_SPACE}]+"
_SPACE_RUN = rf"[{_SPACE}]+"
_NO_MERGE = tf.int64.max


def bytes_to_symbols() -> dict[int, str]:
    """GPT-2's reversible map from each byte to a printable character."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _searchable(texts: tf.Tensor) -> tf.Tensor:
    """`texts` with NUL bytes swapped for U+0001, which the split patterns treat alike.

    TF Text's regex split stops reading a string at its first NUL, so the splits run on
    this copy and the pieces are cut from the original by their byte offsets.
    """
    return tf.strings.regex_replace(texts, r"\x00", "\x01")


class ByteLevelBPE(tf.Module):
    """Text -> GPT-2 token ids -> text, in TensorFlow ops.

    Args:
      vocab: Token -> id, as in a GPT-2 `vocab.json`.
      merges: The BPE merges in priority order, as in `merges.txt`.
      added_tokens: Tokens matched whole in the text before anything else
        (e.g. `<|endoftext|>`); each must be in `vocab`.
      asset_dir: Where to write the two asset files (one token or merge per line);
        they must exist until the SavedModel holding this module is written.

    Example:
      >>> import tempfile
      >>> from tfhf.tokenizers.bpe import train_bpe
      >>> folder = Path(tempfile.mkdtemp())
      >>> _ = train_bpe(["ROMEO. But soft!"] * 20, vocab_size=280, folder=folder)
      >>> bpe = ByteLevelBPE.from_folder(folder, asset_dir=folder / "assets")
      >>> bpe.detokenize(bpe.tokenize(tf.constant(["ROMEO: hi"]))).numpy()
      array([b'ROMEO: hi'], dtype=object)
    """

    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        added_tokens: list[str],
        *,
        asset_dir: str | Path,
    ):
        super().__init__(name="byte_level_bpe")
        symbols = bytes_to_symbols()
        missing = [s for s in symbols.values() if s not in vocab]
        if missing:
            raise TfhfError(f"not a byte-level BPE vocabulary: {len(missing)} byte symbols missing")
        by_id = {i: t for t, i in vocab.items()}
        if len(by_id) != len(vocab) or min(by_id) < 0:
            raise TfhfError("the BPE vocabulary maps two tokens to one id, or has negative ids")
        for token in vocab:
            if "\n" in token or "\r" in token:
                raise TfhfError(f"cannot store the BPE token {token!r}: it holds a line break")
        for token in added_tokens:
            if token not in vocab:
                raise TfhfError(f"added token {token!r} is not in the vocabulary")
        # Every token but an added one spells one byte per symbol.
        self.longest_token_bytes = max(
            len(t.encode()) if t in added_tokens else len(t) for t in vocab
        )
        # A piece that is no whitespace run holds at most one ASCII whitespace byte (a
        # leading space), so no token made of those bytes alone (a newline and 57 spaces,
        # say) fits in it: the longest token that can, often a third as long.
        ascii_space = {symbols[b] for b in b"\t\n\x0b\x0c\r "}
        self.longest_word_token_bytes = max(
            [len(t) for t in vocab if t not in added_tokens and not set(t) <= ascii_space] or [1]
        )
        asset_dir = Path(asset_dir)
        asset_dir.mkdir(parents=True, exist_ok=True)
        tokens_file = asset_dir / "bpe_tokens.txt"
        merges_file = asset_dir / "bpe_merges.txt"
        # Line number = id; an id nobody uses gets a filler line of its own.
        lines = [by_id.get(i, f"<unused id {i}>") for i in range(max(by_id) + 1)]
        if len(set(lines)) != len(lines):
            raise TfhfError("the BPE vocabulary collides with tfhf's fillers for unused ids")
        tokens_file.write_text("".join(t + "\n" for t in lines), encoding="utf-8")
        merges_file.write_text("".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")

        line = tf.lookup.TextFileIndex
        self.token_to_id = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                str(tokens_file), tf.string, line.WHOLE_LINE, tf.int64, line.LINE_NUMBER
            ),
            default_value=-1,
        )
        self.id_to_token = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                str(tokens_file), tf.int64, line.LINE_NUMBER, tf.string, line.WHOLE_LINE
            ),
            default_value="",
        )
        self.merge_rank = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                str(merges_file), tf.string, line.WHOLE_LINE, tf.int64, line.LINE_NUMBER
            ),
            default_value=_NO_MERGE,
        )
        byte_strings = [bytes([b]) for b in range(256)]
        mapped = [symbols[b].encode("utf-8") for b in range(256)]
        self.byte_to_symbol = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(byte_strings, mapped), default_value=""
        )
        self.symbol_to_byte = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(mapped, byte_strings), default_value=""
        )
        # Longest first, as tokenizers matches added tokens.
        added = sorted(added_tokens, key=len, reverse=True)
        self._added = "|".join(re.escape(t) for t in added)
        self._cut = f"{self._added}|{_SPACE_RUN}" if added else _SPACE_RUN
        self._piece = f"{self._added}|{_PIECE}" if added else _PIECE

    @classmethod
    def from_folder(cls, folder: str | Path, *, asset_dir: str | Path) -> ByteLevelBPE:
        """The tokenizer saved with a GPT-2 model: tokenizer.json, else vocab.json + merges.txt."""
        folder = Path(folder)
        tokenizer_json = folder / "tokenizer.json"
        if tokenizer_json.is_file():
            spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
            model = spec.get("model", {})
            pre = spec.get("pre_tokenizer") or {}
            if model.get("type") != "BPE" or pre.get("type") != "ByteLevel":
                raise TfhfError(f"{tokenizer_json}: not a GPT-2 style byte-level BPE tokenizer")
            if pre.get("add_prefix_space") or not pre.get("use_regex", True):
                raise TfhfError(
                    f"{tokenizer_json}: only GPT-2's pre-tokenizer (no prefix space) is supported"
                )
            unusual = [
                option
                for option in ("ignore_merges", "continuing_subword_prefix", "end_of_word_suffix")
                if model.get(option)
            ]
            if spec.get("normalizer") or unusual:
                raise TfhfError(
                    f"{tokenizer_json}: a normalizer or BPE options "
                    f"({', '.join(unusual) or 'normalizer'}) that GPT-2's tokenizer does not have"
                )
            merges = [
                tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]
            ]
            added = [t["content"] for t in spec.get("added_tokens", [])]
            return cls(model["vocab"], merges, added, asset_dir=asset_dir)
        vocab_json, merges_txt = folder / "vocab.json", folder / "merges.txt"
        if not (vocab_json.is_file() and merges_txt.is_file()):
            raise TfhfError(f"{folder}: no tokenizer.json, nor vocab.json and merges.txt")
        vocab = json.loads(vocab_json.read_text(encoding="utf-8"))
        merges = [
            tuple(line.split(" "))
            for line in merges_txt.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#version")
        ]
        added = [t for t in ("<|endoftext|>",) if t in vocab]
        return cls(vocab, merges, added, asset_dir=asset_dir)

    def pre_tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Texts [batch] -> pieces [batch, (pieces)], as GPT-2's split pattern cuts them.

        GPT-2 gives a run of whitespace before a word all but its last character, which
        starts the word's piece (`\\s+(?!\\S)`); a run at the end of the text, or before
        an added token, stays whole. The text is cut there first, so that the
        look-ahead-free pattern then splits each part the same way.
        """
        texts = tf.convert_to_tensor(texts, tf.string)
        runs, begins, ends = tf_text.regex_split_with_offsets(
            _searchable(texts), self._cut, self._cut
        )
        flat = runs.flat_values
        is_added = (
            tf.strings.regex_full_match(flat, self._added)
            if self._added
            else tf.zeros_like(flat, tf.bool)
        )
        is_space = tf.strings.regex_full_match(flat, _SPACE_RUN)
        # Is the run the last of its text, or followed by an added token?
        next_is_added = tf.concat([is_added[1:], [False]], axis=0)
        is_last = tf.equal(
            tf.range(tf.size(flat, out_type=tf.int64)),
            tf.gather(runs.row_splits[1:], runs.value_rowids()) - 1,
        )
        final_space = is_space & (is_last | next_is_added)
        last_char = tf.strings.substr(flat, -1, 1, unit="UTF8_CHAR")
        split_space = is_space & ~final_space & (tf.strings.length(flat, unit="UTF8_CHAR") > 1)
        b, e = begins.flat_values, ends.flat_values
        cut_a = b  # where a space run or an added token starts
        cut_b = tf.where(is_added, e, e - tf.cast(tf.strings.length(last_char), tf.int64))
        keep_a = is_space | is_added
        keep_b = is_added | split_space
        cuts = tf.reshape(tf.stack([cut_a, cut_b], axis=1), [-1])
        keep = tf.reshape(tf.stack([keep_a, keep_b], axis=1), [-1])
        cut_rows = tf.repeat(runs.value_rowids(), 2)
        cuts = tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(cuts, keep),
            tf.boolean_mask(cut_rows, keep),
            nrows=tf.shape(texts, out_type=tf.int64)[0],
        )
        # Every text starts a part; a part ends where the next begins, or at the text's end.
        starts = tf.concat([tf.zeros([tf.shape(texts)[0], 1], tf.int64), cuts], axis=1)
        part_rows = starts.value_rowids()
        lengths = tf.cast(tf.strings.length(texts), tf.int64)
        first_of_next = tf.concat([starts.flat_values[1:], [0]], axis=0)
        is_row_end = tf.concat([tf.not_equal(part_rows[1:], part_rows[:-1]), [True]], axis=0)
        part_ends = tf.where(is_row_end, tf.gather(lengths, part_rows), first_of_next)
        parts = tf.strings.substr(
            tf.gather(texts, part_rows), starts.flat_values, part_ends - starts.flat_values
        )
        _, piece_begins, piece_ends = tf_text.regex_split_with_offsets(
            _searchable(parts), self._piece, self._piece
        )
        pieces = tf.strings.substr(
            tf.gather(parts, piece_begins.value_rowids()),
            piece_begins.flat_values,
            piece_ends.flat_values - piece_begins.flat_values,
        )
        return starts.with_flat_values(piece_begins.with_flat_values(pieces)).merge_dims(1, 2)

    def _merge(self, symbols: tf.Tensor, row_splits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """BPE on every word at once: each round merges, in each word, the leftmost pair
        of the best rank, until no word has a pair in the merges (tokenizers' order)."""

        def not_done(symbols, row_splits, done):
            return tf.logical_not(done)

        def merge_once(symbols, row_splits, done):
            n = tf.size(symbols, out_type=tf.int64)
            rows = tf.RaggedTensor.from_row_splits(symbols, row_splits).value_rowids()
            num_words = tf.size(row_splits, out_type=tf.int64) - 1
            pair_rows = rows[:-1]
            ranks = self.merge_rank.lookup(tf.strings.join([symbols[:-1], symbols[1:]], " "))
            ranks = tf.where(tf.equal(pair_rows, rows[1:]), ranks, _NO_MERGE)
            best = tf.math.unsorted_segment_min(ranks, pair_rows, num_words)
            is_best = tf.equal(ranks, tf.gather(best, pair_rows)) & (ranks < _NO_MERGE)
            positions = tf.range(tf.maximum(n - 1, 0), dtype=tf.int64)
            first = tf.math.unsorted_segment_min(
                tf.where(is_best, positions, n), pair_rows, num_words
            )
            merges = first < n
            at = tf.boolean_mask(first, merges)
            starts = tf.scatter_nd(at[:, None], tf.ones_like(at, tf.bool), [n])
            seconds = tf.concat([[False], starts[:-1]], axis=0)
            joined = tf.strings.join([symbols, tf.concat([symbols[1:], [""]], axis=0)])
            symbols = tf.boolean_mask(tf.where(starts, joined, symbols), ~seconds)
            removed = tf.concat([[0], tf.cumsum(tf.cast(merges, tf.int64))], axis=0)
            return symbols, row_splits - removed, tf.logical_not(tf.reduce_any(merges))

        symbols, row_splits, _ = tf.while_loop(
            not_done,
            merge_once,
            (symbols, row_splits, tf.size(symbols) < 2),
            shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]), tf.TensorShape([])),
        )
        return symbols, row_splits

    def fewest_tokens(self, texts: tf.Tensor) -> tf.Tensor:
        """A lower bound on each text's token count [batch], found without BPE: no token
        spans two pieces of the split pattern, none spells more than `longest_token_bytes`,
        and none in a piece that is no whitespace run more than `longest_word_token_bytes`.
        BPE merges one pair per piece and round, so a long piece
        costs time by the square of its length; this costs time by the byte.
        """
        pieces = self.pre_tokenize(texts)
        flat = pieces.flat_values
        most = tf.where(
            tf.strings.regex_full_match(flat, _SPACE_RUN),
            self.longest_token_bytes,
            self.longest_word_token_bytes,
        )
        least = (tf.strings.length(flat) + most - 1) // most
        if self._added:  # an added token is one token, however long it is spelled
            least = tf.where(tf.strings.regex_full_match(flat, self._added), 1, least)
        return tf.reduce_sum(pieces.with_flat_values(least), axis=1)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Texts [batch] -> int32 token ids [batch, (tokens)]."""
        pieces = self.pre_tokenize(texts)
        words = pieces.flat_values
        chars = tf.strings.bytes_split(words)
        symbols = self.byte_to_symbol.lookup(chars.flat_values)
        merged, word_splits = self._merge(symbols, chars.row_splits)
        ids = self.token_to_id.lookup(merged)
        by_word = tf.RaggedTensor.from_row_splits(ids, word_splits)
        if self._added:
            # An added token is one id however BPE would have split its characters.
            is_added = tf.strings.regex_full_match(words, self._added)
            token_word = by_word.value_rowids()
            in_added = tf.gather(is_added, token_word)
            first = tf.equal(
                tf.range(tf.size(ids, out_type=tf.int64)), tf.gather(word_splits, token_word)
            )
            ids = tf.where(in_added, tf.gather(self.token_to_id.lookup(words), token_word), ids)
            keep = ~in_added | first
            by_word = tf.RaggedTensor.from_value_rowids(
                tf.boolean_mask(ids, keep),
                tf.boolean_mask(token_word, keep),
                nrows=tf.size(words, out_type=tf.int64),
            )
        tokens = pieces.with_flat_values(by_word).merge_dims(1, 2)
        return tf.cast(tokens, tf.int32)

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """Token ids [batch, (tokens)] -> texts [batch]; broken UTF-8 becomes U+FFFD."""
        tokens = self.id_to_token.lookup(tf.cast(ids, tf.int64))
        joined = tf.strings.reduce_join(tokens, axis=-1)
        chars = tf.strings.unicode_split(joined, "UTF-8")
        raw = self.symbol_to_byte.lookup(chars)
        # Characters outside the byte map (from added tokens) stand for themselves.
        raw = tf.ragged.map_flat_values(lambda r, c: tf.where(tf.equal(r, ""), c, r), raw, chars)
        text = tf.strings.reduce_join(raw, axis=-1)
        return tf.strings.unicode_transcode(
            text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
