"""The machine: GPU readings, VRAM-aware engine placement, per-GPU session admission, CUDA OOM."""
