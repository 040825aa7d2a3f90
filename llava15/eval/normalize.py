"""The VQA answer normaliser in its two official variants (docs/benchmarks.md, 'VQA answer normaliser').

`normalize_answer` is the EvalAI processor of LLaVA's `m4c_evaluator.EvalAIAnswerProcessor`
(used by eval_textvqa.py and the VQAv2 / VizWiz submission converters): lower-case, delete `,`
and `?`, split off `'s`, then punctuation, number words, articles and contractions.
`process_punctuation` / `process_digit_article` with `VQA_COMMA_STRIP` are the official VQA
evaluator's (vqaEval.py) copies, which skip the first step.

Quirks kept on purpose: the period regex's look-behind is mistyped (`(?!<=\\d)`), so a period
followed by a digit survives and any other period is deleted; `re.UNICODE` was passed as the
`count` argument of `sub`, so at most 32 periods are deleted; the capitalised contraction keys
(`Im`, `Ive`, ...) can never match after lower-casing.
"""

from __future__ import annotations

import re
from types import MappingProxyType

# contraction-less spelling=contracted spelling, as in the official table (120 entries)
_CONTRACTIONS_TABLE = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't
mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at
'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll
somebodys=somebody's someoned=someone'd someoned've=someone'd've someone'dve=someone'd've
someonell=someone'll someones=someone's somethingd=something'd somethingd've=something'd've
something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd
theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll
whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's
whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
"""
CONTRACTIONS = MappingProxyType(dict(pair.split("=", 1) for pair in _CONTRACTIONS_TABLE.split()))

NUMBER_MAP = MappingProxyType({
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"})
ARTICLES = ("a", "an", "the")
PUNCTUATIONS = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                "@", "`", ",", "?", "!")
# The intended pattern was a look-behind `(?<!\d)`; as written it never looks behind.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
M4C_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")   # m4c_evaluator.py
VQA_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")         # vqaEval.py
_RE_UNICODE_AS_COUNT = int(re.UNICODE)                 # 32: the official call's accidental count


def process_punctuation(text: str, comma_strip: re.Pattern = M4C_COMMA_STRIP) -> str:
    """Delete or space out punctuation, then delete periods not followed by a digit.

    A character is deleted when the input has it next to a space or contains a
    digit-comma-digit pattern; otherwise it becomes a space.
    """
    out = text
    has_number_comma = comma_strip.search(text) is not None
    for p in PUNCTUATIONS:
        if (p + " " in text or " " + p in text) or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=_RE_UNICODE_AS_COUNT)


def process_digit_article(text: str) -> str:
    """Lower-case, map number words to digits, drop articles, restore contractions."""
    words = []
    for word in text.lower().split():
        word = NUMBER_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """EvalAIAnswerProcessor: the normaliser of TextVQA scoring and the VQAv2/VizWiz uploads."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text, M4C_COMMA_STRIP))
