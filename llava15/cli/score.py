"""`llava15 score BENCHMARK ...`: the official scoring / submission scripts, one to one.

Each benchmark takes the arguments of the official script it replaces, prints what that script
prints, and with `--json FILE` writes every metric machine-readable:
  pope        llava/eval/eval_pope.py           --annotation-dir --question-file --result-file
  textvqa     llava/eval/eval_textvqa.py        --annotation-file --result-file
  sqa         llava/eval/eval_science_qa.py     --base-dir --result-file --output-file --output-result --split
  gqa         scripts/convert_gqa_for_eval.py   --src --dst  (then GQA eval.py beside --dst)
  vqav2       scripts/convert_vqav2_for_submission.py  --dir --ckpt --split [--annotation-file]
  vizwiz      scripts/convert_vizwiz_for_submission.py --annotation-file --result-file --result-upload-file
  mme         convert_answer_to_mme.py + eval_tool/calculation.py  --experiment [--mme-dir]
  mmbench(_cn) scripts/convert_mmbench_for_submission.py --annotation-file --result-dir --upload-dir --experiment
  seed        scripts/convert_seed_for_submission.py  --annotation-file --result-file --result-upload-file
  mmvet       scripts/convert_mmvet_for_eval.py --src --dst  (+ GPT grading with --mmvet-path [--num-run])
  llavabench  llava/eval/eval_gpt_review_bench.py + summarize_gpt_review.py
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def _judge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge-base-url", help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    p.add_argument("--judge-model", help="judge model name (official: gpt-4-0314 / gpt-4-0613)")
    p.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (default OPENAI_API_KEY)")
    p.add_argument("--judge-cache", default=".judge_cache", help="reply cache folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", help="also write every metric to this JSON file")
        return p

    p = add("pope", "eval_pope.py")
    p.add_argument("--annotation-dir", required=True)
    p.add_argument("--question-file", required=True)
    p.add_argument("--result-file", required=True)
    p = add("textvqa", "eval_textvqa.py")
    p.add_argument("--annotation-file", required=True)
    p.add_argument("--result-file", required=True)
    p = add("sqa", "eval_science_qa.py")
    p.add_argument("--base-dir", required=True)
    p.add_argument("--result-file", required=True)
    p.add_argument("--output-file")
    p.add_argument("--output-result")
    p.add_argument("--split", default="test")
    p = add("gqa", "convert_gqa_for_eval.py, then GQA eval.py in the folder of --dst")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--tier", default="testdev_balanced")
    p = add("vqav2", "convert_vqav2_for_submission.py")
    p.add_argument("--dir", default="./playground/data/eval/vqav2")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--annotation-file",
                   help="val annotations (v2_mscoco_val2014_annotations.json): also score the "
                        "upload with vqaEval.py's rule")
    p = add("vizwiz", "convert_vizwiz_for_submission.py")
    for flag in ("--annotation-file", "--result-file", "--result-upload-file"):
        p.add_argument(flag, required=True)
    p = add("mme", "convert_answer_to_mme.py + eval_tool/calculation.py")
    p.add_argument("--experiment", required=True)
    p.add_argument("--mme-dir", default=".", help="the MME folder (official: cd there first)")
    for name in ("mmbench", "mmbench_cn"):
        p = add(name, "convert_mmbench_for_submission.py "
                      "(+ circular score when the TSV has answers)")
        for flag in ("--annotation-file", "--result-dir", "--upload-dir", "--experiment"):
            p.add_argument(flag, required=True)
        p.add_argument("--format", choices=("xlsx", "tsv"), default="xlsx",
                       help="upload file type (official: xlsx)")
    p = add("seed", "convert_seed_for_submission.py")
    for flag in ("--annotation-file", "--result-file", "--result-upload-file"):
        p.add_argument(flag, required=True)
    p = add("mmvet", "convert_mmvet_for_eval.py (+ MM-Vet GPT grading with --mmvet-path)")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--mmvet-path", help="folder with MM-Vet's mm-vet.json; grades when given")
    p.add_argument("--num-run", type=int, default=1,
                   help="grading runs (mm-vet_evaluator.py --num_run; 5 in the MM-Vet paper): "
                        "reports each run, the mean and the spread")
    _judge_arguments(p)
    p = add("llavabench", "eval_gpt_review_bench.py + summarize_gpt_review.py")
    p.add_argument("-q", "--question", required=True)
    p.add_argument("-c", "--context", required=True)
    p.add_argument("-a", "--answer-list", nargs=2, required=True,
                   metavar=("GPT4_ANSWERS", "ANSWERS"))
    p.add_argument("-r", "--rule", help="ignored: the official llava_bench rules are built in")
    p.add_argument("-o", "--output", required=True)
    _judge_arguments(p)


def _judge(args: argparse.Namespace):
    from llava15.eval.judge import JudgeClient

    if not (args.judge_base_url and args.judge_model):
        raise SystemExit("error: grading needs --judge-base-url and --judge-model")
    return JudgeClient(args.judge_base_url, args.judge_model,
                       api_key=os.environ.get(args.judge_api_key_env),
                       cache_dir=args.judge_cache)


def _run_benchmark(args: argparse.Namespace) -> dict:
    from llava15.eval.benchmarks import (gqa, llavabench, mme, mmvet, pope, seed, sqa, textvqa,
                                         vizwiz, vqav2)
    from llava15.eval.question import read_jsonl

    name = args.benchmark
    if name == "pope":
        result = pope.score_files(args.result_file, args.question_file, args.annotation_dir)
        print(pope.report(result))
    elif name == "textvqa":
        result = textvqa.score_files(args.result_file, args.annotation_file)
        print(textvqa.report(result, Path(args.result_file).stem))
    elif name == "sqa":
        result = sqa.score_files(args.result_file, args.base_dir, args.split)
        print(sqa.report(result))
        if args.output_file and args.output_result:
            sqa.write_outputs(result, args.output_file, args.output_result)
        result = {k: v for k, v in result.items() if k not in ("outputs", "texts")}
    elif name == "gqa":
        gqa.write_predictions(args.src, args.dst)
        questions = Path(args.dst).parent / f"{args.tier}_questions.json"
        result = {"predictions": args.dst}
        if questions.exists():
            from llava15.eval.question import read_json
            result = gqa.evaluate(json.loads(Path(args.dst).read_text()), read_json(questions))
            print(gqa.report(result))
    elif name == "vqav2":
        src = Path(args.dir) / "answers" / args.split / args.ckpt / "merge.jsonl"
        test = read_jsonl(Path(args.dir) / "llava_vqav2_mscoco_test2015.jsonl")
        upload = vqav2.submission(src, test)
        dst = Path(args.dir) / "answers_upload" / args.split / f"{args.ckpt}.json"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(json.dumps(upload))
        answered = sum(1 for _ in read_jsonl(src))
        print(f"total results: {answered}, total split: {len(test)}, error_line: 0")
        result = {"results": answered, "split": len(test), "upload": str(dst)}
        if args.annotation_file:
            result.update(vqav2.score_upload(upload, args.annotation_file))
            print(f"Overall Accuracy is: {result['overall']:.2f}")
    elif name == "vizwiz":
        questions = read_jsonl(args.annotation_file)
        upload = vizwiz.submission(args.result_file, questions)
        Path(args.result_upload_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.result_upload_file).write_text(json.dumps(upload))
        answered = sum(1 for _ in read_jsonl(args.result_file))
        print(f"total results: {answered}, total split: {len(questions)}, error_line: 0")
        result = {"results": answered, "split": len(questions), "upload": args.result_upload_file}
    elif name == "mme":
        root = Path(args.mme_dir)
        answers = root / "answers" / f"{args.experiment}.jsonl"
        out = mme.write_category_files(answers, root,
                                       root / "eval_tool" / "answers" / args.experiment)
        result = mme.score(answers, root)
        result["category_files"] = str(out)
        print(mme.report(result))
    elif name in ("mmbench", "mmbench_cn"):
        result = _run_mmbench(args)
    elif name == "seed":
        result = seed.score_files(args.result_file, args.annotation_file)
        print(seed.report(result))
        seed.write_upload(args.result_file, args.annotation_file, args.result_upload_file)
    elif name == "mmvet":
        Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
        Path(args.dst).write_text(json.dumps(mmvet.convert(args.src), indent=2))
        result = {"results": args.dst}
        if args.mmvet_path:
            from tqdm import tqdm

            judge = _judge(args)
            grades = Path(args.dst).parent / mmvet.grade_file_name(
                Path(args.dst).stem, judge.model, args.num_run)
            result = mmvet.score(args.src, args.mmvet_path, judge, args.num_run, grades,
                                 progress=lambda total: tqdm(total=total, desc="MM-Vet grading"))
            print(json.dumps(result, indent=2))
    elif name == "llavabench":
        reviews = llavabench.review(_judge(args), args.question, args.context,
                                    args.answer_list[0], args.answer_list[1], args.output)
        from llava15.eval.judge import summarize_reviews
        result = {"summary": summarize_reviews(reviews)}
        print(Path(args.output).stem)
        print(llavabench.report(result["summary"]))
    else:
        raise SystemExit(f"unknown benchmark {name}")
    return result


def _run_mmbench(args: argparse.Namespace) -> dict:
    from llava15.eval.benchmarks import mmbench

    answers = Path(args.result_dir) / f"{args.experiment}.jsonl"
    data_dir, tsv = Path(args.annotation_file).parent, Path(args.annotation_file).name
    files = {"questions": tsv}
    upload = mmbench.write_submission(answers, data_dir, Path(args.upload_dir) / args.experiment,
                                      files, str(data_dir), fmt=args.format)
    print(f"wrote {upload}")
    result = mmbench.score(answers, data_dir, files, str(data_dir))
    result["upload"] = str(upload)
    if result.get("overall") is not None:
        print(f"Overall (circular): {result['overall']:.2f}%  ({result['questions']} questions)")
        for category, acc in result["category"].items():
            print(f"  {category}: {acc:.2f}%")
    return result


def run(args: argparse.Namespace) -> int:
    result = _run_benchmark(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0
