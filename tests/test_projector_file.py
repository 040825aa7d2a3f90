"""Stage-1 projector files in the official key layout load into stage 2, for every projector type."""

from __future__ import annotations

import pytest
import torch

from llava15.checkpoint.layouts import official_projector_name
from llava15.config import tiny
from llava15.model.llava import Llava
from llava15.train.init import load_projector_file


@pytest.mark.parametrize("projector_type", ["linear", "mlp2x_gelu", "mlp3x_gelu"])
def test_official_projector_file_round_trip(tmp_path, projector_type):
    torch.manual_seed(0)
    source = Llava(tiny().replace(mm_projector_type=projector_type))
    state = {k: v for k, v in source.state_dict().items() if k.startswith("multi_modal_projector.")}
    official = {official_projector_name(k, projector_type): v for k, v in state.items()}
    torch.save(official, tmp_path / "mm_projector.bin")
    target = Llava(tiny().replace(mm_projector_type=projector_type))
    load_projector_file(target, tmp_path / "mm_projector.bin")
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value), key
