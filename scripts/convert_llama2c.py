#!/usr/bin/env python3
"""Converts a llama2.c checkpoint and its sentencepiece tokenizer into a Hugging Face
Llama directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
generation_config.json, SOURCE.md, LICENSE). Written for Karpathy's stories260K, the
bundled demo model; any llama2.c "version 0" checkpoint with a sentencepiece BPE
tokenizer with byte fallback converts the same way.

Python standard library only (no numpy, torch or sentencepiece): the checkpoint is raw
little-endian float32, safetensors is a JSON header plus raw little-endian data, and the
tokenizer .model is a small protobuf read here from its wire format. The output is
deterministic byte for byte (tests/e2e/demo_model_test.py re-runs this and compares).

Usage:
  scripts/convert_llama2c.py [--src tests/fixtures/demo_model_source] [--out models/stories260K]
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import sys

HF_SPACE = "\u2581"  # sentencepiece's whitespace symbol


# ---------------------------------------------------------------------------------------
# The checkpoint.

class Llama2cConfig:
    """The 7-int32 header of a llama2.c "version 0" checkpoint."""

    def __init__(self, header):
        (self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads, vocab_size,
         self.seq_len) = header
        self.shared_classifier = vocab_size > 0  # a negative size means an untied wcls follows
        self.vocab_size = abs(vocab_size)
        self.head_size = self.dim // self.n_heads


def read_checkpoint(path):
    """Returns (config, {llama2.c tensor name: (bytes, rows, cols)}) with all layers stacked."""
    with open(path, "rb") as f:
        data = f.read()
    c = Llama2cConfig(struct.unpack_from("<7i", data, 0))
    hs, L = c.head_size, c.n_layers
    # (name, number of matrices, rows, cols) in file order.
    layout = [
        ("token_embedding", 1, c.vocab_size, c.dim),
        ("rms_att", L, 1, c.dim),
        ("wq", L, c.n_heads * hs, c.dim),
        ("wk", L, c.n_kv_heads * hs, c.dim),
        ("wv", L, c.n_kv_heads * hs, c.dim),
        ("wo", L, c.dim, c.n_heads * hs),
        ("rms_ffn", L, 1, c.dim),
        ("w1", L, c.hidden_dim, c.dim),
        ("w2", L, c.dim, c.hidden_dim),
        ("w3", L, c.hidden_dim, c.dim),
        ("rms_final", 1, 1, c.dim),
        ("freq_cis_real", 1, c.seq_len, hs // 2),  # legacy rotary tables, unused
        ("freq_cis_imag", 1, c.seq_len, hs // 2),
    ]
    if not c.shared_classifier:
        layout.append(("wcls", 1, c.vocab_size, c.dim))
    tensors = {}
    offset = 7 * 4
    for name, count, rows, cols in layout:
        size = rows * cols * 4
        tensors[name] = [(data[offset + i * size:offset + (i + 1) * size], rows, cols) for i in range(count)]
        offset += count * size
    if offset != len(data):
        sys.exit(f"{path}: expected {offset} bytes for this header, found {len(data)}")
    return c, tensors


def permute_rotary(blob, n_heads, head_size, cols):
    """llama2.c rotates adjacent pairs (2i, 2i+1) of a head; Hugging Face rotates (i, i + hs/2).
    Reorders the output rows of wq/wk per head so that HF row (h, p, i) is llama2.c row
    (h, i, p): llama2.c export.py's permute_original."""
    row = cols * 4
    half = head_size // 2
    out = []
    for h in range(n_heads):
        for p in range(2):
            for i in range(half):
                src = h * head_size + 2 * i + p
                out.append(blob[src * row:(src + 1) * row])
    return b"".join(out)


def hf_tensors(c, t):
    """{HF name: (bytes, shape)} for LlamaForCausalLM; the head is tied, so no lm_head."""
    out = {"model.embed_tokens.weight": (t["token_embedding"][0][0], [c.vocab_size, c.dim])}
    hs = c.head_size
    for i in range(c.n_layers):
        p = f"model.layers.{i}."

        def mat(name):
            blob, rows, cols = t[name][i]
            return blob, [rows, cols]

        wq, wq_shape = mat("wq")
        wk, wk_shape = mat("wk")
        out[p + "self_attn.q_proj.weight"] = (permute_rotary(wq, c.n_heads, hs, c.dim), wq_shape)
        out[p + "self_attn.k_proj.weight"] = (permute_rotary(wk, c.n_kv_heads, hs, c.dim), wk_shape)
        out[p + "self_attn.v_proj.weight"] = mat("wv")
        out[p + "self_attn.o_proj.weight"] = mat("wo")
        out[p + "mlp.gate_proj.weight"] = mat("w1")
        out[p + "mlp.down_proj.weight"] = mat("w2")
        out[p + "mlp.up_proj.weight"] = mat("w3")
        out[p + "input_layernorm.weight"] = (t["rms_att"][i][0], [c.dim])
        out[p + "post_attention_layernorm.weight"] = (t["rms_ffn"][i][0], [c.dim])
    out["model.norm.weight"] = (t["rms_final"][0][0], [c.dim])
    if not c.shared_classifier:
        out["lm_head.weight"] = (t["wcls"][0][0], [c.vocab_size, c.dim])
    return out


def safetensors_bytes(tensors):
    """safetensors as the reference writer lays it out: an 8-byte little-endian header
    length, a compact JSON header (metadata first, then tensors in data order) padded
    with spaces to a multiple of 8, then the data. Tensors in name order."""
    header = {"__metadata__": {"format": "pt"}}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        blob, shape = tensors[name]
        count = 1
        for d in shape:
            count *= d
        assert len(blob) == count * 4, name
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


# ---------------------------------------------------------------------------------------
# The sentencepiece model (sentencepiece_model.proto, read from the wire format).

def _varint(b, i):
    result = shift = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def _fields(b):
    """Yields (field number, value) of one message: ints for varints, bytes otherwise."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 1:
            value, i = b[i:i + 8], i + 8
        elif wire == 5:
            value, i = b[i:i + 4], i + 4
        elif wire == 2:
            n, i = _varint(b, i)
            value, i = b[i:i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


class SentencePieceModel:
    """The parts of ModelProto the conversion needs."""
    NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        self.pieces = []  # (piece, score, type)
        trainer, normalizer = {}, {}
        for number, value in _fields(data):
            if number == 1:  # SentencePiece
                d = dict(_fields(value))
                score = struct.unpack("<f", d[2])[0] if 2 in d else 0.0
                self.pieces.append((d[1].decode("utf-8"), score, d.get(3, self.NORMAL)))
            elif number == 2:
                trainer = dict(_fields(value))
            elif number == 3:
                normalizer = dict(_fields(value))
        self.model_type = trainer.get(3, 1)  # 1 unigram, 2 BPE
        self.byte_fallback = bool(trainer.get(35, 0))
        self.unk_id = trainer.get(40, 0)
        self.bos_id = trainer.get(41, 1)
        self.eos_id = trainer.get(42, 2)
        self.normalization_rule = normalizer.get(1, b"nmt_nfkc").decode()
        self.precompiled_charsmap = normalizer.get(2, b"")
        self.add_dummy_prefix = bool(normalizer.get(3, 1))
        self.remove_extra_whitespaces = bool(normalizer.get(4, 1))
        self.escape_whitespaces = bool(normalizer.get(5, 1))

    def check_supported(self, path):
        problems = []
        if self.model_type != 2:
            problems.append("not a BPE model")
        if not self.byte_fallback:
            problems.append("no byte fallback")
        if self.precompiled_charsmap:
            problems.append(f"normalization rule '{self.normalization_rule}' (only identity)")
        if not (self.add_dummy_prefix and self.escape_whitespaces):
            problems.append("add_dummy_prefix and escape_whitespaces must be on")
        if (self.unk_id, self.bos_id, self.eos_id) != (0, 1, 2):
            problems.append("unk/bos/eos must be ids 0/1/2")
        if any(" " in p for p, _, _ in self.pieces):
            problems.append("a piece contains a space (merges are 'a b' strings)")
        if problems:
            sys.exit(f"{path}: unsupported sentencepiece model: " + "; ".join(problems))


def generate_merges(vocab, vocab_scores):
    """transformers' convert_slow_tokenizer.generate_merges with scores (what LlamaConverter
    gets from SentencePieceExtractor.extract(vocab_scores)): for each piece in id order, every
    split into two pieces both in the vocab, ordered by the parts' ids; then all of them
    stably sorted by (score of the merged piece, len(left), len(right)), highest first."""
    merges = []
    for merge, score in vocab_scores:
        local = []
        for index in range(1, len(merge)):
            left, right = merge[:index], merge[index:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: (x[2], len(x[0]), len(x[1])), reverse=True)
    return [f"{left} {right}" for left, right, _ in merges]


def _added_token(id_, content):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def tokenizer_json(sp):
    """tokenizer.json in the layout transformers' LlamaConverter (legacy) writes, plus two
    normalizers in front that do what sentencepiece's remove_extra_whitespaces does: drop
    leading and trailing spaces (U+0020 only, as sentencepiece; `Strip` would also drop
    newlines and other Unicode whitespace) and collapse runs of spaces. The regexes are
    Oniguruma's (the tokenizers library's engine): \\A and \\z anchor the whole string."""
    specials = ["<unk>", "<s>", "</s>"]
    vocab_scores = [(specials[i], 0.0) for i in range(3)]
    vocab_scores += [(piece, score) for piece, score, _ in sp.pieces[3:]]
    vocab = {piece: i for i, (piece, _) in enumerate(vocab_scores)}
    normalizers = []
    if sp.remove_extra_whitespaces:
        normalizers += [
            {"type": "Replace", "pattern": {"Regex": "\\A +| +\\z"}, "content": ""},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
        ]
    normalizers += [
        {"type": "Prepend", "prepend": HF_SPACE},
        {"type": "Replace", "pattern": {"String": " "}, "content": HF_SPACE},
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added_token(i, s) for i, s in enumerate(specials)],
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": HF_SPACE}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "vocab": vocab,
            "merges": generate_merges(vocab, vocab_scores),
        },
    }


# The model only knows stories: a user message is the start of a story, which the model
# continues; earlier assistant turns are the story so far. System messages are dropped.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' or message['role'] == 'assistant' %}"
    "{{ message['content'] | trim }}"
    "{% if not loop.last %}{{ ' ' }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
)


def tokenizer_config(max_len):
    decoder = {}
    for i, s in enumerate(["<unk>", "<s>", "</s>"]):
        decoder[str(i)] = {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [],
        "bos_token": "<s>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": max_len,
        "pad_token": None,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }


def model_config(c):
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": c.head_size,
        "hidden_act": "silu",
        "hidden_size": c.dim,
        "initializer_range": 0.02,
        "intermediate_size": c.hidden_dim,
        "max_position_embeddings": c.seq_len,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": c.n_heads,
        "num_hidden_layers": c.n_layers,
        "num_key_value_heads": c.n_kv_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": c.shared_classifier,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": c.vocab_size,
    }


# The model was trained on BOS + story sequences and ends a story with BOS, so both end it.
GENERATION_CONFIG = {"bos_token_id": 1, "do_sample": False, "eos_token_id": [2, 1]}


def source_md(src, c, num_params):
    sums = []
    for name in ("stories260K.bin", "tok512.model"):
        with open(os.path.join(src, name), "rb") as f:
            sums.append(f"{hashlib.sha256(f.read()).hexdigest()}  {name}")
    sums = "\n".join(sums)
    return f"""# stories260K: the bundled demo model

Andrej Karpathy's TinyStories model from llama2.c ("tinyllamas", stories260K), converted to a
Hugging Face Llama directory so that `lattice` loads it like any other checkpoint. It writes
short, simple children's stories in English and nothing else: give it the start of a story.

Licence: MIT (`LICENSE`, from llama2.c). Trained on the TinyStories data set (CDLA-Sharing-1.0).

## Provenance

The originals (`stories260K.bin`, a llama2.c "version 0" float32 checkpoint, and `tok512.model`,
its sentencepiece BPE tokenizer with byte fallback) were taken from public GitHub copies of the
Hugging Face hub files (karpathy/tinyllamas) and checked against the SHA-256 values that several
independent projects pin for the hub originals. `stories260K.bin` comes from
github.com/ytmytm/llama2.c64 (commit 12b5bec82eb980362b8a7bfe86992a552a492481); `tok512.model`
from github.com/pure-water/llama2.c (commit cba85b7c06886a94a7023c80456ba6f0863dac8a,
`data/tok512.model`). SHA-256 of the inputs converted here:

```
{sums}
```

## The model

LlamaForCausalLM in float32 with {num_params:,} parameters.
Hidden size {c.dim}, {c.n_layers} layers, {c.n_heads} query heads and {c.n_kv_heads} KV heads of size {c.head_size}.
MLP {c.hidden_dim}, vocabulary {c.vocab_size}, context {c.seq_len}, RMSNorm eps 1e-5, rope theta 10000.
The head is tied to the embedding.

The output rows of wq and wk are permuted per head (llama2.c rotates adjacent pairs, Hugging Face
rotates halves). The model ends a story with BOS (id 1), not EOS (id 2), because it was trained on
`BOS + story` sequences, so `generation_config.json` stops on both.

Prompt "Once upon a time" is `[1, 403, 407, 261, 378]` with BOS; its greedy continuation begins
(what llama2.c's `run.c` prints at temperature 0):

> Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One
> day, she saw a big, red ball. She wanted to play with it, but it was too high.

and goes on for four more paragraphs (342 tokens in all, the last one BOS); a pure-Python run of
llama2.c's forward pass on the original checkpoint gives the same 342 tokens.

## The tokenizer

`tokenizer.json` is the Llama-2 layout that transformers' LlamaConverter writes (BPE with byte
fallback, merges derived from the pieces as its SentencePieceExtractor does), with two
normalizers in front that drop leading and trailing spaces and collapse runs of spaces, as
sentencepiece's `remove_extra_whitespaces` does; with them it encodes as `tok512.model` does.
`tests/fixtures/tokenizer/stories260K_expected.json` holds sentencepiece's ids for a few hundred
strings.

## Regenerating

```sh
python3 scripts/convert_llama2c.py --src DIR_WITH_THE_ORIGINALS --out models/stories260K
```

The conversion is deterministic; `tests/e2e/demo_model_test.py` re-runs it and requires the
committed files byte for byte, and checks the greedy story above through `lattice run` and
`lattice serve`.
"""


def write(path, content):
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode("utf-8"))


def dump_json(obj, newline=True):
    """JSON as transformers writes it (indent 2, UTF-8); tokenizers writes no final newline."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + ("\n" if newline else "")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=os.path.join(root, "tests", "fixtures", "demo_model_source"),
                        help="folder with stories260K.bin, tok512.model and LICENSE")
    parser.add_argument("--out", default=os.path.join(root, "models", "stories260K"))
    parser.add_argument("--checkpoint", default="stories260K.bin")
    parser.add_argument("--tokenizer", default="tok512.model")
    args = parser.parse_args()

    checkpoint = os.path.join(args.src, args.checkpoint)
    tokenizer = os.path.join(args.src, args.tokenizer)
    c, raw = read_checkpoint(checkpoint)
    sp = SentencePieceModel(tokenizer)
    sp.check_supported(tokenizer)
    if len(sp.pieces) != c.vocab_size:
        sys.exit(f"{tokenizer} has {len(sp.pieces)} pieces but the checkpoint's vocabulary is {c.vocab_size}")

    tensors = hf_tensors(c, raw)
    num_params = sum(len(blob) // 4 for blob, _ in tensors.values())
    os.makedirs(args.out, exist_ok=True)
    write(os.path.join(args.out, "model.safetensors"), safetensors_bytes(tensors))
    write(os.path.join(args.out, "config.json"), dump_json(model_config(c)))
    write(os.path.join(args.out, "generation_config.json"), dump_json(GENERATION_CONFIG))
    write(os.path.join(args.out, "tokenizer.json"), dump_json(tokenizer_json(sp), newline=False))
    write(os.path.join(args.out, "tokenizer_config.json"), dump_json(tokenizer_config(c.seq_len)))
    write(os.path.join(args.out, "SOURCE.md"), source_md(args.src, c, num_params))
    shutil.copyfile(os.path.join(args.src, "LICENSE"), os.path.join(args.out, "LICENSE"))
    print(f"wrote {args.out}: {num_params:,} parameters, {len(tensors)} tensors")


if __name__ == "__main__":
    main()
