"""Training: the two-stage LLaVA-1.5 recipe (`pretrain`, `finetune`) with one loop for every backend."""
