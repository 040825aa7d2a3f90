"""The GPT judges of LLaVA-Bench and MM-Vet, over any OpenAI-compatible chat endpoint.

`JudgeClient` POSTs `{base_url}/chat/completions` with plain urllib, caches every reply on disk
(keyed by model, messages, temperature and max_tokens: a re-run costs nothing) and retries
transient failures (connection errors, HTTP 429 and 5xx) with exponential backoff.

The prompts and parsing rules are the official ones:
- LLaVA-Bench: `llava/eval/eval_gpt_review_bench.py` (system message, `[Context]...[System]`
  content, the `llava_bench_<category>` rule prompts of `llava/eval/table/rule.json`,
  temperature 0.2, max_tokens 1024) and `summarize_gpt_review.py` (relative score).
- MM-Vet: `mm-vet_evaluator.py` (few-shot grader prompt, max_tokens 3, temperature 0, the
  re-ask rule with temperature + 0.5 per retry, 0.0 after 5 retries).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path


def add_judge_arguments(p: argparse.ArgumentParser) -> None:
    """The judge flags of the `score` commands that grade with a GPT judge."""
    p.add_argument("--judge-base-url", help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    p.add_argument("--judge-model", help="judge model name (official: gpt-4-0314 / gpt-4-0613)")
    p.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (default OPENAI_API_KEY)")
    p.add_argument("--judge-cache", default=".judge_cache", help="reply cache folder")


def judge_from_arguments(args: argparse.Namespace) -> "JudgeClient":
    """The client the judge flags describe; a missing endpoint or model is a usage error."""
    if not (args.judge_base_url and args.judge_model):
        raise SystemExit("error: grading needs --judge-base-url and --judge-model")
    return JudgeClient(args.judge_base_url, args.judge_model,
                       api_key=os.environ.get(args.judge_api_key_env), cache_dir=args.judge_cache)


class JudgeError(RuntimeError):
    """The judge endpoint failed after all retries, or answered in an unexpected shape."""


class JudgeClient:
    """A chat-completions client with an on-disk reply cache and exponential backoff.

    `api_key` may be None for local servers. `sleep` is injectable for tests.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 cache_dir: str | Path | None = None, max_retries: int = 5,
                 backoff_s: float = 1.0, timeout_s: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_retries, self.backoff_s, self.timeout_s = max_retries, backoff_s, timeout_s
        self.sleep = sleep
        self.requests_sent = 0

    def _cache_path(self, payload: dict, run: int) -> Path | None:
        if self.cache_dir is None:
            return None
        # Repeated grading runs send identical requests; the run index keeps their replies
        # apart (run 0 keeps the plain request key, so existing caches stay valid).
        keyed = payload if run == 0 else {**payload, "run": run}
        key = hashlib.sha256(json.dumps(keyed, sort_keys=True, ensure_ascii=False)
                             .encode("utf-8")).hexdigest()
        return self.cache_dir / f"{key}.json"

    def chat(self, messages: list[dict], temperature: float, max_tokens: int,
             run: int = 0) -> str:
        """The first choice's message content for these messages (cached per grading `run`:
        the same request in another run is asked again, as a repeated evaluation must)."""
        payload = {"model": self.model, "messages": messages, "temperature": temperature,
                   "max_tokens": max_tokens}
        cache = self._cache_path(payload, run)
        if cache is not None and cache.exists():
            return json.loads(cache.read_text(encoding="utf-8"))["content"]
        content = self._post(payload)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps({"request": payload, "content": content},
                                      ensure_ascii=False), encoding="utf-8")
            tmp.replace(cache)  # atomic: an interrupted run never leaves half a reply
        return content

    def _post(self, payload: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(payload).encode("utf-8")
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            self.requests_sent += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    body = json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                last_error = e
                if e.code == 429 or e.code >= 500:
                    continue
                raise JudgeError(f"{self.url}: HTTP {e.code} {e.reason}") from e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last_error = e
                continue
            try:
                return body["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError) as e:
                raise JudgeError(f"{self.url}: unexpected reply {str(body)[:200]}") from e
        raise JudgeError(f"{self.url}: no reply after {self.max_retries + 1} attempts "
                         f"({last_error})")


# ---------------------------------------------------------------- LLaVA-Bench (in-the-wild)
LLAVA_BENCH_SYSTEM = ("You are a helpful and precise assistant for checking the quality of the "
                      "answer.")
_LLAVA_BENCH_RULE = (
    "We would like to request your feedback on the performance of two AI assistants in response "
    "to the user question displayed above. The user asks the question on observing an image. "
    "For your reference, the visual content in the image is represented with a few sentences "
    "describing the image. \nPlease rate the helpfulness, relevance, accuracy, level of details "
    "of their responses. Each assistant receives an overall score on a scale of 1 to 10, where "
    "a higher score indicates better overall performance.\nPlease first output a single line "
    "containing only two values indicating the scores for Assistant 1 and 2, respectively. The "
    "two scores are separated by a space.\nIn the subsequent line, please provide a "
    "comprehensive explanation of your evaluation, avoiding any potential bias and ensuring "
    "that the order in which the responses were presented does not affect your judgment.")
# rule.json's llava_bench_conv / _detail / _complex entries (identical texts, role "Assistant")
LLAVA_BENCH_RULES = {f"llava_bench_{c}": _LLAVA_BENCH_RULE for c in ("conv", "detail", "complex")}


def llavabench_content(captions: str | list[str], question: str, reference: str, answer: str,
                       category: str) -> str:
    """The user message of eval_gpt_review_bench.py (Assistant 1 = GPT-4's reference answer)."""
    key = "llava_bench_" + category
    if key not in LLAVA_BENCH_RULES:
        raise KeyError(f"Visual QA category not found in rule file: {key}.")
    context = "\n".join(captions) if isinstance(captions, list) else captions
    return (f"[Context]\n{context}\n\n[Question]\n{question}\n\n"
            f"[Assistant 1]\n{reference}\n\n[End of Assistant 1]\n\n"
            f"[Assistant 2]\n{answer}\n\n[End of Assistant 2]\n\n"
            f"[System]\n{LLAVA_BENCH_RULES[key]}\n\n")


def parse_review_score(review: str) -> list[float]:
    """First line, commas to spaces, split on single spaces: two fields -> floats, else [-1, -1]."""
    fields = review.split("\n")[0].replace(",", " ").split(" ")
    if len(fields) != 2:
        return [-1, -1]
    try:
        return [float(fields[0]), float(fields[1])]
    except ValueError:
        return [-1, -1]


def llavabench_review(client: JudgeClient, content: str, max_tokens: int = 1024) -> str:
    messages = [{"role": "system", "content": LLAVA_BENCH_SYSTEM},
                {"role": "user", "content": content}]
    return client.chat(messages, temperature=0.2, max_tokens=max_tokens)


def summarize_reviews(reviews: list[dict]) -> dict:
    """summarize_gpt_review.py: per category (and 'all') the mean score pair rounded to 3
    decimals, relative score round(model / reference * 100, 1) and both means x 10."""
    groups: dict[str, list] = {}
    for review in reviews:
        if "category" in review:
            groups.setdefault(review["category"], []).append(review["tuple"])
        groups.setdefault("all", []).append(review["tuple"] if "tuple" in review
                                            else review["score"])
    summary = {}
    for name in sorted(groups):
        pairs = groups[name]
        ref, model = (round(sum(p[i] for p in pairs) / len(pairs), 3) for i in (0, 1))
        summary[name] = {"relative": round(model / ref * 100, 1) if ref else None,
                         "reference": round(ref * 10, 1), "model": round(model * 10, 1),
                         "count": len(pairs)}
    return summary


# ---------------------------------------------------------------- MM-Vet
MMVET_PROMPT = """Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in the ground truth means it is totally right only when all elements in the ground truth are present in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the correctness score.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0
"""
MMVET_RETRY_SUFFIX = "\nPredict the correctness of the answer (digit): "


def mmvet_question(question: str, answer: str, prediction: str, retry: bool = False) -> str:
    row = " | ".join([question, answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> "),
                      prediction, ""])
    return MMVET_PROMPT + "\n" + row + (MMVET_RETRY_SUFFIX if retry else "")


def parse_mmvet_score(content: str) -> float | None:
    """float of the first space-separated token if it lies in [0, 1], else None."""
    try:
        score = float(content.split(" ")[0].strip())
    except ValueError:
        return None
    return None if score > 1.0 or score < 0.0 else score


def mmvet_grade(client: JudgeClient, question: str, answer: str, prediction: str,
                run: int = 0) -> tuple[float, str]:
    """(score, last reply) of grading run `run`: ask at temperature 0; while the reply does not
    parse, re-ask with the suffix at the current temperature and raise it by 0.5; after 5
    re-asks give 0.0."""
    temperature = 0.0
    content = client.chat([{"role": "user", "content": mmvet_question(question, answer,
                                                                      prediction)}],
                          temperature=temperature, max_tokens=3, run=run)
    tries = 1
    while True:
        score = parse_mmvet_score(content)
        if score is not None:
            return score, content
        retry = mmvet_question(question, answer, prediction, retry=True)
        content = client.chat([{"role": "user", "content": retry}], temperature=temperature,
                              max_tokens=3, run=run)
        tries += 1
        temperature += 0.5
        if tries > 5:
            return 0.0, content
