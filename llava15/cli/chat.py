"""`llava15 chat`: multi-turn chat in the terminal, streaming (as `llava/serve/cli.py`).

The image is attached to the first user turn (`<image>\\n` before its text); the whole history is
re-rendered each turn with the conversation template. An empty line or end of input quits.
"""

from __future__ import annotations

import argparse
import sys

from llava15.cli.predict import add_model_arguments, load_engine_for, print_image_cost, setup_torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--image", "--image-file", dest="image", default=None, help="image file")
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--seed", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    from llava15.data.image import load_image
    from llava15.infer.engine import Request
    from llava15.infer.generate import ContextLengthError, SamplingParams

    setup_torch(args.threads)
    # The official CLI picks llava_v1 for v1.5 models by name.
    engine = load_engine_for(args, "llava_v1")
    images = [load_image(args.image)] if args.image else []
    print_image_cost(engine)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p, seed=args.seed)
    roles = engine.template.roles
    history: list[tuple[str, str | None]] = []
    while True:
        try:
            text = input(f"{roles[0]}: ")
        except EOFError:
            break
        if not text.strip():
            break
        if not history and images:
            text = "<image>\n" + text
        history.append(("user", text))
        request = Request(engine.build_prompt(history), images, params)
        try:
            engine.check_fits(request)
        except ContextLengthError as e:
            # The conversation outgrew the model's context: this turn is dropped, the chat goes on.
            history.pop()
            print(f"error: {e}; the turn was dropped (a shorter question, or a new chat)",
                  file=sys.stderr)
            continue
        print(f"{roles[1]}: ", end="", flush=True)
        pieces = []
        for delta in engine.stream(request):
            pieces.append(delta)
            print(delta, end="", flush=True)
        print()
        history.append(("assistant", "".join(pieces).strip()))
    print(file=sys.stderr)
    return 0
