"""The server's scheduler: requests that join and leave a running batch decode as they would alone."""

from __future__ import annotations

import queue
import threading

import pytest
import torch

from llava15.config import tiny
from llava15.infer.generate import SamplingParams, generate
from llava15.model.llava import Llava
from llava15.serve.scheduler import Event, Job, QueueFull, Scheduler
from random_llava import random_llava

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def model() -> Llava:
    return random_llava(tiny())


@pytest.fixture()
def scheduler(model):
    s = Scheduler(model, eos_token_ids=[], max_batch_size=8, max_queue=8)
    s.start()
    yield s
    s.stop()


def text_prompt(seed: int, n: int) -> list[int]:
    return torch.randint(3, 100, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def image_prompt(model: Llava, seed: int, prefix: int, suffix: int) -> list[int]:
    ids = text_prompt(seed, prefix + suffix)
    image = [model.config.image_token_index] * model.config.num_image_tokens
    return ids[:prefix] + image + ids[prefix:]


def pixels(seed: int) -> torch.Tensor:
    return torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(seed))


class Collector:
    """A sink that records events and can run a hook after the n-th token (on the scheduler thread)."""

    def __init__(self, hooks: dict[int, callable] | None = None) -> None:
        self.events: list[Event] = []
        self.done = threading.Event()
        self.hooks = hooks or {}

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if event.token is not None and self.tokens_count() in self.hooks:
            self.hooks[self.tokens_count()]()
        if event.finish is not None:
            self.done.set()

    def tokens_count(self) -> int:
        return sum(e.token is not None for e in self.events)

    @property
    def tokens(self) -> list[int]:
        return [e.token for e in self.events if e.token is not None]

    @property
    def finish(self) -> str | None:
        assert self.done.wait(TIMEOUT), "the job did not finish"
        return self.events[-1].finish


def make_job(prompt, n, sink, pixel_values=None, **params) -> Job:
    return Job(prompt, pixel_values, SamplingParams(max_new_tokens=n, **params), n, sink)


def alone(model, prompt, n, pixel_values=None) -> list[int]:
    return generate(model, [prompt], pixel_values, SamplingParams(max_new_tokens=n), eos_token_ids=[])[0]


def test_a_job_alone_equals_generate(model, scheduler):
    prompt = image_prompt(model, 1, 3, 4)
    sink = Collector()
    scheduler.submit(make_job(prompt, 12, sink, pixels(1)))
    assert sink.finish == "length"
    assert sink.tokens == alone(model, prompt, 12, pixels(1))


def test_requests_joining_and_leaving_decode_as_alone(model, scheduler):
    """A long request is decoded while shorter and longer prompts (with and without images)
    join at different steps and leave before it; every answer equals its answer alone."""
    specs = {  # name -> (prompt, new tokens, pixel values)
        "long": (text_prompt(10, 5), 30, None),
        "img_short_prompt": (image_prompt(model, 11, 1, 1), 6, pixels(11)),
        "long_prompt": (text_prompt(12, 40), 9, None),
        "img_late": (image_prompt(model, 13, 7, 2), 12, pixels(13)),
        "tiny_late": (text_prompt(14, 2), 3, None),
    }
    sinks = {name: Collector() for name in specs}

    def submit(*names):
        def hook():
            for name in names:
                prompt, n, pv = specs[name]
                scheduler.submit(make_job(prompt, n, sinks[name], pv))
        return hook

    # Join points are driven by the long request's progress, so they are deterministic.
    sinks["long"].hooks = {2: submit("img_short_prompt", "long_prompt"), 9: submit("img_late"),
                           10: submit("tiny_late")}
    submit("long")()
    for name, (prompt, n, pv) in specs.items():
        assert sinks[name].finish == "length", name
        assert sinks[name].tokens == alone(model, prompt, n, pv), name


def test_eos_and_stop_check_end_a_row(model):
    prompt = text_prompt(20, 6)
    reference = alone(model, prompt, 10)
    eos = reference[4]
    s = Scheduler(model, eos_token_ids=[eos])
    s.start()
    try:
        by_eos, by_check = Collector(), Collector()
        s.submit(make_job(prompt, 10, by_eos))
        job = make_job(prompt, 10, by_check)
        job.stop_check = lambda tokens: len(tokens) == 3
        s.submit(job)
        assert by_eos.finish == "stop" and by_check.finish == "stop"
        assert by_eos.tokens == reference[:reference.index(eos)]
        assert by_check.tokens == reference[:3]
    finally:
        s.stop()


def test_seeded_sampling_is_reproducible_in_a_batch(model, scheduler):
    prompt = text_prompt(30, 5)
    first, second, greedy = Collector(), Collector(), Collector()
    scheduler.submit(make_job(prompt, 10, first, temperature=1.0, top_p=0.9, seed=3))
    assert first.finish == "length"
    scheduler.submit(make_job(text_prompt(31, 9), 10, greedy))  # a neighbour in the batch
    scheduler.submit(make_job(prompt, 10, second, temperature=1.0, top_p=0.9, seed=3))
    assert second.finish == "length" and greedy.finish == "length"
    assert first.tokens == second.tokens


def test_cancel_frees_the_slot_and_the_queue(model):
    s = Scheduler(model, eos_token_ids=[], max_batch_size=1, max_queue=1)
    s.start()
    try:
        started = threading.Event()
        running = Collector({1: started.set})
        job = make_job(text_prompt(40, 4), 200, running)
        s.submit(job)
        assert started.wait(TIMEOUT)
        waiting_sink, third_sink = Collector(), Collector()
        waiting = make_job(text_prompt(41, 4), 5, waiting_sink)
        s.submit(waiting)
        with pytest.raises(QueueFull):
            s.submit(make_job(text_prompt(42, 4), 5, Collector()))
        s.cancel(waiting)  # a waiting job leaves the queue at once
        assert waiting_sink.finish == "cancelled" and waiting_sink.tokens == []
        s.submit(make_job(text_prompt(43, 4), 5, third_sink))
        s.cancel(job)  # the running job leaves before the next step; the third one gets its slot
        assert running.finish == "cancelled" and len(running.tokens) < 200
        assert third_sink.finish == "length" and len(third_sink.tokens) == 5
        assert s.stats().running == 0 and s.stats().queued == 0
    finally:
        s.stop()


def test_a_failing_prefill_fails_only_its_job(model, scheduler):
    started = threading.Event()
    good = Collector({1: started.set})
    prompt = text_prompt(50, 5)
    scheduler.submit(make_job(prompt, 20, good))
    assert started.wait(TIMEOUT)
    bad = Collector()
    scheduler.submit(make_job(image_prompt(model, 51, 1, 1), 5, bad))  # image tokens, no pixels
    assert bad.finish == "error" and "image" in bad.events[-1].error
    assert good.finish == "length" and good.tokens == alone(model, prompt, 20)
    after = Collector()
    scheduler.submit(make_job(prompt, 3, after))
    assert after.finish == "length"


def test_a_broken_sink_cancels_only_its_job(model, scheduler):
    def broken(event: Event) -> None:
        raise OSError("client gone")

    ok = Collector()
    scheduler.submit(make_job(text_prompt(60, 5), 50, broken))
    scheduler.submit(make_job(text_prompt(61, 5), 4, ok))
    assert ok.finish == "length"


def test_stop_cancels_waiting_and_running_jobs(model):
    s = Scheduler(model, eos_token_ids=[], max_batch_size=1, max_queue=4)
    s.start()
    sinks = [Collector() for _ in range(3)]
    for i, sink in enumerate(sinks):
        s.submit(make_job(text_prompt(70 + i, 4), 200 if i == 0 else 5, sink))
    s.stop()
    assert all(sink.finish in ("cancelled", "length") for sink in sinks)
    assert sinks[0].finish == "cancelled"
    with pytest.raises(RuntimeError):
        s.submit(make_job(text_prompt(1, 2), 1, queue.Queue().put))


def test_keep_rows_cuts_padding_no_kept_row_needs(model):
    from llava15.serve.batch import keep_rows, merge, prefill

    short, _ = prefill(model, [text_prompt(80, 3)], None, [4], 0)
    long, _ = prefill(model, [text_prompt(81, 20)], None, [4], 0)
    both = merge(short, long)
    assert both.cache.length == 20 and both.attention_mask.sum(1).tolist() == [3, 20]
    only_short = keep_rows(both, [0])
    assert only_short.cache.length == 3 and bool(only_short.attention_mask.all())
    assert torch.equal(only_short.cache.keys[0][:, :, :3], short.cache.keys[0][:, :, :3])


def test_a_failing_step_fails_its_batch_and_the_scheduler_serves_on(model, scheduler):
    def explode(tokens: list[int]) -> bool:
        raise RuntimeError("boom")

    first, second, after = Collector(), Collector(), Collector()
    scheduler.submit(make_job(text_prompt(90, 5), 20, first))
    job = make_job(text_prompt(91, 5), 20, second)
    job.stop_check = explode
    scheduler.submit(job)
    assert second.finish == "error" and "boom" in second.events[-1].error
    assert first.finish in ("error", "length")  # failed with the step, unless it ran alone before
    scheduler.submit(make_job(text_prompt(92, 5), 4, after))
    assert after.finish == "length" and len(after.tokens) == 4


def test_anyres_jobs_prefilled_together_decode_as_alone_and_share_the_encode_time():
    """Two AnyRes requests join a running batch in the same step (per-image views and sizes
    kept apart); each decodes as alone, and the encode time is split by their views."""
    from PIL import Image
    from test_serve_support import tiny_engine

    from llava15.infer.generate import generate_tokens

    engine = tiny_engine(image_aspect_ratio="anyres", mm_patch_merge_type="spatial_unpad",
                         image_grid_pinpoints=((56, 28), (28, 56), (56, 56)))
    model = engine.model
    prompt = engine.build_prompt([("user", "<image>\nWhat is it?")])
    specs = {}  # name -> (ids, views, size)
    for name, size, colour in (("wide", (60, 25), (200, 30, 30)), ("square", (50, 50), (30, 30, 200))):
        image = Image.new("RGB", size, colour)
        specs[name] = (engine.encode(prompt, [size]), engine.pixel_values([image]), size)
    assert [specs[n][1][0].shape[0] for n in specs] == [3, 5]  # global view + 2 or 4 tiles
    s = Scheduler(model, eos_token_ids=[], max_batch_size=8, max_queue=8)
    s.start()
    try:
        sinks = {name: Collector() for name in specs}
        jobs = {name: Job(ids, views, SamplingParams(max_new_tokens=8), 8, sinks[name],
                          image_sizes=[size]) for name, (ids, views, size) in specs.items()}

        def join() -> None:  # on the scheduler thread: both are waiting at the next step
            for job in jobs.values():
                s.submit(job)

        running = Collector({2: join})
        s.submit(make_job(text_prompt(95, 4), 12, running))
        assert running.finish == "length"
        for name, (ids, views, size) in specs.items():
            assert sinks[name].finish == "length", name
            alone = generate_tokens(model, [ids], views, SamplingParams(max_new_tokens=8), [],
                                    image_sizes=[size])
            assert sinks[name].tokens == [token for _, token in alone], name
        assert jobs["wide"].image_encode_s > 0
        assert jobs["wide"].image_encode_s * 5 == pytest.approx(jobs["square"].image_encode_s * 3)
    finally:
        s.stop()
