"""The environment our worker processes get, and any baseline measured against them (bench/)."""

# glibc hands large freed buffers back to the OS at once; the [tokens, vocab] temporaries of training then
# page-fault on every step (measured: halves a tiny-model step on CPU). Keep freed memory instead.
ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "17179869184",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "1073741824",
}
WORKER_ENV = {**ALLOCATOR_ENV, "TOKENIZERS_PARALLELISM": "false"}
