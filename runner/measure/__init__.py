"""Measuring the memory of one training step, without a GPU: the model a plan describes, built at full size with
fake tensors (no memory is used, every byte is counted) and stepped once after a warm-up step.

Imports torch and the training libraries, lazily, so only `recipe plan --measure`, the benchmarks and the tests
load it.
"""
