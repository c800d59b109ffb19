"""PyTorch peers of avjax networks that ../shared/bench does not provide (run as scripts)."""
