#!/usr/bin/env python3
"""Checks of the bundled demo model, models/stories260K (scripts/convert_llama2c.py).

  --check converter   the converter reproduces the committed files byte for byte
  --check run         `lattice run` greedily writes llama2.c's story for "Once upon a time"
  --check serve       the same story through `lattice serve --tp 2 --pp 2` and `lattice generate`
  --check tokenizer   a pure-Python reading of the committed tokenizer.json (BPE with byte
                      fallback) encodes the fixture's strings to sentencepiece's ids, decodes
                      them back, and the chat template renders a story prompt

tests/fixtures/tokenizer/stories260K_expected.json holds what sentencepiece (tok512.model)
encodes a few hundred strings to, ids without BOS; `--write-fixture` rewrites it and needs
sentencepiece (Debian's python3-sentencepiece). Standard library otherwise; a check whose
inputs are absent (the llama2.c originals, found in $LATTICE_DEMO_MODEL_SRC or
tests/fixtures/demo_model_source; sentencepiece; jinja2) is skipped or narrowed, saying so. Exit code 77
means skipped.
"""
import argparse
import filecmp
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "stories260K")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "stories260K_expected.json")
# The llama2.c originals (not committed: about 1 MB, and the converted model is).
SRC = os.environ.get("LATTICE_DEMO_MODEL_SRC", os.path.join(ROOT, "tests", "fixtures", "demo_model_source"))
SKIP = 77

PROMPT_IDS = [1, 403, 407, 261, 378]  # <s> Once upon a time
# What llama2.c's run.c prints for "Once upon a time" at temperature 0 (the story in
# /work/shared/demo-model/SOURCE.md is its first paragraph). A pure-Python llama2.c forward pass
# on the original checkpoint gives the same 342 tokens, the last one BOS, which ends a story.
STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
         "One day, she saw a big, red ball. She wanted to play with it, but it was too high.")
FULL_STORY = (
    STORY + "\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
    "She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" "
    "Her mom said, \"Don't worry, Lily. We can help you.\"\n"
    "Lily and her mom went to the park to play. They played together and had fun. After a while, "
    "Lily's mom came into the room and saw the park. She was so happy and said, "
    "\"Thank you, Lily! You are a good friend.\"")
STORY_TOKENS = 342
MAX_TOKENS = 400


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def skip(message):
    print("SKIP: " + message)
    sys.exit(SKIP)


# ---------------------------------------------------------------------------------------
# A small reader of tokenizer.json: just the components the Llama-2 layout uses.

def onig_to_python(pattern):
    """The Oniguruma regexes our normalizers use, in Python's re syntax (\\z is \\Z there).
    ^ and $ mean line anchors in Oniguruma's Ruby syntax but not in Python: refuse them."""
    if "^" in pattern or "$" in pattern:
        raise ValueError(f"unsupported regex {pattern!r}")
    return re.compile(pattern.replace("\\z", "\\Z"))


class Tokenizer:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.spec = json.load(f)
        model = self.spec["model"]
        assert model["type"] == "BPE" and model["byte_fallback"] and self.spec["pre_tokenizer"] is None
        self.vocab = model["vocab"]
        self.pieces = {i: p for p, i in self.vocab.items()}
        self.ranks = {}
        for rank, merge in enumerate(model["merges"]):
            left, right = merge.split(" ") if isinstance(merge, str) else merge
            self.ranks[(left, right)] = rank
        self.special = {t["content"]: t["id"] for t in self.spec["added_tokens"]}

    def normalize(self, text, spec=None):
        spec = spec or self.spec["normalizer"]
        kind = spec["type"]
        if kind == "Sequence":
            for n in spec["normalizers"]:
                text = self.normalize(text, n)
            return text
        if kind == "Prepend":
            return spec["prepend"] + text if text else text
        if kind == "Replace":
            pattern = spec["pattern"]
            if "String" in pattern:
                return text.replace(pattern["String"], spec["content"])
            return onig_to_python(pattern["Regex"]).sub(spec["content"].replace("\\", "\\\\"), text)
        raise ValueError(f"unsupported normalizer {kind}")

    def bpe(self, text):
        """tokenizers' BPE: characters (bytes where a character is not in the vocabulary),
        then repeatedly the adjacent pair of lowest merge rank, leftmost first."""
        symbols = []
        for ch in text:
            if ch in self.vocab:
                symbols.append(ch)
            else:
                symbols += [f"<0x{b:02X}>" for b in ch.encode("utf-8")]
        while len(symbols) > 1:
            best = None
            for i in range(len(symbols) - 1):
                rank = self.ranks.get((symbols[i], symbols[i + 1]))
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, i)
            if best is None:
                break
            i = best[1]
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        return [self.vocab[s] for s in symbols]

    def encode(self, text):
        """Ids without BOS; special tokens in the text are split out as tokenizers does."""
        ids = []
        pattern = "(" + "|".join(re.escape(s) for s in self.special) + ")"
        for part in re.split(pattern, text):
            if part in self.special:
                ids.append(self.special[part])
            elif part:
                ids += self.bpe(self.normalize(part))
        return ids

    def decode(self, ids, skip_special_tokens=True):
        """The decoder chain Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)."""
        tokens = [self.pieces[i] for i in ids if not (skip_special_tokens and self.pieces[i] in self.special)]
        tokens = [t.replace("\u2581", " ") for t in tokens]
        out, pending = [], bytearray()
        for t in tokens + [None]:
            m = re.fullmatch(r"<0x([0-9A-F]{2})>", t) if t is not None else None
            if m:
                pending.append(int(m.group(1), 16))
                continue
            if pending:
                try:
                    out.append(pending.decode("utf-8"))
                except UnicodeDecodeError:
                    out.append("\ufffd" * len(pending))
                pending = bytearray()
            if t is not None:
                out.append(t)
        text = "".join(out)
        return text[1:] if text.startswith(" ") else text


# ---------------------------------------------------------------------------------------
# The tokenizer fixture.

def fixture_strings():
    """A few hundred strings: TinyStories-like English, punctuation, digits, spaces at the
    ends and in runs, newlines and tabs, Unicode and emoji that need byte fallback."""
    stories = [
        "Once upon a time",
        "Once upon a time, there was a little girl named Lily.",
        "She loved to play outside in the park.",
        "One day, she saw a big, red ball.",
        "Tom and his dog Max went to the beach. They built a huge sandcastle!",
        "\"Can I have a cookie?\" asked Ben. Mom smiled and said, \"Yes, you can.\"",
        "The cat was sad because it could not find its toy.",
        "The sun was shining and the birds were singing.",
        "Sue's mom gave her a shiny, new bike for her birthday.",
        "They didn't know what to do, so they asked the wise old owl.",
        "The little bunny hopped and hopped until he was very tired.",
        "From that day on, they were best friends.",
        "The end.",
        "Timmy was scared of the dark, but his teddy bear kept him safe.",
        "\"Wow!\" said Anna. \"Look at the pretty butterfly!\"",
        "It was a cold, snowy morning in the small town.",
        "The moral of the story is: always share with your friends.",
        "He ran -- fast -- to the big tree... and hid.",
        "What's that? It's a frog! No, it's a toad.",
        "Lily and Ben played with blocks (red, blue and green) all afternoon.",
        "Mr. Brown had 3 apples and 2 bananas.",
        "At 7:30 the bus came; at 8:15 school started.",
        "Jack's toys: a car, a ball, a kite; Jill's toys: a doll.",
        "ONCE UPON A TIME THERE WAS A DRAGON",
        "once upon a time there was a dragon",
        "supercalifragilisticexpialidocious",
        "Zebra, yak, quokka & jellyfish went #swimming @ the zoo.",
        "She said: 'I can't, won't, shouldn't!'",
        "a", "I", "A big dog.", "!", "?", ".", ",", "...", "--", "'", "\"", "hello", "Hello", "HELLO",
    ]
    digits = ["0", "7", "42", "123", "2024", "3.14", "1,000,000", "2024-01-01", "10/10", "50%", "$5", "#1",
              "a1b2c3", "Room 101", "007", "1st 2nd 3rd 4th", "100 + 200 = 300", "-5", "1e-5"]
    punctuation = ["Hello, world!", "Wait... what?!", "(parentheses) [brackets] {braces}", "a/b\\c|d",
                   "<tag> & </tag>", "x < y > z", "50% off*", "~tilde~ `code` ^caret^", "semi;colon:colon",
                   "under_score", "email@example.com", "https://example.com/a?b=c&d=e", "C++ & C#",
                   "\u201cquoted\u201d \u2018single\u2019", "em\u2014dash en\u2013dash", "\u2026 ellipsis"]
    whitespace = ["", " ", "  ", "     ", "\n", "\n\n", "\t", " \t ", "\r\n", " \n ", "a b", "a  b", "a   b",
                  "a    b     c", " a", "a ", "  a  ", "   leading", "trailing   ", "  both  ends  ",
                  "line one\nline two", "line one\n\nline two", "line one \n line two", "end with newline\n",
                  "\nstart with newline", "tab\tseparated\tvalues", "  \n  indented\n  block\n",
                  "windows\r\nline", "a \t b", "\u00a0nbsp\u00a0in\u00a0vocab", "hair\u200aspace",
                  "ideographic\u3000space", "thin\u2009space", "\u00a0", " \u00a0 ", "\u200b", "x\u200by"]
    unicode = ["caf\u00e9", "na\u00efve r\u00e9sum\u00e9", "se\u00f1or ni\u00f1o", "\u00fcber stra\u00dfe",
               "\u00e2 \u20ac \u2122", "\u0394\u03b5\u03bb\u03c4\u03b1 \u03b1\u03b2\u03b3",
               "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", "\u4f60\u597d\u4e16\u754c",
               "\u3053\u3093\u306b\u3061\u306f", "\uc548\ub155\ud558\uc138\uc694",
               "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd", "\u0928\u092e\u0938\u094d\u0924\u0947",
               "e\u0301 combining", "\ufb01 ligature", "\u2460\u2461\u2462", "\u00bd \u00bc \u00be",
               "\u00a9 \u00ae \u00b0C", "\u2190\u2191\u2192\u2193", "\u221e \u2211 \u221a",
               "\U0001d400 math bold", "\u00c5ngstr\u00f6m", "\u0130stanbul", "\u01c5 titlecase"]
    emoji = ["\U0001f600", "I love my dog \U0001f436!", "\U0001f44d\U0001f3fd thumbs",
             "\U0001f468\u200d\U0001f469\u200d\U0001f467 family", "\U0001f1fa\U0001f1f8 flag",
             "\u2764\ufe0f heart", "\U0001f308\U0001f984\u2728", "end with emoji \U0001f389",
             "\U0001f600\U0001f600\U0001f600", "  \U0001f642  ", "\u263a", "\U0001f9d1\u200d\U0001f4bb"]
    controls = ["\x00", "a\x00b", "\x01\x02\x03", "\x7f", "bell\x07", "\x0b\x0c", "esc\x1b[0m"]

    strings = []
    strings += stories + digits + punctuation + whitespace + unicode + emoji + controls
    # Whitespace variants of sentences: what sentencepiece's remove_extra_whitespaces changes.
    for s in stories[:20] + punctuation[:4] + unicode[:4] + emoji[:3]:
        strings += [" " + s, s + " ", "  " + s + "   ", s.replace(" ", "  "), s.replace(" ", " \t "),
                    s + "\n", "\n" + s, s.replace(" ", "\n"), s.upper(), s.lower()]
    seen, unique = set(), []
    for s in strings:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def load_sentencepiece():
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        # Debian's python3-sentencepiece, from a Python that does not look there (pyenv).
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import sentencepiece  # noqa: F401
        except ImportError:
            return None
    import sentencepiece
    return sentencepiece


def sentencepiece_ids(sentencepiece, strings):
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(SRC, "tok512.model"))
    return [sp.encode(s) for s in strings]


def write_fixture():
    sentencepiece = load_sentencepiece()
    if sentencepiece is None:
        fail("--write-fixture needs sentencepiece (apt-get install python3-sentencepiece)")
    strings = fixture_strings()
    rows = [json.dumps({"text": s, "ids": ids}, ensure_ascii=False)
            for s, ids in zip(strings, sentencepiece_ids(sentencepiece, strings))]
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(rows) + "\n]\n")
    print(f"wrote {FIXTURE}: {len(rows)} strings")


def check_tokenizer():
    tok = Tokenizer(os.path.join(MODEL, "tokenizer.json"))
    with open(FIXTURE, encoding="utf-8") as f:
        cases = json.load(f)
    if [c["text"] for c in cases] != fixture_strings():
        fail(f"{FIXTURE} is stale: rewrite it with --write-fixture")
    sentencepiece = load_sentencepiece()
    if sentencepiece is not None and os.path.exists(os.path.join(SRC, "tok512.model")):
        for c, ids in zip(cases, sentencepiece_ids(sentencepiece, [c["text"] for c in cases])):
            if ids != c["ids"]:
                fail(f"sentencepiece encodes {c['text']!r} to {ids}, the fixture says {c['ids']}")
        print(f"the fixture agrees with sentencepiece on {len(cases)} strings")
    else:
        print("sentencepiece or tok512.model not available: the fixture is taken as it is")
    bad = []
    for c in cases:
        got = tok.encode(c["text"])
        if got != c["ids"]:
            bad.append(f"  {c['text']!r}: tokenizer.json {got}, sentencepiece {c['ids']}")
    if bad:
        fail(f"{len(bad)} of {len(cases)} strings encode differently:\n" + "\n".join(bad))
    print(f"tokenizer.json encodes all {len(cases)} strings as sentencepiece does")

    # Decoding gives back the text as sentencepiece normalised it (spaces trimmed and collapsed).
    for c in cases:
        expected = re.sub(" {2,}", " ", c["text"].strip(" "))
        if tok.decode(c["ids"]) != expected:
            fail(f"{c['ids']} decodes to {tok.decode(c['ids'])!r}, expected {expected!r}")
    print("and decodes them back")

    with open(os.path.join(MODEL, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    try:
        import jinja2.sandbox
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import jinja2.sandbox
        except ImportError:
            print("jinja2 not available: chat template not rendered")
            return
    # As transformers renders chat templates.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(config["chat_template"])
    messages = [{"role": "system", "content": "You are a storyteller."},
                {"role": "user", "content": " Once upon a time "}]
    text = template.render(messages=messages, bos_token=config["bos_token"], add_generation_prompt=True)
    if text != "<s>Once upon a time" or tok.encode(text) != PROMPT_IDS:
        fail(f"the chat template renders {text!r} -> {tok.encode(text)}, expected {PROMPT_IDS}")
    print(f"the chat template renders a user turn as {text!r} -> {PROMPT_IDS}")


# ---------------------------------------------------------------------------------------
# Converter and generation.

def check_converter():
    if not os.path.exists(os.path.join(SRC, "stories260K.bin")):
        skip(f"the llama2.c originals are not in {SRC}")
    # The inputs are the originals: their SHA-256 values are the ones pinned for the hub files.
    import hashlib
    sums = os.path.join(SRC, "SHA256SUMS")
    if os.path.exists(sums):
        for line in open(sums, encoding="utf-8"):
            digest, name = line.split()
            path = os.path.join(SRC, name)
            if os.path.exists(path) and hashlib.sha256(open(path, "rb").read()).hexdigest() != digest:
                fail(f"{path} is not the original (SHA-256 differs from {sums})")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert_llama2c.py"), "--src", SRC,
                        "--out", out], check=True)
        names = sorted(os.listdir(out))
        committed = sorted(os.listdir(MODEL))
        if names != committed:
            fail(f"the converter writes {names}, {MODEL} holds {committed}")
        for name in names:
            if not filecmp.cmp(os.path.join(out, name), os.path.join(MODEL, name), shallow=False):
                fail(f"{name} differs from the committed {os.path.join(MODEL, name)}")
    print(f"the converter reproduces {len(names)} files byte for byte")


def check_story(result, how):
    tok = Tokenizer(os.path.join(MODEL, "tokenizer.json"))
    output = result["output_ids"]
    text = tok.decode(result["prompt_ids"] + output)
    print(f"{how}: {len(output)} tokens, finish_reason {result['finish_reason']}: {text!r}")
    if result["prompt_ids"] != PROMPT_IDS:
        fail(f"prompt_ids {result['prompt_ids']}")
    if not text.startswith(STORY + "\n"):
        fail(f"{how} wrote\n  {text!r}\nwhich does not begin with llama2.c's\n  {STORY!r}")
    if text != FULL_STORY:
        fail(f"{how} wrote\n  {text!r}\nexpected\n  {FULL_STORY!r}")
    if result["finish_reason"] != "stop" or output[-1] != 1 or len(output) != STORY_TOKENS:
        fail(f"{how} should stop on BOS (id 1) after {STORY_TOKENS} tokens; got {len(output)} tokens "
             f"ending {output[-3:]}, finish_reason {result['finish_reason']}")


def run_json(argv, timeout):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        fail(f"{' '.join(argv)} exited with {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_run(lattice):
    ids = ",".join(map(str, PROMPT_IDS))
    result = run_json([lattice, "run", "--model", MODEL, "--prompt-ids", ids, "--max-tokens", str(MAX_TOKENS),
                       "--json"], timeout=120)
    check_story(result, "lattice run")


def check_serve(lattice, tp, pp):
    ids = ",".join(map(str, PROMPT_IDS))
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        server = subprocess.Popen([lattice, "serve", "--model", MODEL, "--tp", str(tp), "--pp", str(pp), "--host",
                                   "127.0.0.1", "--port", "0", "--kv-cache-memory", "64M"],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            address = None
            deadline = time.time() + 60
            while address is None and time.time() < deadline and server.poll() is None:
                time.sleep(0.1)
                with open(log.name) as f:
                    m = re.search(r"listening on (\S+)", f.read())
                address = m and m.group(1)
            if address is None:
                with open(log.name) as f:
                    fail(f"lattice serve --tp {tp} --pp {pp} did not start:\n{f.read()}")
            # The workers may still be loading: generate waits for the server, retry until ready.
            deadline = time.time() + 120
            while True:
                proc = subprocess.run([lattice, "generate", "--server", address, "--prompt-ids", ids,
                                       "--max-tokens", str(MAX_TOKENS), "--timeout", "30", "--json"],
                                      capture_output=True, text=True, timeout=60)
                if proc.returncode == 0 or time.time() > deadline:
                    break
                time.sleep(0.5)
            if proc.returncode != 0:
                fail(f"lattice generate exited with {proc.returncode}:\n{proc.stderr}")
            check_story(json.loads(proc.stdout.strip().splitlines()[-1]), f"lattice serve --tp {tp} --pp {pp}")
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", choices=["converter", "run", "serve", "tokenizer"])
    parser.add_argument("--lattice", help="the lattice binary (run, serve)")
    parser.add_argument("--tp", type=int, default=2)
    parser.add_argument("--pp", type=int, default=2)
    parser.add_argument("--write-fixture", action="store_true")
    args = parser.parse_args()
    if args.write_fixture:
        write_fixture()
    elif args.check == "converter":
        check_converter()
    elif args.check == "tokenizer":
        check_tokenizer()
    elif args.check in ("run", "serve"):
        if not args.lattice:
            parser.error(f"--check {args.check} needs --lattice")
        check_run(args.lattice) if args.check == "run" else check_serve(args.lattice, args.tp, args.pp)
    else:
        parser.error("give --check or --write-fixture")
    print("PASS")


if __name__ == "__main__":
    main()
