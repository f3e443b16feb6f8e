#!/usr/bin/python3
"""A second, independent client of the public lattice.v1 API, for end-to-end tests.

It sends what `lattice generate` sends (one streaming Generate RPC per prompt, all at once)
and prints the same JSON lines as `lattice generate --json` / `lattice run --json`, one per
prompt in input order, so a test can compare the three as text. It uses gRPC Python
(Debian's python3-grpcio and python3-protobuf) with the stubs that the build generates
from proto/ into <build>/python (target lattice_python_proto); pass that folder as
--stubs or in LATTICE_PYTHON_STUBS, and run it with /usr/bin/python3 (the interpreter those
packages serve). nlohmann_json.py beside it prints floats digit for digit as nlohmann does.

A failed RPC prints `python_client: <CODE>: <message>` to stderr and exits 2, as
`lattice generate` does.
"""

import argparse
import concurrent.futures
import os
import re
import sys
import time

# Beside this file: prints floats digit for digit as the C++ side does (a proto float
# arrives here as the same double that nlohmann widens it to).
import nlohmann_json

# What `lattice generate` allows, for the same reason: large logprob chunks.
MAX_RECEIVE_MESSAGE_BYTES = 64 << 20


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="HOST:PORT")
    parser.add_argument("--prompt-ids", action="append", default=[],
                        help="comma-separated prompt token ids; repeat for more prompts")
    parser.add_argument("--prompt", action="append", default=[], help="a text prompt; repeatable")
    parser.add_argument("--chat", action="append", default=[], help="a one-message chat (role user); repeatable")
    parser.add_argument("--stop", action="append", default=[], help="a stop string; repeatable")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top-p", type=float, default=None, help="unset: left unset in the request")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--min-p", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None, help="unset: the server picks one")
    parser.add_argument("--logprobs", type=int, default=0)
    parser.add_argument("--ignore-eos", action="store_true")
    parser.add_argument("--stop-token-ids", default="", help="comma-separated")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds each request may take, reaching the server included (0: no limit)")
    parser.add_argument("--json", action="store_true",
                        help="accepted for command lines shared with `lattice generate`; output is always JSON")
    parser.add_argument("--stubs", default=os.environ.get("LATTICE_PYTHON_STUBS"),
                        help="folder holding lattice/v1/lattice_pb2*.py (default: $LATTICE_PYTHON_STUBS)")
    return parser.parse_args(argv)


def import_stubs(stubs_dir):
    """Returns (grpc, lattice_pb2, lattice_pb2_grpc). The generated modules import each other
    as `lattice.v1.*`, so their root goes on sys.path rather than being loaded by file name."""
    if stubs_dir:
        sys.path.insert(0, os.path.abspath(stubs_dir))
    # pylint: disable=import-outside-toplevel
    try:
        import grpc
        from google import protobuf  # noqa: F401
    except ImportError as error:
        # Debian's packages serve Debian's interpreter only, not e.g. a pyenv python3 on PATH.
        raise SystemExit(f"python_client: {error}: run with /usr/bin/python3 after "
                         "scripts/install-deps.sh (python3-grpcio, python3-protobuf)")
    try:
        from lattice.v1 import lattice_pb2, lattice_pb2_grpc
    except ImportError as error:
        raise SystemExit(f"python_client: {error}: pass --stubs <build>/python or set LATTICE_PYTHON_STUBS "
                         "(built by the lattice_python_proto target)")
    return grpc, lattice_pb2, lattice_pb2_grpc


def fail(line):
    print(f"python_client: {line}", file=sys.stderr)
    sys.exit(2)


def parse_ids(text, flag):
    """As the C++ ParseIntList, except that an empty text is an empty list (as in
    `lattice generate`, so that the server's rejection of an empty prompt can be tested)."""
    if text == "":
        return []
    ids = []
    for part in text.split(","):
        part = part.strip(" ")
        if not re.fullmatch(r"-?[0-9]+", part) or not -2**31 <= int(part) < 2**31:
            fail(f"INVALID_ARGUMENT: {flag}: '{part}' in \"{text}\" is not a token id")
        ids.append(int(part))
    return ids


def build_requests(pb2, args):
    """In `lattice generate`'s order: --prompt-ids, then --prompt, then --chat."""
    stop_token_ids = parse_ids(args.stop_token_ids, "--stop-token-ids")
    prompts = [{"prompt_ids": parse_ids(text, "--prompt-ids")} for text in args.prompt_ids]
    prompts += [{"prompt": text} for text in args.prompt]
    prompts += [{"messages": [pb2.ChatMessage(role="user", content=text)]} for text in args.chat]
    if not prompts:
        fail("INVALID_ARGUMENT: give --prompt-ids, --prompt or --chat")
    requests = []
    for prompt in prompts:
        request = pb2.GenerateRequest(
            **prompt,
            stop=args.stop,
            max_tokens=args.max_tokens,
            logprobs=args.logprobs,
            ignore_eos=args.ignore_eos,
            stop_token_ids=stop_token_ids)
        sampling = request.sampling
        sampling.temperature = args.temperature
        sampling.top_k = args.top_k
        sampling.min_p = args.min_p
        # Optional fields stay unset unless given, so the server's defaults apply.
        if args.top_p is not None:
            sampling.top_p = args.top_p
        if args.seed is not None:
            sampling.seed = args.seed
        requests.append(request)
    return requests


def finish_reason_name(pb2, reason):
    return {pb2.FINISH_REASON_LENGTH: "length", pb2.FINISH_REASON_STOP: "stop"}.get(reason, "none")


def generate(pb2, stub, request, timeout):
    """Runs one streaming RPC to its end; returns the result as `lattice run --json` has it."""
    output_ids, logprobs, finish_reason = [], [], pb2.FINISH_REASON_UNSPECIFIED
    prompt_ids, text, stop_string, with_text = list(request.prompt_ids), "", "", False
    for response in stub.Generate(request, timeout=timeout, wait_for_ready=True):
        if response.prompt_ids:
            prompt_ids = list(response.prompt_ids)
        text += response.text
        with_text = with_text or bool(response.text)
        stop_string = response.stop_string or stop_string
        output_ids.extend(response.token_ids)
        for top in response.logprobs:
            logprobs.append([[c.token_id, c.logprob] for c in top.candidates])
        if response.finish_reason != pb2.FINISH_REASON_UNSPECIFIED:
            finish_reason = response.finish_reason
    if finish_reason == pb2.FINISH_REASON_UNSPECIFIED:
        raise RuntimeError("the stream ended without a finish reason")
    result = {"prompt_ids": prompt_ids, "output_ids": output_ids, "logprobs": logprobs,
              "finish_reason": finish_reason_name(pb2, finish_reason)}
    # As `lattice generate --json` against a server with a tokenizer (text prompts need one).
    if with_text or request.prompt or request.messages:
        result["text"] = text
        if stop_string:
            result["stop_string"] = stop_string
    return result


def main(argv):
    args = parse_args(argv)
    grpc, pb2, pb2_grpc = import_stubs(args.stubs)

    requests = build_requests(pb2, args)
    # One deadline from the start for everything, reaching the server included, as in
    # `lattice generate`.
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None

    def remaining():
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    channel = grpc.insecure_channel(args.server,
                                    options=[("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES)])
    try:
        grpc.channel_ready_future(channel).result(timeout=remaining())
    except grpc.FutureTimeoutError:
        fail(f"UNAVAILABLE: cannot reach {args.server} within {args.timeout:g} s")
    stub = pb2_grpc.LatticeStub(channel)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(requests)) as pool:
        futures = [pool.submit(generate, pb2, stub, request, remaining()) for request in requests]
        results, errors = [], []
        for future in futures:
            try:
                results.append(future.result())
            except grpc.RpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
            except RuntimeError as error:
                errors.append(f"INTERNAL: {error}")
    channel.close()
    if errors:
        for line in dict.fromkeys(errors):  # each distinct failure once, in input order
            print(f"python_client: {line}", file=sys.stderr)
        sys.exit(2)
    for result in results:
        print(nlohmann_json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
