"""The offline world: synthetic data (`synth`), stage-0 backbones and the end-to-end demo.

No pretrained weights or data sets can be downloaded here, so this wing builds a small world in
which LLaVA-1.5's recipe runs for real on a CPU. It sits above `train` and `eval`; nothing else
imports it.
"""
